"""IPAM across many simulated peers (deterministic; hypothesis drives the scenarios).

The core property: whatever sequence of allocations, releases, donations (they happen whenever a peer runs
out), kills with ``rmpeer`` on one survivor, restarts, partitions and heals, no address is ever held by two
live containers, and no two live peers both believe they own an address. Then: every side of a partition keeps
allocating, rings converge after the heal, and the automatic reclaim of a dead peer's space happens exactly
once, never in a minority, never in a two-owner cluster.
"""

from __future__ import annotations

import random
from dataclasses import dataclass, field

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from weavenet.ipam.address import CIDR
from weavenet.ipam.allocator import AllocatorConfig
from weavenet.ipam.operations import Result
from weavenet.sim.ipam_cluster import IpamCluster

N = 50
SUBNETS = [None, CIDR.parse_subnet("10.32.7.0/24"), CIDR.parse_subnet("10.40.0.0/16")]


@dataclass
class Model:
    """What the test knows beyond the cluster: which peers were killed and taken over."""

    dead: set[int] = field(default_factory=set)
    removed: set[int] = field(default_factory=set)  # dead and rmpeer'd: may only come back reset
    results: list[tuple[int, Result]] = field(default_factory=list)
    counter: int = 0


def check(c: IpamCluster) -> None:
    dups = c.duplicates()
    assert not dups, f"t={c.now:.1f}: address held twice: {dups}"
    assert not c.overlapping_ownership(), f"t={c.now:.1f}: two live peers own the same range"
    assert not c.refused, f"t={c.now:.1f}: refused gossip: {c.refused[:3]}"


ops = st.lists(
    st.one_of(
        st.tuples(st.just("alloc"), st.integers(0, N - 1), st.integers(0, len(SUBNETS) - 1), st.integers(1, 8)),
        st.tuples(st.just("free"), st.integers(0, N - 1), st.integers(0, 1000)),
        st.tuples(st.just("partition"), st.integers(1, N - 1), st.integers(0, 3)),
        st.tuples(st.just("heal")),
        st.tuples(st.just("kill"), st.integers(0, N - 1)),
        st.tuples(st.just("rmpeer"), st.integers(0, N - 1)),
        st.tuples(st.just("restart"), st.integers(0, N - 1)),
        st.tuples(st.just("wait"), st.integers(1, 40)),
    ),
    min_size=5,
    max_size=30,
)


def apply(c: IpamCluster, m: Model, op: tuple) -> None:
    kind = op[0]
    live = [p.index for p in c.peers if p.up]
    if kind == "alloc":
        _, i, s, count = op
        if c.peers[i].up:
            for _ in range(count):
                m.counter += 1
                box = c.allocate(i, f"c{m.counter}", SUBNETS[s])
                m.results.append((i, box))  # type: ignore[arg-type]
    elif kind == "free":
        _, i, pick = op
        owned = sorted(c.peers[i].alloc.owned_all()) if c.peers[i].up else []
        if owned:
            c.peers[i].alloc.delete(owned[pick % len(owned)], c.now)
    elif kind == "partition":
        _, split, rotate = op
        order = [(k + rotate * 7) % N for k in range(N)]
        c.partition([order[:split], order[split:]])
    elif kind == "heal":
        c.heal()
    elif kind == "kill":
        _, i = op
        if c.peers[i].up and len(live) > N // 2 + 1:
            c.kill(i)
            m.dead.add(i)
    elif kind == "rmpeer":
        _, i = op
        if i in m.dead and i not in m.removed:
            survivor = next((j for j in live if c.connected(j, live[0])), None)
            if survivor is not None:
                c.peers[survivor].alloc.admin_takeover(str(c.peers[i].name), c.now)
                m.removed.add(i)
    elif kind == "restart":
        _, i = op
        if i in m.dead:
            if i in m.removed:
                c.peers[i].stored.clear()  # it must come back reset: its old space is someone else's
                m.removed.discard(i)
            c.restart(i)
            c.peers[i].alloc.prune_owned([], c.now)  # the host died: its containers are gone
            m.dead.discard(i)
    elif kind == "wait":
        c.run_for(op[1])
    c.run_for(0.5)


