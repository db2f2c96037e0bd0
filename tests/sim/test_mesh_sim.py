"""Many real router cores in one deterministic simulated network (seeded; failures print the seed)."""

from __future__ import annotations

import random

import pytest

from weavenet.core.router import ConnState
from weavenet.sim.network import SimNetwork


def random_connected_graph(n: int, extra: int, rng: random.Random) -> list[tuple[int, int]]:
    edges = set()
    for i in range(1, n):
        edges.add((rng.randrange(i), i))
    while len(edges) < n - 1 + extra:
        a, b = rng.sample(range(n), 2)
        edges.add((min(a, b), max(a, b)))
    return sorted(edges)


def dial_edges(net: SimNetwork, edges: list[tuple[int, int]]) -> None:
    targets: dict[int, list[int]] = {}
    for a, b in edges:
        targets.setdefault(a, []).append(b)
    for a, bs in targets.items():
        net.connect(a, bs)


def established_everywhere(net: SimNetwork) -> bool:
    return all(c.established for p in net.peers for c in p.router.ready_connections())


def test_three_peers_with_discovery_form_full_mesh() -> None:
    net = SimNetwork(3, seed=1)
    net.connect(1, [0])
    net.connect(2, [0])
    took = net.run_until_true(lambda: net.converged() and all(len(p.router.by_peer) == 2 for p in net.peers), 30)
    assert took is not None, "no full mesh within 30 s"
    net.run_for(5)
    assert established_everywhere(net)
    for p in net.peers:
        assert all(c.state is ConnState.READY for c in p.router.by_peer.values())


@pytest.mark.parametrize("seed", range(3))
def test_100_peers_random_topology_converge_and_survive_a_partition(seed: int) -> None:
    rng = random.Random(seed)
    n = 100
    net = SimNetwork(n, seed=seed, discovery=False)
    edges = random_connected_graph(n, extra=60, rng=rng)
    dial_edges(net, edges)
    took = net.run_until_true(net.converged, 60, step=1.0)
    assert took is not None, f"seed {seed}: 100 peers did not converge within 60 s"
    assert took < 30, f"seed {seed}: converged only after {took:.1f} s"
    # partition into two halves: each side converges to itself once the cut connections time out
    left, right = list(range(0, 50)), list(range(50, 100))
    net.partition(left, right)
    took = net.run_until_true(lambda: _side_converged(net, edges, [left, right]), 240, step=2.0)
    assert took is not None, f"seed {seed}: sides did not converge after the partition"
    net.heal_all()
    took = net.run_until_true(net.converged, 600, step=2.0)
    assert took is not None, f"seed {seed}: did not converge again after the heal"


def _side_converged(net: SimNetwork, edges: list[tuple[int, int]], sides: list[list[int]]) -> bool:
    """Each connected component of each side (edges that cross the cut are gone) knows exactly itself."""
    return all(net.converged(comp) for side in sides for comp in _components(edges, side))


def _components(edges: list[tuple[int, int]], side: list[int]) -> list[list[int]]:
    members = set(side)
    adj: dict[int, set[int]] = {i: set() for i in side}
    for a, b in edges:
        if a in members and b in members:
            adj[a].add(b)
            adj[b].add(a)
    seen: set[int] = set()
    comps = []
    for i in side:
        if i in seen:
            continue
        stack, comp = [i], []
        seen.add(i)
        while stack:
            x = stack.pop()
            comp.append(x)
            for y in adj[x] - seen:
                seen.add(y)
                stack.append(y)
        comps.append(comp)
    return comps


def test_simultaneous_dial_resolves_to_one_established_connection_quickly() -> None:
    net = SimNetwork(2, seed=4)
    net.connect(0, [1])
    net.connect(1, [0])
    took = net.run_until_true(
        lambda: all(len(p.router.by_peer) == 1 and established_everywhere(net) for p in net.peers),
        10,
        step=0.1,
    )
    assert took is not None and took < 3, "simultaneous dial stalled"


