"""What each way weavenet's fast datapath differs from a hand-made VXLAN overlay costs, one property at a time.

    sudo .venv/bin/python bench/fastdp_ab.py --variants base,df,nocsum,gso,ipt,weave --rounds 12 --seconds 4
        [--routers] [--weavenet] [--underlay veth|nic-like|tnl-nocsum]

Two simulated hosts. Each variant is its own hand-made overlay between them (a bridge, a VXLAN device with a static
FDB flood entry, MTU 1376, and a container per host on a veth), built as ``bench/sleeve_throughput.py``'s
``vxlan_overlay`` (the ``base`` variant) plus the properties named in it, joined with ``+`` (``df+nocsum``); the
variant ``weave`` has every property weavenet's devices and ``weave attach`` have, ``weave-gso-ipt`` all of them but
those named, ``weave-gso+gso62k`` one replaced. Each round runs one iperf3 TCP stream over every variant, in an
order that rotates from round to round; the figures to read are each variant's per-round ratios to ``base`` of the
same round (the machine's speed drifts by tens of per cent within minutes when it is shared), above all the CPU cost
per byte (``fastdp_throughput.iperf``), which moves much less than the throughput under other load. ``--underlay``
sets what the hosts' links offload: ``veth`` passes GSO packets whole, ``nic-like`` segments on send and merges
(GRO) on receive, ``tnl-nocsum`` segments VXLAN packets only if their outer UDP checksum is zero, as some NICs do.
``--routers`` launches weavenet routers on both hosts first (their VXLAN sniffer, iptables rules and conntrack then
touch every variant, as in ``bench/fastdp_throughput.py``); ``--weavenet`` also puts weavenet's own fastdp overlay
into the rotation (implies ``--routers``).
"""

from __future__ import annotations

import argparse
import statistics
import subprocess
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from fastdp_throughput import iperf, load, weavenet_fastdp
from weavenet.host.attach import CONTAINER_GSO_MAX_SIZE
from weavenet.testbed import Testbed

# property -> what it is (the weavenet side of the difference)
PROPS = {
    "df": "VXLAN device `df set` (data is not fragmented on a path the full-size heartbeats proved)",
    "nocsum": "VXLAN device `noudpcsum` (a zero outer UDP checksum, as Weave 2.8 sends)",
    "ttl": "VXLAN device `ttl 64` (base: ttl auto)",
    "nolocal": "VXLAN device without `local` (weavenet without --host)",
    "port": "VXLAN port 6784 (base: 4789 + variant index)",
    "isolated": "bridge port flag `isolated on` on the VXLAN port (split horizon)",
    "noflood": "bridge port flag `flood off` on the VXLAN port (unknown unicast to the sleeve only)",
    "hairpin": "bridge port flag `hairpin on` on the container's veth (weave attach)",
    "gso": "the container's end of its veth capped at weave attach's gso_max_size (for the sleeve's UDP GSO)",
    "gso62k": "the container's end of its veth capped at gso_max_size 63488 (weave attach until 2026-12)",
    "portgso": "the bridge's end of the container's veth capped at gso_max_size 63488 (weave attach until 2026-12)",
    "ipt": "the container's multicast INPUT rules (weave attach)",
    "tap": "a multi-queue TAP held open on the bridge, isolated (the sleeve's)",
    "nosnoop": "bridge mcast_snooping 0",
}
WEAVE = ("df", "nocsum", "ttl", "nolocal", "isolated", "noflood", "hairpin", "gso", "ipt", "tap", "nosnoop")
# ethtool -K settings of the hosts' underlay links
UNDERLAYS = {
    "veth": "",  # GSO packets pass whole from host to host, checksums stay partial
    "nic-like": "tx-udp-segmentation off tso off gso off gro on",  # datagrams segmented on send, GRO on receive
    # a NIC that segments VXLAN packets only without an outer UDP checksum (tx-udp_tnl-csum-segmentation off)
    "tnl-nocsum": "tx-udp_tnl-csum-segmentation off gro on",
}
TAP_HOLDER = (
    "import fcntl, os, struct, sys, time\n"
    "fds = []\n"
    "for _ in range(2):\n"
    "    fd = os.open('/dev/net/tun', os.O_RDWR)\n"
    "    fcntl.ioctl(fd, 0x400454CA, struct.pack('16sH', sys.argv[1].encode(), 0x0002 | 0x1000 | 0x0100))\n"
    "    fds.append(fd)\n"
    "print('ready', flush=True)\n"
    "time.sleep(1e9)\n"
)


