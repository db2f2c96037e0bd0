"""The test bed itself: isolation of hosts, impairments, cleanup."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path

import pytest

from weavenet.testbed import Host, Testbed, TestbedBusy, cleanup_stale

pytestmark = pytest.mark.netns
MakeTestbed = Callable[..., Testbed]


def ping(host: Host, ip: str, size: int | None = None, df: bool = False, count: int = 1) -> bool:
    argv = ["ping", "-n", "-q", "-c", str(count), "-W", "0.5"]
    if size is not None:
        argv += ["-s", str(size)]
    if df:
        argv += ["-M", "do"]
    return host.run([*argv, ip], check=False).returncode == 0


# A server that prints what arrives (UDP datagram or TCP stream) within 1 s, or "timeout".
SERVER = """
import socket, sys
proto, port = sys.argv[1], int(sys.argv[2])
s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM if proto == "udp" else socket.SOCK_STREAM)
s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
s.bind(("0.0.0.0", port))
s.settimeout(1.0)
print("ready", flush=True)
try:
    if proto == "udp":
        print(s.recv(100).decode())
    else:
        s.listen(1)
        c, _ = s.accept()
        c.settimeout(1.0)
        print(c.recv(100).decode())
except OSError:
    print("timeout")
"""
CLIENT = """
import socket, sys, time
proto, ip, port = sys.argv[1], sys.argv[2], int(sys.argv[3])
if proto == "udp":
    s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    for _ in range(3):
        s.sendto(b"hello", (ip, port))
        time.sleep(0.05)
else:
    try:
        socket.create_connection((ip, port), timeout=1).sendall(b"hello")
    except OSError:
        pass
