"""Which peers take part in automatic reclaim: what each weavenet peer says of itself, gossiped (weavenet only).

Automatic reclaim (``reclaim.py``) takes over the space of a ring owner that has been unreachable for long. A
partition is not a death, though: the owner may come back, and must then give the reclaimed ranges up. A
weavenet peer with automatic reclaim on does (it yields and re-claims the addresses it uses, see
``allocator``); a Weave 2.8 peer, and a weavenet peer with ``--ipalloc-reclaim-after 0``, keep Weave's rule and
refuse the ring that takes space with allocations away from them, dropping every connection that brings it,
for good. So a peer's space may be reclaimed only if the peer said it yields, and only a peer that said it
reclaims is waited for as the one to do it. Not knowing means "do not reclaim".

How a peer knows, also about peers it has no connection to and peers unreachable now: every weavenet peer
states for itself (its UID, a version, whether it reclaims) on gossip channel ``weavenet-ipam-members``. A
statement changes only by its author, so replicas merge by version (the higher wins; a tie, which only a
lost store can cause, goes to the larger statement) and converge whatever order they arrive in. Changes are
broadcast, the whole table goes to every new neighbour and out with the periodic gossip, and it is persisted,
so what a peer dead before we started once said is still known. An author that meets an older incarnation's
statement with a version at least its own (its store was lost) re-states itself above it.

Weave 2.8 peers relay the channel without reading it (mesh's surrogate gossiper passes unknown channels'
broadcasts and gossip on, dropping repeats within a gossip interval, and ignores unicasts, which this channel
never sends), and never state anything: they are never reclaimed, and never waited for as the reclaimer. The
IPAM channel and its encoding are untouched, so what Go sees there stays Weave 2.8's protocol.

A statement holds for the incarnation (UID) that made it: while the topology shows the peer under another UID
(it restarted, perhaps as a Weave 2.8 router or with reclaim off), its space is not reclaimed until the new
incarnation speaks. What remains: a peer that comes back as Weave 2.8 under the same name *while it is cut off
from us* looks like its old weavenet self; changing a host's router from weavenet back to Weave 2.8 should be
done with ``weave reset`` (which hands its space over) or with the host connected.

Pure: no I/O, no clock. Wire format, one message: format byte 1, then per peer its name (6 bytes), UID and
version (unsigned 64-bit, big-endian) and a flags byte (bit 0: reclaims and yields; other bits are ignored,
for later use). A message of another format is ignored (a later weavenet may speak one); a malformed one is
refused.
"""

from __future__ import annotations

import struct
from collections.abc import Callable, Iterable
from dataclasses import dataclass

from weavenet.core.gossip import GossipData
from weavenet.core.names import PeerName
from weavenet.core.topology import MAX_PEERS_PER_UPDATE
from weavenet.errors import RemoteProtocolError

CHANNEL = "weavenet-ipam-members"
STORE_KEY = "weavenetIpamMembers"  # next to Weave's keys in the state store; Weave ignores it
FORMAT = 1
FLAG_RECLAIMS = 0x01
_ENTRY = struct.Struct(">6sQQB")


@dataclass(frozen=True, slots=True)
class Statement:
    """What one peer said about itself."""

    uid: int
    version: int
    reclaims: bool  # automatic reclaim on: it may reclaim, and it yields space reclaimed from it

    def order(self) -> tuple[int, int, bool]:
        return (self.version, self.uid, self.reclaims)


def encode(table: dict[PeerName, Statement], names: Iterable[PeerName] | None = None) -> bytes:
    picked = sorted(table if names is None else (n for n in names if n in table))
    out = [bytes((FORMAT,))]
    for n in picked:
        s = table[n]
        out.append(_ENTRY.pack(n.bytes6(), s.uid, s.version, FLAG_RECLAIMS if s.reclaims else 0))
    return b"".join(out)


