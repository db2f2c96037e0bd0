"""Faults of the router's saved state and of its launch, on a simulated host.

* unreadable state (the attach registry, rows of the state database, the whole database) is said, with the file,
  what is wrong and what to do, and the router rebuilds what it can from what is on the bridge before it hands
  out a single address;
* a full state directory (a small tmpfs mounted in the host's own mount namespace) makes the operations that
  cannot be saved fail and say why, undone;
* a launch that fails leaves the host as it found it: links, firewall rules and files (the log excepted).

Name resolution in the host is local only: an empty ``resolv.conf`` is mounted over the host's (its own mount
namespace), and the host has no route but its underlay subnet, so ``nonexistent.invalid`` never leaves it.
"""

from __future__ import annotations

import contextlib
import json
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from typing import Any

import pytest

from weavenet.testbed import Host, Testbed

pytestmark = [pytest.mark.netns, pytest.mark.slow]

API = r"""
import sys, urllib.request as u
req = u.Request("http://127.0.0.1:6784" + sys.argv[2], method=sys.argv[1])
try:
    print(u.urlopen(req, timeout=10).read().decode(), end="")
except u.HTTPError as e:
    print(e.code, e.read().decode(), end="")
"""

DB = "/var/lib/weave/weave-netdata.sqlite"
REGISTRY = "/run/weave/attached.json"
BUILTIN = {"INPUT", "OUTPUT", "FORWARD", "PREROUTING", "POSTROUTING"}


def api(h: Host, method: str, path: str) -> str:
    return h.run([sys.executable, "-c", API, method, path]).stdout


def owned(h: Host) -> dict[str, list[str]]:
    data = json.loads(api(h, "GET", "/ip"))
    return {m["containerid"]: [a.split("/")[0] for a in m["addrs"]] for m in data["owned"] or []}


def attach(h: Host, *args: str) -> list[str]:
    res = h.weave("attach", *args, timeout=90)
    assert res.returncode == 0, res.stderr
    return res.stdout.split()


def one_line(res: subprocess.CompletedProcess[str]) -> str:
    assert res.returncode != 0, res
    lines = res.stderr.strip().splitlines()
    assert len(lines) == 1, res.stderr
    assert "Traceback" not in res.stderr and "sqlite3." not in res.stderr
    return lines[0]


def kill_router(h: Host) -> None:
    pid = int(h.sh("cat /run/weave/weaver.pid").stdout)
    h.run(["kill", "-9", str(pid)])
    deadline = time.monotonic() + 10
    while h.run(["kill", "-0", str(pid)], check=False).returncode == 0 and time.monotonic() < deadline:
        time.sleep(0.1)


def sql(h: Host, statement: str, *params: Any) -> None:
    """One statement on the state database from outside the router (the router is not running)."""
    code = (
        "import sqlite3, sys, json; db = sqlite3.connect(sys.argv[1]); "
        "db.execute(sys.argv[2], [bytes.fromhex(p) if isinstance(p, str) else p for p in json.loads(sys.argv[3])]); "
        "db.commit()"
    )
    args = json.dumps([p.hex() if isinstance(p, bytes) else p for p in params])
    h.run([sys.executable, "-c", code, DB, statement, args])


def ethwe(h: Host, netns_path: str) -> str:
    """The container's weave interface and its addresses ("" when it has none)."""
    return h.run(["nsenter", f"--net={netns_path}", "ip", "-4", "-o", "addr", "show", "ethwe"], check=False).stdout


def local_resolution_only(h: Host) -> None:
    """An empty resolv.conf in the host's own mount namespace, and no route out: names fail locally."""
    empty = h.dir / "resolv.conf.empty"
    empty.write_text("")
    h.run(["mount", "--bind", str(empty), "/etc/resolv.conf"])
    assert h.sh("cat /etc/resolv.conf").stdout == ""
    routes = h.run(["ip", "route"]).stdout.strip().splitlines()
    assert routes and all(r.split()[0] != "default" and "dev eth0" in r for r in routes), routes


