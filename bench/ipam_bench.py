"""IPAM: allocation latency (local space, and space donated by another peer) and the size of ring gossip.

    .venv/bin/python bench/ipam_bench.py [--allocs 2000] [--donations 300] [--sizes 100,1000]
    sudo .venv/bin/python bench/ipam_bench.py --testbed      # adds end-to-end figures over the HTTP API

Parts, each printed as a table:

* **core, local**: ``Allocator.allocate`` on a peer that owns the space (the pure state machine: lowest free
  address, owned map, free-count report, the persistence values encoded), per call;
* **core, donated**: two allocators joined by the simulated gossip layer with zero latency; the second asks for
  an address in a fresh /28 only the first owns, so every allocation is a space request, a donation (ring
  grant, broadcast), a ring update and the allocation: the CPU cost of the whole exchange on both sides;
* **ring gossip**: the ``gossipState`` a peer broadcasts for clusters of N peers, with the ring as a consensus
  makes it (N entries) and after every peer received three donations (about 4N entries); one broadcast
  reaches N−1 peers. The bytes are Weave's wire format, so a Go cluster sends the same; side by side, the time
  to encode and decode it with the generic, type-driven gob codec (how Weave's format is reproduced) and with
  the specialised codec the allocator uses;
* **test bed** (``--testbed``, root): two simulated hosts with real routers; ``POST /ip/<id>`` from a client in
  the host, local space (host 1 owns the default subnet's start), and donated (host 2 allocating in a fresh
  /28 of host 1's range each time, so the router asks host 1 over the mesh).

Latencies are wall-clock and the machine is shared: compare the ratios of one run.
"""

from __future__ import annotations

import argparse
import random
import statistics
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "src"))

from weavenet.core.names import PeerName
from weavenet.ipam import wire
from weavenet.ipam.address import CIDR
from weavenet.ipam.allocator import Allocator, AllocatorConfig
from weavenet.ipam.operations import Result
from weavenet.ipam.ring import Ring
from weavenet.ipam.wire import GossipMessage
from weavenet.sim.ipam_cluster import IpamCluster

U = CIDR.parse_subnet("10.32.0.0/12")


def pct(xs: list[float], p: float) -> float:
    xs = sorted(xs)
    return xs[min(len(xs) - 1, int(p / 100 * len(xs)))]


def us(x: float) -> str:
    return f"{x * 1e6:.0f} µs" if x < 0.01 else f"{x * 1e3:.1f} ms"


class _View:
    def is_known_peer(self, name: PeerName) -> bool:
        return True

    def is_reachable(self, name: PeerName) -> bool:
        return True

    def target_count(self) -> int:
        return 0

    def peer_uid(self, name: PeerName) -> int | None:
        return None


def core_local(n: int) -> list[float]:
    stored: dict[str, bytes] = {}
    a = Allocator(
        AllocatorConfig(PeerName(1), 1, "a", U, seed=[PeerName(1)]),
        _View(),
        random.Random(1),
        0.0,
        persist=stored.update,
    )
    a.start({}, [], 0.0)
    out = []
    for i in range(n):
        box: list[Result] = []
        t = time.perf_counter()
        a.allocate(f"c{i}", U, True, float(i), box.append)
        out.append(time.perf_counter() - t)
        assert box and box[0].ok
    return out


def core_donated(n: int) -> tuple[list[float], float]:
    c = IpamCluster(2, seed=1, seed_peers=1, latency=(0.0, 0.0))
    out, msgs = [], 0
    base = c.universe.addr
    for i in range(n):
        sub = CIDR(base + (i + 1) * 16, 28)  # host 1 owns all of it; host 2 must ask every time
        before = sum(p.messages_sent for p in c.peers)
        t = time.perf_counter()
        box = c.allocate(1, f"d{i}", sub)
        while not box:
            c.run_for(0.001)
        out.append(time.perf_counter() - t)
        assert box[0].ok, box
        msgs += sum(p.messages_sent for p in c.peers) - before
    return out, msgs / n


def ring_for(n: int, donations: int) -> Ring:
    """A ring of n peers as consensus makes it, then each peer gives ``donations`` pieces to the next one."""
    peers = [PeerName(0x0A0000000000 + i + 1) for i in range(n)]
    r = Ring(U.addr, U.addr + U.size, peers[0])
    r.claim_for_peers(peers)
    for k in range(donations):
        for i, p in enumerate(peers):
            r.peer = p
            owned = [x for x in r.owned_ranges() if x.size >= 4]
            if not owned:
                continue
            x = owned[k % len(owned)]
            half = x.start + x.size // 2
            r.grant_range_to_host(half, x.end, peers[(i + 1) % n])
    r.peer = peers[0]
    for e in r.entries:
        e.version += 3
        e.free = max(0, e.free - 7)
    return r