def parse_variant(spec: str) -> frozenset[str]:
    """``base``; properties joined by ``+``; ``weave`` (all of weavenet's), less those after ``-``, plus those
    after ``+`` (``weave-gso-nocsum+gso62k+portgso``: weavenet as it was before the cap and checksum changes)."""
    head, *added = spec.split("+")
    if head == "base":
        props: set[str] = set()
    elif head == "weave" or head.startswith("weave-"):
        props = set(WEAVE) - set(head.split("-")[1:])
    else:
        props, added = set(), [head, *added]
    props |= set(added)
    unknown = props - PROPS.keys() | (set(head.split("-")[1:]) - PROPS.keys() if head.startswith("weave-") else set())
    if unknown:
        raise SystemExit(f"unknown property {', '.join(sorted(unknown))}; known: {', '.join(PROPS)}, or weave")
    return frozenset(props)


def overlay(tb: Testbed, index: int, props: frozenset[str], holders: list) -> list:
    """One hand-made overlay (variant ``index``, subnet 10.9.<index>.0/24); its container on each host."""
    cs = []
    port = 6784 if "port" in props else 4789 + index
    br, v, vx, tap = f"ab{index}br", f"ab{index}v", f"ab{index}vx", f"ab{index}tap"
    for i, h in enumerate(tb.hosts):
        other = tb.hosts[1 - i]
        c = h.container(f"ab{index}")
        dev = f"id {100 + index} dstport {port} nolearning"
        dev += "" if "nolocal" in props else f" local {h.ip}"
        dev += " df set" if "df" in props else ""
        dev += " noudpcsum" if "nocsum" in props else ""
        dev += " ttl 64" if "ttl" in props else ""
        inner = CONTAINER_GSO_MAX_SIZE if "gso" in props else 63488 if "gso62k" in props else 0
        inner_gso = f" gso_max_size {inner}" if inner else ""
        port_gso = " gso_max_size 63488" if "portgso" in props else ""
        h.sh(
            f"ip link add {br} type bridge mcast_snooping {0 if 'nosnoop' in props else 1} && ip link set {br} up && "
            f"ip link add {v} mtu 1376{port_gso} type veth peer name {v}c mtu 1376{inner_gso} && "
            f"ip link set {v} master {br} up && ip link set {v}c netns {c.netns_path} && "
            f"ip link add {vx} type vxlan {dev} && "
            f"bridge fdb append 00:00:00:00:00:00 dev {vx} dst {other.ip} && "
            f"ip link set {vx} mtu 1376 master {br} up"
        )
        if "isolated" in props:
            h.sh(f"bridge link set dev {vx} isolated on")
        if "noflood" in props:
            h.sh(f"bridge link set dev {vx} flood off")
        if "hairpin" in props:
            h.sh(f"bridge link set dev {v} hairpin on")
        if "tap" in props:
            h.sh(f"ip tuntap add dev {tap} mode tap multi_queue vnet_hdr && ip link set {tap} mtu 1376")
            holder = h.popen([sys.executable, "-c", TAP_HOLDER, tap], stdout=subprocess.PIPE)
            holder.stdout.readline()
            holders.append(holder)
            h.sh(f"ip link set {tap} master {br} up && bridge link set dev {tap} isolated on")
        c.sh(f"ip link set {v}c name eth0 && ip addr add 10.9.{index}.{i + 1}/24 dev eth0 && ip link set eth0 up")
        if "ipt" in props:
            c.sh(
                f"iptables -w -I INPUT 1 -i eth0 -s 10.9.{index}.0/24 -d 224.0.0.0/4 -j ACCEPT && "
                "iptables -w -A INPUT -i eth0 -d 224.0.0.0/4 -j DROP"
            )
        cs.append(c)
    deadline = time.monotonic() + 20
    while cs[0].run(["ping", "-c", "1", "-W", "1", f"10.9.{index}.2"], check=False).returncode:
        if time.monotonic() > deadline:
            raise SystemExit(f"variant {index} did not come up")
    return cs


