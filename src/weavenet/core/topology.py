"""The mesh topology: every peer we know, with the connections each one reports.

Port of mesh ``peers.go`` / ``peer.go``. Theory of operation:

* Each peer is authoritative for its own entry (nickname, UID, short ID and its list of connections) and bumps
  its ``version`` whenever that entry changes. Entries travel in topology gossip as ``peerSummary`` followed by
  ``[]connectionSummary`` (gob), one pair per peer.
* Merging an update keeps, per peer, the entry with the higher ``(version, uid, has_short_id)``; an update that
  mentions a peer only inside somebody's connection list creates a *placeholder* (UID 0, no short ID) so routes
  can be computed before that peer's own entry arrives.
* An update about ourselves with a different UID describes an earlier incarnation of us: we bump our version
  past it so our current entry wins everywhere.
* Peers that are no longer reachable over any connection and that no local connection references are garbage
  collected (the caller passes the reachable set, see ``routes.py``).
* Short IDs (12 bits, for the fast datapath's VXLAN VNI) may collide; the lowest peer name keeps the ID and the
  local peer picks a new free one if it lost.

The update is decoded and validated completely before anything is applied, so malformed gossip is rejected
whole and never merged in part.
"""

from __future__ import annotations

import random
from collections.abc import Iterable
from dataclasses import dataclass, field

from weavenet.core.codec.gob import (
    BOOL,
    BYTES,
    NEED_DATA,
    STRING,
    UINT,
    Decoder,
    Encoder,
    Named,
    Slice,
    Struct,
)
from weavenet.core.names import MAX_SHORT_ID, SHORT_ID_BITS, PeerName
from weavenet.errors import RemoteProtocolError

PEER_SUMMARY = Struct(
    "peerSummary",
    [
        ("NameByte", BYTES),
        ("NickName", STRING),
        ("UID", Named(UINT, "PeerUID", go="mesh.PeerUID")),
        ("Version", Named(UINT, "uint64", go="uint64")),
        ("ShortID", Named(UINT, "PeerShortID", go="mesh.PeerShortID")),
        ("HasShortID", BOOL),
    ],
    go="mesh.peerSummary",
)
CONNECTION_SUMMARY = Struct(
    "connectionSummary",
    [("NameByte", BYTES), ("RemoteTCPAddr", STRING), ("Outbound", BOOL), ("Established", BOOL)],
    go="mesh.connectionSummary",
)
CONNECTION_SUMMARIES = Slice(CONNECTION_SUMMARY, go="[]mesh.connectionSummary")

# A topology update can't usefully describe more peers than short IDs exist; this also bounds decoding work.
MAX_PEERS_PER_UPDATE = 1 << SHORT_ID_BITS
MAX_NICKNAME_BYTES = 1024


@dataclass(slots=True, frozen=True)
class ConnSummary:
    """A connection as the peer at its local end reports it."""

    remote: PeerName
    tcp_addr: str
    outbound: bool
    established: bool


@dataclass(slots=True, eq=False)
class Peer:
    """What we know about one peer. ``connections`` is keyed by the remote peer's name."""

    name: PeerName
    nickname: str = ""
    uid: int = 0
    version: int = 0
    short_id: int = 0
    has_short_id: bool = False
    connections: dict[PeerName, ConnSummary] = field(default_factory=dict)
    local_refcount: int = 0
    wire_cache: tuple[tuple[object, ...], bytes, int] | None = None  # (entry key, gob values, summary length)

    def __str__(self) -> str:
        return f"{self.name}({self.nickname})"

    @property
    def is_placeholder(self) -> bool:
        return self.uid == 0


@dataclass(slots=True)
class _ShortIDEntry:
    peer: Peer | None = None  # principal: the lowest name among the peers using this ID
    others: list[Peer] = field(default_factory=list)


