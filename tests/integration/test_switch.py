"""Containers on simulated hosts, one virtual switch: connectivity, relaying, broadcast/multicast, MTU,
isolation, expose/hide, encryption (issue: virtual Ethernet switch)."""

from __future__ import annotations

import hashlib
import json
import subprocess
import sys
import time
from collections.abc import Callable

import pytest

from weavenet.dataplane import fastcrypto

pytestmark = [pytest.mark.netns, pytest.mark.slow]

RECV = r"""
import hashlib, socket, sys
s = socket.socket(); s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
s.bind(("0.0.0.0", int(sys.argv[1]))); s.listen(1); s.settimeout(120)
c, _ = s.accept(); c.settimeout(120); h = hashlib.sha256(); n = 0
while True:
    b = c.recv(1 << 20)
    if not b: break
    h.update(b); n += len(b)
print(n, h.hexdigest())
"""
SEND = r"""
import random, socket, sys, hashlib
data = random.Random(int(sys.argv[3])).randbytes(int(sys.argv[4]))
s = socket.create_connection((sys.argv[1], int(sys.argv[2])), timeout=120); s.sendall(data); s.close()
print(len(data), hashlib.sha256(data).hexdigest())
"""
MCAST_RECV = r"""
import socket, struct, sys, time
s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM); s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
s.bind(("", 5007))
mreq = struct.pack("4s4s", socket.inet_aton("239.1.2.3"), socket.inet_aton(sys.argv[1]))
s.setsockopt(socket.IPPROTO_IP, socket.IP_ADD_MEMBERSHIP, mreq)
s.settimeout(1.0); seen = []
end = time.time() + float(sys.argv[2])
while time.time() < end:
    try: seen.append(s.recv(100).decode())
    except socket.timeout: pass
print(",".join(seen))
"""
MCAST_SEND = r"""
import socket, sys, time
s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
s.setsockopt(socket.IPPROTO_IP, socket.IP_MULTICAST_TTL, 2)
for i in range(int(sys.argv[1])):
    s.sendto(str(i).encode(), ("239.1.2.3", 5007)); time.sleep(0.05)
"""
UDP_BIG_RECV = r"""
import socket
s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM); s.bind(("0.0.0.0", 5008)); s.settimeout(20)
print(len(s.recv(65535)))
"""
UDP_BIG_SEND = r"""
import socket, sys, time
s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
for _ in range(30):  # the path MTU is being discovered during the first second or so
    s.sendto(b"x" * 10000, (sys.argv[1], 5008)); time.sleep(0.3)
"""


def wait_until(pred: Callable[[], bool], timeout: float, what: str) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if pred():
            return
        time.sleep(0.3)
    raise AssertionError(f"timed out after {timeout:.0f}s waiting for {what}")


def ping(c, ip: str, count: int = 1) -> bool:
    return c.run(["ping", "-n", "-q", "-c", str(count), "-W", "2", ip], check=False).returncode == 0


def mesh(tb, *extra: str, env: dict[str, str] | None = None, chain: bool = False):
    """Launch routers: h1 alone, the others at h1 (or each at the previous host with ``chain``)."""
    hosts = tb.hosts
    assert hosts[0].weave("launch", *extra, env=env).returncode == 0
    for i, h in enumerate(hosts[1:], 1):
        target = hosts[i - 1] if chain else hosts[0]
        assert h.weave("launch", *extra, target.ip, env=env).returncode == 0


def container(host, name: str, *cidrs: str):
    c = host.container(name)
    res = host.weave("attach", *cidrs, c.netns_path)
    assert res.returncode == 0, res.stderr
    assert res.stdout.split() == [x.split("/")[0] for x in cidrs]
    return c


def transfer(src, dst, dst_ip: str, size: int, port: int = 5001, seed: int = 1) -> None:
    recv = subprocess.Popen(
        ["ip", "netns", "exec", dst.netns, sys.executable, "-c", RECV, str(port)], stdout=subprocess.PIPE, text=True
    )
    time.sleep(0.5)
    sent = src.run([sys.executable, "-c", SEND, dst_ip, str(port), str(seed), str(size)], timeout=180).stdout.split()
    got = recv.communicate(timeout=180)[0].split()
    assert got == sent and int(got[0]) == size


