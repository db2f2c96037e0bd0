"""Routes: unicast next hops, broadcast trees reaching every peer once, neighbour choice."""

from __future__ import annotations

import itertools
import random

from hypothesis import given, settings
from hypothesis import strategies as st

from weavenet.core.names import PeerName
from weavenet.core.routes import Routes, peer_routes
from weavenet.core.topology import ConnSummary, Peer, Topology


def build(n: int, edges: list[tuple[int, int]], me: int = 0, established: bool = True) -> tuple[Topology, list[Peer]]:
    peers = [Peer(PeerName(i + 1), f"p{i}", uid=i + 1, has_short_id=True) for i in range(n)]
    topo = Topology(peers[me], random.Random(0))
    for p in peers:
        topo.by_name[p.name] = p
    for a, b in edges:
        peers[a].connections[peers[b].name] = ConnSummary(peers[b].name, "x:1", True, established)
        peers[b].connections[peers[a].name] = ConnSummary(peers[a].name, "x:1", False, established)
    return topo, peers


def test_line_routes_via_neighbour() -> None:
    topo, p = build(4, [(0, 1), (1, 2), (2, 3)])
    r = Routes(topo)
    assert r.unicast(p[3].name) == p[1].name
    assert r.unicast(p[1].name) == p[1].name
    assert r.unicast(p[0].name) == 0


def test_only_established_symmetric_for_data_plane() -> None:
    topo, p = build(3, [(0, 1)])
    p[1].connections[p[2].name] = ConnSummary(p[2].name, "x:1", True, True)  # 2 does not report it back
    r = Routes(topo)
    assert r.unicast(p[2].name) is None
    assert r.unicast_all(p[2].name) == p[1].name


def _broadcast_receipts(peers: list[Peer], n: int, edges: list[tuple[int, int]], source: int) -> list[int]:
    """Deliver one broadcast from ``source`` through every peer's own broadcast routes; count receipts."""
    got = [0] * n
    got[source] = 1
    todo = [source]
    while todo:
        at = todo.pop()
        topo, ps = build(n, edges, me=at)
        for hop in Routes(topo).broadcast(ps[source].name):
            idx = int(hop) - 1
            got[idx] += 1
            todo.append(idx)
    return got


@settings(max_examples=60, deadline=None)
@given(st.integers(2, 9), st.data())
def test_broadcast_reaches_every_peer_exactly_once(n: int, data: st.DataObject) -> None:
    # random connected graph: a random spanning tree plus random extra edges
    order = data.draw(st.permutations(range(n)))
    edges = {tuple(sorted((order[i], order[data.draw(st.integers(0, i - 1))]))) for i in range(1, n)}
    extra = data.draw(st.lists(st.tuples(st.integers(0, n - 1), st.integers(0, n - 1)), max_size=n))
    edges |= {tuple(sorted(e)) for e in extra if e[0] != e[1]}
    peers = build(n, sorted(edges))[1]
    source = data.draw(st.integers(0, n - 1))
    assert _broadcast_receipts(peers, n, sorted(edges), source) == [1] * n


def test_bfs_is_deterministic_by_name() -> None:
    # a square: 0-1, 0-2, 1-3, 2-3; the route to 3 goes via the lower name (1)
    topo, p = build(4, [(0, 1), (0, 2), (1, 3), (2, 3)])
    assert peer_routes(topo, p[0], True)[1][p[3].name] == p[1].name


def test_random_neighbours_bounds() -> None:
    n = 64
    topo, p = build(n, [(0, i) for i in range(1, n)])  # a star around us
    r = Routes(topo)
    chosen = r.random_neighbours(random.Random(3), except_=p[5].name)
    assert len(chosen) == 12  # 2*log2(64)
    assert p[5].name not in chosen and len(set(chosen)) == len(chosen)
    pairs = list(itertools.combinations(range(3), 2))
    topo3, p3 = build(3, pairs)
    assert sorted(Routes(topo3).random_neighbours(random.Random(1), except_=PeerName(0))) == [
        p3[1].name,
        p3[2].name,
    ]