def snapshot(h: Host) -> dict[str, Any]:
    """What a launch may change: links, firewall rules (normalised), files of the runtime and state dirs."""
    links = sorted(line.split(":")[1].strip().split("@")[0] for line in h.run(["ip", "-o", "link"]).stdout.splitlines())
    rules, table = [], ""
    for line in h.run(["iptables-save"], check=False).stdout.splitlines():
        if line.startswith("*"):
            table = line[1:]
        elif line.startswith(":"):
            chain, policy = line[1:].split()[:2]
            if not (chain in BUILTIN and policy == "ACCEPT"):  # an empty table lists its built-in chains
                rules.append(f"{table} :{chain} {policy}")
        elif line.startswith("-A "):
            rules.append(f"{table} {line}")
    found = h.sh("find /run/weave /var/lib/weave 2>/dev/null", check=False).stdout.split()
    # the log stays (it says why); SQLite's WAL files come and go with every open and close of the database
    skip = ("/run/weave", "/run/weave/weaver.log", DB + "-wal", DB + "-shm")
    files = sorted(f for f in found if f not in skip)
    return {"links": links, "rules": rules, "files": files, "state": rows(h)}


def rows(h: Host) -> list[list[str]]:
    """The state database's rows (what a failed launch must leave as they were), [] when there is none."""
    code = (
        "import sqlite3, sys, os, json; p = sys.argv[1]; "
        "print(json.dumps(sqlite3.connect(p).execute('SELECT key, hex(value) FROM top ORDER BY key').fetchall() "
        "if os.path.exists(p) else []))"
    )
    res = h.run([sys.executable, "-c", code, DB], check=False)
    return json.loads(res.stdout) if res.returncode == 0 else [["unreadable", res.stderr.strip()[-200:]]]


# -- 1: unreadable state is said and rebuilt from the bridge ----------------------------------------------------------


def test_unreadable_registry_and_addresses_are_said_and_rebuilt_from_the_bridge(
    make_testbed: Callable[..., Testbed],
) -> None:
    (h,) = make_testbed(1).hosts
    assert h.weave("launch").returncode == 0
    a = h.container("a")
    (ip_a,) = attach(h, a.netns_path)  # by namespace path: vethwepl<inode>
    b = h.container("b")
    sleeper = subprocess.Popen(["ip", "netns", "exec", b.netns, "sleep", "600"], stdin=subprocess.DEVNULL)
    try:
        (ip_b,) = attach(h, str(sleeper.pid))  # by PID: vethwepl<pid>
        kill_router(h)
        h.sh(f"printf '{{garbage' > {REGISTRY}")
        sql(h, "UPDATE top SET value = ? WHERE key = 'ownedAddresses'", b"\xff" * 24)

        res = h.weave("launch")
        assert res.returncode == 0, res.stderr
        said = res.stderr
        assert REGISTRY in said and "weave reset" in said, said
        assert DB in said and "ownedAddresses" in said, said
        log = h.sh("cat /run/weave/weaver.log").stdout
        assert any(REGISTRY in ln for ln in log.splitlines() if ln.startswith(("WARNING", "ERROR"))), log
        assert any("ownedAddresses" in ln for ln in log.splitlines() if ln.startswith(("WARNING", "ERROR"))), log
        status = h.weave("status").stdout
        assert REGISTRY in status and "ownedAddresses" in status, status

        # rebuilt from the veths on the bridge: ps lists both, IPAM owns both addresses again
        ps = h.weave("ps").stdout
        assert f" {ip_a}/" in ps and f" {ip_b}/" in ps, ps
        held = {ip for addrs in owned(h).values() for ip in addrs}
        assert {ip_a, ip_b} <= held, owned(h)
        json.loads(h.sh(f"cat {REGISTRY}").stdout)  # readable again; the unreadable one is kept aside
        assert h.sh(f"cat {REGISTRY}.corrupt").stdout == "{garbage"

        # the next container gets an address nobody uses
        c = h.container("c")
        (ip_c,) = attach(h, c.netns_path)
        assert ip_c not in (ip_a, ip_b)

        # the registry broken while the router runs: whoever reads it first (weave ps, or the router's watch on
        # dying containers) says so and keeps the unreadable file aside; ps still lists every container
        warned_before = _registry_warnings(h)
        h.sh(f"printf 'also garbage' > {REGISTRY}")
        res = h.weave("ps")
        assert res.returncode == 0, res
        assert REGISTRY in res.stderr or _registry_warnings(h) > warned_before, (res.stderr, warned_before)
        assert all(f" {ip}/" in res.stdout for ip in (ip_a, ip_b, ip_c)), res.stdout
        assert h.sh(f"cat {REGISTRY}.corrupt").stdout == "also garbage"
    finally:
        sleeper.kill()
        sleeper.wait()