@dataclass(slots=True)
class TopologyEffects:
    """What a mutation implies for the rest of the router; the caller acts on it after the mutation."""

    removed: list[Peer] = field(default_factory=list)
    invalidate_short_ids: bool = False
    reassign_local_short_id: bool = False
    local_modified: bool = False

    def extend(self, other: TopologyEffects) -> None:
        self.removed.extend(other.removed)
        self.invalidate_short_ids |= other.invalidate_short_ids
        self.reassign_local_short_id |= other.reassign_local_short_id
        self.local_modified |= other.local_modified


@dataclass(slots=True)
class UpdateResult:
    received: set[PeerName]  # every peer named in the update
    improved: set[PeerName]  # peers whose entry the update added or replaced
    effects: TopologyEffects
    versions: dict[PeerName, tuple[int, int]] = field(default_factory=dict)  # (uid, version) the sender holds


@dataclass(slots=True, frozen=True)
class _Decoded:
    name: PeerName
    nickname: str
    uid: int
    version: int
    short_id: int
    has_short_id: bool
    connections: tuple[ConnSummary, ...]


class Topology:
    """All known peers, ourselves included (port of mesh ``Peers``)."""

    def __init__(self, ourself: Peer, rng: random.Random) -> None:
        self.ourself = ourself
        self.rng = rng
        self.by_name: dict[PeerName, Peer] = {}
        self._by_short_id: dict[int, _ShortIDEntry] = {}
        effects = TopologyEffects()
        self.fetch_with_default(ourself, effects)

    # -- lookups -----------------------------------------------------------------------------------------------

    def __len__(self) -> int:
        return len(self.by_name)

    def get(self, name: PeerName) -> Peer | None:
        return self.by_name.get(name)

    def by_short_id(self, short_id: int) -> Peer | None:
        entry = self._by_short_id.get(short_id)
        return entry.peer if entry else None

    def names(self) -> set[PeerName]:
        return set(self.by_name)

    # -- reference counting (local connections pin the peers they lead to) -----------------------------------

    def fetch_with_default(self, peer: Peer, effects: TopologyEffects) -> Peer:
        """Return the known peer with ``peer.name`` (adding ``peer`` if unknown), incrementing its refcount."""
        existing = self.by_name.get(peer.name)
        if existing is not None:
            existing.local_refcount += 1
            return existing
        self.by_name[peer.name] = peer
        self._add_by_short_id(peer, effects)
        peer.local_refcount += 1
        return peer

    def fetch_and_add_ref(self, name: PeerName) -> Peer | None:
        peer = self.by_name.get(name)
        if peer is not None:
            peer.local_refcount += 1
        return peer

    def dereference(self, peer: Peer) -> None:
        peer.local_refcount -= 1

    # -- gossip -------------------------------------------------------------------------------------------------

    def encode_peers(self, names: Iterable[PeerName]) -> bytes:
        """One topology payload holding the current entry of every named peer we still know (sorted by name).

        Byte-identical to a fresh gob stream per payload: the type definitions are a constant prefix, and each
        peer's value messages are cached until its entry changes, so re-gossiping a peer costs a memcpy.
        """
        parts: list[bytes] = []
        for name in sorted(names):
            peer = self.by_name.get(name)
            if peer is None:
                continue
            value, ps_len = _peer_wire(peer)
            if not parts:
                parts += [_DEF_PEER_SUMMARY, value[:ps_len], _DEF_CONN_SUMMARIES, value[ps_len:]]
            else:
                parts.append(value)
        return b"".join(parts)

    def apply_update(self, payload: bytes) -> UpdateResult:
        """Merge a topology payload. Raises ``RemoteProtocolError`` (and changes nothing) if it is malformed."""
        decoded = decode_update(payload)
        effects = TopologyEffects()
        # Add unknown peers, and placeholders for peers only mentioned in connection lists.
        new_peers: dict[PeerName, Peer] = {}
        created_from: dict[PeerName, int] = {}  # which decoded entry a new peer was made from
        for i, d in enumerate(decoded):
            if d.name not in self.by_name and d.name not in new_peers:
                created_from[d.name] = i
                new_peers[d.name] = Peer(
                    name=d.name,
                    nickname=d.nickname,
                    uid=d.uid,
                    version=d.version,
                    short_id=d.short_id,
                    has_short_id=d.has_short_id,
                )
        for d in decoded:
            for c in d.connections:
                if c.remote not in self.by_name and c.remote not in new_peers:
                    new_peers[c.remote] = Peer(name=c.remote)
        for name, peer in new_peers.items():
            self.by_name[name] = peer
            self._add_by_short_id(peer, effects)

        improved: set[PeerName] = set()
        for i, d in enumerate(decoded):
            peer = self.by_name[d.name]
            if peer is self.ourself:
                if d.uid != peer.uid and d.version >= peer.version:
                    # Gossip about an earlier incarnation of ourselves: supersede it.
                    peer.version = d.version + 1
                    effects.local_modified = True
                continue
            if created_from.get(d.name) == i:
                peer.connections = {c.remote: c for c in d.connections}
                improved.add(d.name)
                continue
            if d.version < peer.version or (
                d.version == peer.version
                and (d.uid < peer.uid or (d.uid == peer.uid and (not d.has_short_id or peer.has_short_id)))
            ):
                continue
            peer.version = d.version
            peer.uid = d.uid
            peer.nickname = d.nickname
            peer.connections = {c.remote: c for c in d.connections}
            if d.short_id != peer.short_id or d.has_short_id != peer.has_short_id:
                self._delete_by_short_id(peer, effects)
                peer.short_id = d.short_id
                peer.has_short_id = d.has_short_id
                self._add_by_short_id(peer, effects)
            improved.add(d.name)
        versions = {d.name: (d.uid, d.version) for d in decoded}
        return UpdateResult(set(versions), improved, effects, versions)

    # -- garbage collection -------------------------------------------------------------------------------------

    def garbage_collect(self, reachable: set[PeerName]) -> TopologyEffects:
        """Forget peers that are unreachable (over any connection) and not referenced by a local connection."""
        effects = TopologyEffects()
        for name, peer in list(self.by_name.items()):
            if name not in reachable and peer.local_refcount == 0:
                del self.by_name[name]
                self._delete_by_short_id(peer, effects)
                effects.removed.append(peer)
        ours = self._by_short_id.get(self.ourself.short_id)
        if effects.removed and (ours is None or ours.peer is not self.ourself):
            effects.reassign_local_short_id = True
        return effects

    # -- short IDs ----------------------------------------------------------------------------------------------

    def _add_by_short_id(self, peer: Peer, effects: TopologyEffects) -> None:
        if not peer.has_short_id:
            return
        entry = self._by_short_id.get(peer.short_id)
        if entry is None:
            self._by_short_id[peer.short_id] = _ShortIDEntry(peer)
        elif entry.peer is None:
            entry.peer = peer  # re-use of a freed ID invalidates whatever was cached for it
            effects.invalidate_short_ids = True
        elif peer.name < entry.peer.name:
            if entry.peer is self.ourself:
                effects.reassign_local_short_id = True
            entry.others.append(entry.peer)
            entry.peer = peer
            effects.invalidate_short_ids = True
        else:
            entry.others.append(peer)

    def _delete_by_short_id(self, peer: Peer, effects: TopologyEffects) -> None:
        if not peer.has_short_id:
            return
        entry = self._by_short_id.get(peer.short_id)
        if entry is None:
            return
        if entry.peer is not peer:
            if peer in entry.others:
                entry.others.remove(peer)
            return
        if entry.others:
            successor = min(entry.others, key=lambda p: p.name)
            entry.others.remove(successor)
            entry.peer = successor
            effects.invalidate_short_ids = True
        else:
            entry.peer = None  # keep the slot so a later re-use is detected

    def choose_short_id(self) -> int | None:
        """A free short ID at random: 10 random probes, then uniformly among the free ones."""
        for _ in range(10):
            candidate = self.rng.randrange(MAX_SHORT_ID + 1)
            entry = self._by_short_id.get(candidate)
            if entry is None or entry.peer is None:
                return candidate
        free = [i for i in range(MAX_SHORT_ID + 1) if (e := self._by_short_id.get(i)) is None or e.peer is None]
        return self.rng.choice(free) if free else None

    def reassign_local_short_id(self, effects: TopologyEffects) -> bool:
        """Pick a new short ID for ourselves; True if it changed (our entry must then be re-gossiped)."""
        new_id = self.choose_short_id()
        if new_id is None:
            return False
        self._delete_by_short_id(self.ourself, effects)
        self.ourself.short_id = new_id
        self.ourself.has_short_id = True
        self.ourself.version += 1
        self._add_by_short_id(self.ourself, effects)
        return True


