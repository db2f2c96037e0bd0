"""The kernel fast datapath on simulated hosts (issue: fast datapath): VXLAN chosen per connection, fallback to
the sleeve with the reason shown, mixed topologies delivering every frame exactly once, recovery by itself."""

from __future__ import annotations

import json
import re
import subprocess
import sys
import time

import pytest

from tests.integration.test_switch import MCAST_RECV, MCAST_SEND, container, ping, transfer, wait_until

pytestmark = [pytest.mark.netns, pytest.mark.slow]

BCAST_RECV = r"""
import socket, sys, time
s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM); s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
s.bind(("", 5010)); s.settimeout(1.0); seen = []
end = time.time() + float(sys.argv[1])
while time.time() < end:
    try: seen.append(s.recv(100).decode())
    except socket.timeout: pass
print(",".join(seen))
"""
BCAST_SEND = r"""
import socket, sys, time
s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM); s.setsockopt(socket.SOL_SOCKET, socket.SO_BROADCAST, 1)
for i in range(int(sys.argv[1])):
    s.sendto(f"{sys.argv[2]}{i}".encode(), ("10.2.1.255", 5010)); time.sleep(0.05)
"""

VXLAN_CAPTURE = r"""
import socket, struct, sys, time
s = socket.socket(socket.AF_PACKET, socket.SOCK_RAW, socket.htons(3)); s.bind(("eth0", 0)); s.settimeout(0.5)
print("ready", flush=True)  # every packet in and out (ETH_P_ALL)
end = time.time() + float(sys.argv[1])
while time.time() < end:
    try: p = s.recv(65535)
    except socket.timeout: continue
    ip = p[14:]; udp = ip[(ip[0] & 15) * 4:]
    if p[12:14] != b"\x08\x00" or ip[9] != 17 or struct.unpack("!H", udp[2:4])[0] != int(sys.argv[2]):
        continue  # not VXLAN
    if udp[16:22] == bytes(6):
        continue  # a heartbeat or probe (the router's, all-zero MACs): data frames only
    df = bool(struct.unpack("!H", ip[6:8])[0] & 0x4000)
    print(df, ip[8], struct.unpack("!H", udp[6:8])[0], int.from_bytes(udp[12:15], "big"), flush=True)
"""


def connections(host) -> dict[str, str]:
    """Peer nickname -> the rest of its ``weave status connections`` line (overlay, name, attrs, fallback)."""
    out = {}
    for line in host.weave("status", "connections").stdout.splitlines():
        m = re.search(r"established (?:(?:un)?encrypted\s+)?(\S+)\s+\S+\((\w+)\)(.*)", line)
        if m:
            out[m.group(2)] = f"{m.group(1)}{m.group(3)}"
    return out


def overlays(tb) -> dict[tuple[str, str], str]:
    return {(h.name, peer): line.split()[0] for h in tb.hosts for peer, line in connections(h).items()}


def all_fastdp(tb) -> bool:
    o = overlays(tb)
    n = len(tb.hosts)
    return len(o) == n * (n - 1) and set(o.values()) == {"fastdp"}


def exactly_once_everywhere(cs, sender, count: int = 15) -> None:
    """Broadcast and multicast datagrams from ``sender`` reach every container exactly once."""
    recvs = []
    for c in cs:
        ip = c.run(["sh", "-c", "ip -4 -o addr show ethwe | awk '{print $4}'"]).stdout.split("/")[0]
        for script, args in ((MCAST_RECV, [ip, "6"]), (BCAST_RECV, ["6"])):
            recvs.append(
                (
                    f"{c.host.name}/{c.name}",
                    subprocess.Popen(
                        ["ip", "netns", "exec", c.netns, sys.executable, "-c", script, *args],
                        stdout=subprocess.PIPE,
                        text=True,
                    ),
                )
            )
    time.sleep(1.0)
    sender.run([sys.executable, "-c", MCAST_SEND, str(count)])
    sender.run([sys.executable, "-c", BCAST_SEND, str(count), "b"])
    for i, (name, proc) in enumerate(recvs):
        seen = [s for s in proc.communicate(timeout=30)[0].strip().split(",") if s]
        want = [f"b{n}" for n in range(count)] if i % 2 else [str(n) for n in range(count)]
        assert sorted(seen) == sorted(want), f"{'broadcast' if i % 2 else 'multicast'} at {name}: {seen}"


def vxlan_tx_bytes(host) -> int:
    links = json.loads(host.run(["ip", "-s", "-j", "link", "show", "type", "vxlan"]).stdout)
    return sum(link["stats64"]["tx"]["bytes"] for link in links if link["ifname"].startswith("vethwe-vx"))


