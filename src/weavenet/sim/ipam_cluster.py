"""Many IPAM allocators in one process, joined by a simulated gossip layer: fast and deterministic.

The real mesh (``sim/network.py``) costs a full router per peer; for properties about IPAM alone this lighter
harness is enough: each allocator gets a :class:`~weavenet.core.gossip.GossipSink` whose broadcasts reach every
peer of its partition and whose unicasts reach their destination, after a seeded random latency, and a
topology view that answers from the partition map. Periodic gossip goes to two random peers of the partition
every 30 s, as the mesh's would. Messages are encoded when sent (the bytes are counted for the benchmark).

A peer can be partitioned away, healed, killed (its state is lost, as when a host dies) and restarted from
what it persisted. A message an allocator refuses (``RemoteProtocolError``) is recorded in
:attr:`IpamCluster.refused`, and it breaks the link it came on for good, as in the mesh: the connection is
dropped, re-dialled, and the same state sent again is refused again. Messages between peers without a direct
link are relayed by the others (reachability is the connected component, as routes are in the mesh).

Each weavenet peer also gossips on ``weavenet-ipam-members`` (who takes part in automatic reclaim).
``go_peers`` behave as Weave 2.8 routers do: they never reclaim (``--ipalloc-reclaim-after`` is a weavenet
option), so a ring update that takes a range with allocations away from them is refused, and they have no
``weavenet-ipam-members`` gossiper (their mesh relays that channel; here every message reaches its
destinations directly, so that costs nothing to model).
"""

from __future__ import annotations

import heapq
import random
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field

from weavenet.core.gossip import GossipData, Gossiper
from weavenet.core.names import PeerName
from weavenet.errors import RemoteProtocolError
from weavenet.ipam import members
from weavenet.ipam.address import CIDR
from weavenet.ipam.allocator import Allocator, AllocatorConfig
from weavenet.ipam.operations import Result

GOSSIP_INTERVAL = 30.0
IPAM = "IPallocation"
MEMBERS = members.CHANNEL


@dataclass
class SimAllocation:
    peer: int
    ident: str
    cidr: CIDR


@dataclass
class _Peer:
    index: int
    name: PeerName
    alloc: Allocator
    group: int = 0
    up: bool = True
    stored: dict[str, bytes] = field(default_factory=dict)
    go: bool = False  # behaves as a Weave 2.8 peer
    gossipers: dict[str, Gossiper] = field(default_factory=dict)
    bytes_sent: int = 0
    messages_sent: int = 0


class _View:
    def __init__(self, cluster: IpamCluster, index: int) -> None:
        self.cluster = cluster
        self.index = index

    def is_known_peer(self, name: PeerName) -> bool:
        return self.is_reachable(name)

    def is_reachable(self, name: PeerName) -> bool:
        other = self.cluster.by_name.get(name)
        return other is not None and self.cluster.reachable(self.index, other.index)

    def target_count(self) -> int:
        return len(self.cluster.peers) - 1

    def peer_uid(self, name: PeerName) -> int | None:
        other = self.cluster.by_name.get(name)
        if other is None or not self.cluster.reachable(self.index, other.index):
            return None  # the mesh's topology forgets unreachable peers
        return other.alloc.config.uid


class _Sink:
    def __init__(self, cluster: IpamCluster, index: int, channel: str) -> None:
        self.cluster = cluster
        self.index = index
        self.channel = channel

    def gossip_unicast(self, dst: PeerName, msg: bytes) -> None:
        c = self.cluster
        target = c.by_name.get(dst)
        src = c.peers[self.index]
        src.bytes_sent += len(msg)
        src.messages_sent += 1
        if target is not None:
            c.send(self.index, target.index, self.channel, lambda g, now: g.on_gossip_unicast(src.name, msg, now))

    def gossip_broadcast(self, data: GossipData) -> None:
        c = self.cluster
        src = c.peers[self.index]
        for payload in data.encode():
            for other in c.peers:
                if other.index != self.index and c.reachable(self.index, other.index):
                    src.bytes_sent += len(payload)
                    src.messages_sent += 1
                    c.send(
                        self.index,
                        other.index,
                        self.channel,
                        lambda g, now, p=payload: g.on_gossip_broadcast(src.name, p, now),
                    )

    def gossip_neighbour_subset(self, data: GossipData) -> None:
        self.cluster.gossip_to_random(self.index, self.channel, data)