def _peer_name(raw: object, what: str) -> PeerName:
    if not isinstance(raw, bytes) or len(raw) != 6:
        raise RemoteProtocolError(f"topology: {what} is not a 6-byte peer name")
    return PeerName.from_bytes6(raw)


def decode_update(payload: bytes) -> list[_Decoded]:
    """Decode a topology payload into per-peer entries; raise ``RemoteProtocolError`` if malformed.

    Payloads written by weavenet (and by any gob encoder using the same per-stream ids) start with the same
    type definitions; their per-peer value messages then map one-to-one to entries, and the same entry arrives
    many times as gossip spreads, so those are decoded once and cached. Anything else takes the general path.
    """
    pairs = _split_canonical(payload)
    if pairs is None:
        return _decode_general(payload)
    out = []
    for pair in pairs:
        entry = _DECODE_CACHE.get(pair)
        if entry is None:
            entry = _decode_general(_DEF_PEER_SUMMARY + _DEF_CONN_SUMMARIES + pair)[0]
            if len(_DECODE_CACHE) >= _DECODE_CACHE_SIZE:
                _DECODE_CACHE.clear()
            _DECODE_CACHE[pair] = entry
        out.append(entry)
    if len(out) > MAX_PEERS_PER_UPDATE:
        raise RemoteProtocolError("topology: too many peers in one update")
    return out