def test_three_hosts_ping_transfer_relay_broadcast_multicast(make_testbed) -> None:
    tb = make_testbed(3)
    h1, h2, h3 = tb.hosts
    mesh(tb, "--no-fastdp")  # the sleeve's switching (test_fastdp.py has the same over the fast datapath)
    cs = [container(h, "c", f"10.2.1.{i}/24") for i, h in enumerate(tb.hosts, 1)]
    wait_until(lambda: all(ping(cs[0], f"10.2.1.{i}") for i in (2, 3)), 30, "c1 reaches c2 and c3")
    for c in cs:
        for i in (1, 2, 3):
            assert ping(c, f"10.2.1.{i}"), f"{c.name} -> 10.2.1.{i}"
    assert "10.2.1.1/24" in h1.weave("ps").stdout
    transfer(cs[0], cs[1], "10.2.1.2", 50 * 1024 * 1024)

    # broadcast: arping (ARP request is a broadcast) gets exactly one reply per target
    out = cs[0].run(["arping", "-c", "3", "-w", "5", "-I", "ethwe", "10.2.1.3"], check=False).stdout
    assert "Received 3 response(s)" in out or "3 packets received" in out, out

    # multicast: two receivers on other hosts each get every datagram exactly once
    recvs = [
        subprocess.Popen(
            ["ip", "netns", "exec", c.netns, sys.executable, "-c", MCAST_RECV, ip, "6"],
            stdout=subprocess.PIPE,
            text=True,
        )
        for c, ip in ((cs[1], "10.2.1.2"), (cs[2], "10.2.1.3"))
    ]
    time.sleep(1.0)
    cs[0].run([sys.executable, "-c", MCAST_SEND, "20"])
    for r in recvs:
        seen = r.communicate(timeout=30)[0].strip().split(",")
        assert sorted(seen, key=int) == [str(i) for i in range(20)], seen

    # cut h1 <-> h3: their containers talk through h2
    tb.cut(h1, h3)
    wait_until(lambda: ping(cs[0], "10.2.1.3"), 60, "c1 reaching c3 through h2")
    wait_until(  # the data plane reports its counters every 2 s
        lambda: json.loads(h2.weave("report").stdout)["Router"]["OverlayDiagnostics"]["sleeve"]["Dataplane"].get(
            "rx_relayed"
        ),
        10,
        "h2 counting relayed frames",
    )
    transfer(cs[2], cs[0], "10.2.1.1", 5 * 1024 * 1024, port=5002)
    tb.restore(h1, h3)


def test_transfer_survives_packet_loss(make_testbed) -> None:
    tb = make_testbed(2)
    h1, h2 = tb.hosts
    for h in tb.hosts:
        # like a real NIC: datagrams leave segmented, so the switch loses single datagrams, not whole GSO bursts
        h.sh("ethtool -K eth0 tx-udp-segmentation off tso off gso off gro on >/dev/null")
    mesh(tb, "--no-fastdp")  # the sleeve's loss handling (VXLAN leaves it to TCP)
    c1, c2 = container(h1, "c", "10.2.1.1/24"), container(h2, "c", "10.2.1.2/24")
    wait_until(lambda: ping(c1, "10.2.1.2"), 30, "c1 reaches c2")
    tb.loss(h1, h2, 0.05)
    started = time.monotonic()
    transfer(c1, c2, "10.2.1.2", 50 * 1024 * 1024)
    assert time.monotonic() - started < 120
    stats = json.loads(h2.weave("report").stdout)["Router"]["OverlayDiagnostics"]["sleeve"]
    assert stats["Dataplane"]["rx_salvaged_segments"] > 0  # lost datagrams cost segments, not super-frames


def test_small_underlay_mtu(make_testbed) -> None:
    tb = make_testbed(2)
    h1, h2 = tb.hosts
    tb.set_mtu(h2, 1300)
    mesh(tb)
    c1, c2 = container(h1, "c", "10.2.1.1/24"), container(h2, "c", "10.2.1.2/24")
    wait_until(lambda: ping(c1, "10.2.1.2"), 30, "c1 reaches c2")
    recv = subprocess.Popen(
        ["ip", "netns", "exec", c2.netns, sys.executable, "-c", UDP_BIG_RECV], stdout=subprocess.PIPE, text=True
    )
    time.sleep(0.5)
    sender = c1.run([sys.executable, "-c", UDP_BIG_SEND, "10.2.1.2"], timeout=30)
    assert sender.returncode == 0
    assert recv.communicate(timeout=30)[0].strip() == "10000"
    status = h1.weave("status", "connections").stdout
    assert "mtu=1238" in status  # 1300 - 28 UDP/IP - 34 sleeve framing
    assert "sleeve" in status and "path MTU" in status  # full-size VXLAN (1426 bytes) does not fit: fallback
    transfer(c1, c2, "10.2.1.2", 5 * 1024 * 1024)
    assert (
        ping(c1, "10.2.1.2")
        and c1.run(["ping", "-c", "1", "-s", "1300", "-W", "2", "10.2.1.2"], check=False).returncode == 0
    )


