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


def _reference_peer_routes(
    topology: Topology, start: Peer, established_and_symmetric: bool, stop_at: Peer | None = None
) -> tuple[bool, dict[PeerName, PeerName]]:
    """The walk as it was before it stopped early once every peer was placed: the full level-by-level BFS."""
    routes: dict[PeerName, PeerName] = {start.name: PeerName(0)}
    next_worklist = [start]
    while next_worklist:
        worklist = sorted(next_worklist, key=lambda p: p.name)
        next_worklist = []
        for cur in worklist:
            if cur is stop_at:
                return True, routes
            via = None if cur is start else routes[cur.name]
            for remote_name, conn in cur.connections.items():
                if remote_name in routes or (established_and_symmetric and not conn.established):
                    continue
                remote = topology.by_name.get(remote_name)
                if remote is None:
                    continue
                if established_and_symmetric:
                    back = remote.connections.get(cur.name)
                    if back is None or not back.established:
                        continue
                next_worklist.append(remote)
                routes[remote_name] = remote_name if via is None else via
    return False, routes


@settings(max_examples=150, deadline=None)
@given(st.integers(1, 12), st.data())
def test_routes_unchanged_by_the_early_stop(n: int, data: st.DataObject) -> None:
    pairs = list(itertools.combinations(range(n), 2))
    edges = data.draw(st.lists(st.sampled_from(pairs), unique=True) if pairs else st.just([]))
    topo, p = build(n, edges)
    for a, b in data.draw(st.lists(st.sampled_from(edges), max_size=3) if edges else st.just([])):
        p[a].connections[p[b].name] = ConnSummary(p[b].name, "x:1", True, False)  # one side not established
    for sym in (True, False):
        for src in p:
            for stop in (None, topo.ourself, data.draw(st.sampled_from(p))):
                assert peer_routes(topo, src, sym, stop) == _reference_peer_routes(topo, src, sym, stop)


class _CountingConnections(dict):  # type: ignore[type-arg]
    walked = 0

    def items(self):  # type: ignore[no-untyped-def]
        _CountingConnections.walked += 1
        return super().items()


def test_broadcast_table_of_a_full_mesh_walks_each_source_once() -> None:
    """O(N^2) for the table: each source's walk ends after its own connections once every peer is placed."""
    n = 40
    topo, p = build(n, list(itertools.combinations(range(n), 2)))
    for peer in p:
        peer.connections = _CountingConnections(peer.connections)
    _CountingConnections.walked = 0
    table = Routes(topo).broadcast_table()
    assert table[p[0].name] == sorted(q.name for q in p[1:])
    assert all(hops == [] for src, hops in table.items() if src != p[0].name)
    assert _CountingConnections.walked <= 2 * n + 2  # the old walk: about n^2 / 2 (every peer before us, per source)