class IpamCluster:
    def __init__(
        self,
        n: int,
        universe: str = "10.32.0.0/12",
        seed: int = 0,
        config: Callable[[int, AllocatorConfig], AllocatorConfig] | None = None,
        latency: tuple[float, float] = (0.001, 0.01),
        seed_peers: int = 0,
        autostart: bool = True,
        go_peers: Iterable[int] = (),
        names: Iterable[PeerName] = (),
    ) -> None:
        """``seed_peers``: create the ring at once from the first that many peers (``--ipalloc-init seed=``)
        instead of an election; ``go_peers``: these peers behave as Weave 2.8 (see the module docstring);
        ``names``: the first peers' names (the rest are 0a:00:00:00:00:<n>)."""
        self.rng = random.Random(seed)
        self.now = 0.0
        self.latency = latency
        self.universe = CIDR.parse_subnet(universe)
        self.peers: list[_Peer] = []
        self.by_name: dict[PeerName, _Peer] = {}
        self._queue: list[tuple[float, int, Callable[[], None]]] = []
        self._seq = 0
        self.refused: list[tuple[int, str]] = []
        self.broken: set[frozenset[int]] = set()  # links dropped by a refusal
        self._components: dict[int, int] | None = None
        self._config = config
        go = set(go_peers)
        given = list(names)
        all_names = given + [PeerName(0x0A0000000000 + i + 1) for i in range(len(given), n)]
        for i, name in enumerate(all_names):
            cfg = AllocatorConfig(
                name=name,
                uid=self.rng.getrandbits(64),
                nickname=f"p{i + 1}",
                universe=self.universe,
                seed=list(all_names[:seed_peers]),
                peer_count=n,
            )
            if config is not None:
                cfg = config(i, cfg)
            if i in go:
                cfg.reclaim_after = 0  # Weave 2.8 never reclaims, and refuses to give up its space
            peer = _Peer(i, name, None, go=i in go)  # type: ignore[arg-type]
            self.peers.append(peer)
            self.by_name[name] = peer
            peer.alloc = self._make(peer, cfg)
        for peer in self.peers if autostart else []:
            peer.alloc.start({}, [], self.now)
        self._next_gossip = self.now + GOSSIP_INTERVAL * self.rng.random()

    def _make(self, peer: _Peer, cfg: AllocatorConfig) -> Allocator:
        def persist(items: dict[str, bytes]) -> None:
            peer.stored.update(items)

        alloc = Allocator(cfg, _View(self, peer.index), random.Random(self.rng.getrandbits(64)), self.now, persist)
        alloc.set_sink(_Sink(self, peer.index, IPAM))
        peer.gossipers = {IPAM: alloc}
        if not peer.go:
            alloc.set_members_sink(_Sink(self, peer.index, MEMBERS))
            peer.gossipers[MEMBERS] = alloc.members_gossiper()
        return alloc

    # -- plumbing -------------------------------------------------------------------------------------------------

    def connected(self, a: int, b: int) -> bool:
        """A direct link between the two peers is up."""
        pa, pb = self.peers[a], self.peers[b]
        return pa.up and pb.up and pa.group == pb.group and frozenset((a, b)) not in self.broken

    def reachable(self, a: int, b: int) -> bool:
        """A path of links joins the two peers (the mesh relays along it)."""
        if self._components is None:
            self._components = {}
            for p in self.peers:
                if p.up and p.index not in self._components:
                    todo = [p.index]
                    self._components[p.index] = p.index
                    while todo:
                        x = todo.pop()
                        for y in range(len(self.peers)):
                            if y not in self._components and self.connected(x, y):
                                self._components[y] = p.index
                                todo.append(y)
        ca, cb = self._components.get(a), self._components.get(b)
        return ca is not None and ca == cb

    def _links_changed(self) -> None:
        self._components = None

    def send(self, src: int, dst: int, channel: str, fn: Callable[[Gossiper, float], object]) -> None:
        """Deliver ``fn(gossiper, now)`` to ``dst``'s gossiper of ``channel`` after a latency."""
        lo, hi = self.latency
        when = self.now + lo + (hi - lo) * self.rng.random()

        def deliver() -> None:
            if not self.reachable(src, dst):
                return  # lost with the connection
            gossiper = self.peers[dst].gossipers.get(channel)
            if gossiper is None:
                return  # a channel the peer does not implement: its mesh relays it, nothing more
            try:
                fn(gossiper, self.now)
            except RemoteProtocolError as e:
                self.refused.append((dst, str(e)))
                self.broken.add(frozenset((src, dst)))  # the connection is dropped, and stays so
                self._links_changed()

        self._at(when, deliver)

    def gossip_to_random(self, index: int, channel: str, data: GossipData) -> None:
        others = [p for p in self.peers if p.index != index and self.connected(index, p.index)]
        src = self.peers[index]
        for other in self.rng.sample(others, min(2, len(others))):
            for payload in data.encode():
                src.bytes_sent += len(payload)
                src.messages_sent += 1
                self.send(index, other.index, channel, lambda g, now, p=payload: g.on_gossip(p, now))

    def _at(self, when: float, fn: Callable[[], None]) -> None:
        self._seq += 1
        heapq.heappush(self._queue, (when, self._seq, fn))

    def run_until(self, t: float) -> None:
        while True:
            next_timer = min((p.alloc.get_timer() or float("inf") for p in self.peers if p.up), default=float("inf"))
            next_msg = self._queue[0][0] if self._queue else float("inf")
            nxt = min(next_timer, next_msg, self._next_gossip)
            if nxt > t:
                break
            self.now = max(self.now, nxt)
            if next_msg <= nxt:
                _, _, fn = heapq.heappop(self._queue)
                fn()
            elif self._next_gossip <= nxt:
                self._next_gossip = self.now + GOSSIP_INTERVAL
                for p in self.peers:
                    if p.up:
                        for channel, gossiper in p.gossipers.items():
                            data = gossiper.gossip(self.now)
                            if data is not None:
                                self.gossip_to_random(p.index, channel, data)
            else:
                for p in self.peers:
                    timer = p.alloc.get_timer()
                    if p.up and timer is not None and timer <= self.now:
                        p.alloc.handle_timer(self.now)
        self.now = max(self.now, t)

    def run_for(self, seconds: float) -> None:
        self.run_until(self.now + seconds)

    def settle(self, limit: float = 120.0, step: float = 1.0) -> None:
        """Run until no message is in flight (or ``limit`` passes)."""
        end = self.now + limit
        while self.now < end:
            self.run_for(step)
            if not self._queue:
                return

    # -- scenario controls ------------------------------------------------------------------------------------

    def partition(self, groups: list[list[int]]) -> None:
        for g, group in enumerate(groups):
            for i in group:
                self.peers[i].group = g
        self._links_changed()

    def heal(self) -> None:
        for p in self.peers:
            p.group = 0
        self._links_changed()

    def kill(self, i: int) -> None:
        """The host dies: its allocator and every container on it are gone."""
        self.peers[i].up = False
        self._links_changed()

    def restart(self, i: int) -> None:
        """The router restarts with what it persisted (a new UID, as a new incarnation has)."""
        p = self.peers[i]
        old = p.alloc.config
        cfg = AllocatorConfig(
            name=old.name,
            uid=self.rng.getrandbits(64),
            nickname=old.nickname,
            universe=old.universe,
            seed=old.seed,
            observer=old.observer,
            peer_count=old.peer_count,
            reclaim_after=old.reclaim_after,
        )
        p.up = True
        self._links_changed()
        p.alloc = self._make(p, cfg)
        p.alloc.start(dict(p.stored), [], self.now)

    # -- operations -------------------------------------------------------------------------------------------------

    def allocate(self, i: int, ident: str, subnet: CIDR | None = None) -> list[Result]:
        """Start an allocation; the returned list receives its result when it completes."""
        box: list[Result] = []
        self.peers[i].alloc.allocate(ident, subnet or self.universe, True, self.now, box.append)
        return box

    def claim(self, i: int, ident: str, cidr: CIDR) -> list[Result]:
        box: list[Result] = []
        self.peers[i].alloc.claim(ident, cidr, True, self.now, box.append)
        return box

    def prime(self, i: int) -> list[Result]:
        box: list[Result] = []
        self.peers[i].alloc.prime(self.now, box.append)
        return box

    # -- observations -------------------------------------------------------------------------------------------

    def live_allocations(self) -> dict[int, list[tuple[int, str]]]:
        """Address -> [(peer, ident)] over the live peers' owned maps."""
        out: dict[int, list[tuple[int, str]]] = {}
        for p in self.peers:
            if not p.up:
                continue
            for ident, cidrs in p.alloc.owned_all().items():
                for c in cidrs:
                    out.setdefault(c.addr, []).append((p.index, ident))
        return out

    def duplicates(self) -> dict[int, list[tuple[int, str]]]:
        return {a: who for a, who in self.live_allocations().items() if len(who) > 1}

    def overlapping_ownership(self) -> list[tuple[int, int]]:
        """Pairs of live peers whose own rings both say they own some address."""
        owned = []
        for p in self.peers:
            if p.up and not p.alloc.ring.empty():
                owned.append((p.index, p.alloc.ring.owned_ranges()))
        bad = []
        for x in range(len(owned)):
            for y in range(x + 1, len(owned)):
                (i, ri), (j, rj) = owned[x], owned[y]
                if any(a.overlaps(b) for a in ri for b in rj):
                    bad.append((i, j))
        return bad

    def rings_converged(self, members: list[int] | None = None) -> bool:
        idx = [p.index for p in self.peers if p.up] if members is None else members
        rings = [[(e.token, e.peer, e.version, e.free) for e in self.peers[i].alloc.ring.entries] for i in idx]
        return all(r == rings[0] for r in rings) and bool(rings and rings[0])
