"""IPAM on the wire and on disk: Weave's gob encodings of the gossip state, unicast messages and stored values.

Every value is one fresh gob stream, with the type names Weave's Go types give it, so our bytes equal the
golden vectors where Go's encoder is deterministic (everything but the order of map entries). Decoding checks
the whole message before anything is handed on: a field out of range (a peer name above 48 bits, an address
above 32) refuses the message, which the caller turns into a dropped connection, never a partial merge.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from weavenet.core.codec.gob import (
    BOOL,
    INT,
    STRING,
    UINT,
    GobError,
    Map,
    Named,
    Ptr,
    Slice,
    Struct,
    decode_stream,
    encode_stream,
)
from weavenet.core.names import PeerName
from weavenet.errors import RemoteProtocolError
from weavenet.ipam import wire_fast
from weavenet.ipam.address import CIDR, Range
from weavenet.ipam.paxos import AcceptedValue, GossipState, NodeClaims, NodeID, ProposalID
from weavenet.ipam.ring import Entry, Ring

CHANNEL = "IPallocation"

MSG_SPACE_REQUEST = 0
MSG_RING_UPDATE = 1
MSG_SPACE_REQUEST_DENIED = 2

MAX_NICKNAME = 255 * 4  # bytes; Weave has no limit, but a nickname is a host name
MAX_U32 = 0xFFFFFFFF

PEER_NAME = Named(UINT, "PeerName", go="mesh.PeerName")
PEER_UID = Named(UINT, "PeerUID", go="mesh.PeerUID")
ADDRESS = Named(UINT, "Address", go="address.Address")
COUNT = Named(UINT, "Count", go="address.Count")
UINT32 = Named(UINT, "uint32", go="uint32")
GO_UINT = Named(UINT, "uint", go="uint")
INT64 = Named(INT, "int64", go="int64")
GO_INT = Named(INT, "int", go="int")

ENTRY = Struct(
    "entry",
    [("Token", ADDRESS), ("Peer", PEER_NAME), ("Version", UINT32), ("Free", COUNT)],
    go="ring.entry",
)
ENTRIES = Slice(Ptr(ENTRY), name="entries", go="ring.entries")
PEER_NAMES = Slice(PEER_NAME, go="[]mesh.PeerName")
RING = Struct(
    "Ring",
    [("Start", ADDRESS), ("End", ADDRESS), ("Peer", PEER_NAME), ("Entries", ENTRIES), ("Seeds", PEER_NAMES)],
    go="ring.Ring",
)
NODE_ID = Struct("NodeID", [("Name", PEER_NAME), ("UID", PEER_UID)], go="paxos.NodeID")
PROPOSAL_ID = Struct("ProposalID", [("Round", GO_UINT), ("Proposer", NODE_ID)], go="paxos.ProposalID")
VALUE = Slice(PEER_NAME, name="Value", go="paxos.Value")
ACCEPTED_VALUE = Struct("AcceptedValue", [("Value", VALUE), ("Origin", PROPOSAL_ID)], go="paxos.AcceptedValue")
NODE_CLAIMS = Struct(
    "NodeClaims",
    [("Promise", PROPOSAL_ID), ("Accepted", PROPOSAL_ID), ("AcceptedVal", ACCEPTED_VALUE)],
    go="paxos.NodeClaims",
)
PAXOS_STATE = Map(NODE_ID, NODE_CLAIMS, name="GossipState", go="paxos.GossipState")
NICKNAMES = Map(PEER_NAME, STRING, go="map[mesh.PeerName]string")
GOSSIP_STATE = Struct(
    "gossipState",
    [("Now", INT64), ("Nicknames", NICKNAMES), ("Paxos", PAXOS_STATE), ("Ring", Ptr(RING))],
    go="ipam.gossipState",
)
RANGE = Struct("Range", [("Start", ADDRESS), ("End", ADDRESS)], go="address.Range")
CIDR_T = Struct("CIDR", [("Addr", ADDRESS), ("PrefixLen", GO_INT)], go="address.CIDR")
OWNED_DATA = Struct(
    "ownedData", [("IsContainer", BOOL), ("Cidrs", Slice(CIDR_T, go="[]address.CIDR"))], go="ipam.ownedData"
)
OWNED = Map(STRING, OWNED_DATA, go="map[string]ipam.ownedData")


@dataclass
class GossipMessage:
    """``gossipState``: what an allocator tells the others."""

    now: int
    nicknames: dict[PeerName, str] = field(default_factory=dict)
    paxos: GossipState | None = None  # only while the sender has no ring (None for observers)
    ring: Ring | None = None


@dataclass
class Owned:
    """``ownedData``: the addresses one ident holds."""

    is_container: bool
    cidrs: list[CIDR] = field(default_factory=list)


# ================================================================================================ encoding


def _ring_value(r: Ring) -> dict[str, Any]:
    return {
        "Start": r.start,
        "End": r.end,
        "Peer": int(r.peer),
        "Entries": [{"Token": e.token, "Peer": int(e.peer), "Version": e.version, "Free": e.free} for e in r.entries],
        "Seeds": [int(s) for s in r.seeds],
    }


def _node(n: NodeID) -> dict[str, Any]:
    return {"Name": int(n.name), "UID": n.uid}


def _proposal(p: ProposalID) -> dict[str, Any]:
    return {"Round": p.round, "Proposer": _node(p.proposer)}


def _claims(c: NodeClaims) -> dict[str, Any]:
    return {
        "Promise": _proposal(c.promise),
        "Accepted": _proposal(c.accepted),
        "AcceptedVal": {"Value": [int(v) for v in c.accepted_val.value], "Origin": _proposal(c.accepted_val.origin)},
    }


def encode_gossip(msg: GossipMessage) -> bytes:
    """A ``gossipState`` stream (the fast path below writes the same bytes as ``encode_gossip_generic``)."""
    paxos = list(msg.paxos.items()) if msg.paxos else None
    return _GOSSIP_PREFIX + wire_fast.encode_body(
        msg.now, [(int(k), v) for k, v in msg.nicknames.items()], paxos, msg.ring
    )


def encode_gossip_generic(msg: GossipMessage) -> bytes:
    value = {
        "Now": msg.now,
        "Nicknames": [(int(k), v) for k, v in msg.nicknames.items()],
        "Paxos": [(_node(k), _claims(v)) for k, v in msg.paxos.items()] if msg.paxos else None,
        "Ring": _ring_value(msg.ring) if msg.ring is not None else None,
    }
    return encode_stream([(GOSSIP_STATE, value)])


def encode_range(r: Range) -> bytes:
    return encode_stream([(RANGE, {"Start": r.start, "End": r.end})])


def encode_unicast(kind: int, body: bytes) -> bytes:
    return bytes((kind,)) + body


def encode_ring(r: Ring) -> bytes:
    """The stored ``ring`` value (a ``*ring.Ring``), by the fast path (same bytes as the generic encoder)."""
    return _RING_PREFIX + wire_fast.encode_ring_value(r)


def encode_ring_generic(r: Ring) -> bytes:
    return encode_stream([(Ptr(RING), _ring_value(r))])


def _cidr(c: CIDR) -> dict[str, int]:
    return {"Addr": c.addr, "PrefixLen": c.prefix_len}


def owned_fragment(ident: str, o: Owned) -> bytes:
    """One ident's entry of the ``ownedAddresses`` map, encoded (the allocator keeps these per ident)."""
    return wire_fast.encode_owned_entry(ident, o.is_container, [(c.addr, c.prefix_len) for c in o.cidrs])


