"""Mesh control-plane cost: convergence time and gossip bytes, weavenet against Weave's own gossip rules.

Runs the real router core (handshake, gob, gossip, routes) for N peers in the deterministic simulated network,
twice per N and side by side in one run:

* ``weave``: gossip as Go Weave 2.8 does it: every update sent at once to random neighbours, the whole topology
  to random neighbours every 30 s (``gossip_min_gap=0``, ``gossip_filter=False``);
* ``weavenet``: coalesced sends, entries a neighbour holds left out, digests in the periodic round.

"converge" is the time and the TCP bytes (all peers together) until every peer knows every peer, has routes to
all and all its connections are established (a full mesh for ``mesh``); "idle" is the TCP byte rate of the whole
cluster afterwards, measured over ``--idle`` simulated seconds after 60 s of settling; "UDP/peer" the idle UDP
bytes (heartbeats, probes; IPv4 and UDP headers counted) each peer sends per second, and "idle/peer" TCP and UDP
together per peer. The sleeve's 60001-byte fragmentation test (every 5 min per connection) is left out: only the
simulation sends it, a running router's data plane never relies on fragmentation.

``--overlays fastdp,sleeve`` gives every connection the fast datapath too (its heartbeats are most of the idle UDP
bytes); the mode ``quick`` is weavenet without lean liveness (``WeavenetLiveness``), as before it: heartbeats every
2 s on both overlays, full-size on the fast datapath.

Two topologies: ``mesh`` (peers join one seed and discovery builds a full mesh, as in the Go measurements of
docs/anchors) and ``sparse`` (a random connected graph, about 3 links per peer, discovery off).

    .venv/bin/python bench/mesh_gossip.py --sizes 10,25,50,100 --topology mesh
    .venv/bin/python bench/mesh_gossip.py --sizes 100,500 --topology sparse
    .venv/bin/python bench/mesh_gossip.py --sizes 100,250,500,1000 --topology sparse --modes weavenet \
        --overlays fastdp,sleeve
"""

from __future__ import annotations

import argparse
import random
import sys
import time
from typing import Any

from weavenet.core.names import PeerName
from weavenet.core.router import MeshConfig
from weavenet.sim.network import UNDERLAY_OVERHEAD, SendVxlan, SimNetwork, SimPeer

MODES: dict[str, dict[str, Any]] = {
    "weave": {"gossip_min_gap": 0.0, "gossip_max_gap": 0.0, "gossip_filter": False},
    "weavenet": {},
    "quick": {"lean_liveness": False},
}
FRAG_TEST = 10_000  # sleeve datagrams above this are the fragmentation test


class UdpCount:
    """Counts the UDP bytes on the wire (IPv4 and UDP headers included) the simulated peers send."""

    def __init__(self, net: SimNetwork) -> None:
        self.bytes = 0
        udp, vxlan = net._send_udp, net._send_vxlan

        def count_udp(peer: SimPeer, addr: tuple[str, int], data: bytes) -> None:
            if len(data) <= FRAG_TEST:
                self.bytes += len(data) + 28
            udp(peer, addr, data)

        def count_vxlan(peer: SimPeer, action: SendVxlan) -> None:
            self.bytes += len(action.frame) + UNDERLAY_OVERHEAD - 14
            vxlan(peer, action)

        net._send_udp, net._send_vxlan = count_udp, count_vxlan  # type: ignore[method-assign]


def run(n: int, mode: str, topology: str, seed: int, idle: float, overlays: tuple[str, ...]) -> dict[str, float]:
    discovery = topology == "mesh"

    def cfg(i: int) -> MeshConfig:
        return MeshConfig(
            name=PeerName(0x0A0000000000 + i + 1),
            nickname=f"p{i + 1}",
            discovery=discovery,
            overlays=overlays,
            **MODES[mode],
        )

    net = SimNetwork(n, seed=seed, config=cfg)
    udp = UdpCount(net)
    rng = random.Random(seed)
    if topology == "mesh":
        for i in range(1, n):
            net.connect(i, [0])
    else:
        targets: dict[int, list[int]] = {}
        for i in range(1, n):
            targets.setdefault(rng.randrange(i), []).append(i)
        for _ in range(n):
            a, b = rng.sample(range(n), 2)
            targets.setdefault(a, []).append(b)
        for a, bs in targets.items():
            net.connect(a, bs)
    wall = time.perf_counter()

    def done() -> bool:
        if not net.converged():
            return False
        want = n - 1 if discovery else None
        for p in net.peers:
            conns = p.router.ready_connections()
            if not all(c.established for c in conns) or (want is not None and len(conns) != want):
                return False
        return True

    took = net.run_until_true(done, limit=600.0, step=0.5)
    converge_bytes = net.tcp_bytes()
    net.run_for(60.0)  # let the last changes settle (two gossip rounds) before measuring idle traffic
    settled, settled_udp = net.tcp_bytes(), udp.bytes
    net.run_for(idle)
    idle_rate = (net.tcp_bytes() - settled) / idle
    udp_rate = (udp.bytes - settled_udp) / idle
    return {
        "converge_s": took if took is not None else float("nan"),
        "converge_MB": converge_bytes / 1e6,
        "idle_kBps": idle_rate / 1e3,
        "udp_peer_Bps": udp_rate / n,
        "idle_peer_Bps": (idle_rate + udp_rate) / n,
        "wall_s": time.perf_counter() - wall,
    }


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--sizes", default="10,25,50,100")
    ap.add_argument("--topology", choices=["mesh", "sparse"], default="mesh")
    ap.add_argument("--seed", type=int, default=1)
    ap.add_argument("--idle", type=float, default=120.0, help="simulated seconds measured after convergence")
    ap.add_argument("--modes", default="weave,weavenet")
    ap.add_argument("--overlays", default="sleeve", help="the overlays every peer offers, e.g. fastdp,sleeve")
    args = ap.parse_args()
    overlays = tuple(args.overlays.split(","))
    print(f"topology={args.topology} seed={args.seed} idle window={args.idle:.0f}s (simulated) overlays={overlays}")
    print(
        f"{'N':>5} {'mode':>9} {'converge s':>10} {'conv. MB':>9} {'idle kB/s':>10} {'ratio MB':>9} {'ratio idle':>10}"
        f" {'UDP/peer B/s':>12} {'idle/peer B/s':>13} {'wall s':>7}"
    )
    for n in (int(x) for x in args.sizes.split(",")):
        base = None
        for mode in args.modes.split(","):
            r = run(n, mode, args.topology, args.seed, args.idle, overlays)
            if base is None:
                base = r
            ratio_mb = r["converge_MB"] / base["converge_MB"] if base["converge_MB"] else float("nan")
            ratio_idle = r["idle_kBps"] / base["idle_kBps"] if base["idle_kBps"] else float("nan")
            print(
                f"{n:>5} {mode:>9} {r['converge_s']:>10.1f} {r['converge_MB']:>9.2f} {r['idle_kBps']:>10.2f}"
                f" {ratio_mb:>9.2f} {ratio_idle:>10.2f} {r['udp_peer_Bps']:>12.1f} {r['idle_peer_Bps']:>13.1f}"
                f" {r['wall_s']:>7.1f}"
            )
            sys.stdout.flush()


if __name__ == "__main__":
    main()
