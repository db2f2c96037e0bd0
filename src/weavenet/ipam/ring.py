"""The ring: who owns which part of the address universe, as a CRDT (Weave's ``ipam/ring``).

Theory of operation. The universe ``[start, end)`` is cut at *tokens*; the entry at token T, owned by peer P,
covers ``[T, next token)`` (the last one wraps to the first). Only an entry's owner changes it (bumping its
``version``): it reports how many addresses are free there, hands part of it to another peer
(:meth:`Ring.grant_range_to_host`, which may add up to two tokens) or, on ``weave reset``/``rmpeer``, hands
all of a peer's entries over (:meth:`Ring.transfer`, version + 100 so the transfer wins over concurrent
changes). Replicas merge token by token, the higher version winning, so every peer converges on the same ring
whatever order gossip arrives in.

Merging must never let two peers believe they own one address. Weave refuses (and drops the connection that
brought it) any update that would take space with allocations away from us, split a range of ours that has
allocations, or disagree with ours at the same version; and it refuses rings seeded by different peers or over
a different universe. Those rules are kept exactly. The received ring is checked completely first and the
merge builds a new entry list, installed only when nothing was refused, so a bad ring changes nothing.

One extension (off unless the caller asks): ``yield_transferred`` lets a newer version of one of our entries
that names another owner win even though we have allocations there. Only a transfer of our space made while
we were cut off (the automatic reclaim of a peer believed gone, or ``rmpeer``) produces that; Weave refuses it
forever, which leaves the returning peer unable to rejoin. The caller gets the ranges it lost and re-claims
its allocated addresses in them from the new owner.
"""

from __future__ import annotations

import random
from bisect import bisect_left, bisect_right
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field

from weavenet.core.names import PeerName
from weavenet.errors import RemoteProtocolError
from weavenet.ipam.address import ADDRESS_MASK, Range, ip_str

UNKNOWN_PEER = PeerName(0)
TRANSFER_VERSION_BUMP = 100


class RingError(RemoteProtocolError):
    """A received ring was refused (it is never merged in part)."""


class DifferentSeeds(RingError):
    def __init__(self) -> None:
        super().__init__("Received ring was seeded differently from ours")


class DifferentRange(RingError):
    def __init__(self) -> None:
        super().__init__("Received range differs from ours")


@dataclass(slots=True)
class Entry:
    token: int
    peer: PeerName
    version: int = 0
    free: int = 0

    def same(self, other: Entry) -> bool:
        """Weave's ``Equal``: the free count is not compared."""
        return self.token == other.token and self.peer == other.peer and self.version == other.version

    def copy(self) -> Entry:
        return Entry(self.token, self.peer, self.version, self.free)


@dataclass(slots=True)
class RangeInfo:
    peer: PeerName
    range: Range
    version: int


