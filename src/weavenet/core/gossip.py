"""Gossip: named channels of mergeable state carried over the mesh.

Port of mesh ``gossip.go``, ``gossip_channel.go`` and ``surrogate_gossiper.go``. Every subsystem that shares
state across the cluster (topology, IPAM ring, DNS entries) is a *gossiper* on its own channel. The mesh offers
three ways to send:

* **gossip** (tag 4): to a few random neighbours, who merge it and pass on only what was new to them;
* **broadcast** (tag 6): along the broadcast spanning tree, keeping the original sender's name;
* **unicast** (tag 5): hop by hop to one destination peer.

Senders never queue: per (connection, channel) a ``GossipSender`` holds at most one pending gossip value plus
one pending broadcast per source, and new data is *merged* into them. When a connection is slow, updates
coalesce instead of piling up; that is what keeps gossip bandwidth bounded under churn.

The envelope of each message is a fresh gob stream: channel name, source peer, [destination peer], payload.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Protocol

from weavenet.core.codec.gob import BYTES, STRING, UINT, Decoder, Encoder, GobError
from weavenet.core.names import PeerName
from weavenet.errors import RemoteProtocolError

TAG_GOSSIP_UNICAST = 5
TAG_GOSSIP_BROADCAST = 6
TAG_GOSSIP = 4

GOSSIP_INTERVAL = 30.0  # periodic full gossip of every channel (mesh defaultGossipInterval)
MAX_CHANNEL_NAME = 256


class GossipData(Protocol):
    """A mergeable piece of gossip state."""

    def encode(self) -> list[bytes]:
        """The payloads to send, each as its own protocol message."""
        ...

    def merge(self, other: GossipData) -> GossipData:
        """Combine with ``other`` (of the same kind) into one value that says both."""
        ...


class Gossiper(Protocol):
    """The receiving side of a channel.

    Every call carries ``now`` (monotonic seconds), as every input of a pure machine does, so a gossiper needs no
    clock and no time set from outside. (Weave's interface has none: its gossipers read the clock themselves.)
    """

    def on_gossip_unicast(self, src: PeerName, msg: bytes, now: float) -> None:
        """A message addressed to us. Raise ``RemoteProtocolError`` to drop the connection it came on."""
        ...

    def on_gossip_broadcast(self, src: PeerName, update: bytes, now: float) -> GossipData | None:
        """Merge a broadcast; return what to relay further along the broadcast tree (None: nothing)."""
        ...

    def gossip(self, now: float) -> GossipData | None:
        """Our complete state, sent periodically and to new neighbours."""
        ...

    def on_gossip(self, update: bytes, now: float) -> GossipData | None:
        """Merge gossip; return only what was new to us (None: nothing), to pass on to our neighbours."""
        ...


class GossipSink(Protocol):
    """What the mesh offers a gossiper for sending on its channel."""

    def gossip_unicast(self, dst: PeerName, msg: bytes) -> None: ...

    def gossip_broadcast(self, data: GossipData) -> None: ...

    def gossip_neighbour_subset(self, data: GossipData) -> None: ...


@dataclass(slots=True, frozen=True)
class Envelope:
    tag: int
    channel: str
    src: PeerName
    dst: PeerName | None
    payload: bytes


def encode_envelope(tag: int, channel: str, src: int, payload: bytes, dst: int | None = None) -> bytes:
    """A complete protocol message (tag byte + gob envelope)."""
    enc = Encoder()
    parts = [bytes((tag,)), enc.encode(STRING, channel), enc.encode(UINT, src)]
    if dst is not None:
        parts.append(enc.encode(UINT, dst))
    parts.append(enc.encode(BYTES, payload))
    return b"".join(parts)


def decode_envelope(tag: int, body: bytes) -> Envelope:
    """Parse the body of a tag 4/5/6 message. Raises ``RemoteProtocolError`` if malformed."""
    dec = Decoder(max_message_size=len(body) + 16)
    dec.feed(body)
    try:
        channel = dec.next_value(STRING)
        src = dec.next_value(UINT)
        dst = dec.next_value(UINT) if tag == TAG_GOSSIP_UNICAST else None
        payload = dec.next_value(BYTES)
    except GobError as e:
        raise RemoteProtocolError(f"malformed gossip envelope: {e}") from e
    if not isinstance(payload, bytes) or not isinstance(channel, str):
        raise RemoteProtocolError("truncated gossip envelope")
    if len(channel) > MAX_CHANNEL_NAME:
        raise RemoteProtocolError("gossip channel name too long")
    try:
        src_name = PeerName(src)
        dst_name = PeerName(dst) if dst is not None else None
    except (ValueError, TypeError) as e:
        raise RemoteProtocolError(f"gossip envelope: bad peer name: {e}") from e
    return Envelope(tag, channel, src_name, dst_name, payload)


@dataclass(slots=True)
class GossipSender:
    """Pending gossip for one (connection, channel): merged, never queued.

    Gossip goes out before broadcasts (it usually matters more). ``pick`` hands out one value at a time so the
    caller can stop when the connection is backed up and let later data merge into what is still pending.
    """

    gossip: GossipData | None = None
    broadcasts: dict[PeerName, GossipData] = field(default_factory=dict)

    def send(self, data: GossipData) -> None:
        self.gossip = data if self.gossip is None else self.gossip.merge(data)

    def broadcast(self, src: PeerName, data: GossipData) -> None:
        pending = self.broadcasts.get(src)
        self.broadcasts[src] = data if pending is None else pending.merge(data)

    def empty(self) -> bool:
        return self.gossip is None and not self.broadcasts

    def pick(self) -> tuple[int, PeerName | None, GossipData] | None:
        """Remove and return (tag, broadcast source or None, data), or None if nothing is pending."""
        if self.gossip is not None:
            data, self.gossip = self.gossip, None
            return TAG_GOSSIP, None, data
        if self.broadcasts:
            src = next(iter(self.broadcasts))
            return TAG_GOSSIP_BROADCAST, src, self.broadcasts.pop(src)
        return None


class BytesGossipData:
    """Opaque payloads, concatenated on merge (what a surrogate relays)."""

    __slots__ = ("messages",)

    def __init__(self, messages: list[bytes]) -> None:
        self.messages = messages

    def encode(self) -> list[bytes]:
        return list(self.messages)

    def merge(self, other: GossipData) -> GossipData:
        assert isinstance(other, BytesGossipData)
        return BytesGossipData(self.messages + other.messages)


class SurrogateGossiper:
    """Stands in for a channel we don't implement: relays its gossip and broadcasts verbatim.

    Identical gossip seen within one gossip interval is not relayed again, which stops loops. Unicasts addressed
    to us are ignored (there is nobody to deliver them to).
    """

    def __init__(self, interval: float = GOSSIP_INTERVAL) -> None:
        self.interval = interval
        self._seen: list[tuple[float, bytes]] = []

    def on_gossip_unicast(self, src: PeerName, msg: bytes, now: float) -> None:
        return None

    def on_gossip_broadcast(self, src: PeerName, update: bytes, now: float) -> GossipData | None:
        return BytesGossipData([update])

    def gossip(self, now: float) -> GossipData | None:
        return None

    def on_gossip(self, update: bytes, now: float) -> GossipData | None:
        self._seen = [(t, u) for t, u in self._seen if t > now - self.interval]
        if any(u == update for _, u in self._seen):
            return None
        self._seen.append((now, update))
        return BytesGossipData([update])
