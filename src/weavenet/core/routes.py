"""Unicast and broadcast routes, derived from a topology snapshot.

Port of mesh ``routes.go`` and ``Peer.routes``. Routes are a breadth-first widening from a peer; each level's
worklist is sorted by peer name, so every peer computing routes over the same topology gets the same answer.
That determinism is what lets a broadcast reach every peer exactly once without any coordination:

* unicast: the next hop towards X is the first hop on our BFS path to X;
* broadcast from S: run the BFS from S until it reaches us; forward to those of our neighbours that the BFS had
  not reached by then (they are the ones "below" us in S's spanning tree).

Two flavours exist. The data plane uses only connections that are *established and symmetric* (both ends report
them, both established); gossip uses *all* connections, so control traffic can flow before the data path is up.
"""

from __future__ import annotations

import math
import random
from collections.abc import Callable

from weavenet.core.names import UNKNOWN_PEER_NAME, PeerName
from weavenet.core.topology import Peer, Topology


def _for_each_connected_peer(
    topology: Topology,
    peer: Peer,
    established_and_symmetric: bool,
    exclude: dict[PeerName, PeerName],
    fn: Callable[[Peer], None],
) -> None:
    by_name = topology.by_name
    for remote_name, conn in peer.connections.items():
        if established_and_symmetric and not conn.established:
            continue
        if remote_name in exclude:
            continue
        remote = by_name.get(remote_name)
        if remote is None:
            continue
        if established_and_symmetric:
            back = remote.connections.get(peer.name)
            if back is None or not back.established:
                continue
        fn(remote)


def peer_routes(
    topology: Topology, start: Peer, established_and_symmetric: bool, stop_at: Peer | None = None
) -> tuple[bool, dict[PeerName, PeerName]]:
    """BFS from ``start``: returns (reached ``stop_at``, {destination: next hop}); ``start`` maps to unknown."""
    routes: dict[PeerName, PeerName] = {start.name: PeerName(UNKNOWN_PEER_NAME)}
    by_name = topology.by_name
    everyone = len(by_name) if start.name in by_name else len(by_name) + 2  # a stray start: walk it all
    next_worklist = [start]
    while next_worklist:
        if len(routes) >= everyone:
            # Every peer is placed: the rest of the walk would add nothing, and ``stop_at``, if placed, would be
            # reached with these same routes. In a full mesh this ends the walk after ``start``'s own
            # connections: a broadcast route costs O(N) instead of O(N^2), the broadcast table O(N^2), not O(N^3).
            return (stop_at is not None and stop_at.name in routes), routes
        worklist = sorted(next_worklist, key=lambda p: p.name)
        next_worklist = []
        for cur in worklist:
            if cur is stop_at:
                return True, routes
            via = None if cur is start else routes[cur.name]
            for remote_name, conn in cur.connections.items():
                if remote_name in routes or (established_and_symmetric and not conn.established):
                    continue
                remote = by_name.get(remote_name)
                if remote is None:
                    continue
                if established_and_symmetric:
                    back = remote.connections.get(cur.name)
                    if back is None or not back.established:
                        continue
                next_worklist.append(remote)
                routes[remote_name] = remote_name if via is None else via
    return False, routes


def reachable(topology: Topology) -> set[PeerName]:
    """Peers reachable from us over any connections (what garbage collection keeps)."""
    return set(peer_routes(topology, topology.ourself, False)[1])