_DECODE_CACHE: dict[bytes, _Decoded] = {}
_DECODE_CACHE_SIZE = 65536


def _messages(data: bytes) -> list[bytes] | None:
    """Split a gob stream into whole messages (None if the framing is off: let the general path report it)."""
    out, pos, end = [], 0, len(data)
    while pos < end:
        b = data[pos]
        if b < 0x80:
            length, hdr = b, 1
        else:
            n = 256 - b
            if n > 8 or pos + 1 + n > end:
                return None
            length, hdr = int.from_bytes(data[pos + 1 : pos + 1 + n], "big"), 1 + n
        if length == 0 or pos + hdr + length > end:
            return None
        out.append(data[pos : pos + hdr + length])
        pos += hdr + length
    return out


def _split_canonical(payload: bytes) -> list[bytes] | None:
    """Per-peer value message pairs if the payload uses our canonical definitions, else None."""
    if not payload.startswith(_DEF_PEER_SUMMARY):
        return None
    msgs = _messages(payload)
    if msgs is None or len(msgs) < 5 or b"".join(msgs[2:4]) != _DEF_CONN_SUMMARIES:
        return None
    values = [msgs[1], *msgs[4:]]
    if len(values) % 2:
        return None
    pairs = []
    for i in range(0, len(values), 2):
        ps, sl = values[i], values[i + 1]
        if _is_definition(ps) or _is_definition(sl):
            return None
        pairs.append(ps + sl)
    return pairs


def _is_definition(msg: bytes) -> bool:
    """A definition message has a negative type id: its varint's value is odd (sign in the lowest bit).

    A type id that does not fit in the message (or is longer than 8 bytes) counts as a definition too, so the
    payload takes the general path, which refuses it with its reason.
    """
    off = 1 if msg[0] < 0x80 else 1 + 256 - msg[0]  # skip the message length
    if off >= len(msg):
        return True
    first = msg[off]
    if first < 0x80:
        return bool(first & 1)
    n = 256 - first
    if n > 8 or off + n >= len(msg):
        return True
    return bool(msg[off + n] & 1)