def test_encrypted_mesh_converges() -> None:
    net = SimNetwork(4, seed=5, password=b"secret")
    for i in range(1, 4):
        net.connect(i, [0])
    assert net.run_until_true(lambda: net.converged() and established_everywhere(net), 30) is not None


def test_wrong_password_is_refused_with_reason_and_others_unaffected() -> None:
    from weavenet.core.names import PeerName
    from weavenet.core.router import MeshConfig

    def cfg(i: int) -> MeshConfig:
        return MeshConfig(
            name=PeerName(0x0A0000000000 + i + 1),
            nickname=f"p{i + 1}",
            password=b"wrong" if i == 2 else b"right",
        )

    net = SimNetwork(3, seed=6, config=cfg)
    net.connect(1, [0])
    net.connect(2, [0])
    net.run_for(20)
    assert net.converged([0, 1])
    statuses = net.peers[2].router.connection_status(net.now())
    failed = [s for s in statuses if s.state in ("failed", "retrying")]
    assert failed and "same --password" in failed[0].info
    inbound = [s for s in net.peers[0].router.connection_status(net.now()) if s.state == "failed"]
    assert inbound and not inbound[0].outbound


def test_trusted_subnets_leave_the_data_plane_unencrypted_only_when_both_agree() -> None:
    from ipaddress import IPv4Network

    from weavenet.core.names import PeerName
    from weavenet.core.router import MeshConfig

    def cfg(i: int) -> MeshConfig:
        trusted = [IPv4Network("10.0.0.0/8")] if i in (0, 1) else []
        return MeshConfig(
            name=PeerName(0x0A0000000000 + i + 1), nickname=f"p{i + 1}", password=b"pw", trusted_subnets=trusted
        )

    net = SimNetwork(3, seed=7, config=cfg)
    net.connect(1, [0])
    net.connect(2, [0])
    assert net.run_until_true(lambda: net.converged() and established_everywhere(net), 30) is not None
    info = {s.address.split(":")[0]: s.info for s in net.peers[0].router.connection_status(net.now())}
    assert info[net.peers[1].ip].startswith("unencrypted")  # both trust each other
    assert info[net.peers[2].ip].startswith("encrypted")  # p3 does not trust p1


def test_conn_limit_refuses_extra_connections_with_reason() -> None:
    from weavenet.core.names import PeerName
    from weavenet.core.router import MeshConfig

    def cfg(i: int) -> MeshConfig:
        return MeshConfig(name=PeerName(0x0A0000000000 + i + 1), nickname=f"p{i + 1}", conn_limit=1 if i == 0 else 0)

    net = SimNetwork(3, seed=8, config=cfg)
    net.connect(1, [0])
    net.run_for(5)
    net.connect(2, [0])
    net.run_for(5)
    assert len(net.peers[0].router.by_peer) == 1
    refused = [s.info for s in net.peers[0].router.connection_status(net.now()) if s.state == "failed"]
    assert any("Connection limit reached (1)" in i for i in refused), refused
    assert any(s.state in ("failed", "retrying") for s in net.peers[2].router.connection_status(net.now()))


def test_a_peer_without_weavenet_features_keeps_its_connections() -> None:
    """Quick sleeve heartbeats need both sides to advertise them: a peer that heartbeats as Weave 2.8 does (every
    10 s once established) must not be timed out after 8 s by a weavenet peer that went quick on its own."""
    from weavenet.core.mesh_types import MeshConfig
    from weavenet.core.names import PeerName

    def config(i: int) -> MeshConfig:
        return MeshConfig(name=PeerName(0x0A0000000000 + i + 1), nickname=f"p{i + 1}", gossip_filter=i != 1)

    net = SimNetwork(2, seed=3, config=config)
    net.connect(1, [0])
    net.run_for(5)
    uids = [{c.uid for c in p.router.ready_connections()} for p in net.peers]
    assert all(len(u) == 1 for u in uids) and established_everywhere(net)
    net.run_for(60)
    assert [{c.uid for c in p.router.ready_connections()} for p in net.peers] == uids, "the connection flapped"