def test_fastdp_mesh_fallback_relay_and_recovery(make_testbed) -> None:
    tb = make_testbed(3)
    h1, h2, h3 = tb.hosts
    assert h1.weave("launch").returncode == 0
    for h in (h2, h3):
        assert h.weave("launch", h1.ip).returncode == 0
    cs = [container(h, "c", f"10.2.1.{i}/24") for i, h in enumerate(tb.hosts, 1)]
    wait_until(lambda: all_fastdp(tb), 30, "fastdp on every connection")
    assert "mtu=1376" in connections(h1)["h2"] and "fallback" not in h1.weave("status", "connections").stdout
    for c in cs:
        for i in (1, 2, 3):
            assert ping(c, f"10.2.1.{i}"), f"{c.name} -> 10.2.1.{i}"
    before = vxlan_tx_bytes(h1)
    transfer(cs[0], cs[1], "10.2.1.2", 50 * 1024 * 1024)
    assert vxlan_tx_bytes(h1) - before > 50 * 1024 * 1024  # it went through the kernel's VXLAN device
    exactly_once_everywhere(cs, cs[0])

    # UDP 6784 blocked between h2 and h3 only: that connection falls back, the others stay
    tb.block(h2, h3)
    wait_until(lambda: overlays(tb)[("h2", "h3")] == overlays(tb)[("h3", "h2")] == "sleeve", 30, "h2-h3 on sleeve")
    wait_until(lambda: "fallback: no VXLAN packets get through" in connections(h2)["h3"], 15, "the reason")
    assert "(fallback: no VXLAN packets get through (UDP port 6784 blocked?))" in connections(h3)["h2"]
    o = overlays(tb)
    assert o[("h1", "h2")] == o[("h1", "h3")] == o[("h2", "h1")] == o[("h3", "h1")] == "fastdp", o
    log = h2.run(["sh", "-c", "grep '(h3)] using sleeve (fastdp:' /run/weave/weaver.log"]).stdout.splitlines()
    assert len(log) == 1 and "UDP port 6784 blocked" in log[0], log  # logged once for the transition
    for c in cs:
        for i in (1, 2, 3):
            assert ping(c, f"10.2.1.{i}"), f"{c.name} -> 10.2.1.{i} with h2-h3 on sleeve"
    for sender in cs:  # mixed: each sender's broadcasts go over VXLAN to some peers, the sleeve to others
        exactly_once_everywhere(cs, sender, count=10)
    out = cs[1].run(["arping", "-c", "3", "-w", "5", "-I", "ethwe", "10.2.1.3"], check=False).stdout
    assert "Received 3 response(s)" in out, out

    # cut h1 and h3 apart: their containers talk through h2 (fastdp to h1, sleeve to h3)
    tb.cut(h1, h3)
    wait_until(lambda: ping(cs[0], "10.2.1.3") and ping(cs[2], "10.2.1.1"), 60, "c1 <-> c3 through h2")
    transfer(cs[2], cs[0], "10.2.1.1", 5 * 1024 * 1024, port=5002)
    out = cs[0].run(["arping", "-c", "3", "-w", "5", "-I", "ethwe", "10.2.1.3"], check=False).stdout
    assert "Received 3 response(s)" in out, out
    wait_until(  # the data plane reports its counters every 2 s
        lambda: (
            json.loads(h2.weave("report").stdout)["Router"]["OverlayDiagnostics"]["sleeve"]["Dataplane"].get(
                "rx_relayed", 0
            )
            > 0
        ),
        10,
        "h2 counting relayed frames",
    )
    tb.restore(h1, h3)

    # unblock: the connection comes back to fastdp by itself, within a minute
    tb.unblock(h2, h3)
    started = time.monotonic()
    wait_until(lambda: all_fastdp(tb), 60, "every connection back on fastdp")
    assert time.monotonic() - started < 60
    for i in (1, 2):
        assert ping(cs[2], f"10.2.1.{i}")

    # weave reset removes the VXLAN devices with the bridge
    assert h3.weave("reset").returncode == 0
    assert "vethwe-vx" not in h3.run(["ip", "-br", "link"]).stdout


