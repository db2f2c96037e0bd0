"""What liveness costs one idle connection, and how long a silent peer takes to notice, in the simulation.

Two real router cores in the deterministic simulated network, idle for ``--idle`` simulated seconds after a minute
of settling. Bytes are on the wire: IPv4 and UDP headers counted for UDP; TCP is its payload only (the
simulation has no TCP headers or ACKs: every TCP write below costs ~52 bytes of header and usually an ACK of
~52 more on a real link, shown as "~wire"). The sleeve's 60001-byte fragmentation test, which only the
simulation sends (a running router's data plane never relies on fragmentation), is left out.

* weavenet pairs, ``quick`` (before lean liveness: heartbeats every 2 s on both overlays, full-size on the fast
  datapath) against ``lean`` (``WeavenetLiveness``, ``core/contact.py``): UDP per connection and direction.
* a weavenet peer and a Go stand-in (a router with ``extensions`` off, Weave 2.8's timings): the link's bytes,
  both directions together.

"detect" is the worst time, over cuts at moments spread over two heartbeat periods, from an underlay cut without
errors until the weavenet peer drops the connection.

    .venv/bin/python bench/liveness_idle.py --idle 3000 --cuts 16
"""

from __future__ import annotations

import argparse
from collections import Counter
from collections.abc import Callable

from weavenet.core.names import PeerName
from weavenet.core.router import MeshConfig
from weavenet.sim.network import UNDERLAY_OVERHEAD, SendVxlan, SimNetwork, SimPeer

FRAG_TEST = 10_000


def pair(config: Callable[[int], MeshConfig], seed: int, dialler: int = 1) -> SimNetwork:
    net = SimNetwork(2, seed=seed, config=config)
    net.connect(dialler, [1 - dialler])
    up = lambda: all(p.router.by_peer and all(c.established for c in p.router.by_peer.values()) for p in net.peers)  # noqa: E731
    assert net.run_until_true(up, 30) is not None
    return net


def idle(net: SimNetwork, seconds: float) -> Counter[str]:
    """Bytes and packets sent by each peer in ``seconds``: ``udp0``, ``tcp1``, ``writes0``..."""
    out: Counter[str] = Counter()
    udp, vxlan = net._send_udp, net._send_vxlan

    def count_udp(peer: SimPeer, addr: tuple[str, int], data: bytes) -> None:
        if len(data) <= FRAG_TEST:
            out[f"udp{peer.index}"] += len(data) + 28
        udp(peer, addr, data)

    def count_vxlan(peer: SimPeer, action: SendVxlan) -> None:
        out[f"udp{peer.index}"] += len(action.frame) + UNDERLAY_OVERHEAD - 14
        vxlan(peer, action)

    net._send_udp, net._send_vxlan = count_udp, count_vxlan  # type: ignore[method-assign]
    before = [(p.stats.tcp_bytes, p.stats.tcp_writes) for p in net.peers]
    net.run_for(seconds)
    net._send_udp, net._send_vxlan = udp, vxlan  # type: ignore[method-assign]
    for p, (b, w) in zip(net.peers, before, strict=True):
        out[f"tcp{p.index}"] += p.stats.tcp_bytes - b
        out[f"writes{p.index}"] += p.stats.tcp_writes - w
    return out


def detect(config: Callable[[int], MeshConfig], cuts: int) -> float:
    worst = 0.0
    for k in range(cuts):
        net = pair(config, seed=k, dialler=k % 2)
        net.run_for(30 + k * 20.0 / cuts)
        net.cut(0, 1)
        took = net.run_until_true(lambda: not net.peers[0].router.by_peer, 120, step=0.05)  # noqa: B023
        worst = max(worst, took if took is not None else float("inf"))
    return worst


def cfg(fastdp: bool, password: bytes | None, lean: bool = True, go: int | None = None) -> Callable[[int], MeshConfig]:
    def make(i: int) -> MeshConfig:
        return MeshConfig(
            name=PeerName(0x0A0000000000 + i + 1),
            nickname=f"p{i + 1}",
            overlays=("fastdp", "sleeve") if fastdp else ("sleeve",),
            password=password,
            lean_liveness=lean,
            extensions=i != go,
            gossip_filter=i != go,
        )

    return make


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--idle", type=float, default=3000.0, help="simulated idle seconds measured")
    ap.add_argument("--cuts", type=int, default=16)
    args = ap.parse_args()
    t = args.idle
    print(f"idle window {t:.0f} s (simulated), worst of {args.cuts} cuts")
    print("weavenet pair: UDP per connection and direction (B/s), worst detection (s)")
    print(f"{'link':>22} {'quick B/s':>10} {'lean B/s':>9} {'ratio':>6} {'quick det.':>10} {'lean det.':>9}")
    pairs = (("fastdp+sleeve", True, None), ("sleeve", False, None), ("encrypted (sleeve)", True, b"s"))
    for name, fastdp, pw in pairs:
        rates, det = {}, {}
        for lean in (False, True):
            c = cfg(fastdp, pw, lean)
            got = idle(pair(c, 1), t)
            rates[lean] = got["udp0"] / t
            det[lean] = detect(c, args.cuts)
        print(
            f"{name:>22} {rates[False]:>10.1f} {rates[True]:>9.1f} {rates[True] / rates[False]:>6.3f}"
            f" {det[False]:>10.2f} {det[True]:>9.2f}"
        )
    print("weavenet peer and Go stand-in: the link's idle bytes, both directions (B/s), worst detection (s)")
    print(f"{'link':>22} {'UDP':>7} {'TCP':>7} {'payload':>8} {'~wire':>7} {'datagrams/30s':>13} {'detect':>7}")
    links = (("sleeve", False, None), ("sleeve, encrypted", False, b"s"), ("fastdp+sleeve", True, None))
    for name, fastdp, pw in links:
        c = cfg(fastdp, pw, go=1)
        net = pair(c, 1)
        net.run_for(60)
        datagrams = sum(p.stats.datagrams for p in net.peers)
        got = idle(net, t)
        datagrams = sum(p.stats.datagrams for p in net.peers) - datagrams
        udp, tcp = got["udp0"] + got["udp1"], got["tcp0"] + got["tcp1"]
        wire = udp + tcp + 104 * (got["writes0"] + got["writes1"])
        print(
            f"{name:>22} {udp / t:>7.1f} {tcp / t:>7.1f} {(udp + tcp) / t:>8.1f} {wire / t:>7.1f}"
            f" {datagrams / t * 30:>13.1f} {detect(c, args.cuts):>7.2f}"
        )


if __name__ == "__main__":
    main()