def _decode_general(payload: bytes) -> list[_Decoded]:
    dec = Decoder(max_message_size=len(payload) + 16)
    dec.feed(payload)
    out: list[_Decoded] = []
    while dec.buffered():
        if len(out) >= MAX_PEERS_PER_UPDATE:
            raise RemoteProtocolError("topology: too many peers in one update")
        summary = dec.next_value(PEER_SUMMARY)
        conns = dec.next_value(CONNECTION_SUMMARIES)
        if summary is NEED_DATA or conns is NEED_DATA:
            raise RemoteProtocolError("topology: truncated update")
        name = _peer_name(summary["NameByte"], "peer")
        short_id = summary["ShortID"]
        if short_id > MAX_SHORT_ID:
            raise RemoteProtocolError(f"topology: short ID {short_id} of {name} exceeds {SHORT_ID_BITS} bits")
        nickname = summary["NickName"]
        if len(nickname) > MAX_NICKNAME_BYTES:
            raise RemoteProtocolError(f"topology: nickname of {name} too long")
        connections = tuple(
            ConnSummary(
                _peer_name(c["NameByte"], f"connection of {name}"),
                c["RemoteTCPAddr"],
                c["Outbound"],
                c["Established"],
            )
            for c in conns
        )
        out.append(
            _Decoded(
                name=name,
                nickname=nickname,
                uid=summary["UID"],
                version=summary["Version"],
                short_id=short_id,
                has_short_id=summary["HasShortID"],
                connections=connections,
            )
        )
    return out


def _summary(peer: Peer) -> dict[str, object]:
    return {
        "NameByte": peer.name.bytes6(),
        "NickName": peer.nickname,
        "UID": peer.uid,
        "Version": peer.version,
        "ShortID": peer.short_id,
        "HasShortID": peer.has_short_id,
    }


def _conn_summaries(peer: Peer) -> list[dict[str, object]]:
    return [
        {
            "NameByte": c.remote.bytes6(),
            "RemoteTCPAddr": c.tcp_addr,
            "Outbound": c.outbound,
            "Established": c.established,
        }
        for _, c in sorted(peer.connections.items())
    ]


def _make_prefixes() -> tuple[Encoder, bytes, bytes]:
    """Definitions of a fresh topology stream, and an encoder that has sent them (for value messages only)."""
    dummy = Peer(PeerName(1))
    primed = Encoder()
    primed.encode(PEER_SUMMARY, _summary(dummy))
    primed.encode(CONNECTION_SUMMARIES, [])
    ps_val = primed.encode(PEER_SUMMARY, _summary(dummy))  # now without definitions
    sl_val = primed.encode(CONNECTION_SUMMARIES, [])
    fresh = Encoder()
    first, second = fresh.encode(PEER_SUMMARY, _summary(dummy)), fresh.encode(CONNECTION_SUMMARIES, [])
    assert first.endswith(ps_val) and second.endswith(sl_val)
    return primed, first[: -len(ps_val)], second[: -len(sl_val)]


_PRIMED, _DEF_PEER_SUMMARY, _DEF_CONN_SUMMARIES = _make_prefixes()


def _peer_wire(peer: Peer) -> tuple[bytes, int]:
    """The peer's value messages (peerSummary, then its connection list), cached per entry version."""
    key = (peer.uid, peer.version, peer.nickname, peer.short_id, peer.has_short_id, len(peer.connections))
    cached = peer.wire_cache
    if cached is not None and cached[0] == key:
        return cached[1], cached[2]
    ps = _PRIMED.encode(PEER_SUMMARY, _summary(peer))
    value = ps + _PRIMED.encode(CONNECTION_SUMMARIES, _conn_summaries(peer))
    peer.wire_cache = (key, value, len(ps))
    return value, len(ps)
