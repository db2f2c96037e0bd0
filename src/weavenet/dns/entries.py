"""weaveDNS entries: the records every peer holds for the whole cluster, and the rules that merge them.

Port of the data model of Weave's ``nameserver/entry.go``. An entry says "container C, registered at peer O,
answers to HOSTNAME at ADDR". Its identity is (hostname, origin, container, address); ``version`` and
``tombstone`` are the mergeable state. Deleting an entry does not remove it: it becomes a *tombstone*
(``tombstone`` = Unix time of deletion, ``version`` + 1), so that gossip still carrying the live entry cannot
bring it back. Merge rule, per identity: the higher version wins; at equal versions the later tombstone wins.
Those two rules make merging commutative and idempotent, which is what lets entries spread by gossip in any
order over any topology.

The store is kept sorted case-insensitively (lowercased hostname, then origin, container, address), so that a
lookup is a binary search and answers do not depend on the case a name was registered with. Weave keeps the
case-sensitive hostname in the identity but leaves it out of the order, which lets two registrations that
differ only in case land in either order; here the case-sensitive hostname is the last sort key, so the order
is total and a duplicate can never slip in.

Pure: time is passed in (``now``, Unix seconds), nothing here reads a clock.
"""

from __future__ import annotations

import bisect
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field, replace

TOMBSTONE_TIMEOUT = 30 * 60  # tombstones outlive the largest accepted clock skew (and gossip propagation)


@dataclass(slots=True)
class Entry:
    """One record. ``addr`` is the IPv4 address as its big-endian 32-bit value (Weave's ``address.Address``)."""

    container_id: str
    origin: int
    addr: int
    hostname: str
    version: int = 0
    tombstone: int = 0
    lhostname: str = field(default="", compare=False, repr=False)

    def __post_init__(self) -> None:
        self.lhostname = self.hostname.lower()

    def sort_key(self) -> tuple[str, int, str, int, str]:
        """The store order (case-insensitive first; see the module docstring)."""
        return (self.lhostname, self.origin, self.container_id, self.addr, self.hostname)

    def wire_key(self) -> tuple[str, int, str, int]:
        """The order entries go on the wire in: case-sensitive, as Weave sorts its gossip."""
        return (self.hostname, self.origin, self.container_id, self.addr)

    def same(self, other: Entry) -> bool:
        """Same identity (what Weave's ``equal`` compares; version and tombstone are state, not identity)."""
        return (
            self.hostname == other.hostname
            and self.origin == other.origin
            and self.container_id == other.container_id
            and self.addr == other.addr
        )

    def merge_from(self, other: Entry) -> bool:
        """Take ``other``'s state if it is newer; True if anything changed."""
        if other.version > self.version:
            self.version = other.version
            self.tombstone = other.tombstone
            return True
        if other.version == self.version and other.tombstone > self.tombstone:
            self.tombstone = other.tombstone
            return True
        return False

    def kill(self, now: int) -> bool:
        """Tombstone a live entry (``version`` + 1); False if it was a tombstone already."""
        if self.tombstone > 0:
            return False
        self.tombstone = now
        self.version += 1
        return True

    def copy(self) -> Entry:
        return replace(self)

    @property
    def live(self) -> bool:
        return self.tombstone == 0


def addr_text(addr: int) -> str:
    return f"{addr >> 24 & 255}.{addr >> 16 & 255}.{addr >> 8 & 255}.{addr & 255}"


def parse_addr(text: str) -> int:
    """Dotted IPv4 to its 32-bit value; ValueError if it is not one."""
    parts = text.split(".")
    if len(parts) != 4 or not all(p.isdigit() and len(p) <= 3 and int(p) < 256 for p in parts):
        raise ValueError(f"invalid IP address: {text}")
    a, b, c, d = (int(p) for p in parts)
    return a << 24 | b << 16 | c << 8 | d


class Entries:
    """The sorted store. Every mutation bumps ``generation`` so caches built from it know when to rebuild."""

    def __init__(self, entries: Iterable[Entry] = ()) -> None:
        self._items: list[Entry] = sorted((e.copy() for e in entries), key=Entry.sort_key)
        self._keys: list[tuple[str, int, str, int, str]] = [e.sort_key() for e in self._items]
        self.generation = 0

    def __len__(self) -> int:
        return len(self._items)

    def __iter__(self) -> Iterator[Entry]:
        return iter(self._items)

    def snapshot(self) -> list[Entry]:
        """Copies of every entry, in store order."""
        return [e.copy() for e in self._items]

    def _find(self, e: Entry) -> int | None:
        key = e.sort_key()
        i = bisect.bisect_left(self._keys, key)
        if i < len(self._keys) and self._keys[i] == key:
            return i
        return None

    def _insert(self, e: Entry) -> None:
        key = e.sort_key()
        i = bisect.bisect_left(self._keys, key)
        self._keys.insert(i, key)
        self._items.insert(i, e)

    def find(self, e: Entry) -> Entry | None:
        i = self._find(e)
        return None if i is None else self._items[i]

    def add(self, hostname: str, container_id: str, origin: int, addr: int) -> Entry:
        """Register; re-adding a tombstoned registration revives it (``version`` + 1). Returns a copy."""
        probe = Entry(container_id, origin, addr, hostname)
        existing = self.find(probe)
        if existing is None:
            self._insert(probe)
            self.generation += 1
            return probe.copy()
        if existing.tombstone > 0:
            existing.tombstone = 0
            existing.version += 1
            self.generation += 1
        return existing.copy()

    def merge(self, incoming: Iterable[Entry]) -> list[Entry]:
        """Merge received entries; return copies of those that were new or changed our state."""
        new: list[Entry] = []
        for e in incoming:
            existing = self.find(e)
            if existing is None:
                mine = e.copy()
                self._insert(mine)
                new.append(mine.copy())
            elif existing.merge_from(e):
                new.append(existing.copy())
        if new:
            self.generation += 1
        return new

    def tombstone(self, ourname: int, pred: Callable[[Entry], bool], now: int) -> list[Entry]:
        """Tombstone live entries of *our* origin that match ``pred``; return copies of them.

        Only the origin may delete: another peer's entries change only through its own gossip, or go with it.
        """
        out = []
        for e in self._items:
            if e.origin == ourname and pred(e) and e.kill(now):
                out.append(e.copy())
        if out:
            self.generation += 1
        return out

    def filter(self, keep: Callable[[Entry], bool]) -> int:
        """Drop every entry for which ``keep`` is false (no tombstone: used for departed peers and old
        tombstones). Returns how many went."""
        kept = [e for e in self._items if keep(e)]
        gone = len(self._items) - len(kept)
        if gone:
            self._items = kept
            self._keys = [e.sort_key() for e in kept]
            self.generation += 1
        return gone

    def lookup(self, hostname: str) -> list[Entry]:
        """Every entry (live or not) whose hostname equals ``hostname`` ignoring case."""
        low = hostname.lower()
        i = bisect.bisect_left(self._keys, (low,))
        out = []
        while i < len(self._items) and self._items[i].lhostname == low:
            out.append(self._items[i])
            i += 1
        return out

    def first(self, pred: Callable[[Entry], bool]) -> Entry | None:
        for e in self._items:
            if pred(e):
                return e
        return None