def test_isolation_by_subnet_and_expose(make_testbed) -> None:
    tb = make_testbed(2)
    h1, h2 = tb.hosts
    mesh(tb)
    a = container(h1, "a", "10.2.1.1/24")
    b = container(h2, "b", "10.2.2.1/24")
    both = container(h2, "both", "10.2.1.2/24", "10.2.2.2/24")
    wait_until(lambda: ping(a, "10.2.1.2"), 30, "a reaches both")
    assert ping(b, "10.2.2.2")
    assert not ping(a, "10.2.2.1") and not ping(b, "10.2.1.1")
    # expose: the host reaches a container on the other host; hide undoes it
    res = h1.weave("expose", "10.2.1.200/24")
    assert res.returncode == 0 and res.stdout.strip() == "10.2.1.200"
    wait_until(
        lambda: h1.run(["ping", "-c", "1", "-W", "2", "10.2.1.2"], check=False).returncode == 0, 20, "host -> both"
    )
    assert "10.2.1.200/24" in h1.weave("ps", "weave:expose").stdout
    assert h1.weave("hide", "10.2.1.200/24").stdout.strip() == "10.2.1.200"
    assert h1.run(["ping", "-c", "1", "-W", "1", "10.2.1.2"], check=False).returncode != 0
    # detach all addresses: ethwe goes away
    assert h2.weave("detach", both.netns_path).stdout.split() == ["10.2.1.2", "10.2.2.2"]
    assert both.run(["ip", "link", "show", "ethwe"], check=False).returncode != 0


def test_attach_bad_input_leaves_nothing(make_testbed) -> None:
    tb = make_testbed(1)
    (h1,) = tb.hosts
    mesh(tb)
    c = h1.container("c")
    for args, needle in (
        (["10.2.1.1/33", c.netns_path], "invalid address"),
        (["10.2.1.1/24", "/etc/hostname"], "not a network namespace"),
        (["10.2.1.1/24", "999999"], "no process"),
        (["net:10.2.0.0/16", c.netns_path], "out of bounds: 10.32.0.0/12"),  # IPAM is on by default
        (["10.2.1.1/24", "/proc/1/ns/net"], ""),
    ):
        res = h1.weave("attach", *args)
        assert res.returncode != 0 and len(res.stderr.strip().splitlines()) == 1 and needle in res.stderr, res.stderr
    assert "vethwepl" not in h1.run(["ip", "-br", "link"]).stdout
    self_ns = h1.weave("attach", "10.2.1.1/24", f"/proc/{h1.pids()[0]}/ns/net")
    assert "host network namespace" in self_ns.stderr


def test_encryption_hides_payload_and_drops_forgeries(make_testbed) -> None:
    tb = make_testbed(2)
    h1, h2 = tb.hosts
    mesh(tb, "--password", "s3cret")
    c1, c2 = container(h1, "c", "10.2.1.1/24"), container(h2, "c", "10.2.1.2/24")
    wait_until(lambda: ping(c1, "10.2.1.2"), 30, "c1 reaches c2")
    marker = "weavenet-plaintext-marker-" + hashlib.sha256(b"x").hexdigest()[:16]
    cap = h2.popen(
        ["tcpdump", "-i", "eth0", "-n", "-A", "-c", "200", "udp port 6783"],
        stdout=subprocess.PIPE,
        stderr=subprocess.DEVNULL,
    )
    time.sleep(1.0)
    for _ in range(20):
        c1.run(["sh", "-c", f"echo {marker} | nc -u -w1 10.2.1.2 5009"], check=False)
    try:
        out = cap.communicate(timeout=15)[0]
    except subprocess.TimeoutExpired:
        cap.kill()
        out = cap.communicate()[0]
    assert out, "nothing captured"
    assert marker not in out
    if fastcrypto.aegis_available():  # two weavenet peers seal super-frames with the faster AEAD, and say so
        assert "(cipher: aegis256)" in h1.weave("status", "connections").stdout

    # a forged packet with our peer's name but garbage is dropped and counted, the mesh is unaffected
    def rx_drops() -> int:
        stats = json.loads(h2.weave("report").stdout)["Router"]["OverlayDiagnostics"]["sleeve"]["Dataplane"]
        return sum(stats.get(f"rx_{k}", 0) for k in ("decrypt_failed", "malformed", "too_short", "unknown_sender"))

    before = rx_drops()
    name = h1.weave("report", "-f", "{{.Router.Name}}").stdout.strip()
    forged = bytes.fromhex(name.replace(":", "")) + bytes(8) + b"\x00" * 40
    h1.run([sys.executable, "-c", f"import socket; socket.socket(2,2).sendto({forged!r}, ('{h2.ip}', 6783))"])
    wait_until(lambda: rx_drops() > before, 10, "the forged packet counted as a drop")
    assert ping(c1, "10.2.1.2") and ping(c2, "10.2.1.1")