def test_vxlan_data_packets_have_weaves_outer_headers(make_testbed) -> None:
    """What the kernel sends for containers is what Weave 2.8's fastdp sends (its SetTunnel: TTL 64, DF, no
    UDP checksum), with the VNIs the devices were given, in both directions and for large (GSO) packets too."""
    tb = make_testbed(2)
    h1, h2 = tb.hosts
    assert h1.weave("launch").returncode == 0 and h2.weave("launch", h1.ip).returncode == 0
    c1, c2 = container(h1, "c", "10.2.1.1/24"), container(h2, "c", "10.2.1.2/24")
    wait_until(lambda: all_fastdp(tb) and ping(c1, "10.2.1.2"), 30, "fastdp between c1 and c2")
    cap = subprocess.Popen(
        ["ip", "netns", "exec", h2.netns, sys.executable, "-c", VXLAN_CAPTURE, "6", "6784"],
        stdout=subprocess.PIPE,
        text=True,
    )
    assert cap.stdout is not None and cap.stdout.readline().strip() == "ready"
    assert ping(c1, "10.2.1.2", count=3)
    transfer(c1, c2, "10.2.1.2", 2 * 1024 * 1024)
    seen = [line.split() for line in cap.communicate(timeout=30)[0].splitlines()]
    assert len(seen) > 6, seen
    assert {(df, ttl, csum) for df, ttl, csum, _ in seen} == {("True", "64", "0")}, seen
    vnis = set()
    for h in tb.hosts:  # what each device sends: the VNI of its one forwarding entry
        vnis |= {e["vni"] for e in json.loads(h.run(["bridge", "-j", "fdb", "show"]).stdout) if "vni" in e}
    assert {int(vni) for *_, vni in seen} == vnis and len(vnis) == 2, (seen, vnis)


def test_sleeve_when_fastdp_cannot_or_must_not_be_used(make_testbed) -> None:
    tb = make_testbed(2)
    h1, h2 = tb.hosts

    def relaunch(*args: str, env: dict[str, str] | None = None, only_h1: tuple[str, ...] = ()) -> None:
        for h in tb.hosts:
            h.weave("stop")
        assert h1.weave("launch", *args, *only_h1, env=env).returncode == 0  # the bridge stays: still works
        assert h2.weave("launch", *args, h1.ip, env=env).returncode == 0
        c1, c2 = h1.containers[0], h2.containers[0]
        wait_until(lambda: ping(c1, "10.2.1.2") and ping(c2, "10.2.1.1"), 30, "c1 <-> c2")

    assert h1.weave("launch").returncode == 0 and h2.weave("launch", h1.ip).returncode == 0
    container(h1, "c", "10.2.1.1/24")
    container(h2, "c", "10.2.1.2/24")

    # --no-fastdp on one side: sleeve, and both say why; WEAVE_NO_FASTDP on both: plain sleeve, as in Weave
    relaunch(only_h1=("--no-fastdp",))
    wait_until(lambda: "h2" in connections(h1) and "h1" in connections(h2), 20, "the connection")
    assert connections(h1)["h2"].startswith("sleeve") and "fallback: fast datapath disabled" in connections(h1)["h2"]
    assert "fallback: the peer does not offer the fast datapath" in connections(h2)["h1"]
    relaunch(env={"WEAVE_NO_FASTDP": "1"})
    wait_until(lambda: "h2" in connections(h1), 20, "the connection")
    assert connections(h1)["h2"].startswith("sleeve") and "fallback" not in connections(h1)["h2"]
    assert not json.loads(h1.weave("report").stdout)["Router"]["OverlayDiagnostics"]["fastdp"]["Enabled"]

    # encryption: this kernel has no ESP, so encrypted connections stay on the sleeve
    relaunch("--password", "s3cret")
    wait_until(lambda: "h2" in connections(h1), 20, "the connection")
    line = connections(h1)["h2"]
    assert line.startswith("sleeve") and "encrypted=true" in line and "no IPsec ESP in the kernel" in line, line
    esp = json.loads(h1.weave("report").stdout)["Router"]["OverlayDiagnostics"]["fastdp"]["ESP"]
    assert esp["Supported"] is False and esp["Detail"]

    # a narrow underlay: full-size VXLAN packets (1376 + 50 bytes) do not fit, so the sleeve carries it ...
    tb.set_mtu(h2, 1400)
    relaunch()
    wait_until(lambda: "path MTU" in connections(h1).get("h2", ""), 30, "the MTU reason at h1")
    wait_until(lambda: "path MTU" in connections(h2).get("h1", ""), 30, "the MTU reason at h2")
    assert connections(h1)["h2"].startswith("sleeve") and connections(h2)["h1"].startswith("sleeve")
    transfer(h1.containers[0], h2.containers[0], "10.2.1.2", 2 * 1024 * 1024)
    # ... or a smaller overlay MTU that fits it
    for h in tb.hosts:
        h.weave("stop")
        h.run(["ip", "link", "set", "weave", "mtu", "1340"])
        h.containers[0].run(["ip", "link", "set", "ethwe", "mtu", "1340"])
    relaunch(env={"WEAVE_MTU": "1340"})
    wait_until(lambda: all_fastdp(tb), 30, "fastdp at MTU 1340")
    assert "mtu=1340" in connections(h1)["h2"]


