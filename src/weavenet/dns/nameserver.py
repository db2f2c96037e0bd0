"""The nameserver gossiper: the cluster's DNS entries, kept in step over mesh channel ``nameserver``.

Port of Weave's ``nameserver/nameserver.go``. Local changes (add, delete, a container's death) are sent as
gossip *broadcasts* of just the changed entries; the periodic full state goes out as plain gossip, and what a
peer learns from gossip it passes on only if it was new to it. Three rules keep the data honest:

* a message whose sender's clock is more than 900 s away from ours is refused whole (tombstones live 30 min,
  so a larger skew could resurrect deleted names): the mesh then drops that connection, and the refusal shows
  in ``weave status connections`` with Weave's message;
* entries originating from a peer that is not in our topology are dropped (a departed peer's entries must not
  come back through someone's stale gossip), and when the topology forgets a peer its entries are deleted;
* gossip that claims to come from *us* but disagrees with our own copy is overridden: we re-broadcast our
  version with a higher version number, and entries we never had are tombstoned. That repairs the state left
  by an earlier run of this router under the same peer name.

Pure: every input takes ``now``, the router's monotonic seconds. Weave's gossiped timestamps (entries'
tombstones, a message's time) are Unix seconds, so ``wall_offset`` turns ``now`` into the wall clock, as the IPAM
allocator's does.
"""

from __future__ import annotations

import logging
from collections import Counter
from collections.abc import Callable

from weavenet.core.gossip import GossipData, GossipSink
from weavenet.core.names import PeerName
from weavenet.dns.entries import TOMBSTONE_TIMEOUT, Entries, Entry, addr_text
from weavenet.dns.index import NameIndex, fqdn, is_subdomain
from weavenet.dns.wire import decode_gossip, encode_gossip
from weavenet.errors import RemoteProtocolError

log = logging.getLogger("weavenet.dns")

CHANNEL = "nameserver"
DEFAULT_DOMAIN = "weave.local."
GOSSIP_WINDOW = TOMBSTONE_TIMEOUT // 2  # 900 s of clock skew accepted
PURGE_INTERVAL = TOMBSTONE_TIMEOUT
WILDCARD = None


class NameserverGossip:
    """A gossip value: a timestamp and some entries. Merging keeps, per identity, the winning state."""

    __slots__ = ("entries", "timestamp")

    def __init__(self, timestamp: int, entries: list[Entry]) -> None:
        self.timestamp = timestamp
        self.entries = entries

    def encode(self) -> list[bytes]:
        return [encode_gossip(self.timestamp, self.entries)]

    def merge(self, other: GossipData) -> GossipData:
        assert isinstance(other, NameserverGossip)
        store = Entries(self.entries)
        store.merge(other.entries)
        return NameserverGossip(max(self.timestamp, other.timestamp), store.snapshot())