def encode_owned_fragments(fragments: list[bytes]) -> bytes:
    """The stored ``ownedAddresses`` value from its encoded entries (same bytes as ``encode_owned_generic``)."""
    return _OWNED_PREFIX + wire_fast.encode_map_value(_OWNED_ID, len(fragments), fragments)


def encode_owned(owned: dict[str, Owned]) -> bytes:
    return encode_owned_fragments([owned_fragment(k, o) for k, o in owned.items()])


def encode_owned_generic(owned: dict[str, Owned]) -> bytes:
    value = [
        (ident, {"IsContainer": o.is_container, "Cidrs": [_cidr(c) for c in o.cidrs]}) for ident, o in owned.items()
    ]
    return encode_stream([(OWNED, value)])


def encode_peer_name(name: int) -> bytes:
    return encode_stream([(PEER_NAME, int(name))])


# ================================================================================================ decoding


def _u32(v: object, what: str) -> int:
    if not isinstance(v, int) or not 0 <= v <= MAX_U32:
        raise RemoteProtocolError(f"IPAM: {what} out of range: {v}")
    return v


def _peer(v: object, what: str) -> PeerName:
    try:
        return PeerName(int(v))  # type: ignore[call-overload]
    except (ValueError, TypeError) as e:
        raise RemoteProtocolError(f"IPAM: bad {what}: {v}") from e