def _registry_warnings(h: Host) -> int:
    """How many lines of the router's log warn about the attach registry."""
    log = h.sh("cat /run/weave/weaver.log").stdout
    return sum(1 for ln in log.splitlines() if REGISTRY in ln and ln.startswith(("WARNING", "ERROR")))


# -- 3: state errors say which file, what is wrong and what to do -----------------------------------------------------


def test_unreadable_state_database_is_named_with_what_to_do(make_testbed: Callable[..., Testbed]) -> None:
    (h,) = make_testbed(1).hosts
    assert h.weave("launch").returncode == 0
    name = json.loads(h.weave("report").stdout)["Router"]["Name"]
    assert h.weave("stop").returncode == 0

    # an unreadable value: said with the file and the key; the peer name comes from the bridge again
    sql(h, "UPDATE top SET value = ? WHERE key = 'peername'", bytes.fromhex("67") + b"\x00" * 103)
    res = h.weave("launch")
    assert res.returncode == 0, res.stderr
    assert DB in res.stderr and "peername" in res.stderr and "Traceback" not in res.stderr, res.stderr
    assert json.loads(h.weave("report").stdout)["Router"]["Name"] == name
    assert h.weave("stop").returncode == 0

    # a file that is not a database, or a damaged one: launch refuses, names the file and the ways out
    before = h.sh(f"cat {DB} | sha256sum").stdout
    h.sh(f"dd if=/dev/urandom of={DB} bs=1 seek=4096 count=2048 conv=notrunc status=none")
    damaged = h.sh(f"cat {DB} | sha256sum").stdout
    assert damaged != before
    err = one_line(h.weave("launch"))
    assert DB in err and "unreadable" in err and "weave reset" in err, err
    assert h.sh(f"cat {DB} | sha256sum").stdout == damaged  # left as it was, for whoever wants to look
    h.sh(f"printf 'not a database at all' > {DB}")
    err = one_line(h.weave("launch"))
    assert DB in err and "weave reset" in err, err


# -- 2: a full state directory ----------------------------------------------------------------------------------------


def fill(h: Host) -> None:
    h.sh("dd if=/dev/zero of=/var/lib/weave/fill bs=4k status=none 2>/dev/null; sync", check=False)
    assert h.sh("df --output=avail -k /var/lib/weave | tail -1").stdout.strip() == "0"


