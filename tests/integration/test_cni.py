"""The CNI plugins executed as kubelet's runtime executes them (``weavenet.testbed.cni``), on simulated hosts with
real routers: Weave's upstream test ``830_cni_plugin_test.sh`` step by step, the other commands, bad input, and
50 pods added at once.

The plugins are installed by ``weave setup-cni`` into each host's own directories and run inside the host (its
network and mount namespaces, where the router's API is ``127.0.0.1:6784`` and ``/var/lib/weave`` is private).
Where 830 pinged 8.8.8.8 to show the default route, these tests reach the host's underlay address: an address
outside the weave network that lives in a namespace the test bed made.
"""

from __future__ import annotations

import contextlib
import json
import os
import secrets
import signal
import subprocess
import sys
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import pytest

from weavenet.testbed import Container, Host
from weavenet.testbed.cni import CniFailed, Pod, Runtime

pytestmark = [pytest.mark.netns]

API = r"""
import sys, urllib.request as u
req = u.Request("http://127.0.0.1:6784" + sys.argv[2], method=sys.argv[1])
try:
    print(u.urlopen(req, timeout=10).read().decode(), end="")
except u.HTTPError as e:
    print(e.code, e.read().decode(), end="")
"""
WEAVE_NET = {"type": "weave-net"}


def wait_until(pred: Callable[[], bool], timeout: float, what: str, interval: float = 0.3) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if pred():
            return
        time.sleep(interval)
    raise AssertionError(f"timed out after {timeout:.0f}s waiting for {what}")


def api(host: Host, method: str, path: str) -> str:
    return host.run([sys.executable, "-c", API, method, path]).stdout


def setup_cni(host: Host) -> Path:
    bindir = host.dir / "cni-bin"
    res = host.weave("setup-cni", "--plugin-dir", str(bindir), "--conf-dir", str(host.dir / "cni-net.d"))
    assert (res.returncode, res.stdout, res.stderr) == (0, "", "")
    return bindir


def runtime(host: Host, bindir: Path, *plugins: dict[str, Any], version: str = "0.3.0", **kw: Any) -> Runtime:
    conflist = {"cniVersion": version, "name": "weave", "plugins": list(plugins) or [WEAVE_NET]}
    return Runtime(conflist, [str(bindir), "/usr/lib/cni"], enter=host.enter("/"), **kw)


def pod(c: Container, name: str = "") -> Pod:
    return Pod(secrets.token_hex(32), c.netns_path, name=name or c.name)


def ip_of(c: Container, ifname: str = "eth0") -> str:
    return c.run(["ip", "-4", "-o", "addr", "show", ifname]).stdout.split()[3]


def routes(c: Container) -> str:
    return c.run(["ip", "-4", "route"]).stdout


def ping(c: Container, ip: str) -> bool:
    return c.run(["ping", "-n", "-q", "-c", "1", "-W", "2", ip], check=False).returncode == 0


def hairpin(host: Host, container_id: str) -> str:
    return host.run(["cat", f"/sys/class/net/weave/brif/vethwepl{container_id[:7]}/hairpin_mode"]).stdout.strip()


def owned(host: Host) -> dict[str, list[str]]:
    return {m["containerid"]: m["addrs"] for m in json.loads(api(host, "GET", "/ip"))["owned"] or []}


def veths(host: Host) -> list[str]:
    return [line.split(":")[1].strip().split("@")[0] for line in host.run(["ip", "-o", "link"]).stdout.splitlines()
            if "vethwepl" in line]  # fmt: skip