def _links_up(net: SimNetwork, pairs: list[tuple[int, int]]) -> bool:
    for a, b in pairs:
        for x, y in ((a, b), (b, a)):
            conn = net.peers[x].router.by_peer.get(net.peers[y].name)
            if conn is None or not conn.established:
                return False
    return True


@pytest.mark.parametrize("seed", range(4))
@pytest.mark.parametrize("cut_for", [30.0, 200.0])
def test_links_come_back_within_two_seconds_of_a_heal(seed: int, cut_for: float) -> None:
    """Liveness beacons: after a cut long enough for the redial backoff to grow, the link returns about one beacon
    interval after the heal (without them: at the next redial, 5-20 s later), for a direct peer and for a link
    discovery made."""
    net = SimNetwork(3, seed=seed)
    net.connect(1, [0])
    net.connect(2, [0])  # 1-2 comes from discovery
    everyone = [(0, 1), (0, 2), (1, 2)]
    assert net.run_until_true(lambda: _links_up(net, everyone), 30, step=0.1) is not None
    net.run_for(90)  # connections older than a minute: the first redial after the loss is immediate
    cut_at = net.now()
    net.partition([2], [0, 1])
    assert net.run_until_true(lambda: not net.peers[2].router.by_peer, 30, step=0.5) is not None
    net.run_until(cut_at + cut_for + seed * 0.37)  # a different phase of the backoff for each seed
    net.heal_all()
    took = net.run_until_true(lambda: _links_up(net, everyone), 60, step=0.05)
    assert took is not None and took <= 2.0, f"seed {seed}: links back {took} s after the heal"


def test_no_beacons_to_a_peer_that_does_not_offer_them() -> None:
    """A peer without the beacon feature (Go's Weave, older weavenet) gets none: a cut costs it Weave's backoff."""
    from dataclasses import replace

    from weavenet.core import beacons as bc

    net = SimNetwork(2, seed=7)
    old = net.peers[1].router
    old.config = replace(old.config, beacons=False)
    net.connect(1, [0])
    assert net.run_until_true(lambda: _links_up(net, [(0, 1)]), 30, step=0.1) is not None
    net.cut(0, 1)
    assert net.run_until_true(lambda: not net.peers[0].router.by_peer, 30, step=0.5) is not None
    net.run_for(20)
    assert net.peers[0].router.beacons.peers() == [] and old.beacons.peers() == []
    assert net.peers[0].router.sleeve.counters.unknown_sender == 0
    # both offering them: each side beacons the other while they are apart
    net2 = SimNetwork(2, seed=7)
    net2.connect(1, [0])
    assert net2.run_until_true(lambda: _links_up(net2, [(0, 1)]), 30, step=0.1) is not None
    net2.cut(0, 1)
    assert net2.run_until_true(lambda: not net2.peers[0].router.by_peer, 30, step=0.5) is not None
    assert [p.router.beacons.peers() for p in net2.peers] == [[net2.peers[1].name], [net2.peers[0].name]]
    assert bc.INTERVAL == 1.0


@pytest.mark.parametrize("seed", range(8))
def test_a_new_link_carries_traffic_within_a_fraction_of_a_second(seed: int) -> None:
    """Heartbeats ramp from 50 ms (a first one lost to a race is resent at once) and an established connection is
    gossiped at once, not after a second's batching: both peers route to each other (established, symmetric)
    within a few round trips of the dial."""
    net = SimNetwork(2, seed=seed)
    net.connect(1, [0])
    a, b = net.peers

    def routed() -> bool:
        return a.router.routes.unicast(b.name) == b.name and b.router.routes.unicast(a.name) == a.name

    took = net.run_until_true(routed, 10, step=0.01)
    assert took is not None and took < 0.3, f"seed {seed}: routes after {took} s"