"""


def gets_through(src: Host, dst: Host, proto: str, port: int) -> bool:
    server = dst.popen([sys.executable, "-c", SERVER, proto, str(port)], stdout=subprocess.PIPE)
    assert server.stdout is not None
    assert server.stdout.readline().strip() == "ready"
    src.run([sys.executable, "-c", CLIENT, proto, dst.ip, str(port)])
    out, _ = server.communicate(timeout=5)
    return "hello" in out


def wait_in_host(host: Host, proc: subprocess.Popen[str]) -> None:
    """nsenter execs the command, so the pid shows up in the host once it has joined the namespaces."""
    deadline = time.monotonic() + 5
    while proc.pid not in host.pids():
        assert time.monotonic() < deadline, "process never entered the host"
        time.sleep(0.02)


def wait_in_netns(name: str, proc: subprocess.Popen[bytes]) -> None:
    ino = os.stat(f"/run/netns/{name}").st_ino
    deadline = time.monotonic() + 5
    while os.stat(f"/proc/{proc.pid}/ns/net").st_ino != ino:
        assert time.monotonic() < deadline, "process never entered the namespace"
        time.sleep(0.02)


def test_hosts_are_isolated_machines(make_testbed: MakeTestbed) -> None:
    tb = make_testbed(3)
    h1, h2, h3 = tb.hosts
    assert [h.ip for h in tb.hosts] == ["192.168.48.11", "192.168.48.12", "192.168.48.13"]
    assert ping(h1, h2.ip) and ping(h3, h1.ip) and ping(h2, h3.ip)
    assert [h.run(["hostname"]).stdout.strip() for h in tb.hosts] == ["h1", "h2", "h3"]
    ids = [h.run(["cat", "/etc/machine-id"]).stdout for h in tb.hosts]
    assert len(set(ids)) == 3 and all(len(i) == 33 and i.endswith("\n") for i in ids)
    assert Path("/etc/machine-id").read_text() not in ids
    for h in tb.hosts:
        assert h.run(["ls", "-A", "/var/lib/weave"]).stdout == ""
        assert h.run(["ls", "-A", "/run"]).stdout.split() == ["netns"]
        assert h.run(["readlink", "-f", "/var/run"]).stdout.strip() == "/run"
        assert sorted(h.run(["ls", "/sys/class/net"]).stdout.split()) == ["eth0", "lo"]
        assert h.run(["sysctl", "-n", "net.ipv4.ip_forward"]).stdout.strip() == "1"
    h1.sh("echo x > /run/only-h1 && mkdir -p /var/lib/weave/db && echo y > /var/run/also-h1")
    assert h1.run(["cat", "/var/run/only-h1"]).stdout == "x\n"
    assert not Path("/run/only-h1").exists() and not Path("/run/also-h1").exists()
    assert not Path("/var/lib/weave/db").exists()
    assert h2.run(["ls", "-A", "/run", "/var/lib/weave"]).stdout.split() == ["/run:", "netns", "/var/lib/weave:"]
    # the cgroup tree survives the /sys remount (dockerd needs it)
    assert h1.run(["ls", "/sys/fs/cgroup"]).stdout.split() == sorted(os.listdir("/sys/fs/cgroup"))
    # containers made after the hosts are usable by path from inside every host
    c = h1.container("c1")
    assert c.netns_path == f"/var/run/netns/{tb.prefix}-h1-c1"
    for h in (h1, h3):
        links = h.run(["nsenter", f"--net={c.netns_path}", "ip", "-o", "link"]).stdout
        assert links.count(": lo:") == 1 and "eth0" not in links
    assert c.run(["ip", "-o", "link"]).stdout.count(": lo:") == 1
    c.remove()
    assert f"{tb.prefix}-h1-c1" not in h2.run(["ls", "/var/run/netns"]).stdout  # removal propagates too


def test_impairments(make_testbed: MakeTestbed) -> None:
    tb = make_testbed(3)
    h1, h2, h3 = tb.hosts
    tb.cut(h1, h3)
    assert not ping(h1, h3.ip) and not ping(h3, h1.ip)
    assert ping(h1, h2.ip) and ping(h2, h3.ip)
    tb.restore(h3, h1)  # either order names the same link
    assert ping(h1, h3.ip)

    tb.block(h2, h3, "udp", 6784)
    assert not gets_through(h2, h3, "udp", 6784) and not gets_through(h3, h2, "udp", 6784)
    assert gets_through(h2, h3, "tcp", 6784) and gets_through(h2, h3, "udp", 6783)
    assert gets_through(h1, h3, "udp", 6784) and ping(h2, h3.ip)
    tb.unblock(h2, h3, "udp", 6784)
    assert gets_through(h2, h3, "udp", 6784)

    tb.loss(h1, h2, 0.5)
    out = h1.run(["ping", "-n", "-q", "-c", "200", "-i", "0.002", "-W", "1", h2.ip], check=False).stdout
    lost = float(out.split("% packet loss")[0].split()[-1])
    assert 55 <= lost <= 92, out  # request and reply each cross the lossy link: 1 - 0.5**2 = 75 % expected
    tb.loss(h1, h2, 0.2)  # replaces, does not stack
    assert len(tb.impairments()) == 2 and all("0.2" in r for r in tb.impairments())
    tb.loss(h2, h1, 0)
    assert tb.impairments() == []
    assert ping(h1, h2.ip, count=3)
    tb.cut(h1, h2)
    tb.block(h1, h3)
    tb.heal_all()
    assert tb.impairments() == [] and ping(h1, h2.ip)

    tb.set_mtu(h3, 1300)
    assert not ping(h1, h3.ip, size=1400, df=True) and ping(h1, h3.ip, size=1200, df=True)
    assert ping(h1, h2.ip, size=1400, df=True)


def test_close_kills_unmounts_and_removes_everything() -> None:
    tb = Testbed(2, prefix="wntc")
    h1 = tb.hosts[0]
    proc = h1.popen(["sleep", "300"])
    wait_in_host(h1, proc)
    ign = h1.popen(["sh", "-c", "trap '' TERM; sleep 300"])  # ignores SIGTERM: needs the SIGKILL
    wait_in_host(h1, ign)
    c = tb.hosts[1].container("c1")
    cproc = subprocess.Popen(["ip", "netns", "exec", c.netns, "sleep", "300"])
    wait_in_netns(c.netns, cproc)
    workdir = tb.workdir
    assert json.loads((workdir / "state.json").read_text())["hosts"] == [
        ["h1", "192.168.48.11"],
        ["h2", "192.168.48.12"],
    ]
    assert str(workdir) in Path("/proc/self/mountinfo").read_text()
    tb.close()
    assert proc.wait(timeout=10) == -signal.SIGTERM
    assert ign.wait(timeout=10) == -signal.SIGKILL
    assert cproc.wait(timeout=10) == -signal.SIGTERM
    assert not [n for n in os.listdir("/run/netns") if n.startswith("wntc-")]
    assert str(workdir) not in Path("/proc/self/mountinfo").read_text()
    assert not workdir.exists()
    tb.close()  # idempotent


def test_busy_prefix_is_refused_and_stale_leftovers_are_swept(make_testbed: MakeTestbed) -> None:
    tb = make_testbed(1, prefix="wntd")
    with pytest.raises(TestbedBusy):
        Testbed(1, prefix="wntd")  # a second bed of a live owner (here: ourselves) is never wiped
    with pytest.raises(TestbedBusy):
        cleanup_stale("wntd")
    assert ping(tb.hosts[0], tb.hosts[0].ip)
    tb.close()
    # leftovers of a crashed run: a namespace with a process in it and a work dir whose owner is gone
    subprocess.run(["ip", "netns", "add", "wntd-leaked"], check=True)
    leaked = subprocess.Popen(["ip", "netns", "exec", "wntd-leaked", "sleep", "300"])
    wait_in_netns("wntd-leaked", leaked)
    dead = subprocess.Popen(["true"])
    dead.wait()
    stale_dir = Path(f"/tmp/wntd-{dead.pid}")
    stale_dir.mkdir()
    (stale_dir / "state.json").write_text("{}")
    cleanup_stale("wntd")
    assert "wntd-leaked" not in os.listdir("/run/netns")
    assert leaked.wait(timeout=10) == -signal.SIGTERM
    assert not stale_dir.exists()
    # the factory moves on to another prefix when one is taken
    a, b = make_testbed(1), make_testbed(1)
    assert a.prefix != b.prefix and ping(a.hosts[0], a.hosts[0].ip) and ping(b.hosts[0], b.hosts[0].ip)


def test_kill_all_and_weave_runs_in_host(make_testbed: MakeTestbed) -> None:
    tb = make_testbed(1)
    (h1,) = tb.hosts
    proc = h1.popen(["sleep", "300"])
    wait_in_host(h1, proc)
    h1.kill_all(signal.SIGKILL)
    assert proc.wait(timeout=5) == -signal.SIGKILL
    res = h1.run([sys.executable, "-c", "import os, socket; print(socket.gethostname(), os.getcwd())"])
    assert res.stdout.split() == ["h1", os.getcwd()]
    assert h1.run(["sh", "-c", "echo $WNT_X"], env={"WNT_X": "42"}).stdout == "42\n"
    assert h1.run(["cat"], input="in").stdout == "in"
    assert h1.weave("--help").returncode in (0, 1, 2)


def test_cli_up_status_exec_down() -> None:
    cli = [sys.executable, "-m", "weavenet.testbed"]
    up = subprocess.run([*cli, "up", "2", "--prefix", "wnte"], capture_output=True, text=True, timeout=60)
    try:
        assert up.returncode == 0, up.stderr
        assert up.stdout.split() == ["h1", "192.168.48.11", "h2", "192.168.48.12"]
        with pytest.raises(TestbedBusy):
            Testbed(1, prefix="wnte")  # a kept bed is not wiped by the next test run
        out = subprocess.run([*cli, "exec", "h2", "--prefix", "wnte", "--", "hostname"], capture_output=True, text=True)
        assert out.stdout == "h2\n"
        status = subprocess.run([*cli, "status", "--prefix", "wnte"], capture_output=True, text=True).stdout
        assert "h1 192.168.48.11" in status and "h2 192.168.48.12" in status
    finally:
        down = subprocess.run([*cli, "down", "--prefix", "wnte"], capture_output=True, text=True, timeout=60)
    assert down.returncode == 0, down.stderr
    assert not [n for n in os.listdir("/run/netns") if n.startswith("wnte-")]
    assert not list(Path("/tmp").glob("wnte-*"))
