"""Topology gossip data: a set of peer names, encoded with their current entries when sent.

Weave sends every changed entry to a few random neighbours, and the whole topology to a few random neighbours
every 30 s; with n peers in a full mesh an entry is O(n) bytes, so the periodic gossip alone costs O(n³) bytes
per round across the cluster. We keep the wire format and the protocol, and send less:

* per connection we remember which version of each entry the neighbour holds (it sent it to us, in an update
  or a digest), and leave those entries out; an update the neighbour already has costs nothing;
* the periodic round sends weavenet neighbours a *digest* instead of the whole topology: name, UID and version
  of every entry, 22 bytes each. The receiver learns exactly what the sender holds (which also corrects what it
  believed the sender held, e.g. after the sender garbage-collected peers) and sends back only the entries the
  sender lacks or holds older. With a Go neighbour the round stays Weave's unfiltered full gossip.

Digests travel as gossip unicasts on a channel of their own, sent only to neighbours whose features announce
``WeavenetDigest``; Go peers never see one. Everything else on the wire is an ordinary topology update.
"""

from __future__ import annotations

import struct

from weavenet.core.gossip import GossipData
from weavenet.core.names import PeerName
from weavenet.core.topology import MAX_PEERS_PER_UPDATE, Topology
from weavenet.errors import RemoteProtocolError

DIGEST_CHANNEL = "weavenet-topology-digest"
DIGEST_FEATURE = "WeavenetDigest"
DIGEST_FORMAT = 1
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


def encode_digest(topology: Topology) -> bytes:
    """``format byte ‖ (name 6, uid u64, version u64)*`` for every entry we hold (placeholders left out)."""
    parts = [bytes((DIGEST_FORMAT,))]
    for name, peer in sorted(topology.by_name.items()):
        if peer.uid:
            parts.append(_ENTRY.pack(name.bytes6(), peer.uid, peer.version))
    return b"".join(parts)


def decode_digest(payload: bytes) -> dict[PeerName, tuple[int, int]]:
    if not payload or payload[0] != DIGEST_FORMAT or (len(payload) - 1) % _ENTRY.size:
        raise RemoteProtocolError("malformed topology digest")
    if (len(payload) - 1) // _ENTRY.size > MAX_PEERS_PER_UPDATE:
        raise RemoteProtocolError("topology digest too large")
    return {PeerName.from_bytes6(name): (uid, version) for name, uid, version in _ENTRY.iter_unpack(payload[1:])}


def missing_from(topology: Topology, theirs: dict[PeerName, tuple[int, int]]) -> set[PeerName]:
    """Entries the digest's sender lacks or holds in an older version than ours."""
    send: set[PeerName] = set()
    for name, peer in topology.by_name.items():
        if not peer.uid:
            continue
        held = theirs.get(name)
        if held is None or (peer.version, peer.uid) > (held[1], held[0]):
            send.add(name)
    return send