def test_full_state_directory_fails_what_cannot_be_saved(make_testbed: Callable[..., Testbed]) -> None:
    (h,) = make_testbed(1).hosts
    h.run(["mount", "-t", "tmpfs", "-o", "size=2m", "weavestate", "/var/lib/weave"])
    assert h.weave("launch").returncode == 0
    a = h.container("a")
    (ip_a,) = attach(h, a.netns_path)

    fill(h)
    b = h.container("b")
    err = one_line(h.weave("attach", b.netns_path, timeout=90))
    assert DB in err and "full" in err, err
    assert ethwe(h, b.netns_path) == ""  # nothing half done
    assert b.netns_path not in owned(h) and f" {ip_a}/" in h.weave("ps").stdout
    # names are not saved on disk (gossiped, as Weave's): dns-add works on a full disk
    assert h.weave("dns-add", ip_a, a.netns_path, "-h", "a.weave.local").returncode == 0
    # a release that cannot be saved yet: done, said, and saved once there is room
    res = h.weave("detach", a.netns_path)
    assert res.returncode == 0 and res.stdout.split() == [ip_a], res
    assert "not saved" in res.stderr and DB in res.stderr, res.stderr
    assert a.netns_path not in owned(h)

    h.run(["rm", "/var/lib/weave/fill"])
    (ip_b,) = attach(h, b.netns_path)
    kill_router(h)
    assert h.weave("launch").returncode == 0
    assert owned(h) == {b.netns_path: [ip_b]}  # a's release reached the disk, b's address too
    assert h.weave("stop").returncode == 0

    # launch on a full disk with nothing to save: it runs, and says the directory is full
    fill(h)
    res = h.weave("launch")
    assert res.returncode == 0 and "/var/lib/weave" in res.stderr and "full" in res.stderr, res
    assert h.weave("stop").returncode == 0
    # launch on a full disk with a fresh state directory: refused, the file named, nothing left
    h.run(["rm", "-f", DB, DB + "-wal", DB + "-shm"])
    before = snapshot(h)
    err = one_line(h.weave("launch"))
    assert DB in err and "full" in err, err
    assert snapshot(h) == before


# -- 4: a failed launch leaves nothing behind -------------------------------------------------------------------------


@contextlib.contextmanager
def holding(h: Host, proto: str, port: int) -> Iterator[None]:
    """Another process in the host holds ``port`` (bound, and listening for TCP, never answering)."""
    kind = "SOCK_DGRAM" if proto == "udp" else "SOCK_STREAM"
    listen = "" if proto == "udp" else "s.listen(1); "
    code = (
        f"import socket, time; s = socket.socket(socket.AF_INET, socket.{kind}); "
        f"s.bind(('0.0.0.0', {port})); {listen}print('bound', flush=True); time.sleep(600)"
    )
    with h.popen([sys.executable, "-c", code], stdout=subprocess.PIPE, stdin=subprocess.DEVNULL) as p:
        try:
            assert p.stdout is not None and p.stdout.readline().strip() == "bound"
            yield
        finally:
            p.kill()


def failed_launch(h: Host, *args: str) -> str:
    before = snapshot(h)
    err = one_line(h.weave("launch", *args))
    assert snapshot(h) == before, err  # the pid file too: a killed router's stays, none is left of ours
    return err


def test_a_failed_launch_leaves_the_host_as_it_was(make_testbed: Callable[..., Testbed]) -> None:
    (h,) = make_testbed(1).hosts
    local_resolution_only(h)

    # on a fresh host
    assert "nonexistent.invalid" in failed_launch(h, "nonexistent.invalid")
    for proto in ("udp", "tcp"):
        with holding(h, proto, 6783):
            assert "6783" in failed_launch(h)
    with holding(h, "tcp", 6784):  # the HTTP API's port, held by something that never answers
        failed_launch(h)

    # on a host whose router was killed: the bridge, the container on it and the rules stay as they are
    assert h.weave("launch").returncode == 0
    a = h.container("a")
    (ip_a,) = attach(h, a.netns_path)
    kill_router(h)
    assert "nonexistent.invalid" in failed_launch(h, "nonexistent.invalid")
    with holding(h, "udp", 6783):
        failed_launch(h)
    assert f"inet {ip_a}/" in ethwe(h, a.netns_path)
    assert h.weave("launch").returncode == 0  # and a good launch still works afterwards
    assert ip_a in owned(h).get(a.netns_path, [])
