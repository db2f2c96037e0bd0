"""One of our TCP connections to another peer, from intro to teardown (port of mesh ``connection.go``).

The router owns the decisions (which peer this is, whether to keep it); this module holds the per-connection
state: the handshake, then the message framer, the heartbeat and read deadlines, the overlay forwarders chosen
for it (Weave's *overlay switch*), and the per-channel gossip senders.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from enum import Enum

from weavenet.core.fastdp import FastdpForwarder
from weavenet.core.features import RemoteFeatures
from weavenet.core.framing import MessageFramer
from weavenet.core.gossip import GossipSender
from weavenet.core.handshake import Handshake
from weavenet.core.liveness import Silence
from weavenet.core.names import PeerName
from weavenet.core.sleeve import SleeveForwarder
from weavenet.core.topology import Peer

TCP_HEARTBEAT = 30.0  # a heartbeat message every 30 s ...
READ_TIMEOUT = 2 * TCP_HEARTBEAT  # ... so 60 s of silence means the peer is gone
HANDSHAKE_TIMEOUT = 10.0
TAG_OVERLAY_CONTROL = 7


class ConnState(Enum):
    DIALLING = "dialling"
    HANDSHAKE = "handshake"
    READY = "ready"  # added to the local peer: pending until the overlay is established
    CLOSED = "closed"


@dataclass(eq=False)
class LocalConnection:
    id: int
    outbound: bool
    remote_tcp_addr: str  # "ip:port", as dialled (outbound) or as seen (inbound)
    accept_new_peer: bool
    trust_remote: bool
    local_conn_id: int
    created_at: float
    state: ConnState = ConnState.HANDSHAKE
    local_addr: str | None = None
    handshake: Handshake | None = None
    framer: MessageFramer | None = None
    version: int = 0
    session_key: bytes | None = None
    features: RemoteFeatures | None = None
    remote: Peer | None = None
    uid: int = 0
    established: bool = False
    # overlay switch: the common overlays in our preference order; None marks a failed sub-forwarder
    forwarders: list[SleeveForwarder | FastdpForwarder | None] = field(default_factory=list)
    compat: bool = False  # legacy peer without the Overlays feature: raw control tags 1-3
    fastdp_refusal: str | None = None  # why this connection has no fast-datapath forwarder
    overlay_shown: tuple[str, str | None] | None = None  # (overlay in use, fallback reason) last logged
    senders: dict[str, GossipSender] = field(default_factory=dict)
    writable: bool = True
    deadline: float = 0.0  # handshake timeout, then read timeout
    next_heartbeat: float | None = None
    error: str | None = None
    bytes_in: int = 0
    gossip_after: float = 0.0  # earliest time the next gossip may be sent on this connection
    gossip_gap: float = 0.0  # current coalescing window (adaptive, see MeshRouter._flush_gossip)
    gossip_last: float = -1e9  # when gossip was last sent
    # topology entries (uid, version) the remote is known to hold: it sent them to us, or we sent them to it
    peer_versions: dict[PeerName, tuple[int, int]] = field(default_factory=dict)
    # a peer without weavenet's features (Go): its silence is watched once established (see ``liveness``)
    watch: bool = False
    silence: Silence | None = None
    first_acks: dict[str, float] = field(default_factory=dict)  # overlay -> when its first ack was sent
    held: list[tuple[float, int, int, bytes]] = field(default_factory=list)  # (send at, index, sub-tag, body)

    @property
    def trusted_by_remote(self) -> bool:
        return bool(self.features and self.features.trusted)

    @property
    def untrusted(self) -> bool:
        """Data-plane encryption applies unless both ends trust each other."""
        return not self.trust_remote or not self.trusted_by_remote

    def describe(self) -> str:
        return f"->[{self.remote_tcp_addr}|{self.remote}]" if self.remote else f"->[{self.remote_tcp_addr}]"

    def best_forwarder(self) -> SleeveForwarder | FastdpForwarder | None:
        """Weave's chooseBest: the most preferred established forwarder, else the most preferred working one.

        A fast-datapath forwarder that was established but has lost its path is *on hold*: it does not count as
        working, so the connection moves to the sleeve until heartbeats come back -- or, if the sleeve is gone
        too, the connection has no working forwarder and is torn down (then re-dialled), as in Weave.
        """
        working = [f for f in self.forwarders if f is not None and not f.stopped and not _on_hold(f)]
        for f in working:
            if f.established:
                return f
        return working[0] if working else None

    def fastdp_forwarder(self) -> FastdpForwarder | None:
        return next((f for f in self.forwarders if isinstance(f, FastdpForwarder)), None)

    def sleeve_forwarder(self) -> SleeveForwarder | None:
        return next((f for f in self.forwarders if isinstance(f, SleeveForwarder) and not f.stopped), None)

    def sender(self, channel: str) -> GossipSender:
        s = self.senders.get(channel)
        if s is None:
            s = self.senders[channel] = GossipSender()
        return s


def _on_hold(fwd: SleeveForwarder | FastdpForwarder) -> bool:
    return isinstance(fwd, FastdpForwarder) and fwd.on_hold
