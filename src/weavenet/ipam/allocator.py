"""The allocator: one peer's IPAM as a pure state machine (Weave's ``ipam/allocator.go``).

Theory of operation. The allocator joins :class:`~weavenet.ipam.ring.Ring` (who owns which range, shared by
gossip on channel ``IPallocation``) and :class:`~weavenet.ipam.space.Space` (which of our own addresses are in
use), plus ``owned`` (which ident holds which addresses, persisted). Requests are *operations*
(``operations.py``): tried at once, else queued and retried on every tick (5 s) and every ring change. When we
have no free space in the wanted subnet we ask a peer that has some (weighted by its free count) to donate;
its answer is a ring update granting us a range. The ring itself appears through a seed list, a Paxos election
(``paxos.py``) started by the first request, or gossip from peers that have one.

This class is the :class:`~weavenet.core.gossip.Gossiper` of its channel and sends through the
:class:`~weavenet.core.gossip.GossipSink` it is given. It never reads a clock: every entry point takes ``now``
(monotonic seconds; the gossip callbacks too), ``wall_offset`` turns it into Unix time for the informational
timestamp on the wire (that of the latest input: the state is encoded when the mesh sends it). It reads the
mesh through :class:`TopologyView`. Persistence is a callback receiving Weave's keys with gob values, to be
written in one transaction; results of operations are delivered only after that callback returned, so whatever
a caller was told is on disk first. When it raises :class:`~weavenet.errors.StateError` (a full disk), the
addresses that callers' operations took in that entry are given back and those operations fail with the reason;
whatever else changed (the ring, releases) stays, is shown in ``unsaved`` and is written by the next entry that
can (every tick tries).

Beyond Weave: automatic reclaim of space held by peers gone for good (``reclaim.py``), with quarantine of the
reclaimed space and the returning peer's yield-and-reclaim (``_yield``), only of peers that said they yield
(``members.py``: a second gossip channel, ``weavenet-ipam-members``, which Weave 2.8 peers relay without
reading); received rings that are refused are counted and listed, and nicknames from a refused message are
not merged either.
"""

from __future__ import annotations

import contextlib
import logging
import random
from collections import deque
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from typing import Any, Protocol

from weavenet.core.gossip import GossipData, GossipSink
from weavenet.core.names import PeerName
from weavenet.errors import ConfigError, RemoteProtocolError, StateError, WeavenetError
from weavenet.ipam import members as mb
from weavenet.ipam import wire
from weavenet.ipam.address import CIDR, Range, claim_refusal, ip_str, subtract_ranges
from weavenet.ipam.operations import Allocate, Claim, Done, Operation, Prime, Result
from weavenet.ipam.paxos import Node, Observer, Participant
from weavenet.ipam.reclaim import DEFAULT_RECLAIM_AFTER, Reclaimer, duration
from weavenet.ipam.ring import UNKNOWN_PEER, DifferentRange, DifferentSeeds, Ring, RingError, normalize_consensus
from weavenet.ipam.space import Space
from weavenet.ipam.wire import GossipMessage, Owned
from weavenet.status.ipam import CIDRValue, IPAMClaimStatus, IPAMEntryStatus, IPAMStatus, IPAMUnreachable

log = logging.getLogger("weavenet.ipam")

TICK_INTERVAL = 5.0
CONTAINER_DIED_TIMEOUT = 30.0
REFUSALS_KEPT = 5

RING_KEY = "ring"
OWNED_KEY = "ownedAddresses"
NAME_KEY = "peername"
MEMBERS_KEY = mb.STORE_KEY


class TopologyView(Protocol):
    """What the allocator needs to know about the mesh (the router in the daemon, a harness in tests)."""

    def is_known_peer(self, name: PeerName) -> bool:
        """The peer is in our topology (Weave's ``isKnownPeer``; shown as reachable in status)."""
        ...

    def is_reachable(self, name: PeerName) -> bool:
        """A unicast to the peer can be routed now."""
        ...

    def target_count(self) -> int:
        """How many direct peers we were given (for the default quorum)."""
        ...

    def peer_uid(self, name: PeerName) -> int | None:
        """The UID (incarnation) the topology shows for the peer now; None if it shows none."""
        ...


class TakeoverError(WeavenetError):
    """``rmpeer`` refused: unknown, ourselves, or a peer that is alive."""


@dataclass(frozen=True, slots=True)
class PreClaim:
    """An address found in use before IPAM started (containers still attached, the bridge)."""

    ident: str
    cidr: CIDR
    is_container: bool = True


@dataclass
class AllocatorConfig:
    name: PeerName
    uid: int
    nickname: str
    universe: CIDR
    seed: list[PeerName] = field(default_factory=list)
    observer: bool = False
    peer_count: int = 0  # --ipalloc-init consensus=N
    reclaim_after: float = DEFAULT_RECLAIM_AFTER  # seconds; 0 disables automatic reclaim
    wall_offset: float = 0.0  # Unix time = now + wall_offset
    tick: float = TICK_INTERVAL


class IpamGossipData:
    """Weave's ``ipamGossipData``: always encodes the latest state, so merging is a no-op."""

    __slots__ = ("alloc",)

    def __init__(self, alloc: Allocator) -> None:
        self.alloc = alloc

    def encode(self) -> list[bytes]:
        return [self.alloc.encode_state()]

    def merge(self, other: GossipData) -> GossipData:
        return self