class Nameserver:
    """Entries of the whole cluster plus the gossip rules above. Implements the mesh ``Gossiper`` protocol."""

    def __init__(
        self,
        ourname: PeerName,
        domain: str,
        is_known_peer: Callable[[PeerName], bool],
        wall_offset: float = 0.0,
    ) -> None:
        self.ourname = ourname
        self.domain = fqdn(domain)
        self.wall_offset = wall_offset  # Unix time = now + wall_offset
        self.is_known_peer = is_known_peer
        self.entries = Entries()
        self.sink: GossipSink | None = None
        self.counters: Counter[str] = Counter()
        self._index: NameIndex | None = None
        self._index_generation = -1

    def set_sink(self, sink: GossipSink) -> None:
        self.sink = sink

    # -- local changes ---------------------------------------------------------------------------------------

    def _wall(self, now: float) -> int:
        """Unix seconds of ``now``: what Weave's gossip carries."""
        return int(now + self.wall_offset)

    def _broadcast(self, entries: list[Entry], wall: int) -> None:
        if self.sink is not None and entries:
            self.sink.gossip_broadcast(NameserverGossip(wall, entries))

    def add(self, hostname: str, container_id: str, addr: int, now: float) -> Entry | None:
        """Register ``hostname`` (made fully qualified) for a container of ours; None if it is outside our
        domain (Weave ignores such registrations with a log line)."""
        name = fqdn(hostname)
        if not is_subdomain(self.domain, name):
            log.info(
                "[nameserver %s] Ignoring registration %s %s %s (not a subdomain of %s)",
                self.ourname,
                name,
                addr_text(addr),
                container_id,
                self.domain,
            )
            self.counters["registrations_ignored"] += 1
            return None
        log.info("[nameserver %s] adding entry for %s: %s -> %s", self.ourname, container_id, name, addr_text(addr))
        entry = self.entries.add(name, container_id, int(self.ourname), addr)
        self._broadcast([entry], self._wall(now))
        return entry

    def delete(self, hostname: str | None, container_id: str | None, addr: int | None, now: float) -> list[Entry]:
        """Tombstone our entries matching every given part (None = any); returns what was tombstoned."""
        host = fqdn(hostname) if hostname is not None else None

        def match(e: Entry) -> bool:
            return (
                (host is None or e.hostname == host)
                and (container_id is None or e.container_id == container_id)
                and (addr is None or e.addr == addr)
            )

        wall = self._wall(now)
        gone = self.entries.tombstone(int(self.ourname), match, wall)
        for e in gone:
            log.info("[nameserver %s] tombstoning entry %s -> %s", self.ourname, e.hostname, addr_text(e.addr))
        self._broadcast(gone, wall)
        return gone

    def container_died(self, ident: str, now: float) -> list[Entry]:
        wall = self._wall(now)
        gone = self.entries.tombstone(int(self.ourname), lambda e: e.container_id == ident, wall)
        for e in gone:
            log.info("[nameserver %s] container %s died; tombstoning entry %s", self.ourname, ident, e.hostname)
        self._broadcast(gone, wall)
        return gone

    def peer_gone(self, peer: PeerName) -> int:
        """The topology forgot ``peer``: its entries go outright (no tombstones: nobody may speak for it)."""
        n = self.entries.filter(lambda e: e.origin != int(peer))
        if n:
            log.info("[nameserver %s] peer %s gone: %d entries removed", self.ourname, peer, n)
        return n

    def purge_tombstones(self, now: float) -> int:
        """Forget tombstones older than the tombstone timeout (Weave: every 30 min)."""
        t = self._wall(now)
        return self.entries.filter(lambda e: e.tombstone == 0 or t - e.tombstone <= TOMBSTONE_TIMEOUT)

    # -- lookups -----------------------------------------------------------------------------------------------

    def index(self) -> NameIndex:
        if self._index is None or self._index_generation != self.entries.generation:
            self._index = NameIndex(self.entries, self.domain)
            self._index_generation = self.entries.generation
        return self._index

    def lookup(self, hostname: str) -> list[int]:
        """Live addresses of ``hostname`` (case-insensitive), in store order."""
        return [e.addr for e in self.entries.lookup(fqdn(hostname)) if e.live]

    def reverse_lookup(self, addr: int) -> str | None:
        e = self.entries.first(lambda e: e.live and e.addr == addr)
        return None if e is None else e.hostname

    def local_live_count(self) -> int:
        """Live entries registered here (Weave's ``weave_dns_entries`` gauge)."""
        return sum(1 for e in self.entries if e.live and e.origin == int(self.ourname))

    # -- Gossiper --------------------------------------------------------------------------------------------

    def on_gossip_unicast(self, src: PeerName, msg: bytes, now: float) -> None:
        return None

    def gossip(self, now: float) -> GossipData | None:
        if not len(self.entries):
            return None
        return NameserverGossip(self._wall(now), self.entries.snapshot())

    def on_gossip(self, update: bytes, now: float) -> GossipData | None:
        new, _ = self._receive(update, now)
        return new

    def on_gossip_broadcast(self, src: PeerName, update: bytes, now: float) -> GossipData | None:
        _, received = self._receive(update, now)
        return received

    def _receive(self, update: bytes, now: float) -> tuple[GossipData | None, GossipData | None]:
        wall = self._wall(now)
        try:
            timestamp, incoming = decode_gossip(update)
        except RemoteProtocolError:
            self.counters["gossip_malformed"] += 1
            raise
        delta = timestamp - wall
        if delta > GOSSIP_WINDOW or delta < -GOSSIP_WINDOW:
            self.counters["gossip_clock_skew"] += 1
            raise RemoteProtocolError(f"host clock skew of {delta}s exceeds {GOSSIP_WINDOW}s limit")
        known = [e for e in incoming if self.is_known_peer(PeerName(e.origin))]
        if len(known) != len(incoming):
            self.counters["entries_unknown_origin"] += len(incoming) - len(known)
        ours = int(self.ourname)
        overridden: list[Entry] = []
        for i, e in enumerate(known):
            if e.origin != ours:
                continue
            mine = self.entries.find(e)
            if mine is not None:
                if mine.version < e.version or (mine.version == e.version and mine.tombstone != e.tombstone):
                    fixed = mine.copy()
                    fixed.version = e.version + 1
                    known[i] = fixed
                    overridden.append(fixed)
            elif e.kill(wall):
                overridden.append(e)
        new = self.entries.merge(known)
        if overridden:
            self.counters["entries_overridden"] += len(overridden)
            log.info("[nameserver %s] overriding %d entries that claim to be ours", self.ourname, len(overridden))
            self._broadcast([e.copy() for e in overridden], wall)
        return (NameserverGossip(wall, new) if new else None, NameserverGossip(timestamp, known) if known else None)
