"""One of our TCP connections to another peer, from intro to teardown (port of mesh ``connection.go``).

The router owns the decisions (which peer this is, whether to keep it); this module holds the per-connection
state: the handshake, then the message framer, the heartbeat and read deadlines, the overlay forwarders chosen
for it (Weave's *overlay switch*), and the per-channel gossip senders; and what a connection does on its own:
its deadlines, its heartbeat, passing the peer's overlay control messages to its forwarders and theirs to the
peer. Messages come out as bytes for the router to frame and send.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from enum import Enum
from ipaddress import IPv4Network, ip_address

from weavenet.core import liveness
from weavenet.core.connection_maker import host_of
from weavenet.core.contact import Contact
from weavenet.core.fastdp import FastdpForwarder
from weavenet.core.features import RemoteFeatures
from weavenet.core.framing import TAG_HEARTBEAT, MessageFramer
from weavenet.core.gossip import GossipSender
from weavenet.core.handshake import Handshake
from weavenet.core.liveness import Silence
from weavenet.core.names import PeerName
from weavenet.core.overlay import Forwarder
from weavenet.core.sleeve import SleeveForwarder
from weavenet.core.topology import Peer

TCP_HEARTBEAT = 30.0  # a heartbeat message every 30 s ...
READ_TIMEOUT = 2 * TCP_HEARTBEAT  # ... so 60 s of silence means the peer is gone
HANDSHAKE_TIMEOUT = 10.0
TAG_OVERLAY_CONTROL = 7

log = logging.getLogger("weavenet.mesh")


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
    forwarders: list[Forwarder | None] = field(default_factory=list)
    compat: bool = False  # legacy peer without the Overlays feature: raw control tags 1-3
    refused: dict[str, str] = field(default_factory=dict)  # overlay -> why this connection has no forwarder of it
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
    # both peers run lean liveness: once established, its contact is kept (see ``contact``)
    lean: bool = False
    contact: Contact | None = None

    @property
    def trusted_by_remote(self) -> bool:
        return bool(self.features and self.features.trusted)

    @property
    def untrusted(self) -> bool:
        """Data-plane encryption applies unless both ends trust each other."""
        return not self.trust_remote or not self.trusted_by_remote

    def describe(self) -> str:
        return f"->[{self.remote_tcp_addr}|{self.remote}]" if self.remote else f"->[{self.remote_tcp_addr}]"

    def best_forwarder(self) -> Forwarder | None:
        """Weave's chooseBest: the most preferred established forwarder, else the most preferred working one.

        A fast-datapath forwarder that was established but has lost its path is *on hold*: it does not count as
        working, so the connection moves to the sleeve until heartbeats come back -- or, if the sleeve is gone
        too, the connection has no working forwarder and is torn down (then re-dialled), as in Weave.
        """
        working = [f for f in self.forwarders if f is not None and not f.stopped and not f.on_hold]
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

    # -- the connection's own protocol (mesh ``connection.go``) ----------------------------------------------------

    def next_deadline(self) -> float:
        """When its timer must fire: the handshake or read timeout, the heartbeat, the silence watch, a held ack,
        a forwarder's timer, whichever comes first."""
        times = [self.deadline]
        if self.next_heartbeat is not None:
            times.append(self.next_heartbeat)
        if self.silence is not None:
            times.append(self.silence.timer())
        if self.contact is not None:
            times.append(self.contact.timer())
        times.extend(at for at, _, _, _ in self.held)
        for fwd in self.forwarders:
            if fwd is not None and (t := fwd.get_timer()) is not None:
                times.append(t)
        return min(times)

    def receive(self, data: bytes, now: float) -> list[bytes]:
        """Bytes from the peer, after the handshake: the complete messages (any of them moves the read deadline)."""
        assert self.framer is not None
        messages = self.framer.feed(data)
        if messages:
            self.deadline = now + READ_TIMEOUT
        return messages

    def due(self, now: float) -> list[bytes]:
        """The messages its timer sends by ``now``: the TCP heartbeat, acks held for a watched peer."""
        out = []
        if self.next_heartbeat is not None and now >= self.next_heartbeat:
            out.append(bytes((TAG_HEARTBEAT,)))
            self.next_heartbeat = now + TCP_HEARTBEAT
        out.extend(self.control_message(index, subtag, body) for index, subtag, body in liveness.due_acks(self, now))
        return out

    def control_message(self, index: int, subtag: int, body: bytes) -> bytes:
        """A control message of forwarder ``index`` for the peer's (raw tags 1-3 with a peer before the switch)."""
        if self.compat:
            return bytes((subtag,)) + body
        return bytes((TAG_OVERLAY_CONTROL, index, subtag)) + body

    def overlay_control(self, tag: int, payload: bytes, now: float) -> bool:
        """A message from the peer for one of our forwarders, handed to it; False if ``tag`` is no such message."""
        if tag == TAG_OVERLAY_CONTROL and not self.compat:
            if len(payload) < 2:
                log.info("%s: Received truncated overlay control message", self.describe())
                return True
            index = payload[0]
            fwd = self.forwarders[index] if index < len(self.forwarders) else None
            if fwd is not None:
                fwd.control_message(payload[1], payload[2:], now)
            return True
        if tag in (1, 2, 3) and self.compat:
            fwd = self.forwarders[0]
            if fwd is not None:
                fwd.control_message(tag, payload, now)
            return True
        return False

    def take_control(self, now: float) -> list[bytes]:
        """What the forwarders have for the peer (a watched peer's second first ack is held: ``liveness``); a
        forwarder that stopped on an error is logged, once."""
        out = []
        for index, fwd in enumerate(self.forwarders):
            if fwd is None:
                continue
            for subtag, body in fwd.control_out:
                if not liveness.hold_ack(self, index, fwd, subtag, body, now):
                    out.append(self.control_message(index, subtag, body))
            fwd.control_out.clear()
            if fwd.stopped and fwd.error and not fwd.error_logged:
                fwd.error_logged = True
                log.info("overlay_switch %s: %s %s", self.describe(), fwd.name, fwd.error)
        return out


def trusted(address: str, subnets: list[IPv4Network]) -> bool:
    """Whether a peer at ``address`` ("ip:port") is in a subnet trusted not to need data-plane encryption."""
    host = host_of(address)
    try:
        ip = ip_address(host) if host else None
    except ValueError:
        return False
    return ip is not None and any(ip in net for net in subnets)