def udp_checksum_errors(c) -> int:
    """The container's UDP ``InCsumErrors``: datagrams its stack dropped for a bad checksum."""
    lines = [ln.split() for ln in c.run(["cat", "/proc/net/snmp"]).stdout.splitlines() if ln.startswith("Udp:")]
    return int(dict(zip(lines[0][1:], lines[1][1:], strict=True))["InCsumErrors"])


@pytest.mark.parametrize(
    "overlay",
    [
        "fastdp",  # then mixed: UDP 6784 blocked between h1 and h2 (h1-h2 on the sleeve, h2-h3 on fastdp)
        "no-fastdp-h3",  # mixed by configuration: h1-h2 on fastdp, h2-h3 on the sleeve
        "sleeve",  # every host --no-fastdp
    ],
)
def test_relayed_broadcast_and_multicast_arrive_exactly_once(make_testbed, overlay: str) -> None:
    """h1 and h3 cut apart: h2 relays between them. Broadcasts and multicasts that reach h2 over VXLAN are passed
    on from the sniffer's copy, which lacks the skb's offload state: sent with checksum offload and never through
    a NIC, their UDP checksum is partial and must be finished where they land (they were all dropped at h3 as
    "bad udp cksum")."""
    tb = make_testbed(3)
    h1, h2, h3 = tb.hosts
    flags = {"fastdp": ((), (), ()), "no-fastdp-h3": ((), (), ("--no-fastdp",))}.get(overlay, (("--no-fastdp",),) * 3)
    assert h1.weave("launch", *flags[0]).returncode == 0
    for h, f in ((h2, flags[1]), (h3, flags[2])):
        assert h.weave("launch", *f, h1.ip).returncode == 0
    cs = [container(h, "c", f"10.2.1.{i}/24") for i, h in enumerate(tb.hosts, 1)]
    want = {
        "fastdp": {"fastdp"},
        "no-fastdp-h3": {("h1", "h2"): "fastdp", ("h2", "h1"): "fastdp", ("h2", "h3"): "sleeve"},
        "sleeve": {"sleeve"},
    }[overlay]

    def settled() -> bool:
        o = overlays(tb)
        if len(o) != 6:
            return False
        if isinstance(want, set):
            return set(o.values()) == want
        return all(o[k] == v for k, v in want.items())

    wait_until(settled, 30, f"the overlays of {overlay}")
    time.sleep(2.5)  # the data plane reports its counters every 2 s
    for h in tb.hosts:  # while h3 joined, one of its broadcasts used to bounce between h1 and h2, 400-9,000 times
        injected = json.loads(h.weave("report").stdout)["Router"]["OverlayDiagnostics"]["sleeve"]["Dataplane"]
        assert injected.get("rx_injected", 0) < 100, f"{h.name}: a broadcast storm while the mesh formed"
    tb.cut(h1, h3)
    wait_until(lambda: "h3" not in connections(h1) and "h1" not in connections(h3), 60, "h1-h3 gone")
    wait_until(lambda: ping(cs[0], "10.2.1.3") and ping(cs[2], "10.2.1.1"), 30, "c1 <-> c3 through h2")

    def relayed_both_ways(what: str) -> None:
        errors = [udp_checksum_errors(c) for c in cs]
        for sender in (cs[0], cs[2]):  # relayed by h2 in each direction
            exactly_once_everywhere(cs, sender, count=10)
        assert [udp_checksum_errors(c) for c in cs] == errors, f"UDP checksum errors ({what})"
        # unicast over the same relay, both ways
        assert ping(cs[0], "10.2.1.3", count=3) and ping(cs[2], "10.2.1.1", count=3), what
        transfer(cs[0], cs[2], "10.2.1.3", 2 * 1024 * 1024, port=5003)
        transfer(cs[2], cs[0], "10.2.1.1", 2 * 1024 * 1024, port=5004)

    relayed_both_ways(overlay)
    if overlay != "fastdp":
        return
    tb.block(h1, h2)  # mixed: h1-h2 on the sleeve, h2-h3 still on fastdp
    wait_until(lambda: overlays(tb)[("h1", "h2")] == overlays(tb)[("h2", "h1")] == "sleeve", 30, "h1-h2 on sleeve")
    assert overlays(tb)[("h2", "h3")] == "fastdp"
    relayed_both_ways("h1-h2 blocked")