class _MembersChannel:
    """The allocator as the gossiper of ``weavenet-ipam-members`` (see ``members``)."""

    __slots__ = ("alloc",)

    def __init__(self, alloc: Allocator) -> None:
        self.alloc = alloc

    def on_gossip_unicast(self, src: PeerName, msg: bytes, now: float) -> None:
        return None  # the channel has no unicasts

    def on_gossip_broadcast(self, src: PeerName, update: bytes, now: float) -> GossipData | None:
        return self.alloc.on_members(src, update, now, relay_all=True)

    def gossip(self, now: float) -> GossipData | None:
        return mb.MembersGossipData(self.alloc.members)

    def on_gossip(self, update: bytes, now: float) -> GossipData | None:
        return self.alloc.on_members(UNKNOWN_PEER, update, now, relay_all=False)


class _NullSink:
    def gossip_unicast(self, dst: PeerName, msg: bytes) -> None:
        pass

    def gossip_broadcast(self, data: GossipData) -> None:
        pass

    def gossip_neighbour_subset(self, data: GossipData) -> None:
        pass


class Allocator:
    """See the module docstring."""

    def __init__(
        self,
        config: AllocatorConfig,
        view: TopologyView,
        rng: random.Random,
        now: float,
        persist: Callable[[dict[str, bytes]], None] | None = None,
    ) -> None:
        self.config = config
        self.name = config.name
        self.universe = config.universe
        self.view = view
        self.rng = rng
        self.persist = persist
        self.sink: GossipSink = _NullSink()
        self.members_sink: GossipSink = _NullSink()
        self.members = mb.Members(config.name, config.uid, config.reclaim_after > 0, view.peer_uid)
        self.ring = Ring(self.universe.addr, self.universe.addr + self.universe.size, config.name)
        self.space = Space()
        self.owned: dict[str, Owned] = {}
        self.nicknames: dict[PeerName, str] = {config.name: config.nickname}
        self.paxos: Participant | None = Observer() if config.observer else Node(config.name, config.uid)
        self.awaiting_consensus = False
        self.pending_allocates: list[Operation] = []
        self.pending_claims: list[Operation] = []
        self.pending_primes: list[Operation] = []
        self.dead: dict[str, float] = {}
        self.shutting_down = False
        self.reclaimer = Reclaimer(after=config.reclaim_after)
        self.quarantine: list[Range] = []  # reclaimed space: handed out last
        self.orphans: dict[int, tuple[str, bool, int]] = {}  # addr -> (ident, is_container, prefix) to re-claim
        self.conflicts: list[str] = []
        self.refusals: deque[str] = deque(maxlen=REFUSALS_KEPT)
        self.refused_count = 0
        self.reclaims = 0
        self.reclaimed_ips = 0
        self._now = now
        self._next_tick = now + config.tick
        self._dirty: set[str] = set()
        self._members_lazy = False  # our statement is to be written with the next write (see _load_members)
        self._owned_frags: dict[str, bytes] = {}  # each ident's encoded entry, so a save re-encodes only changes
        self._owned_dirty: dict[str, None] = {}  # idents changed since the last save, in order
        self._results: list[tuple[Done, Result]] = []
        self._depth = 0
        self._trying: Operation | None = None  # the operation being tried (whose caller an addition is for)
        self._added: list[tuple[Done, str, CIDR]] = []  # additions for callers in this entry: undone if unsaved
        self.unreadable: dict[str, str] = {}  # persisted keys that could not be decoded at start -> why
        self.unsaved: str | None = None  # why the last write of our state failed (None once one succeeds)

    # ===================================================================================== lifecycle

    def set_sink(self, sink: GossipSink) -> None:
        self.sink = sink

    def members_gossiper(self) -> _MembersChannel:
        """The gossiper to register on channel ``members.CHANNEL`` (weavenet peers only)."""
        return _MembersChannel(self)

    def set_members_sink(self, sink: GossipSink) -> None:
        self.members_sink = sink

    def start(self, stored: dict[str, bytes], preclaims: Iterable[PreClaim], now: float) -> None:
        """Load persisted data, then create the ring from the seed or wait (Weave's ``Start``)."""
        with self._entry(now):
            self.pending_claims = [Claim(p.ident, p.cidr, p.is_container) for p in preclaims]
            self._load_members(stored.get(MEMBERS_KEY))
            loaded = self._load(stored)
            if loaded and self.config.seed:
                self._info("Found persisted IPAM data, ignoring supplied IPAM seed")
            elif loaded:
                self._info("Initialising with persisted data")
            elif self.config.seed:
                self._info("Initialising with supplied IPAM seed")
                self._create_ring(self.config.seed)
            elif self.paxos is not None and self.paxos.is_elector():
                self._info("Initialising via deferred consensus")
            else:
                self._info("Initialising as observer - awaiting IPAM data from another peer")
            if loaded:
                self._try_ops(self.pending_claims)

    def _load(self, stored: dict[str, bytes]) -> bool:
        """Take what is readable: an unreadable ``ownedAddresses`` (or peer name) keeps the ring, and the
        pre-claims (what is really on the bridge) say which addresses are in use; each key is rewritten."""
        decoders: dict[str, Callable[[bytes], Any]] = {
            NAME_KEY: wire.decode_peer_name,
            RING_KEY: wire.decode_ring,
            OWNED_KEY: wire.decode_owned,
        }
        got: dict[str, Any] = {}
        for key, decode in decoders.items():
            if key in stored:
                try:
                    got[key] = decode(stored[key])
                except RemoteProtocolError as e:
                    self.unreadable[key] = str(e)
        name, ring, owned = got.get(NAME_KEY), got.get(RING_KEY), got.get(OWNED_KEY)
        if ring is None or ring.empty():
            if RING_KEY in self.unreadable:
                self._overwrite(f"Persisted IPAM ring is unreadable ({self.unreadable[RING_KEY]}); starting afresh")
            else:
                self._overwrite("No valid persisted data")
            return False
        if (name is not None and name != self.name) or ring.peer != self.name:
            self._overwrite(f"Deleting persisted data for peername {ring.peer if name == self.name else name}")
            return False
        if ring.range() != self.ring.range():
            self._overwrite(f"Deleting persisted data for IPAM range {ring.range()}; our range is {self.universe}")
            return False
        try:
            ring.check()
        except RingError as e:
            self._overwrite(f"Persisted ring is inconsistent ({e}); starting afresh")
            return False
        self.ring = ring
        self.space.update_ranges(ring.owned_ranges())
        if owned is not None:
            self.owned = owned
            self._owned_dirty.update(dict.fromkeys(owned))
            for o in owned.values():
                for c in o.cidrs:
                    if self.space.is_free(c.addr):
                        self.space.claim(c.addr)
        if self.unreadable:  # replace the unreadable values by readable ones
            self._dirty |= {NAME_KEY, RING_KEY, OWNED_KEY}
        return True

    def _load_members(self, raw: bytes | None) -> None:
        """What we knew of who takes part in reclaim, and our own statement, made anew above the stored one."""
        stored: dict[PeerName, mb.Statement] = {}
        if raw is not None:
            try:
                stored = mb.decode(raw) or {}
            except RemoteProtocolError as e:
                self.unreadable[MEMBERS_KEY] = str(e)
                self._info(f"Persisted IPAM members are unreadable ({e}); learning them again")
        self.members.load(stored)
        # Our restated statement rides along with the next write rather than forcing one: a router on a full disk
        # still launches, and a statement lost with a store is restated above the old one when it comes back.
        self._members_lazy = True
        self.members_sink.gossip_broadcast(mb.MembersGossipData(self.members, {self.name}))

    def _overwrite(self, message: str) -> None:
        self._info(message)
        self._dirty |= {NAME_KEY, RING_KEY, OWNED_KEY}

    # ===================================================================================== entry/exit bookkeeping

    class _Entry:
        def __init__(self, alloc: Allocator, now: float | None) -> None:
            self.alloc = alloc
            if now is not None:
                alloc._now = max(alloc._now, now)

        def __enter__(self) -> None:
            self.alloc._depth += 1

        def __exit__(self, *exc: object) -> None:
            a = self.alloc
            a._depth -= 1
            if a._depth == 0:
                a._finish()

    def _entry(self, now: float | None = None) -> Allocator._Entry:
        return Allocator._Entry(self, now)

    def deliver(self, done: Done, result: Result) -> None:
        """Queue an operation's result; it is handed over after persistence (see the module docstring)."""
        self._results.append((done, result))

    def _finish(self) -> None:
        """After every entry point: report free space (bumps versions), persist, then deliver results."""
        self._report_free_space()
        if self._dirty:
            items: dict[str, bytes] = {}
            if RING_KEY in self._dirty or NAME_KEY in self._dirty:
                items[NAME_KEY] = wire.encode_peer_name(self.name)
                items[RING_KEY] = wire.encode_ring(self.ring)
            if OWNED_KEY in self._dirty:
                items[OWNED_KEY] = self._encode_owned()
            if MEMBERS_KEY in self._dirty or self._members_lazy:
                items[MEMBERS_KEY] = mb.encode(self.members.table)
                self._dirty.add(MEMBERS_KEY)
            dirty, self._dirty = self._dirty, set()
            if self.persist is not None:
                try:
                    self.persist(items)
                    self.unsaved = None
                    self._members_lazy = False
                except StateError as e:
                    self.unsaved = str(e)
                    self._dirty |= dirty
                    self._undo_unsaved(str(e))
        self._added.clear()
        while self._results:
            done, result = self._results.pop(0)
            done(result)

    def _undo_unsaved(self, reason: str) -> None:
        """The state of this entry could not be written: addresses taken for callers are given back and their
        operations fail, so nobody uses an address the disk does not record."""
        failed: set[int] = set()
        for done, ident, cidr in reversed(self._added):
            if self.remove_owned(ident, cidr.addr):
                self._free_space(cidr.addr)
            failed.add(id(done))
        if not failed:
            return
        message = f"address not given, because it could not be saved: {reason}"
        self._results = [
            (done, Result(error=message) if id(done) in failed and result.ok else result)
            for done, result in self._results
        ]

    def _attempt(self, op: Operation) -> bool:
        outer, self._trying = self._trying, op
        try:
            return op.try_(self)
        finally:
            self._trying = outer

    def _encode_owned(self) -> bytes:
        frags = self._owned_frags
        for ident in self._owned_dirty:
            o = self.owned.get(ident)
            if o is None:
                frags.pop(ident, None)
            else:
                frags[ident] = wire.owned_fragment(ident, o)
        self._owned_dirty.clear()
        if list(frags) != list(self.owned):  # an order changed behind our back: rebuild (never expected)
            self._owned_frags = frags = {k: wire.owned_fragment(k, o) for k, o in self.owned.items()}
        return wire.encode_owned_fragments(list(frags.values()))

    def _persist_ring(self) -> None:
        self._dirty.add(RING_KEY)

    def _persist_owned(self, *idents: str) -> None:
        self._dirty.add(OWNED_KEY)
        self._owned_dirty.update(dict.fromkeys(idents))

    # ===================================================================================== operations (API)

    def _do(self, op: Operation, queue: list[Operation]) -> Operation:
        if self.shutting_down:
            op.cancel(self)
        elif not self._attempt(op):
            queue.append(op)
        return op

    def allocate(self, ident: str, subnet: CIDR, is_container: bool, now: float, done: Done) -> Operation:
        """An address for ``ident`` in ``subnet`` (the one it has there already, if any)."""
        with self._entry(now):
            return self._do(Allocate(ident, subnet, is_container, done), self.pending_allocates)

    def claim(
        self,
        ident: str,
        cidr: CIDR,
        is_container: bool,
        now: float,
        done: Done,
        no_error_on_unknown: bool = False,
    ) -> Operation:
        """Record that ``ident`` uses ``cidr`` (asking its owner for it if another peer owns it).

        An address outside our range is recorded for ``ident`` on this peer only, as Weave does: no other peer
        hears of it, but no other container here gets it. What can never be a host address is refused.
        """
        with self._entry(now):
            op = Claim(ident, cidr, is_container, no_error_on_unknown, done)
            refusal = claim_refusal(cidr)
            if refusal is not None:
                op.refuse(self, refusal)
                return op
            return self._do(op, self.pending_claims)

    def prime(self, now: float, done: Done) -> Operation:
        with self._entry(now):
            return self._do(Prime(done), self.pending_primes)

    def cancel(self, op: Operation, now: float) -> None:
        """The caller went away: drop a pending operation (no-op if it already finished)."""
        with self._entry(now):
            for queue in (self.pending_allocates, self.pending_claims, self.pending_primes):
                if op in queue:
                    queue.remove(op)
                    op.cancel(self)

    def lookup(self, ident: str, r: Range) -> list[CIDR]:
        return self.owned_in_range(ident, r)

    def owned_all(self) -> dict[str, list[CIDR]]:
        return {ident: list(o.cidrs) for ident, o in self.owned.items()}

    def free(self, ident: str, addr: int, now: float) -> str | None:
        """Release one address; an error message if ``ident`` does not hold it."""
        with self._entry(now):
            if self.remove_owned(ident, addr):
                self._free_space(addr)
                log.debug("[allocator %s] Freed %s for %s", self.name, ip_str(addr), ident)
                return None
            return f"Free: address {ip_str(addr)} not found for {ident}"

    def delete(self, ident: str, now: float) -> str | None:
        """Release every address of ``ident``."""
        with self._entry(now):
            return self._delete(ident)

    def _delete(self, ident: str) -> str | None:
        cidrs = self._remove_all_owned(ident)
        if not cidrs:
            return f"Delete: no addresses for {ident}"
        for c in cidrs:
            self._free_space(c.addr)
        return None

    def _free_space(self, addr: int) -> None:
        self.orphans.pop(addr, None)
        if self.space.is_allocated(addr):
            self.space.free_addr(addr)

    def container_died(self, ident: str, now: float) -> None:
        """Docker ``die`` (or the namespace/process is gone): free after the grace period unless it starts."""
        with self._entry(now):
            if self._has_owned_by_container(ident):
                log.debug("[allocator %s] Container %s died; noting to remove later", self.name, ident)
                self.dead[ident] = now
            self._cancel_ops_for(self.pending_allocates, ident)
            self._cancel_ops_for(self.pending_claims, ident)

    def container_started(self, ident: str, now: float) -> None:
        with self._entry(now):
            self.dead.pop(ident, None)

    def container_destroyed(self, ident: str, now: float) -> None:
        with self._entry(now):
            if self._has_owned_by_container(ident):
                log.debug("[allocator %s] Container %s destroyed; removing addresses", self.name, ident)
                self._delete(ident)
                self.dead.pop(ident, None)

    def prune_owned(self, live: Iterable[str], now: float) -> None:
        """Free the addresses of containers that are no longer there (at startup)."""
        keep = set(live)
        with self._entry(now):
            for ident, o in list(self.owned.items()):
                if o.is_container and ident not in keep:
                    log.info("[allocator %s] Deleting old entry %s: %s", self.name, ident, [str(c) for c in o.cidrs])
                    for c in o.cidrs:
                        self._free_space(c.addr)
                    del self.owned[ident]
                    self._persist_owned(ident)

    def _cancel_ops_for(self, queue: list[Operation], ident: str) -> bool:
        found = False
        for op in list(queue):
            if op.for_container(ident):
                queue.remove(op)
                op.cancel(self)
                found = True
        return found

    def shutdown(self, now: float) -> PeerName:
        """``weave reset``: cancel everything and hand our ranges to a live peer. Returns the heir."""
        with self._entry(now):
            self._info("Shutdown")
            self.shutting_down = True
            for queue in (self.pending_claims, self.pending_allocates, self.pending_primes):
                ops, queue[:] = list(queue), []
                for op in ops:
                    op.cancel(self)
            heir = self._pick_peer_for_transfer()
            self.ring.transfer(self.name, heir)
            self.space.clear()
            if heir != UNKNOWN_PEER:
                self._info(f"Handing our IP ranges to {self._describe(heir)}")
                self._persist_ring()
                self.sink.gossip_broadcast(self.gossip_data())
            return heir

    def admin_takeover(self, peer: str, now: float) -> int:
        """``rmpeer``: take over a dead peer's ranges; the number of addresses gained."""
        with self._entry(now):
            name = self._lookup_peername(peer)
            if name == self.name:
                self._warn("attempt to take over range from ourself")
                raise TakeoverError(f"cannot remove peer {peer}: it is this peer")
            if self.view.is_reachable(name):
                raise TakeoverError(
                    f"cannot remove peer {peer}: it is reachable; run 'weave reset' on it instead, or stop it first"
                )
            return self._takeover(name, automatic=False)

    def _takeover(self, name: PeerName, automatic: bool) -> int:
        moved = self.ring.transfer(name, self.name)
        if not moved:
            return 0
        before = self.space.num_free()
        self._ring_updated()
        gained = self.space.num_free() - before
        if automatic:
            self.quarantine.extend(moved)
        self.sink.gossip_broadcast(self.gossip_data())
        return gained

    # ===================================================================================== ring & consensus

    def establish_ring(self) -> None:
        if not self.ring.empty() or self.awaiting_consensus or self.paxos is None:
            return
        self.awaiting_consensus = True
        self.paxos.set_quorum(self.quorum())
        self._propose()
        agreed = self.paxos.consensus()
        if agreed is not None:
            self._create_ring(agreed.value)

    def quorum(self) -> int:
        if self.config.peer_count > 0:
            return self.config.peer_count // 2 + 1
        q = (self.view.target_count() + 1) // 2 + 1
        log.info("Assuming quorum size of %d", q)
        return q

    def _propose(self) -> None:
        assert self.paxos is not None
        log.debug("[allocator %s] Paxos proposing", self.name)
        self.paxos.propose()
        self.sink.gossip_broadcast(self.gossip_data())

    def _create_ring(self, peers: Iterable[PeerName]) -> None:
        agreed = normalize_consensus(peers)
        log.info("[allocator %s] IP allocation ring created for %s", self.name, ", ".join(map(str, agreed)))
        self.ring.claim_for_peers(agreed)
        self._ring_updated()
        self.sink.gossip_broadcast(self.gossip_data())

    def _ring_updated(self) -> None:
        if self.awaiting_consensus:
            self.awaiting_consensus = False
        if not self.ring.empty():
            self.paxos = None
        self._persist_ring()
        self.space.update_ranges(self.ring.owned_ranges())
        self._settle_orphans()
        self._try_pending_ops()

    def _try_ops(self, queue: list[Operation]) -> None:
        for op in list(queue):
            if op not in queue:
                continue
            if self._attempt(op) and op in queue:
                queue.remove(op)

    def _try_pending_ops(self) -> None:
        self._try_ops(self.pending_primes)
        self._try_ops(self.pending_claims)
        self._try_ops(self.pending_allocates)

    def _have_pending_ops(self) -> bool:
        return bool(self.pending_primes or self.pending_claims or self.pending_allocates)

    # ===================================================================================== space

    def allocate_address(self, r: Range) -> int | None:
        """The lowest free address of ``r``, avoiding reclaimed space while there is other."""
        if self.quarantine:
            for piece in subtract_ranges(r, self.quarantine):
                addr = self.space.allocate(piece)
                if addr is not None:
                    return addr
        return self.space.allocate(r)

    def _donate(self, r: Range) -> Range | None:
        if self.quarantine:
            for piece in subtract_ranges(r, self.quarantine):
                chunk = self.space.donate(piece)
                if chunk is not None:
                    return chunk
        return self.space.donate(r)

    def _has_allocations(self, ranges: list[Range]) -> bool:
        return any(self.space.num_free_in_range(r) != r.size for r in ranges)

    def _report_free_space(self) -> None:
        if self.ring.empty():
            return
        ranges = self.ring.owned_ranges()
        if not ranges:
            return
        if self.ring.report_free({r.start: self.space.num_free_in_range(r) for r in ranges}):
            self._persist_ring()

    # ===================================================================================== owned addresses

    def _has_owned_by_container(self, ident: str) -> bool:
        o = self.owned.get(ident)
        return o is not None and o.is_container

    def add_owned(self, ident: str, cidr: CIDR, is_container: bool) -> None:
        o = self.owned.get(ident)
        if o is None:
            o = self.owned[ident] = Owned(is_container, [])
        o.is_container = is_container
        o.cidrs.append(cidr)
        self._persist_owned(ident)
        op = self._trying
        if op is not None and op.waiter is not None:
            self._added.append((op.waiter, ident, cidr))

    def _remove_all_owned(self, ident: str) -> list[CIDR]:
        o = self.owned.pop(ident, None)
        self._persist_owned(ident)
        return o.cidrs if o is not None else []

    def remove_owned(self, ident: str, addr: int) -> bool:
        o = self.owned.get(ident)
        if o is None:
            return False
        for i, c in enumerate(o.cidrs):
            if c.addr == addr:
                del o.cidrs[i]
                if not o.cidrs:
                    del self.owned[ident]
                self._persist_owned(ident)
                return True
        return False

    def owned_in_range(self, ident: str, r: Range) -> list[CIDR]:
        o = self.owned.get(ident)
        return [c for c in o.cidrs if r.contains(c.addr)] if o is not None else []

    def find_owner(self, addr: int) -> str:
        for ident, o in self.owned.items():
            if any(c.addr == addr for c in o.cidrs):
                return ident
        return ""

    # ===================================================================================== messages out

    def send_space_request(self, dest: PeerName, r: Range) -> bool:
        if not self.view.is_reachable(dest):
            return False
        self.sink.gossip_unicast(dest, wire.encode_unicast(wire.MSG_SPACE_REQUEST, wire.encode_range(r)))
        return True

    def _send_ring_update(self, dest: PeerName) -> None:
        if self.view.is_reachable(dest):
            self.sink.gossip_unicast(dest, wire.encode_unicast(wire.MSG_RING_UPDATE, self.encode_state()))

    def encode_state(self) -> bytes:
        msg = GossipMessage(now=int(self._now + self.config.wall_offset), nicknames=dict(self.nicknames))
        if self.ring.empty():
            msg.paxos = self.paxos.gossip_state() if self.paxos is not None else None
        else:
            msg.ring = self.ring
        return wire.encode_gossip(msg)

    def gossip_data(self) -> IpamGossipData:
        return IpamGossipData(self)

    # ===================================================================================== Gossiper

    def on_gossip_unicast(self, src: PeerName, msg: bytes, now: float) -> None:
        with self._entry(now), self._guard(src):
            if not msg:
                raise self._refuse(src, RemoteProtocolError("empty IPAM unicast"))
            kind, body = msg[0], msg[1:]
            if kind == wire.MSG_SPACE_REQUEST:
                r = self._decode_range(src, body)
                log.debug("[allocator %s] Peer %s asked me for space", self.name, src)
                if not self.ring.empty() and not self.shutting_down:
                    self._donate_space(r, src)
            elif kind == wire.MSG_SPACE_REQUEST_DENIED:
                self._space_request_denied(src, self._decode_range(src, body))
            elif kind == wire.MSG_RING_UPDATE:
                self._update(src, body)
            else:
                self.refused_count += 1
                log.info("[allocator %s] ignoring IPAM unicast of unknown kind %d from %s", self.name, kind, src)

    def on_gossip_broadcast(self, src: PeerName, update: bytes, now: float) -> GossipData | None:
        with self._entry(now), self._guard(src):
            self._update(src, update)
        return self.gossip_data()

    def gossip(self, now: float) -> GossipData | None:
        return self.gossip_data()

    def on_gossip(self, update: bytes, now: float) -> GossipData | None:
        with self._entry(now), self._guard(UNKNOWN_PEER):
            self._update(UNKNOWN_PEER, update)
        return None

    @contextlib.contextmanager
    def _guard(self, src: PeerName) -> Iterator[None]:
        """Wire input must never take the router down: a failure of ours while handling it (a bug) is logged
        with its traceback, counted, and refuses the message like malformed input would."""
        try:
            yield
        except RemoteProtocolError:
            raise
        except Exception as e:
            log.exception("[allocator %s] internal error handling an IPAM message from %s", self.name, src)
            raise self._refuse(src, RemoteProtocolError(f"IPAM could not handle the message: {e!r}")) from e

    def _decode_range(self, src: PeerName, body: bytes) -> Range:
        try:
            return wire.decode_range(body)
        except RemoteProtocolError as e:
            raise self._refuse(src, e) from e

    def _refuse(self, src: PeerName, err: RemoteProtocolError) -> RemoteProtocolError:
        self.refused_count += 1
        who = f" from {self._describe(src)}" if src != UNKNOWN_PEER else ""
        self.refusals.append(f"{err}{who}")
        log.warning("[allocator %s] refused IPAM message%s: %s", self.name, who, err)
        return err

    def _update(self, sender: PeerName, payload: bytes) -> None:
        try:
            data = wire.decode_gossip(payload)
        except RemoteProtocolError as e:
            raise self._refuse(sender, e) from e
        if data.ring is not None:
            try:
                updated, yielded = self.ring.merge(
                    data.ring, self._has_allocations, yield_transferred=self.config.reclaim_after > 0
                )
            except DifferentSeeds as e:
                raise self._refuse(
                    sender,
                    RemoteProtocolError(
                        "IP allocation was seeded by different peers "
                        f"(received: [{' '.join(self._annotate(data.ring.seeds))}], "
                        f"ours: [{' '.join(self._annotate(self.ring.seeds))}])"
                    ),
                ) from e
            except DifferentRange as e:
                raise self._refuse(
                    sender,
                    RemoteProtocolError(
                        f"Incompatible IP allocation ranges (received: {data.ring.range().as_cidr_string()}, "
                        f"ours: {self.ring.range().as_cidr_string()})"
                    ),
                ) from e
            except RingError as e:
                raise self._refuse(sender, e) from e
            self.nicknames.update(data.nicknames)
            if yielded:
                self._yield(yielded)
            if updated:
                self._prune_nicknames()
                self._ring_updated()
            return
        self.nicknames.update(data.nicknames)
        if not self.ring.empty():
            if sender != UNKNOWN_PEER:
                self._send_ring_update(sender)
        elif data.paxos is not None:
            if self.paxos is not None and self.paxos.update(data.paxos):
                if self.paxos.think():
                    self.sink.gossip_broadcast(self.gossip_data())
                agreed = self.paxos.consensus()
                if agreed is not None:
                    self._create_ring(agreed.value)
        elif self.paxos is not None and self.paxos.is_elector() and sender != UNKNOWN_PEER:
            self.establish_ring()

    def _donate_space(self, r: Range, to: PeerName) -> None:
        chunk = self._donate(r)
        if chunk is None:
            log.debug("[allocator %s] No space to give to peer %s", self.name, to)
            if self.view.is_reachable(to):
                self.sink.gossip_unicast(to, wire.encode_unicast(wire.MSG_SPACE_REQUEST_DENIED, wire.encode_range(r)))
        else:
            log.debug("[allocator %s] Giving range %s to %s", self.name, chunk, to)
            self.ring.grant_range_to_host(chunk.start, chunk.end, to)
            self._persist_ring()
            self.sink.gossip_broadcast(self.gossip_data())
        self._send_ring_update(to)

    def _space_request_denied(self, sender: PeerName, r: Range) -> None:
        for op in list(self.pending_claims):
            if isinstance(op, Claim) and r.contains(op.cidr.addr):
                op.denied_by(self, sender, None)
                self.pending_claims.remove(op)
        for addr, (ident, _, prefix) in list(self.orphans.items()):
            if r.contains(addr):
                del self.orphans[addr]
                msg = (
                    f"address {ip_str(addr)}/{prefix} of {ident} was handed out again by "
                    f"{self._describe(sender)} while we were cut off: duplicate address"
                )
                self.conflicts.append(msg)
                log.error("[allocator %s] %s", self.name, msg)

    # ===================================================================================== nicknames & peers

    def _lookup_peername(self, text: str) -> PeerName:
        for name, nick in sorted(self.nicknames.items()):
            if nick == text:
                return name
        try:
            return PeerName.parse(text)
        except ConfigError as e:
            raise TakeoverError(f"unknown peer {text}: not a nickname or peer name known to IPAM") from e

    def _prune_nicknames(self) -> None:
        ring_peers = self.ring.peer_names()
        for name in list(self.nicknames):
            if name not in ring_peers and not self.view.is_known_peer(name) and name != self.name:
                del self.nicknames[name]
        if self.members.prune(self._worth_knowing()):
            self._dirty.add(MEMBERS_KEY)

    def _worth_knowing(self) -> Callable[[PeerName], bool]:
        """Keep what a peer said of itself while it owns space or is in the topology (as for nicknames)."""
        owners = self.ring.peer_names()
        return lambda name: name == self.name or name in owners or self.view.is_known_peer(name)

    def peer_gone(self, name: PeerName) -> None:
        """The topology forgot a peer: forget its nickname unless the ring still names it."""
        if name not in self.ring.peer_names() and name != self.name:
            self.nicknames.pop(name, None)
            if name in self.members.table:
                with self._entry():
                    self.members.prune(self._worth_knowing())
                    self._dirty.add(MEMBERS_KEY)

    def on_members(self, src: PeerName, update: bytes, now: float, relay_all: bool) -> GossipData | None:
        """Statements on ``weavenet-ipam-members``: merge; relay a broadcast on, and what was new of gossip."""
        with self._entry(now), self._guard(src):
            try:
                received = mb.decode(update)
            except RemoteProtocolError as e:
                raise self._refuse(src, e) from e
            if received is None:  # a later format: nothing we can use, nothing wrong either
                log.debug("[allocator %s] ignoring IPAM members message of format %d", self.name, update[0])
                return None
            changed = self.members.merge(received, self._worth_knowing())
            if changed:
                self._dirty.add(MEMBERS_KEY)
            if self.name in changed:  # an older incarnation of ours was still talked about: say who we are now
                self.members_sink.gossip_broadcast(mb.MembersGossipData(self.members, {self.name}))
            relayed = set(received) & set(self.members.table) if relay_all else changed
            return mb.MembersGossipData(self.members, relayed) if relayed else None

    def _pick_peer_for_transfer(self) -> PeerName:
        known = self.view.is_known_peer
        heir = self.ring.pick_peer_for_transfer(known)
        if heir != UNKNOWN_PEER:
            return heir
        for name in sorted(self.nicknames):
            if name != self.name and known(name):
                return name
        heir = self.ring.pick_peer_for_transfer(lambda _: True)
        if heir != UNKNOWN_PEER:
            return heir
        for name in sorted(self.nicknames):
            if name != self.name:
                return name
        return UNKNOWN_PEER

    def _describe(self, name: PeerName) -> str:
        nick = self.nicknames.get(name)
        return f"{name}({nick})" if nick is not None else str(name)

    def _annotate(self, names: list[PeerName]) -> list[str]:
        return [self._describe(n) for n in names]

    # ===================================================================================== reclaim extension

    def _yield(self, lost: list[Range]) -> None:
        """Our ranges were taken over (reclaimed while we were cut off): give them up, re-claim what is in use."""
        count = 0
        for r in lost:
            for addr in self.space.allocated_in(r):
                ident = self.find_owner(addr)
                if ident:
                    o = self.owned[ident]
                    prefix = next(c.prefix_len for c in o.cidrs if c.addr == addr)
                    self.orphans[addr] = (ident, o.is_container, prefix)
                    count += 1
            self.space.remove(r)
        self._warn(
            f"our IP ranges {', '.join(map(str, lost))} were taken over by another peer while we were "
            f"unreachable; re-claiming the {count} addresses in use there"
        )
        self._retry_orphans()

    def _settle_orphans(self) -> None:
        """Orphaned addresses whose range is ours again are simply in use again."""
        for addr in list(self.orphans):
            if self.ring.owner(addr) == self.name and self.space.is_free(addr):
                self.space.claim(addr)
                del self.orphans[addr]

    def _retry_orphans(self) -> None:
        for addr in list(self.orphans):
            owner = self.ring.owner(addr)
            if owner != self.name and owner != UNKNOWN_PEER:
                self.send_space_request(owner, Range(addr, addr + 1))

    def _reclaim_tick(self, now: float) -> None:
        if self.ring.empty() or self.shutting_down:
            return
        reachable = self.view.is_reachable
        self.reclaimer.observe(self.ring, self.name, reachable, now)
        absent_since = dict(self.reclaimer.absent_since)
        owners = self.ring.peer_names()
        reached = sum(1 for p in owners if p == self.name or reachable(p))
        for peer in self.reclaimer.due(self.ring, self.name, reachable, now, self.members):
            gained = self._takeover(peer, automatic=True)
            self.reclaims += 1
            self.reclaimed_ips += gained
            self._warn(
                f"reclaimed {gained} IPs from {self._describe(peer)}, unreachable for "
                f"{duration(now - absent_since.get(peer, now))} ({reached} of {len(owners)} peers owning IP space "
                "reachable, and this peer is the lowest-named of them that reclaims automatically)"
            )

    # ===================================================================================== timer

    def get_timer(self) -> float | None:
        return self._next_tick

    def handle_timer(self, now: float) -> None:
        with self._entry(now):
            if now < self._next_tick:
                return
            self._next_tick = now + self.config.tick
            if self.awaiting_consensus and self.paxos is not None:
                self._propose()
            elif self._have_pending_ops():
                if self.ring.empty():
                    self.establish_ring()
                else:
                    self._try_pending_ops()
            self._remove_dead_containers(now)
            self._reclaim_tick(now)
            if self.orphans:
                self._settle_orphans()
                self._retry_orphans()

    def _remove_dead_containers(self, now: float) -> None:
        for ident, died in list(self.dead.items()):
            if died < now - CONTAINER_DIED_TIMEOUT:
                if self._delete(ident) is None:
                    log.debug("[allocator %s] Removed addresses for container %s", self.name, ident)
                del self.dead[ident]

    # ===================================================================================== status

    def status(self, default_subnet: CIDR | None, now: float | None = None) -> IPAMStatus:
        """The ``IPAM`` part of the report (Weave's ``ipam.Status``), with weavenet's reclaim and refusal notes."""
        t = self._now if now is None else now
        paxos = None
        if self.awaiting_consensus and self.paxos is not None:
            paxos = self.paxos.status()
        entries = [
            IPAMEntryStatus(
                ip_str(info.range.start),
                info.range.size,
                str(info.peer),
                self.nicknames.get(info.peer, ""),
                self.view.is_known_peer(info.peer),
                info.version,
            )
            for info in self.ring.all_range_info()
        ]
        claims = [
            IPAMClaimStatus(op.ident, CIDRValue(ip_str(op.cidr.addr), op.cidr.prefix_len))
            for op in self.pending_claims
            if isinstance(op, Claim)
        ]
        allocates = [op.describe() for op in self.pending_allocates if isinstance(op, Allocate)]
        stuck = self.reclaimer.stuck(self.ring, self.name, self.view.is_reachable, t, self._describe, self.members)
        return IPAMStatus(
            paxos=paxos,
            range=str(self.universe),
            range_num_ips=self.universe.size,
            active_ips=self.space.num_owned(),
            default_subnet=str(default_subnet) if default_subnet is not None else "",
            entries=entries or None,
            pending_claims=claims or None,
            pending_allocates=allocates or None,
            unreachable=[
                IPAMUnreachable(str(s.peer), self.nicknames.get(s.peer, ""), s.ips, s.absent_for, s.plan, s.reclaim_in)
                for s in stuck
            ],
            reclaim_after=self.config.reclaim_after,
            reclaims=self.reclaims,
            reclaimed_ips=self.reclaimed_ips,
            refused=self.refused_count,
            refusals=list(self.refusals),
            conflicts=list(self.conflicts),
            orphans=len(self.orphans),
        )

    # ===================================================================================== logging

    def _info(self, message: str) -> None:
        log.info("[allocator %s] %s", self.name, message)

    def _warn(self, message: str) -> None:
        log.warning("[allocator %s] %s", self.name, message)
