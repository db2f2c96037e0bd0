"""Which peer each MAC address lives behind (port of Weave's ``router/mac_cache.go``).

Local MACs are learned from frames our containers send; remote ones from frames arriving from the overlay, with
the peer where they entered it. Entries expire after 10 minutes without traffic. A remote frame claiming a MAC
we had for another peer moves it there ("forced"), so a container that moved hosts is found again at once.
"""

from __future__ import annotations

from dataclasses import dataclass

MAC_MAX_AGE = 600.0
REFRESH = 60.0  # last-seen times are only refreshed this often (cheap on the hot path)

LOCAL = 0  # the "peer" of MACs that live on this host


@dataclass(slots=True)
class Entry:
    peer: int
    seen: float


class MacCache:
    def __init__(self) -> None:
        self.entries: dict[bytes, Entry] = {}  # read directly by the workers' express paths

    def __len__(self) -> int:
        return len(self.entries)

    def lookup(self, mac: bytes) -> int | None:
        e = self.entries.get(mac)
        return None if e is None else e.peer

    def add_local(self, mac: bytes, now: float) -> bool:
        """Learn a local MAC. Returns False if the MAC is known to live on another peer (drop the frame)."""
        e = self.entries.get(mac)
        if e is None:
            self.entries[mac] = Entry(LOCAL, now)
            return True
        if e.peer != LOCAL:
            return False
        if now - e.seen > REFRESH:
            e.seen = now
        return True

    def add_forced(self, mac: bytes, peer: int, now: float) -> bool:
        """Learn a remote MAC; True if the entry was written (new, moved or refreshed): the rx worker then tells
        the tx worker, which learns remote MACs only from it."""
        e = self.entries.get(mac)
        if e is None:
            self.entries[mac] = Entry(peer, now)
            return True
        if e.peer != peer or now - e.seen > REFRESH:
            e.peer, e.seen = peer, now
            return True
        return False

    def expire(self, now: float) -> list[bytes]:
        old = [mac for mac, e in self.entries.items() if now - e.seen > MAC_MAX_AGE]
        for mac in old:
            del self.entries[mac]
        return old

    def purge_peer(self, peer: int) -> None:
        for mac in [m for m, e in self.entries.items() if e.peer == peer]:
            del self.entries[mac]

    def items(self) -> list[tuple[bytes, int, float]]:
        return [(mac, e.peer, e.seen) for mac, e in self.entries.items()]