class Routes:
    """Route tables of the local peer, recomputed lazily after ``invalidate()``."""

    def __init__(self, topology: Topology) -> None:
        self.topology = topology
        self._dirty = True
        self._unicast: dict[PeerName, PeerName] = {}
        self._unicast_all: dict[PeerName, PeerName] = {}
        self._broadcast: dict[PeerName, list[PeerName]] = {}
        self._broadcast_all: dict[PeerName, list[PeerName]] = {}
        self.generation = 0  # bumped on every recalculation (any topology change may move broadcast routes)
        self._weights: dict[PeerName, int] | None = None  # next hop -> destinations routed via it

    def invalidate(self) -> None:
        self._dirty = True

    @property
    def dirty(self) -> bool:
        return self._dirty

    def recalculate(self) -> bool:
        """Recompute now if invalidated. Returns True if the tables changed."""
        if not self._dirty:
            return False
        self._dirty = False
        topo = self.topology
        unicast = peer_routes(topo, topo.ourself, True)[1]
        unicast_all = peer_routes(topo, topo.ourself, False)[1]
        changed = unicast != self._unicast or unicast_all != self._unicast_all
        self._unicast, self._unicast_all = unicast, unicast_all
        self._weights = None
        old_broadcast = self._broadcast.get(topo.ourself.name)
        self._broadcast, self._broadcast_all = {}, {}
        self.generation += 1
        return changed or old_broadcast != self.broadcast(topo.ourself.name)

    def _ensure(self) -> None:
        if self._dirty:
            self.recalculate()

    def unicast(self, name: PeerName) -> PeerName | None:
        """Next hop to ``name`` over established, symmetric connections (the data plane's view)."""
        self._ensure()
        return self._unicast.get(name)

    def unicast_all(self, name: PeerName) -> PeerName | None:
        """Next hop to ``name`` over all connections (gossip's view)."""
        self._ensure()
        return self._unicast_all.get(name)

    def unicast_table(self, all_connections: bool = False) -> dict[PeerName, PeerName]:
        self._ensure()
        return dict(self._unicast_all if all_connections else self._unicast)

    def broadcast(self, source: PeerName) -> list[PeerName]:
        """Neighbours to pass a broadcast originated by ``source`` on to (established, symmetric)."""
        self._ensure()
        return self._lookup(source, self._broadcast, True)

    def broadcast_all(self, source: PeerName) -> list[PeerName]:
        self._ensure()
        return self._lookup(source, self._broadcast_all, False)

    def broadcast_table(self) -> dict[PeerName, list[PeerName]]:
        """Broadcast routes for every known source (for status output)."""
        self._ensure()
        return {name: self.broadcast(name) for name in sorted(self.topology.by_name)}

    def _lookup(
        self, source: PeerName, cache: dict[PeerName, list[PeerName]], established_and_symmetric: bool
    ) -> list[PeerName]:
        hops = cache.get(source)
        if hops is None:
            hops = self._calculate_broadcast(source, established_and_symmetric)
            cache[source] = hops
        return hops

    def _calculate_broadcast(self, source: PeerName, established_and_symmetric: bool) -> list[PeerName]:
        topo = self.topology
        peer = topo.get(source)
        if peer is None:
            return []
        found, reached = peer_routes(topo, peer, established_and_symmetric, stop_at=topo.ourself)
        if not found:
            return []
        hops: list[PeerName] = []
        _for_each_connected_peer(topo, topo.ourself, established_and_symmetric, reached, lambda p: hops.append(p.name))
        return sorted(hops)

    def random_neighbours(self, rng: random.Random, except_: PeerName) -> list[PeerName]:
        """min(2·log2(peers), distinct next hops) neighbours, weighted by how many peers route via each.

        Favouring neighbours at the end of bottleneck links makes epidemic gossip cross them quickly.
        """
        self._ensure()
        if self._weights is None:
            counts: dict[PeerName, int] = {}
            for hop in self._unicast_all.values():
                if hop != UNKNOWN_PEER_NAME:
                    counts[hop] = counts.get(hop, 0) + 1
            self._weights = counts
        weights = self._weights
        order = [hop for hop in sorted(weights) if hop != except_]  # deterministic for a seeded rng
        if not order:
            return []
        needed = min(int(2 * math.log2(len(self._unicast_all))), len(order))
        if needed >= len(order):
            return order
        total = sum(weights[h] for h in order)
        chosen: list[PeerName] = []
        while len(chosen) < needed:
            pick = rng.randrange(total)
            for hop in order:
                count = weights[hop]
                if pick < count:
                    chosen.append(hop)
                    order.remove(hop)
                    total -= count
                    break
                pick -= count
        return chosen
