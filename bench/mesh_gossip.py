"""Mesh control-plane cost: convergence time and gossip bytes, weavenet against Weave's own gossip rules.

Runs the real router core (handshake, gob, gossip, routes) for N peers in the deterministic simulated network,
twice per N and side by side in one run:

* ``weave``: gossip as Go Weave 2.8 does it: every update sent at once to random neighbours, the whole topology
  to random neighbours every 30 s (``gossip_min_gap=0``, ``gossip_filter=False``);
* ``weavenet``: coalesced sends, entries a neighbour holds left out, digests in the periodic round.

"converge" is the time and the TCP bytes (all peers together) until every peer knows every peer, has routes to
all and all its connections are established (a full mesh for ``mesh``); "idle" is the TCP byte rate of the whole
cluster afterwards, measured over ``--idle`` simulated seconds after 60 s of settling.

Two topologies: ``mesh`` (peers join one seed and discovery builds a full mesh, as in the Go measurements of
docs/anchors) and ``sparse`` (a random connected graph, about 3 links per peer, discovery off).

    .venv/bin/python bench/mesh_gossip.py --sizes 10,25,50,100 --topology mesh
    .venv/bin/python bench/mesh_gossip.py --sizes 100,500 --topology sparse
"""

from __future__ import annotations

import argparse
import random
import sys
import time

from weavenet.core.names import PeerName
from weavenet.core.router import MeshConfig
from weavenet.sim.network import SimNetwork

MODES = {"weave": {"gossip_min_gap": 0.0, "gossip_max_gap": 0.0, "gossip_filter": False}, "weavenet": {}}


def run(n: int, mode: str, topology: str, seed: int, idle: float) -> dict[str, float]:
    discovery = topology == "mesh"

    def cfg(i: int) -> MeshConfig:
        return MeshConfig(
            name=PeerName(0x0A0000000000 + i + 1), nickname=f"p{i + 1}", discovery=discovery, **MODES[mode]
        )

    net = SimNetwork(n, seed=seed, config=cfg)
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
    settled = net.tcp_bytes()
    net.run_for(idle)
    idle_rate = (net.tcp_bytes() - settled) / idle
    return {
        "converge_s": took if took is not None else float("nan"),
        "converge_MB": converge_bytes / 1e6,
        "idle_kBps": idle_rate / 1e3,
        "wall_s": time.perf_counter() - wall,
    }


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--sizes", default="10,25,50,100")
    ap.add_argument("--topology", choices=["mesh", "sparse"], default="mesh")
    ap.add_argument("--seed", type=int, default=1)
    ap.add_argument("--idle", type=float, default=120.0, help="simulated seconds measured after convergence")
    ap.add_argument("--modes", default="weave,weavenet")
    args = ap.parse_args()
    print(f"topology={args.topology} seed={args.seed} idle window={args.idle:.0f}s (simulated)")
    print(
        f"{'N':>5} {'mode':>9} {'converge s':>10} {'conv. MB':>9} {'idle kB/s':>10} {'ratio MB':>9} {'ratio idle':>10}"
        f" {'wall s':>7}"
    )
    for n in (int(x) for x in args.sizes.split(",")):
        base = None
        for mode in args.modes.split(","):
            r = run(n, mode, args.topology, args.seed, args.idle)
            if base is None:
                base = r
            ratio_mb = r["converge_MB"] / base["converge_MB"] if base["converge_MB"] else float("nan")
            ratio_idle = r["idle_kBps"] / base["idle_kBps"] if base["idle_kBps"] else float("nan")
            print(
                f"{n:>5} {mode:>9} {r['converge_s']:>10.1f} {r['converge_MB']:>9.2f} {r['idle_kBps']:>10.2f}"
                f" {ratio_mb:>9.2f} {ratio_idle:>10.2f} {r['wall_s']:>7.1f}"
            )
            sys.stdout.flush()


if __name__ == "__main__":
    main()