@dataclass
class Ring:
    start: int
    end: int
    peer: PeerName  # the owner of this replica
    entries: list[Entry] = field(default_factory=list)
    seeds: list[PeerName] = field(default_factory=list)

    # -- basics -------------------------------------------------------------------------------------------------

    def copy(self) -> Ring:
        return Ring(self.start, self.end, self.peer, [e.copy() for e in self.entries], list(self.seeds))

    def empty(self) -> bool:
        return not self.entries

    def range(self) -> Range:
        return Range(self.start, self.end)

    def contains(self, addr: int) -> bool:
        return self.start <= addr < self.end

    def _entry(self, i: int, entries: list[Entry] | None = None) -> Entry:
        es = self.entries if entries is None else entries
        return es[i % len(es)]

    def distance(self, start: int, end: int) -> int:
        """From ``start`` to ``end`` going up, wrapping at the end of the universe."""
        if end > start:
            return end - start
        return (self.end - start) + (end - self.start)

    def check(self, entries: list[Entry] | None = None) -> None:
        """The invariants: sorted unique tokens inside the universe, free counts no bigger than their range."""
        es = self.entries if entries is None else entries
        for i in range(1, len(es)):
            if es[i - 1].token > es[i].token:
                raise RingError("Ring not sorted")
            if es[i - 1].token == es[i].token:
                raise RingError("Token appears twice in ring")
        if not es:
            return
        if es[0].token < self.start or es[-1].token >= self.end:
            raise RingError("Token is out of range")
        for i, e in enumerate(es):
            nxt = es[(i + 1) % len(es)]
            d = self.distance(e.token, nxt.token)
            if e.free > d:
                raise RingError(
                    f"Entry {ip_str(e.token)}-{ip_str(nxt.token)} reporting too much free space: {e.free} > {d}"
                )

    def _index_le(self, addr: int) -> int:
        """Index of the right-most entry with token <= addr (-1 wraps to the last)."""
        return bisect_right([e.token for e in self.entries], addr) - 1

    def owner(self, addr: int) -> PeerName:
        if not self.entries:
            return UNKNOWN_PEER
        return self._entry(self._index_le(addr)).peer

    def peer_names(self) -> set[PeerName]:
        return {e.peer for e in self.entries}

    def split_over_zero(self, ranges: list[Range]) -> list[Range]:
        """Make ranges (sorted, the last possibly wrapping past the end) into proper sorted ranges."""
        if not ranges:
            return ranges
        out = list(ranges)
        last = out[-1]
        if last.end == self.start:
            out[-1] = Range(last.start, self.end)
        elif last.end <= last.start:
            out[-1] = Range(last.start, self.end)
            out.insert(0, Range(self.start, last.end))
        return out

    def make_ranges(self, start: int, end: int) -> list[Range]:
        return self.split_over_zero([Range(start, end)])

    def owned_ranges(self, peer: PeerName | None = None) -> list[Range]:
        who = self.peer if peer is None else peer
        out = [Range(e.token, self._entry(i + 1).token) for i, e in enumerate(self.entries) if e.peer == who]
        return self.split_over_zero(out)

    def all_range_info(self) -> list[RangeInfo]:
        out = []
        for i, e in enumerate(self.entries):
            for r in self.make_ranges(e.token, self._entry(i + 1).token):
                out.append(RangeInfo(e.peer, r, e.version))
        return out

    def owned_size(self, peer: PeerName) -> int:
        return sum(r.size for r in self.owned_ranges(peer))

    # -- changes made by the owner ------------------------------------------------------------------------------

    def claim_for_peers(self, peers: list[PeerName]) -> None:
        """Split the empty ring among ``peers`` (sorted, de-duplicated) in CIDR-aligned, near-equal shares."""
        if self.entries:
            raise ValueError("claim_for_peers on a ring that has entries")
        if not peers:
            raise ValueError("claim_for_peers needs at least one peer")
        self._subdivide(self.start, self.end, list(peers))
        self.seeds = list(peers)

    def _subdivide(self, frm: int, to: int, peers: list[PeerName]) -> None:
        share = to - frm
        if share == 0:
            return
        if share == 1 or len(peers) == 1:
            self._insert(Entry(frm, peers[0], 0, share))
            return
        mid = frm + share // 2
        self._subdivide(frm, mid, peers[: len(peers) // 2])
        self._subdivide(mid + share % 2, to, peers[len(peers) // 2 :])

    def _insert(self, e: Entry) -> None:
        tokens = [x.token for x in self.entries]
        i = bisect_left(tokens, e.token)
        if i < len(tokens) and tokens[i] == e.token:
            raise ValueError("Trying to insert an existing token!")
        self.entries.insert(i, e)

    def _get(self, token: int) -> Entry | None:
        tokens = [x.token for x in self.entries]
        i = bisect_left(tokens, token)
        if i < len(tokens) and tokens[i] == token:
            return self.entries[i]
        return None

    def grant_range_to_host(self, start: int, end: int, peer: PeerName) -> None:
        """Give ``[start, end)``, which we own, to ``peer`` (donation)."""
        if not (start < end and self.start <= start < self.end and self.start < end <= self.end and self.entries):
            raise ValueError("grant_range_to_host: bad range")
        pos = self._index_le(start)
        i = pos
        while i < len(self.entries) and self._entry(i).token < end:
            if self._entry(i).peer != self.peer:
                raise ValueError("grant_range_to_host: range not ours")
            i += 1
        start_free = min(self.distance(start, self._entry(pos + 1).token), self.distance(start, end))
        prev = self._entry(pos)
        if prev.token == start:
            _update(prev, peer, start_free)
        else:
            self._insert(Entry(start, peer, 0, start_free))
            pos += 1
            _update(prev, self.peer, self.distance(prev.token, start))
        i = pos + 1
        while i < len(self.entries) and self._entry(i).token < end:
            e = self._entry(i)
            _update(e, peer, min(e.free, self.distance(e.token, end)))
            i += 1
        if end == self.end:
            end = self.start
        if self._get(end) is not None:
            return
        end_free = self.distance(end, self._entry(i).token)
        self._insert(Entry(end, self.peer, 0, end_free))

    def report_free(self, freespace: dict[int, int]) -> bool:
        """Record the free counts of our ranges (keyed by range start); bumps the version of changed entries."""
        if not self.entries:
            return False
        freespace = dict(freespace)
        if self.start in freespace and self.entries[0].token != self.start:
            last = self.entries[-1].token
            freespace[last] = freespace.get(last, 0) + freespace.pop(self.start)
        updated = False
        tokens = [e.token for e in self.entries]
        for start, free in freespace.items():
            i = bisect_left(tokens, start)
            if i >= len(tokens) or tokens[i] != start or self.entries[i].peer != self.peer:
                raise ValueError(f"report_free for space we do not own at {ip_str(start)}")
            e = self.entries[i]
            if e.free == free:
                continue
            e.free = free
            e.version += 1
            updated = True
        return updated

    def transfer(self, frm: PeerName, to: PeerName) -> list[Range]:
        """Hand all of ``frm``'s entries to ``to``; returns the ranges moved."""
        moved = []
        for i, e in enumerate(self.entries):
            if e.peer == frm:
                e.peer = to
                e.version += TRANSFER_VERSION_BUMP
                moved.append(Range(e.token, self._entry(i + 1).token))
        return self.split_over_zero(moved)

    def pick_peer_for_transfer(self, is_valid: Callable[[PeerName], bool]) -> PeerName:
        for e in self.entries:
            if e.peer != self.peer and is_valid(e.peer):
                return e.peer
        return UNKNOWN_PEER

    def choose_peers_to_ask_for_space(self, start: int, end: int, rng: random.Random) -> list[PeerName]:
        """Peers with free space in ``[start, end)``, in an order weighted by how much they have."""
        space: dict[PeerName, int] = {}
        n = len(self.entries)
        for i, e in enumerate(self.entries):
            if i + 1 < n and ((self.entries[i + 1].token - 1) & ADDRESS_MASK) < start:
                continue
            if e.token >= end:
                break
            if e.free == 0 or e.peer == self.peer:
                continue
            space[e.peer] = space.get(e.peer, 0) + e.free
        weighted = sorted(((free * rng.random(), p) for p, free in sorted(space.items())), reverse=True)
        return [p for _, p in weighted]

    # -- merging --------------------------------------------------------------------------------------------------

    def merge(
        self,
        gossip: Ring,
        has_allocations: Callable[[list[Range]], bool],
        yield_transferred: bool = False,
    ) -> tuple[bool, list[Range]]:
        """Merge a received ring. Returns (changed, ranges of ours given up by ``yield_transferred``).

        Raises :class:`RingError` (and changes nothing) if the ring is refused.
        """
        gossip.check()
        if gossip.seeds and self.seeds and list(gossip.seeds) != list(self.seeds):
            raise DifferentSeeds()
        if self.start != gossip.start or self.end != gossip.end:
            raise DifferentRange()
        result, updated, yielded = self._merge_entries(gossip.entries, has_allocations, yield_transferred)
        for i, e in enumerate(result):
            d = self.distance(e.token, result[(i + 1) % len(result)].token)
            if e.peer == self.peer and e.free > d:
                e.free = d
        try:
            self.check(result)
        except RingError as err:
            raise RingError(f"Merge of incoming data causes: {err}") from err
        if not self.seeds:
            self.seeds = list(gossip.seeds)
        self.entries = result
        return updated, yielded

    def _merge_entries(
        self,
        other: list[Entry],
        has_allocations: Callable[[list[Range]], bool],
        yield_transferred: bool,
    ) -> tuple[list[Entry], bool, list[Range]]:
        es = self.entries
        ours = self.peer
        result: list[Entry] = []
        updated = False
        yielded: list[Range] = []
        previous_owner: PeerName | None = None

        def next_token(i: int) -> int:
            return es[(i + 1) % len(es)].token

        i = j = 0
        while i < len(es) and j < len(other):
            mine, theirs = es[i], other[j]
            if mine.token < theirs.token:
                result.append(mine.copy())
                previous_owner = mine.peer
                i += 1
            elif mine.token > theirs.token:
                if (
                    previous_owner == ours
                    and theirs.peer != ours
                    and has_allocations(self.make_ranges(theirs.token, mine.token))
                ):
                    raise RingError(
                        f"Peer {theirs.peer} says it owns the IP range from {ip_str(theirs.token)}, which I think I own"
                    )
                result.append(theirs.copy())
                updated, previous_owner = True, None
                j += 1
            else:
                if mine.version >= theirs.version:
                    if mine.version == theirs.version and not mine.same(theirs):
                        if mine.peer == ours and has_allocations(self.make_ranges(theirs.token, next_token(i))):
                            raise RingError(
                                f"Inconsistent entries for {ip_str(mine.token)}: owned by {mine.peer} "
                                f"but incoming message says {theirs.peer}"
                            )
                        if mine.free >= theirs.free:
                            result.append(mine.copy())
                            previous_owner = mine.peer
                        else:
                            result.append(theirs.copy())
                            updated, previous_owner = True, None
                    else:
                        result.append(mine.copy())
                        previous_owner = mine.peer
                elif mine.peer == ours:
                    ranges = self.make_ranges(mine.token, next_token(i))
                    if theirs.peer != ours and not has_allocations(ranges):
                        result.append(theirs.copy())
                        updated, previous_owner = True, None
                    elif theirs.peer == ours:
                        kept = mine.copy()
                        kept.version = theirs.version + 1
                        result.append(kept)
                    elif yield_transferred:
                        result.append(theirs.copy())
                        yielded.extend(ranges)
                        updated, previous_owner = True, None
                    else:
                        raise RingError(
                            f"Received update for IP range I own at {ip_str(mine.token)} v{mine.version}: "
                            f"incoming message says owner {theirs.peer} v{theirs.version}"
                        )
                else:
                    result.append(theirs.copy())
                    updated, previous_owner = True, None
                i += 1
                j += 1
        while i < len(es):
            result.append(es[i].copy())
            i += 1
        while j < len(other):
            theirs = other[j]
            if previous_owner == ours and theirs.peer != ours:
                raise RingError(
                    f"Peer {theirs.peer} says it owns the IP range from {ip_str(theirs.token)}, which I think I own"
                )
            result.append(theirs.copy())
            updated, previous_owner = True, None
            j += 1
        return result, updated, yielded

    def describe(self, nicknames: dict[PeerName, str] | None = None) -> str:
        names = nicknames or {}
        lines = [f"Ring [{ip_str(self.start)}, {ip_str(self.end)})"]
        for e in self.entries:
            nick = f" ({names[e.peer]})" if e.peer in names else ""
            lines.append(f"  {ip_str(e.token)} -> {e.peer}{nick} (v{e.version})")
        return "\n".join(lines)


def _update(e: Entry, peer: PeerName, free: int) -> None:
    e.peer = peer
    e.version += 1
    e.free = free


def normalize_consensus(peers: Iterable[PeerName]) -> list[PeerName]:
    """The agreed value sorted and de-duplicated (Paxos hands back names in no particular order)."""
    return sorted(set(peers))