@pytest.mark.slow
def test_upstream_830_on_three_hosts(make_testbed: Callable[..., Any]) -> None:
    tb = make_testbed(3)
    h1, h2, h3 = tb.hosts
    assert h1.weave("launch").returncode == 0
    for h in (h2, h3):
        assert h.weave("launch", h1.ip).returncode == 0
    bins = {h.name: setup_cni(h) for h in tb.hosts}
    assert sorted(p.name for p in bins["h1"].iterdir() if p.is_symlink()) == ["weave-ipam", "weave-net"]

    # c0: weave-net delegating to weave-ipam, with no cniVersion (0.1.0) and a bridge without an address yet, so
    # weave-ipam is asked for weave:expose's address too (Weave's #2839); c1: the plain configuration
    rt = runtime(h1, bins["h1"])
    c0, c1, c2 = (h1.container(n) for n in ("c0", "c1", "c2"))
    p0, p1 = pod(c0), pod(c1)
    raw0 = json.dumps({"name": "weave", "type": "weave-net", "ipam": {"type": "weave-ipam"}}).encode()
    out0 = rt.exec_plugin(WEAVE_NET, "ADD", p0, stdin=raw0).json()
    assert out0["cniVersion"] == "0.1.0" and "ip4" in out0  # answered in the configuration's version
    out1 = rt.exec_plugin(WEAVE_NET, "ADD", p1, stdin=b'{"name": "weave", "type": "weave-net"}').json()
    # c2: 0.3.0 with ipam.routes: that route and no default route
    rt2 = runtime(h1, bins["h1"], {"type": "weave-net", "ipam": {"routes": [{"dst": "10.32.0.0/12"}]}})
    p2 = pod(c2)
    out2 = rt2.add(p2)
    assert out2["ips"][0]["version"] == "4" and out2["interfaces"][1]["name"] == "eth0"
    brip = h1.run(["ip", "-4", "-o", "addr", "show", "weave"]).stdout.split()[3]
    assert owned(h1)["weave:expose"] == [brip]
    c0ip, c1ip, c2ip = ip_of(c0), ip_of(c1), ip_of(c2)
    assert out0["ip4"]["ip"] == c0ip and out1["ip4"]["ip"] == c1ip and out2["ips"][0]["address"] == c2ip
    assert len({brip, c0ip, c1ip, c2ip}) == 4
    assert f"default via {brip.split('/')[0]} dev eth0" in routes(c1)
    assert "default" not in routes(c2) and "10.32.0.0/12 dev eth0" in routes(c2)
    assert out1["ip4"]["gateway"] == brip.split("/")[0]

    # c1 <-> c2, and c1 reaches an address outside weave through its default route; c2 cannot
    assert ping(c1, c2ip.split("/")[0]) and ping(c2, c1ip.split("/")[0])
    assert ping(c1, h1.ip) and not ping(c2, h1.ip)

    # pods on the other hosts: the same ring, reachable across
    far = {}
    for h in (h2, h3):
        c = h.container("far")
        runtime(h, bins[h.name], version="1.0.0").add(pod(c))
        far[h.name] = c
    far_ips = {n: ip_of(c).split("/")[0] for n, c in far.items()}
    assert len({c0ip, c1ip, c2ip, *far_ips.values()}) == 5
    wait_until(lambda: ping(c1, far_ips["h2"]) and ping(c1, far_ips["h3"]), 60, "pods to reach across hosts")
    assert ping(far["h2"], far_ips["h3"]) and ping(far["h3"], c2ip.split("/")[0])

    # c2's container goes without a DEL: its address stays taken; c3 gets another, and reaches c1
    c2.remove()
    c3 = h1.container("c3")
    p3 = pod(c3)
    rt.add(p3)
    c3ip = ip_of(c3)
    assert c3ip not in (c2ip, brip)
    assert ping(c1, c3ip.split("/")[0])
    rt2.delete(p2)  # the runtime's DEL after all (its namespace is gone): the address is released
    assert p2.container_id not in owned(h1)

    # hairpin mode: on (configured), off (configured), on (Weave's default)
    for name, mode, want in (("ch0", True, "1"), ("ch1", False, "0"), ("ch2", None, "1")):
        conf = {"type": "weave-net"} if mode is None else {"type": "weave-net", "hairpinMode": mode}
        p = pod(h1.container(name))
        runtime(h1, bins["h1"], conf).add(p)
        assert hairpin(h1, p.container_id) == want, name

    # the router restarted: no warnings, and the pods' addresses are still theirs
    assert h1.weave("stop").returncode == 0
    res = h1.weave("launch", h2.ip, h3.ip)
    assert (res.returncode, res.stderr) == (0, "")
    got = owned(h1)
    assert got[p1.container_id] == [c1ip] and got[p3.container_id] == [c3ip]
    assert ping(c1, c3ip.split("/")[0])

    # DEL: the interface and the address go; twice is fine
    for _ in range(2):
        rt.delete(p3)
    assert p3.container_id not in owned(h1) and f"vethwepl{p3.container_id[:7]}" not in veths(h1)
    assert c3.run(["ip", "link", "show", "eth0"], check=False).returncode != 0