@settings(max_examples=20, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.integers(0, 2**32), ops)
def test_50_peers_never_hand_out_an_address_twice(seed: int, script: list[tuple]) -> None:
    """Seeded with 5 of the 50 peers, so most space reaches the others by donation."""
    c = IpamCluster(N, seed=seed, config=lambda i, cfg: _quiet(cfg), seed_peers=5)
    m = Model()
    for op in script:
        apply(c, m, op)
        check(c)
    c.heal()
    live = [p.index for p in c.peers if p.up]
    for _ in range(20):  # periodic gossip to two random peers every 30 s: a few rounds
        c.run_for(30)
        check(c)
        if c.rings_converged(live):
            break
    assert c.rings_converged(live)


def test_50_peers_elect_a_ring() -> None:
    c = IpamCluster(N, seed=1, config=lambda i, cfg: _quiet(cfg))
    first = c.allocate(17, "first")
    took = 0
    while not first and took < 60:
        c.run_for(1)
        took += 1
    assert first and first[0].ok, "consensus must form"
    c.run_for(5)
    assert all(not p.alloc.ring.empty() for p in c.peers)
    seeds = {tuple(p.alloc.ring.seeds) for p in c.peers}
    assert len(seeds) == 1 and len(next(iter(seeds))) >= N // 2 + 1
    check(c)


def _quiet(cfg: AllocatorConfig) -> AllocatorConfig:
    cfg.reclaim_after = 0  # the automatic reclaim has its own tests below
    return cfg


def test_partitioned_sides_keep_allocating_and_agree_after_heal() -> None:
    c = IpamCluster(10, seed=3)
    c.prime(0)
    c.run_for(15)
    boxes = [c.allocate(i, f"pre{i}") for i in range(10)]
    c.run_for(20)
    assert all(b and b[0].ok for b in boxes)
    c.partition([list(range(7)), list(range(7, 10))])
    c.run_for(5)
    during = [c.allocate(i, f"in{i}-{k}") for i in range(10) for k in range(20)]
    c.run_for(60)
    assert all(b and b[0].ok for b in during), "both sides allocate during the partition"
    check(c)
    c.heal()
    c.run_for(30)
    check(c)
    shown = [
        [(e["Token"], e["Size"], e["Peer"], e["Nickname"]) for e in c.peers[i].alloc.status(None).to_dict()["Entries"]]
        for i in range(10)
    ]
    assert all(s == shown[0] for s in shown), "every peer shows the same owners (weave status ipam)"
    c.run_for(120)  # free counts travel with the periodic gossip only, as in Weave
    assert c.rings_converged()


def test_restart_keeps_addresses_and_avoids_them() -> None:
    c = IpamCluster(3, seed=5)
    got = [c.allocate(0, f"c{k}") for k in range(5)]
    c.run_for(20)
    held = {b[0].cidr for b in got}
    c.kill(0)
    c.run_for(5)
    c.restart(0)  # containers still attached: nothing pruned
    c.run_for(5)
    assert {x for cs in c.peers[0].alloc.owned_all().values() for x in cs} == held
    again = c.allocate(0, "c0")
    new = c.allocate(0, "fresh")
    c.run_for(5)
    assert again[0].cidr in held and new[0].cidr not in held
    check(c)


# ------------------------------------------------------------------------------------------------ reclaim


def _reclaiming(after: float):
    def cfg(i: int, c: AllocatorConfig) -> AllocatorConfig:
        c.reclaim_after = after
        return c

    return cfg


def _owners(c: IpamCluster, i: int) -> set[int]:
    return {c.by_name[e.peer].index for e in c.peers[i].alloc.ring.entries}


def spread(c: IpamCluster, n: int) -> None:
    """Give every peer some space (each allocates once)."""
    boxes = [c.allocate(i, f"seed{i}") for i in range(n)]
    c.run_for(30)
    assert all(b and b[0].ok for b in boxes)


def test_dead_peer_space_is_reclaimed_once_by_the_lowest_survivor() -> None:
    c = IpamCluster(5, seed=7, config=_reclaiming(60))
    spread(c, 5)
    assert _owners(c, 0) == {0, 1, 2, 3, 4}
    c.kill(0)  # the lowest-named peer dies, so peer 1 must do it
    c.run_for(40)
    assert 0 in _owners(c, 1), "not before the configured absence"
    stuck = c.peers[1].alloc.status(None).unreachable
    assert stuck and "this peer reclaims its space in" in stuck[0].plan
    assert "reclaims its space in about" in c.peers[2].alloc.status(None).unreachable[0].plan
    c.run_for(60)
    assert all(0 not in _owners(c, i) for i in range(1, 5))
    assert [c.peers[i].alloc.reclaims for i in range(5)] == [0, 1, 0, 0, 0]
    more = [c.allocate(i, f"after{i}-{k}") for i in range(1, 5) for k in range(5)]
    c.run_for(30)
    assert all(b and b[0].ok for b in more)
    check(c)