def measure(tb: Testbed, names: list[str], args: argparse.Namespace, holders: list) -> tuple[dict, dict]:
    """Gbit/s and CPU s/GB of every variant (and weavenet's overlay), per round."""
    for h in tb.hosts:
        if UNDERLAYS[args.underlay]:
            h.sh(f"ethtool -K eth0 {UNDERLAYS[args.underlay]} >/dev/null")
    paths: dict[str, tuple[list, str]] = {}
    for i, n in enumerate(names):
        paths[n] = (overlay(tb, i + 1, parse_variant(n), holders), f"10.9.{i + 1}.2")
    if args.routers or args.weavenet:
        wn = weavenet_fastdp(tb)
        if args.weavenet:
            paths["weavenet"] = (wn, "10.2.1.2")
    order = list(paths)
    got: dict[str, list[float]] = {n: [] for n in order}
    cost: dict[str, list[float]] = {n: [] for n in order}
    print(f"underlay {args.underlay}; iperf3 {args.seconds} s x {args.rounds} rounds per variant; {load()}", flush=True)
    for r in range(args.rounds):
        k = r % len(order)
        rotation = order[k:] + order[:k]
        if r % 2:
            rotation.reverse()
        for n in rotation:
            cs, ip = paths[n]
            g, c = iperf(cs[0], cs[1], ip, args.seconds)
            got[n].append(g)
            cost[n].append(c)
        print(
            f"round {r}: "
            + "  ".join(f"{n} {got[n][-1]:.2f} ({cost[n][-1]:.3f})" for n in order)
            + f" Gbit/s (CPU s/GB); {load()}",
            flush=True,
        )
    return got, cost


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--variants", default="base,weave", help="comma-separated: base, weave, or props joined by +")
    ap.add_argument("--rounds", type=int, default=12)
    ap.add_argument("--seconds", type=int, default=4)
    ap.add_argument("--routers", action="store_true", help="weavenet routers running on both hosts")
    ap.add_argument("--weavenet", action="store_true", help="also weavenet's own fastdp overlay")
    ap.add_argument("--underlay", choices=sorted(UNDERLAYS), default="veth", help="what the hosts' eth0 can offload")
    args = ap.parse_args()
    names = args.variants.split(",")
    if "base" not in names:
        names.insert(0, "base")
    for n in names:
        parse_variant(n)
    for p, what in PROPS.items():
        print(f"  {p:9} {what}")
    holders: list = []
    with Testbed(2, prefix="wnab") as tb:
        try:
            got, cost = measure(tb, names, args, holders)
        finally:
            for holder in holders:
                holder.kill()
                holder.wait()
        order = list(got)
        print(f"{'variant':>34}  Gbit/s  ratio to base per round (median)   CPU s/GB  ratio to base per round (median)")
        for n in order:
            ratios = [x / b for x, b in zip(got[n], got["base"], strict=True) if b]
            cratios = [x / b for x, b in zip(cost[n], cost["base"], strict=True) if b]
            print(
                f"{n:>34}  {statistics.median(got[n]):6.2f}  {statistics.median(ratios):.3f} "
                f"({sum(x < 1 for x in ratios)}/{len(ratios)} rounds below)"
                f"           {statistics.median(cost[n]):6.3f}  {statistics.median(cratios):.3f} "
                f"({sum(x > 1 for x in cratios)}/{len(cratios)} rounds above)",
                flush=True,
            )
        print(load(), flush=True)


if __name__ == "__main__":
    sys.exit(main())