def launched(make_testbed: Callable[..., Any]) -> tuple[Host, Path]:
    (h,) = make_testbed(1).hosts
    assert h.weave("launch", "--ipalloc-range", "10.40.0.0/16").returncode == 0
    return h, setup_cni(h)


def code_of(fn: Callable[[], object]) -> tuple[Any, str]:
    with pytest.raises(CniFailed) as e:
        fn()
    return e.value.code, e.value.error.get("msg", "") + " " + e.value.error.get("details", "")


def test_check_status_gc_and_deletes(make_testbed: Callable[..., Any]) -> None:
    h, bindir = launched(make_testbed)
    rt = runtime(h, bindir, {"type": "weave-net", "dns": {"nameservers": ["10.40.0.53"]}}, version="1.1.0")
    rt.status()  # the router answers and its IPAM is on
    ca = h.container("a")
    a, b = pod(ca), pod(h.container("b"))
    out = rt.add(a)
    assert out["dns"] == {"nameservers": ["10.40.0.53"]} and out["interfaces"][1]["mtu"] == 1376
    assert out["routes"] == [{"dst": "0.0.0.0/0", "gw": out["ips"][0]["gateway"]}]
    rt.check(a)
    rt.add(b)
    # CHECK finds what went wrong with a pod's interface
    ca.run(["ip", "route", "del", "default"])
    assert "route default" in code_of(lambda: rt.check(a))[1]
    ca.run(["ip", "link", "set", "eth0", "down"])
    assert "is down" in code_of(lambda: rt.check(a))[1]
    # GC: the runtime lists b only; a's attachment goes (address, host interface, record)
    assert rt.gc([b]) == []
    assert a.container_id not in owned(h) and b.container_id in owned(h)
    assert f"vethwepl{a.container_id[:7]}" not in veths(h)
    records = sorted(p.name for p in Path(h.dir / "lib-weave" / "cni" / "weave" / "net").iterdir())
    assert records == [f"{b.container_id}:eth0"]
    # DEL of a container nobody knows, and of one whose namespace is gone, succeed
    rt.delete(Pod(secrets.token_hex(32), "/var/run/netns/no-such-ns"))
    rt.exec_plugin(WEAVE_NET, "DEL", Pod(secrets.token_hex(8), ""))
    rt.delete(b)
    assert rt.exec_plugin(WEAVE_NET, "VERSION").json()["supportedVersions"][-1] == "1.1.0"
    # weave-ipam on its own
    ipam = runtime(h, bindir, {"type": "weave-ipam", "ipam": {"subnet": "10.40.7.0/24", "gateway": "10.40.7.1"}},
                   version="1.0.0")  # fmt: skip
    c = pod(h.container("c"))
    out = ipam.add(c)
    assert out["ips"][0]["address"].startswith("10.40.7.") and out["ips"][0]["gateway"] == "10.40.7.1"
    assert "interfaces" not in out and owned(h)[c.container_id] == [out["ips"][0]["address"]]
    ipam.delete(c)
    ipam.delete(c)
    assert c.container_id not in owned(h)
    assert veths(h) == []