def test_minority_never_reclaims_and_two_owners_never_do() -> None:
    c = IpamCluster(5, seed=8, config=_reclaiming(30))
    spread(c, 5)
    c.partition([[0, 1], [2, 3, 4]])
    c.run_for(120)
    minority = [c.peers[i].alloc.reclaims for i in (0, 1)]
    assert minority == [0, 0], "a minority must never reclaim"
    assert c.peers[2].alloc.reclaims == 2, "the lowest of the majority reclaims both absent peers"
    plan = c.peers[0].alloc.status(None).unreachable[0].plan
    assert plan.startswith("not reclaimed automatically: 2 of 5 peers owning IP space reachable")
    pair = IpamCluster(2, seed=9, config=_reclaiming(10))
    spread(pair, 2)
    pair.partition([[0], [1]])
    pair.run_for(120)
    assert [p.alloc.reclaims for p in pair.peers] == [0, 0]


def test_peer_cut_off_too_long_yields_and_reclaims_its_addresses() -> None:
    """A peer that was only cut off comes back after its space was reclaimed: it gives the ranges up and gets
    the addresses its containers hold back from the reclaimer (which kept them in quarantine)."""
    c = IpamCluster(4, seed=11, config=_reclaiming(30))
    spread(c, 4)
    held = [c.allocate(3, f"busy{k}") for k in range(3)]
    c.run_for(10)
    addrs = {b[0].cidr.addr for b in held}
    c.partition([[0, 1, 2], [3]])
    c.run_for(90)
    assert 3 not in _owners(c, 0)
    fresh = [c.allocate(0, f"new{k}") for k in range(20)]
    c.run_for(10)
    assert not {b[0].cidr.addr for b in fresh} & addrs, "quarantined addresses are handed out last"
    c.heal()
    c.run_for(60)
    check(c)
    a3 = c.peers[3].alloc
    assert a3.orphans == {} and a3.conflicts == []
    assert all(c.peers[0].alloc.ring.owner(a) == c.peers[3].name for a in addrs)
    c.run_for(150)
    assert c.rings_converged()


# ------------------------------------------------------------------------------------------------ with Weave 2.8 peers


def _plan(c: IpamCluster, i: int, about: int) -> str:
    stuck = {e.peer: e.plan for e in c.peers[i].alloc.status(None).unreachable}
    return stuck[str(c.peers[about].name)]


def test_go_peer_cut_off_longer_than_reclaim_after_keeps_its_space_and_rejoins() -> None:
    """A partition is not a death: a Weave 2.8 peer never gives reclaimed space back (it refuses the ring and
    the connection for good), so its space is never reclaimed automatically, and after the heal the cluster is
    one mesh again."""
    c = IpamCluster(3, seed=31, config=_reclaiming(20), go_peers=[2])
    spread(c, 3)
    go_addr = c.peers[2].alloc.owned_all()["seed2"][0]
    c.partition([[0, 1], [2]])
    c.run_for(120)
    assert [p.alloc.reclaims for p in c.peers] == [0, 0, 0]
    assert 2 in _owners(c, 0) and 2 in _owners(c, 1)
    plan = _plan(c, 0, 2)
    assert plan.startswith("not reclaimed automatically: ") and "Weave 2.8" in plan, plan
    c.heal()
    c.run_for(60)
    check(c)
    more = [c.allocate(i, f"after{i}-{k}") for i in range(3) for k in range(3)]
    c.run_for(30)
    assert all(b and b[0].ok for b in more)
    assert c.peers[2].alloc.owned_all()["seed2"] == [go_addr]
    assert all(c.peers[i].alloc.ring.owner(go_addr.addr) == c.peers[2].name for i in range(3))
    check(c)
    c.run_for(120)
    assert c.rings_converged()


def test_dead_weavenet_peer_is_reclaimed_when_a_go_peer_has_the_lowest_name() -> None:
    """The reclaimer is the lowest-named reachable peer that reclaims automatically, not a Weave 2.8 peer
    (which never does)."""
    c = IpamCluster(4, seed=32, config=_reclaiming(30), go_peers=[0])
    spread(c, 4)
    c.run_for(40)  # the Go peer has been reachable, and silent, for longer than the grace
    c.kill(3)
    c.run_for(20)
    assert _plan(c, 1, 3).startswith("this peer reclaims its space in"), _plan(c, 1, 3)
    assert _plan(c, 2, 3).startswith(f"{c.peers[1].name}(p2) reclaims its space in about"), _plan(c, 2, 3)
    c.run_for(60)
    assert [p.alloc.reclaims for p in c.peers[:3]] == [0, 1, 0]
    assert all(3 not in _owners(c, i) for i in range(3))
    more = [c.allocate(i, f"after{i}-{k}") for i in range(3) for k in range(5)]
    c.run_for(30)
    assert all(b and b[0].ok for b in more)
    check(c)
    c.run_for(120)
    assert c.rings_converged()