def _ring_from(d: dict[str, Any]) -> Ring:
    entries = [
        Entry(
            _u32(e["Token"], "token"),
            _peer(e["Peer"], "entry owner"),
            _u32(e["Version"], "version"),
            _u32(e["Free"], "free count"),
        )
        for e in d["Entries"]
    ]
    return Ring(
        start=_u32(d["Start"], "ring start"),
        end=_u32(d["End"], "ring end"),
        peer=_peer(d["Peer"], "ring owner"),
        entries=entries,
        seeds=[_peer(s, "seed") for s in d["Seeds"]],
    )


def _node_from(d: dict[str, Any]) -> NodeID:
    return NodeID(_peer(d["Name"], "Paxos node"), int(d["UID"]))


def _proposal_from(d: dict[str, Any]) -> ProposalID:
    return ProposalID(int(d["Round"]), _node_from(d["Proposer"]))


def _decode(data: bytes, t: Any, what: str) -> Any:
    try:
        return decode_stream(data, [t])[0]
    except GobError as e:
        raise RemoteProtocolError(f"malformed IPAM {what}: {e}") from e


_SAMPLE_STATE = {
    "Now": 1,
    "Nicknames": [(1, "x")],
    "Paxos": [({"Name": 1, "UID": 1}, {"AcceptedVal": {"Value": [1]}})],
    "Ring": {"Entries": [{"Token": 1}], "Seeds": [1]},
}
_GOSSIP_PREFIX = wire_fast._canonical_prefix(GOSSIP_STATE, _SAMPLE_STATE)
_RING_PREFIX = wire_fast._canonical_prefix(RING, _SAMPLE_STATE["Ring"])
_OWNED_SAMPLE = encode_stream([(OWNED, [("x", {"IsContainer": True, "Cidrs": [{"Addr": 1, "PrefixLen": 1}]})])])
_OWNED_PREFIX = wire_fast._canonical_prefix(OWNED, [("x", {"IsContainer": True, "Cidrs": [{"Addr": 1}]})])
_OWNED_ID = wire_fast.value_type_id(_OWNED_SAMPLE)
_CACHE: dict[bytes, GossipMessage] = {}
_CACHE_SIZE = 32


def decode_gossip(payload: bytes) -> GossipMessage:
    """A ``gossipState``; ``RemoteProtocolError`` if anything in it is malformed.

    The same broadcast often arrives several times (relays, periodic gossip), so the last few decoded messages
    are remembered; callers must treat the result as read-only.
    """
    hit = _CACHE.get(payload)
    if hit is not None:
        return hit
    try:
        msg = _decode_fast(payload)
    except wire_fast.NotCanonical:
        msg = decode_gossip_generic(payload)
    except GobError as e:
        raise RemoteProtocolError(f"malformed IPAM gossip: {e}") from e
    if len(_CACHE) >= _CACHE_SIZE:
        del _CACHE[next(iter(_CACHE))]
    _CACHE[payload] = msg
    return msg


