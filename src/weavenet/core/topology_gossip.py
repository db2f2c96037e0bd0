"""Topology gossip data: a set of peer names, encoded with their current entries when sent.

Weave sends every changed entry to a few random neighbours, and the whole topology to a few random neighbours
every 30 s; with n peers in a full mesh an entry is O(n) bytes, so the periodic gossip alone costs O(n³) bytes
per round across the cluster. We keep the wire format and the protocol, and send less:

* per connection we remember which version of each entry the neighbour holds (it sent it to us, in an update
  or a digest), and leave those entries out; an update the neighbour already has costs nothing;
* with weavenet neighbours, anti-entropy runs on *digests* instead of whole topologies. Every 5 s a peer sends
  a few random neighbours a 16-byte hash of its (name, UID, version) entries; a neighbour with the same hash is
  in sync (and is then known to hold exactly our entries). On a mismatch it answers with its full digest (22
  bytes per entry), the first peer sends back the entries that one lacks or holds older, and answers with its
  own full digest if the neighbour holds anything newer, so both sides converge in one exchange. A new
  connection starts with full digests both ways instead of both whole topologies. A full digest also corrects
  what we believed a neighbour held (e.g. after it garbage-collected peers). With a Go neighbour, the 30 s
  round stays Weave's unfiltered full gossip.

Digests travel as gossip unicasts on a channel of their own, sent only to neighbours whose features announce
``WeavenetDigest``; Go peers never see one. Everything else on the wire is an ordinary topology update.
"""

from __future__ import annotations

import hashlib
import struct

from weavenet.core.gossip import GossipData
from weavenet.core.names import PeerName
from weavenet.core.topology import MAX_PEERS_PER_UPDATE, Topology
from weavenet.errors import RemoteProtocolError

DIGEST_CHANNEL = "weavenet-topology-digest"
DIGEST_FEATURE = "WeavenetDigest"
DIGEST_INTERVAL = 5.0  # anti-entropy rounds with weavenet neighbours: a 17-byte hash when in sync
FULL, HASH, REPLY = 1, 2, 3  # digest kinds: full (answer if you hold more), hash, full in reply (no answer)
HASH_SIZE = 16
_ENTRY = struct.Struct(">6sQQ")


class TopologyGossipData:
    __slots__ = ("full", "names", "topology")

    def __init__(self, topology: Topology, names: set[PeerName], full: bool = False) -> None:
        self.topology = topology
        self.names = names
        self.full = full  # send every named entry, whatever the neighbour is believed to hold

    def encode(self) -> list[bytes]:
        return [self.topology.encode_peers(self.names)]

    def merge(self, other: GossipData) -> GossipData:
        assert isinstance(other, TopologyGossipData)
        return TopologyGossipData(self.topology, self.names | other.names, self.full or other.full)

    def for_neighbour(self, held: dict[PeerName, tuple[int, int]]) -> TopologyGossipData | None:
        """What to send to a neighbour known to hold ``held`` (None: nothing).

        What we send is not recorded as held: the neighbour may drop an entry it cannot yet reach (its garbage
        collection) until the path to that peer arrives, so only what it says itself counts.
        """
        by_name = self.topology.by_name
        out = set()
        for name in self.names:
            peer = by_name.get(name)
            if peer is None:
                continue
            version = (peer.uid, peer.version)
            if self.full or held.get(name) != version:
                out.add(name)
        return TopologyGossipData(self.topology, out) if out else None


def _entries(topology: Topology) -> list[tuple[PeerName, int, int]]:
    return [(name, peer.uid, peer.version) for name, peer in sorted(topology.by_name.items()) if peer.uid]


def digest_hash(topology: Topology) -> bytes:
    h = hashlib.sha256()
    for name, uid, version in _entries(topology):
        h.update(_ENTRY.pack(name.bytes6(), uid, version))
    return h.digest()[:HASH_SIZE]


def encode_digest(topology: Topology, kind: int) -> bytes:
    """``kind ‖ body``. HASH: 16 bytes of SHA-256 over the entries; FULL / REPLY: (name 6, uid, version)*.

    Placeholders (peers known only from others' connection lists) are left out: there is nothing to compare.
    """
    if kind == HASH:
        return bytes((HASH,)) + digest_hash(topology)
    return bytes((kind,)) + b"".join(_ENTRY.pack(n.bytes6(), u, v) for n, u, v in _entries(topology))


def decode_digest(payload: bytes) -> tuple[int, bytes | dict[PeerName, tuple[int, int]]]:
    """(kind, hash) or (kind, {name: (uid, version)}); raises ``RemoteProtocolError`` if malformed."""
    if not payload:
        raise RemoteProtocolError("empty topology digest")
    kind, body = payload[0], payload[1:]
    if kind == HASH:
        if len(body) != HASH_SIZE:
            raise RemoteProtocolError("malformed topology digest hash")
        return kind, body
    if kind not in (FULL, REPLY) or len(body) % _ENTRY.size:
        raise RemoteProtocolError("malformed topology digest")
    if len(body) // _ENTRY.size > MAX_PEERS_PER_UPDATE:
        raise RemoteProtocolError("topology digest too large")
    return kind, {PeerName.from_bytes6(name): (uid, version) for name, uid, version in _ENTRY.iter_unpack(body)}


def compare(topology: Topology, theirs: dict[PeerName, tuple[int, int]]) -> tuple[set[PeerName], bool]:
    """(entries the digest's sender lacks or holds older than ours, whether it holds any we lack or hold older)."""
    send: set[PeerName] = set()
    for name, peer in topology.by_name.items():
        if not peer.uid:
            continue
        held = theirs.get(name)
        if held is None or (peer.version, peer.uid) > (held[1], held[0]):
            send.add(name)
    by_name = topology.by_name
    they_have_more = any(
        (p := by_name.get(name)) is None or (version, uid) > (p.version, p.uid)
        for name, (uid, version) in theirs.items()
    )
    return send, they_have_more


def held_versions(topology: Topology) -> dict[PeerName, tuple[int, int]]:
    """What a neighbour whose digest hash equals ours holds: exactly our entries."""
    return {name: (uid, version) for name, uid, version in _entries(topology)}