def test_weavenet_peer_with_reclaim_off_is_not_reclaimed() -> None:
    """``--ipalloc-reclaim-after 0`` on a peer: it keeps Weave's rule (refuse a ring that takes its space), so
    the others must not take its space either."""

    def cfg(i: int, c: AllocatorConfig) -> AllocatorConfig:
        c.reclaim_after = 0 if i == 3 else 30
        return c

    c = IpamCluster(4, seed=33, config=cfg)
    spread(c, 4)
    c.partition([[0, 1, 2], [3]])
    c.run_for(120)
    assert [p.alloc.reclaims for p in c.peers] == [0, 0, 0, 0]
    assert _plan(c, 0, 3) == "not reclaimed automatically: automatic reclaim is off on that peer"
    c.heal()
    c.run_for(60)
    check(c)
    c.run_for(120)
    assert c.rings_converged()


# ------------------------------------------------------------------------------------------------ on the real mesh


class MeshIpam:
    """Allocators on real router cores in ``SimNetwork``: the daemon's wiring (``RouterView``, the channel, topology
    GC), with allocator timers driven between steps of the network.

    ``go_peers`` behave as Weave 2.8 routers: no weavenet handshake features (so no topology digests), IPAM on
    channel ``IPallocation`` only (any other channel is relayed by the router's surrogate, as mesh does), never
    reclaiming, and refusing a ring that takes space with allocations away from them, which drops the connection.
    """

    def __init__(self, n: int, seed: int, reclaim_after: float = 0.0, go_peers: tuple[int, ...] = ()) -> None:
        from weavenet.core.mesh_types import MeshConfig
        from weavenet.core.names import PeerName
        from weavenet.daemon.ipam_service import RouterView
        from weavenet.ipam import members
        from weavenet.ipam.allocator import Allocator
        from weavenet.ipam.wire import CHANNEL
        from weavenet.sim.network import SimNetwork

        def mesh_config(i: int) -> MeshConfig:
            return MeshConfig(
                name=PeerName(0x0A0000000000 + i + 1), nickname=f"p{i + 1}", gossip_filter=i not in go_peers
            )

        self.net = SimNetwork(n, seed=seed, config=mesh_config)
        self.allocs = []
        universe = CIDR.parse_subnet("10.32.0.0/12")
        for p in self.net.peers:
            r = p.router
            after = 0.0 if p.index in go_peers else reclaim_after
            cfg = AllocatorConfig(
                r.name, r.ourself.uid, r.ourself.nickname, universe, peer_count=n, reclaim_after=after
            )
            a = Allocator(cfg, RouterView(r), random.Random(seed + p.index), 0.0)
            a.set_sink(r.new_gossip(CHANNEL, a))
            if p.index not in go_peers:
                a.set_members_sink(r.new_gossip(members.CHANNEL, a.members_gossiper()))
            r.on_peer_removed.append(lambda peer, a=a: a.peer_gone(peer.name))
            a.start({}, [], 0.0)
            self.allocs.append(a)
        for i in range(1, n):
            self.net.connect(i, [0])

    def call(self, i: int, fn) -> None:
        self.net._input(self.net.peers[i], lambda r, now: fn(now))

    def run_for(self, seconds: float, step: float = 0.5) -> None:
        end = self.net.now() + seconds
        while self.net.now() < end:
            self.net.run_for(step)
            for i, a in enumerate(self.allocs):
                t = a.get_timer()
                if self.net.peers[i].up and t is not None and t <= self.net.now():
                    self.call(i, a.handle_timer)

    def allocate(self, i: int, ident: str) -> list[Result]:
        box: list[Result] = []
        self.call(i, lambda now: self.allocs[i].allocate(ident, self.allocs[i].universe, True, now, box.append))
        return box