def decode(payload: bytes) -> dict[PeerName, Statement] | None:
    """The statements in a message; None for a format we do not know. Raises ``RemoteProtocolError``."""
    if not payload:
        raise RemoteProtocolError("empty IPAM members message")
    if payload[0] != FORMAT:
        return None
    body = payload[1:]
    if len(body) % _ENTRY.size:
        raise RemoteProtocolError("malformed IPAM members message")
    if len(body) // _ENTRY.size > MAX_PEERS_PER_UPDATE:
        raise RemoteProtocolError("IPAM members message too large")
    out: dict[PeerName, Statement] = {}
    for name, uid, version, flags in _ENTRY.iter_unpack(body):
        out[PeerName.from_bytes6(name)] = Statement(uid, version, bool(flags & FLAG_RECLAIMS))
    return out


class Members:
    """The table of statements, with our own kept current.

    ``current_uid`` answers the UID the topology shows for a peer now (None if it shows none).
    """

    def __init__(self, us: PeerName, uid: int, reclaims: bool, current_uid: Callable[[PeerName], int | None]) -> None:
        self.us = us
        self.current_uid = current_uid
        self.table: dict[PeerName, Statement] = {us: Statement(uid, 1, reclaims)}

    @property
    def own(self) -> Statement:
        return self.table[self.us]

    def load(self, stored: dict[PeerName, Statement]) -> None:
        """What we persisted: others' statements, and our own last version, which we now state above."""
        old = stored.get(self.us)
        for name, s in stored.items():
            if name != self.us:
                self.table[name] = s
        if old is not None:
            self._restate_above(old)

    def _restate_above(self, other: Statement) -> None:
        own = self.own
        if other.version >= own.version:
            self.table[self.us] = Statement(own.uid, other.version + 1, own.reclaims)

    def merge(self, received: dict[PeerName, Statement], keep: Callable[[PeerName], bool]) -> set[PeerName]:
        """Merge received statements about peers worth keeping; the names whose statement changed here."""
        changed = set()
        for name, s in received.items():
            if name == self.us:
                if s != self.own and s.version >= self.own.version:
                    self._restate_above(s)
                    changed.add(name)
                continue
            if not keep(name):
                continue
            mine = self.table.get(name)
            if mine is None or s.order() > mine.order():
                self.table[name] = s
                changed.add(name)
        return changed

    def prune(self, keep: Callable[[PeerName], bool]) -> bool:
        """Forget statements of peers no longer worth keeping (not ring owners, not in the topology)."""
        gone = [n for n in self.table if n != self.us and not keep(n)]
        for n in gone:
            del self.table[n]
        return bool(gone)

    # -- what reclaim asks ------------------------------------------------------------------------------------

    def reclaims(self, peer: PeerName) -> bool:
        """The peer said it reclaims automatically (by any incarnation: waiting for it is the safe side)."""
        s = self.table.get(peer)
        return s is not None and s.reclaims

    def yields(self, peer: PeerName) -> bool:
        """The peer's current incarnation said it gives reclaimed space back."""
        s = self.table.get(peer)
        if s is None or not s.reclaims:
            return False
        if peer == self.us:
            return True
        uid = self.current_uid(peer)
        return uid is None or uid == s.uid

    def said(self, peer: PeerName) -> bool:
        return peer in self.table

    def why_not(self, peer: PeerName) -> str:
        """Why the peer's space is not reclaimed automatically (for ``weave status ipam``)."""
        s = self.table.get(peer)
        if s is None:
            return "a Weave 2.8 peer, or not known to give reclaimed space back"
        if not s.reclaims:
            return "automatic reclaim is off on that peer"
        return "it restarted and has not said yet whether it gives reclaimed space back"


class MembersGossipData:
    """Some peers' statements, encoded with their current values when sent (so merging is a union of names)."""

    __slots__ = ("members", "names")

    def __init__(self, members: Members, names: set[PeerName] | None = None) -> None:
        self.members = members
        self.names = names  # None: the whole table

    def encode(self) -> list[bytes]:
        return [encode(self.members.table, self.names)]

    def merge(self, other: GossipData) -> GossipData:
        assert isinstance(other, MembersGossipData)
        if self.names is None or other.names is None:
            return MembersGossipData(self.members)
        return MembersGossipData(self.members, self.names | other.names)