def cni_service_pid(host: Host) -> int | None:
    """The router's CNI service (``weavenet.cni.server``) on this host, if it runs."""
    for pid in host.pids():
        with contextlib.suppress(OSError):
            if b"weavenet.cni.server" in Path(f"/proc/{pid}/cmdline").read_bytes():
                return pid
    return None


ARPS = r"""
import socket, sys, time
s = socket.socket(socket.AF_PACKET, socket.SOCK_RAW, socket.htons(0x0806))
s.bind((sys.argv[1], 0))
s.settimeout(0.1)
end = time.monotonic() + float(sys.argv[2])
while time.monotonic() < end:
    try:
        frame = s.recv(100)
    except TimeoutError:
        continue
    if frame[20:22] == b"\x00\x01" and frame[28:32] == frame[38:42]:  # a request for its sender's own address
        print(socket.inet_ntoa(frame[28:32]), flush=True)
"""


def test_handed_to_the_service_or_run_in_the_plugin(make_testbed: Callable[..., Any]) -> None:
    """The same ADD, CHECK and DEL whether the execution is handed to the router's CNI service or runs in the
    plugin's own process (WEAVE_CNI_SERVICE=off, or a service that is gone: a problem in weave status)."""
    h, bindir = launched(make_testbed)
    service = cni_service_pid(h)
    assert service is not None
    handed = runtime(h, bindir, version="1.0.0")
    here = runtime(h, bindir, version="1.0.0", env={"WEAVE_CNI_SERVICE": "off"})
    pods, containers = {}, {}
    for rt, name in ((handed, "a"), (here, "b")):
        containers[name] = c = h.container(name)
        pods[name] = p = pod(c)
        sniff = subprocess.Popen([*h.enter("/"), sys.executable, "-c", ARPS, "weave", "1.5"], stdout=subprocess.PIPE)
        time.sleep(0.3)  # listening
        out = rt.add(p)
        address = out["ips"][0]["address"].split("/")[0]
        # the pod's address announced at a few moments after the ADD (the worker sends them once it has answered)
        assert sniff.communicate(timeout=30)[0].decode().split().count(address) >= 2
        assert out["interfaces"][1]["name"] == "eth0" and out["routes"][0]["dst"] == "0.0.0.0/0"
        assert ip_of(c) == out["ips"][0]["address"] and owned(h)[p.container_id] == [out["ips"][0]["address"]]
        rt.check(p)
        assert not any("not handed" in ex.stderr for ex in rt.log), [ex.stderr for ex in rt.log]
    assert "exposed 10.40.0.2/16 on bridge weave" in handed.log[0].stderr  # the worker wrote the plugin's stderr
    assert ping(containers["a"], ip_of(containers["b"]).split("/")[0])
    os.kill(service, signal.SIGKILL)  # the service this test's router started
    wait_until(lambda: "CNI service ended" in h.weave("status").stdout, 20, "the service's end in weave status")
    handed.delete(pods["a"])  # runs in the plugin's process now, saying why
    assert "not handed to the CNI service at @weavenet-cni" in handed.log[-1].stderr
    here.delete(pods["b"])
    assert owned(h) == {"weave:expose": owned(h)["weave:expose"]} and veths(h) == []