def test_on_the_real_mesh_consensus_donation_partition_and_reclaim() -> None:
    m = MeshIpam(5, seed=21, reclaim_after=60)
    m.run_for(20)
    boxes = [m.allocate(i, f"c{i}") for i in range(5)]
    m.run_for(20)
    assert all(b and b[0].ok for b in boxes), boxes
    addrs = [b[0].cidr for b in boxes]
    assert len(set(addrs)) == 5
    # a subnet that only one peer's range covers: the others get space there by donation, over the mesh
    sub = CIDR.parse_subnet("10.32.7.0/24")
    more = []
    for i, a in enumerate(m.allocs):
        box: list[Result] = []
        m.call(i, lambda now, a=a, box=box: a.allocate(f"sub{id(box)}", sub, True, now, box.append))
        more.append(box)
    m.run_for(20)
    assert all(b and b[0].ok for b in more), more
    assert len({b[0].cidr for b in more}) == 5
    assert len({m.allocs[0].ring.owner(b[0].cidr.addr) for b in more}) == 5, "each peer got a piece of it"
    # peer 4 is cut off: after the absence the lowest reachable owner takes its space, exactly once
    m.net.partition([0, 1, 2, 3], [4])
    m.run_for(150)
    assert [a.reclaims for a in m.allocs[:4]].count(1) == 1 and m.allocs[4].reclaims == 0
    m.net.heal_all()
    m.run_for(120)
    live = {}
    for i, a in enumerate(m.allocs):
        for ident, cidrs in a.owned_all().items():
            for c in cidrs:
                assert c.addr not in live, f"{c} held by {live[c.addr]} and {i}/{ident}"
                live[c.addr] = (i, ident)
    rings = [[(e.token, e.peer) for e in a.ring.entries] for a in m.allocs]
    assert all(r == rings[0] for r in rings)


def _one_mesh(m: MeshIpam) -> None:
    """Every router connected to every other, no IPAM message refused, the same owners everywhere (free counts
    travel with the periodic gossip), no address held twice."""
    n = len(m.allocs)
    for p in m.net.peers:
        assert len(p.router.by_peer) == n - 1, (p.index, sorted(map(str, p.router.by_peer)))
    assert [a.refused_count for a in m.allocs] == [0] * n, [list(a.refusals) for a in m.allocs]
    rings = [[(e.token, e.peer) for e in a.ring.entries] for a in m.allocs]
    assert all(r == rings[0] for r in rings)
    live: dict[int, tuple[int, str]] = {}
    for i, a in enumerate(m.allocs):
        for ident, cidrs in a.owned_all().items():
            for c in cidrs:
                assert c.addr not in live, f"{c} held by {live[c.addr]} and {i}/{ident}"
                live[c.addr] = (i, ident)


def test_on_the_real_mesh_a_go_peer_cut_off_for_long_rejoins() -> None:
    m = MeshIpam(3, seed=41, reclaim_after=20, go_peers=(2,))
    m.run_for(20)
    boxes = [m.allocate(i, f"c{i}") for i in range(3)]
    m.run_for(20)
    assert all(b and b[0].ok for b in boxes), boxes
    m.net.partition([0, 1], [2])
    m.run_for(120)
    assert [a.reclaims for a in m.allocs] == [0, 0, 0]
    m.net.heal_all()
    m.run_for(120)
    _one_mesh(m)
    assert m.allocs[2].owned_all()["c2"] == [boxes[2][0].cidr]
    more = [m.allocate(i, f"after{i}") for i in range(3)]
    m.run_for(20)
    assert all(b and b[0].ok for b in more), more
    _one_mesh(m)


def test_on_the_real_mesh_reclaim_with_a_go_peer_lowest_and_in_the_middle() -> None:
    """The Go peer (lowest name) is the hub every other peer first connects to, so the weavenet peers' reclaim
    gossip crosses it; the reclaimer is the lowest weavenet peer, and the weavenet peer that was cut off gives
    the space up when it returns, Go accepting the change."""
    m = MeshIpam(5, seed=42, reclaim_after=30, go_peers=(0,))
    m.run_for(20)
    boxes = [m.allocate(i, f"c{i}") for i in range(5)]
    m.run_for(20)
    assert all(b and b[0].ok for b in boxes), boxes
    m.net.partition([0, 1, 2, 3], [4])
    m.run_for(150)
    assert [a.reclaims for a in m.allocs] == [0, 1, 0, 0, 0]
    m.net.heal_all()
    m.run_for(120)
    _one_mesh(m)
    assert m.allocs[4].owned_all()["c4"] == [boxes[4][0].cidr], "the returning peer got its address back"
    assert m.allocs[4].conflicts == []