def _decode_fast(payload: bytes) -> GossipMessage:
    d = wire_fast.decode_body(payload, _GOSSIP_PREFIX)
    nicknames: dict[PeerName, str] = {}
    for k, raw in d["Nicknames"]:
        if len(raw) > MAX_NICKNAME:
            raise RemoteProtocolError("IPAM: nickname too long")
        try:
            nicknames[_peer(k, "nickname key")] = raw.decode()
        except UnicodeDecodeError as e:
            raise RemoteProtocolError("IPAM: nickname is not UTF-8") from e
    paxos: GossipState | None = None
    if d["Paxos"]:
        paxos = {}
        for node, (promise, accepted, (value, origin)) in d["Paxos"]:
            paxos[NodeID(_peer(node[0], "Paxos node"), node[1])] = NodeClaims(
                _proposal_list(promise),
                _proposal_list(accepted),
                AcceptedValue([_peer(x, "Paxos value") for x in value], _proposal_list(origin)),
            )
    ring = None
    if d["Ring"] is not None:
        rd = d["Ring"]
        names: dict[int, PeerName] = {}  # a ring names few peers many times
        entries = []
        for t, p, v, f in rd["Entries"]:
            if t > MAX_U32 or v > MAX_U32 or f > MAX_U32:
                raise RemoteProtocolError(f"IPAM: ring entry out of range: {t} {v} {f}")
            name = names.get(p)
            if name is None:
                name = names[p] = _peer(p, "entry owner")
            entries.append(Entry(t, name, v, f))
        rd["Entries"] = []
        ring = _ring_from(rd)
        ring.entries = entries
        if ring.start >= ring.end:
            raise RemoteProtocolError("IPAM: ring with an empty universe")
    return GossipMessage(_now(d["Now"]), nicknames, paxos, ring)


def _proposal_list(p: list[Any]) -> ProposalID:
    rnd, (name, uid) = p
    return ProposalID(rnd, NodeID(_peer(name, "Paxos proposer"), uid))


def _now(v: int) -> int:
    if not -(1 << 63) <= v < 1 << 63:
        raise RemoteProtocolError("IPAM: timestamp out of range")
    return v


def decode_gossip_generic(payload: bytes) -> GossipMessage:
    d = _decode(payload, GOSSIP_STATE, "gossip")
    nicknames: dict[PeerName, str] = {}
    for k, v in d["Nicknames"].items():
        if len(v.encode()) > MAX_NICKNAME:
            raise RemoteProtocolError("IPAM: nickname too long")
        nicknames[_peer(k, "nickname key")] = v
    paxos: GossipState | None = None
    if d["Paxos"]:
        paxos = {}
        for k, v in d["Paxos"].items():
            val = v["AcceptedVal"]
            paxos[_node_from(k)] = NodeClaims(
                _proposal_from(v["Promise"]),
                _proposal_from(v["Accepted"]),
                AcceptedValue([_peer(x, "Paxos value") for x in val["Value"]], _proposal_from(val["Origin"])),
            )
    ring = _ring_from(d["Ring"]) if d["Ring"] is not None else None
    if ring is not None and ring.start >= ring.end:
        raise RemoteProtocolError("IPAM: ring with an empty universe")
    return GossipMessage(int(d["Now"]), nicknames, paxos, ring)


def decode_range(data: bytes) -> Range:
    d = _decode(data, RANGE, "range")
    r = Range(_u32(d["Start"], "range start"), _u32(d["End"], "range end"))
    if r.start >= r.end:
        raise RemoteProtocolError(f"IPAM: empty range {r.start}-{r.end}")
    return r


def decode_ring(data: bytes) -> Ring:
    return _ring_from(_decode(data, Ptr(RING), "ring"))


def decode_owned(data: bytes) -> dict[str, Owned]:
    d = _decode(data, OWNED, "owned addresses")
    out = {}
    for ident, o in d.items():
        cidrs = []
        for c in o["Cidrs"]:
            plen = int(c["PrefixLen"])
            if not 0 <= plen <= 32:
                raise RemoteProtocolError(f"IPAM: bad prefix length {plen}")
            cidrs.append(CIDR(_u32(c["Addr"], "address"), plen))
        out[str(ident)] = Owned(bool(o["IsContainer"]), cidrs)
    return out


def decode_peer_name(data: bytes) -> PeerName:
    return _peer(_decode(data, PEER_NAME, "peer name"), "peer name")