def test_bad_input_and_nothing_half_made(make_testbed: Callable[..., Any]) -> None:
    (h,) = make_testbed(1).hosts
    bindir = setup_cni(h)
    rt = runtime(h, bindir, version="1.0.0")
    c = h.container("c")
    p = pod(c)
    # no router and no bridge yet: a clear error, nothing recorded
    assert code_of(lambda: rt.add(p)) == (11, 'bridge "weave" not present; did you launch weave? ')
    assert code_of(lambda: rt.delete(p))[0] == 11  # DEL cannot release without the router: retried later
    assert h.weave("launch", "--ipalloc-range", "10.40.0.0/16").returncode == 0
    rt.delete(p)  # now it can
    cases: list[tuple[dict[str, str], bytes | None, int, str]] = [
        ({"CNI_NETNS": "/var/run/netns/no-such-ns"}, None, 4, "CNI_NETNS"),
        ({"CNI_NETNS": f"/proc/{h.pids()[0]}/ns/net"}, None, 4, "own network namespace"),
        ({"CNI_IFNAME": ""}, None, 4, "CNI_IFNAME"),
        ({"CNI_CONTAINERID": "../etc"}, None, 4, "CNI_CONTAINERID"),
        ({"CNI_COMMAND": "FROB"}, None, 4, "unknown CNI_COMMAND"),
        ({}, b"{not json", 6, "error parsing network configuration"),
        ({}, b'{"cniVersion": "2.0.0", "name": "weave"}', 1, "incompatible CNI versions"),
        ({}, b'{"cniVersion": "0.3.0", "name": "weave", "ipMasq": true}', 2, "ipMasq"),
        ({}, b'{"cniVersion": "0.3.0", "name": "weave", "ipam": {"subnet": "10.99.0.0/16"}}', 999, "allocate"),
        ({}, b'{"cniVersion": "0.3.0", "name": "weave", "ipam": {"type": "no-such"}}', 7, "no-such"),
    ]
    for env, stdin, code, needle in cases:
        got, text = code_of(lambda env=env, stdin=stdin: rt.exec_plugin(WEAVE_NET, "ADD", p, env=env, stdin=stdin))
        assert got == code and needle in text, (env, stdin, got, text)
    assert owned(h) == {} and veths(h) == []
    # the interface name is taken in the pod: refused before anything is allocated
    c.run(["ip", "link", "add", "eth0", "type", "veth", "peer", "name", "eth1"])
    assert "already exists" in code_of(lambda: rt.add(p))[1]
    c.run(["ip", "link", "del", "eth0"])
    # a failure after the allocation (a route the kernel refuses) removes the link and releases the address
    bad_route = {"type": "weave-net", "ipam": {"routes": [{"dst": "10.9.0.0/16", "gw": "192.0.2.1"}]}}
    got, text = code_of(lambda: runtime(h, bindir, bad_route).add(p))
    assert got == 999 and "setting up eth0" in text
    assert owned(h) == {} and veths(h) == [] and c.run(["ip", "link", "show", "eth0"], check=False).returncode
    assert not list((h.dir / "lib-weave" / "cni" / "weave" / "net").iterdir())
    # the router stops after the ADD: DEL removes the interface, fails for the address, succeeds once it is back
    rt.add(p)
    assert h.weave("stop").returncode == 0
    assert code_of(lambda: rt.delete(p))[0] == 11
    assert c.run(["ip", "link", "show", "eth0"], check=False).returncode != 0
    assert h.weave("launch", "--ipalloc-range", "10.40.0.0/16").returncode == 0
    rt.delete(p)
    assert p.container_id not in owned(h)
    # weave reset removes what setup-cni installed, and the attachment records
    assert h.weave("reset").returncode == 0
    assert list(bindir.iterdir()) == [] and list((h.dir / "cni-net.d").iterdir()) == []
    assert not (h.dir / "lib-weave" / "cni").exists()


@pytest.mark.slow
def test_fifty_pods_at_once(make_testbed: Callable[..., Any]) -> None:
    """As a node does when a deployment scales up: 50 ADDs at the same time, then 50 DELs."""
    h, bindir = launched(make_testbed)
    rt = runtime(h, bindir, version="1.0.0", timeout=300)
    pods = [pod(h.container(f"p{i}")) for i in range(50)]
    with ThreadPoolExecutor(50) as pool:
        results = list(pool.map(rt.add, pods))
    addrs = [r["ips"][0]["address"] for r in results]
    assert len(set(addrs)) == 50
    assert sorted(owned(h)) == sorted([p.container_id for p in pods] + ["weave:expose"])
    assert len(veths(h)) == 50
    with ThreadPoolExecutor(50) as pool:
        list(pool.map(rt.delete, pods))
    assert sorted(owned(h)) == ["weave:expose"] and veths(h) == []
