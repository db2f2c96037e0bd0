"""The gossip payload of channel ``nameserver``, byte for byte as Weave Net 2.8 encodes it.

A payload is a fresh gob stream holding one ``GossipData{Timestamp int64; Entries []Entry}`` where ``Entry`` is
``{ContainerID string; Origin PeerName; Addr Address; Hostname string; Version int; Tombstone int64}``. Weave
sorts the entries case-sensitively before encoding (``Web.`` < ``db.`` < ``web.``); we do the same so our bytes
equal Go's (checked against the golden vectors). Decoding accepts any order.

Anything malformed raises :class:`weavenet.errors.RemoteProtocolError` (the gob layer's ``GobError`` is one).
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from weavenet.core.codec.gob import INT, STRING, UINT, Encoder, GobError, Named, Slice, Struct, decode_stream
from weavenet.dns.entries import Entry
from weavenet.errors import RemoteProtocolError

ENTRY_TYPE = Struct(
    "Entry",
    [
        ("ContainerID", STRING),
        ("Origin", Named(UINT, "PeerName", "mesh.PeerName")),
        ("Addr", Named(UINT, "Address", "address.Address")),
        ("Hostname", STRING),
        ("Version", Named(INT, "int", "int")),
        ("Tombstone", INT),
    ],
    "nameserver.Entry",
)
GOSSIP_TYPE = Struct(
    "GossipData",
    [("Timestamp", INT), ("Entries", Slice(ENTRY_TYPE, "Entries", "nameserver.Entries"))],
    "nameserver.GossipData",
)

MAX_ENTRIES = 1 << 20  # far above any real cluster; a bound on what one message may make us hold
INT64_MIN, INT64_MAX = -(1 << 63), (1 << 63) - 1


def encode_gossip(timestamp: int, entries: Iterable[Entry]) -> bytes:
    ordered = sorted(entries, key=Entry.wire_key)
    value = {
        "Timestamp": timestamp,
        "Entries": [
            {
                "ContainerID": e.container_id,
                "Origin": e.origin,
                "Addr": e.addr,
                "Hostname": e.hostname,
                "Version": e.version,
                "Tombstone": e.tombstone,
            }
            for e in ordered
        ],
    }
    return Encoder().encode(GOSSIP_TYPE, value)


def decode_gossip(payload: bytes) -> tuple[int, list[Entry]]:
    """(timestamp, entries) of one payload; RemoteProtocolError if malformed or out of range."""
    try:
        (value,) = decode_stream(payload, [GOSSIP_TYPE])
    except GobError as e:
        raise RemoteProtocolError(f"nameserver gossip: {e}") from e
    if not isinstance(value, dict):
        raise RemoteProtocolError("nameserver gossip: not a GossipData")
    raw: list[Any] = value.get("Entries") or []
    if len(raw) > MAX_ENTRIES:
        raise RemoteProtocolError(f"nameserver gossip: {len(raw)} entries exceed the limit of {MAX_ENTRIES}")
    ts = value.get("Timestamp", 0)
    out = []
    for r in raw:
        cid, origin, addr, host = r["ContainerID"], r["Origin"], r["Addr"], r["Hostname"]
        version, tomb = r["Version"], r["Tombstone"]
        if not (isinstance(cid, str) and isinstance(host, str)):
            raise RemoteProtocolError("nameserver gossip: bad entry strings")
        if not (0 <= addr <= 0xFFFFFFFF):
            raise RemoteProtocolError(f"nameserver gossip: address {addr} does not fit in 32 bits")
        if not (0 <= origin < 1 << 48):
            raise RemoteProtocolError(f"nameserver gossip: origin {origin} is not a peer name")
        if not (INT64_MIN <= version <= INT64_MAX and INT64_MIN <= tomb <= INT64_MAX):
            raise RemoteProtocolError("nameserver gossip: version or tombstone out of range")
        out.append(Entry(cid, origin, addr, host, version, tomb))
    return ts, out