def timeit(fn, rounds: int = 20) -> float:
    best = float("inf")
    for _ in range(3):
        t = time.perf_counter()
        for _ in range(rounds):
            fn()
        best = min(best, (time.perf_counter() - t) / rounds)
    return best


def _decode_uncached(data: bytes) -> None:
    wire._CACHE.clear()  # the allocator remembers recent messages; measure the decoding itself
    wire.decode_gossip(data)


def ring_gossip(sizes: list[int]) -> None:
    print("\n## ring gossip (gossipState broadcast)\n")
    print(
        "| peers | ring entries | message bytes | one broadcast, all peers | encode generic | fast | ratio |"
        " decode generic | fast | ratio |"
    )
    print("|---|---|---|---|---|---|---|---|---|---|")
    for n in sizes:
        for donations in (0, 3):
            r = ring_for(n, donations)
            msg = GossipMessage(
                1_700_000_000, {PeerName(0x0A0000000000 + i + 1): f"host{i}" for i in range(n)}, None, r
            )
            data = wire.encode_gossip(msg)
            assert data == wire.encode_gossip_generic(msg)
            eg = timeit(lambda m=msg: wire.encode_gossip_generic(m), 3)
            ef = timeit(lambda m=msg: wire.encode_gossip(m), 3)
            dg = timeit(lambda d=data: wire.decode_gossip_generic(d), 3)
            df = timeit(lambda d=data: _decode_uncached(d), 3)
            print(
                f"| {n} | {len(r.entries)} | {len(data):,} | {len(data) * (n - 1) / 1e6:.2f} MB | {us(eg)} | "
                f"{us(ef)} | {eg / ef:.1f}× | {us(dg)} | {us(df)} | {dg / df:.1f}× |"
            )


def testbed(allocs: int, donations: int) -> None:
    from weavenet.testbed import Testbed

    client = r"""
import sys, time, urllib.request as u
n, kind = int(sys.argv[1]), sys.argv[2]
out = []
for i in range(n):
    path = f"/ip/b{kind}{i}" if kind == "l" else f"/ip/d{i}/10.33.{i // 16}.{(i % 16) * 16}/28"
    t = time.perf_counter()
    r = u.urlopen(u.Request("http://127.0.0.1:6784" + path, method="POST"), timeout=30).read()
    out.append(time.perf_counter() - t)
print(" ".join(f"{x:.6f}" for x in out))
"""
    with Testbed(2, prefix="wnbipam") as tb:
        h1, h2 = tb.hosts
        assert h1.weave("launch", "--ipalloc-init", "consensus=1").returncode == 0
        assert h1.weave("prime").returncode == 0  # host 1 owns the whole range
        assert h2.weave("launch", "--ipalloc-init", "observer", h1.ip).returncode == 0
        assert h2.weave("prime", timeout=60).returncode == 0  # host 2 has the ring, and no space
        local = [float(x) for x in h1.run([sys.executable, "-c", client, str(allocs), "l"], timeout=600).stdout.split()]
        donated = [
            float(x) for x in h2.run([sys.executable, "-c", client, str(donations), "d"], timeout=600).stdout.split()
        ]
    print("\n## test bed: POST /ip over HTTP on real routers\n")
    print("| space | allocations | median | p99 |")
    print("|---|---|---|---|")
    print(f"| local | {len(local)} | {us(statistics.median(local))} | {us(pct(local, 99))} |")
    print(f"| donated by the other host | {len(donated)} | {us(statistics.median(donated))} | {us(pct(donated, 99))} |")
    print(f"\nratio donated/local (median): {statistics.median(donated) / statistics.median(local):.1f}×")


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--allocs", type=int, default=2000)
    ap.add_argument("--donations", type=int, default=300)
    ap.add_argument("--sizes", default="100,1000")
    ap.add_argument("--testbed", action="store_true")
    args = ap.parse_args()
    local = core_local(args.allocs)
    donated, msgs = core_donated(args.donations)
    print("## core allocation (pure allocator, CPU per allocation)\n")
    print("| space | allocations | median | p99 | messages per allocation |")
    print("|---|---|---|---|---|")
    print(f"| local | {len(local)} | {us(statistics.median(local))} | {us(pct(local, 99))} | 0 |")
    print(f"| donated | {len(donated)} | {us(statistics.median(donated))} | {us(pct(donated, 99))} | {msgs:.1f} |")
    print(f"\nratio donated/local (median): {statistics.median(donated) / statistics.median(local):.1f}×")
    ring_gossip([int(s) for s in args.sizes.split(",")])
    if args.testbed:
        testbed(min(args.allocs, 300), min(args.donations, 100))


if __name__ == "__main__":
    main()
