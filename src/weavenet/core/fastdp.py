"""The fast datapath's per-connection control: heartbeats through the VXLAN tunnel, health, fallback reasons.

Port of the control half of Weave's ``router/fastdp.go``, extended so a broken path does not cost the fast path
for the life of the connection. Data frames never pass through here: a kernel VXLAN device per peer carries them
(see ``weavenet.daemon.fastdp_link``); this machine only decides whether that device may be used.

1. Confirmed with the connection, the forwarder sends heartbeats every 0.5 s: full-MTU frames through the tunnel
   with don't-fragment set (``fastdp_codec``), to the peer's VXLAN port (its TCP port + 1 if we dialled it, else
   our own VXLAN port, as Weave does).
2. The first valid heartbeat from the peer is answered once with the control message ``HeartbeatAck`` (over TCP,
   overlay control tag 7, sub-tag 0) -- but only when our kernel device for the peer exists, because the ack
   invites the peer to send its traffic. An ack received makes us *established*: the path carries our full-size
   packets.
3. Healthy means established and still hearing the peer: within 60 s for a Go peer (which gives up on the
   forwarder after that, so we do too), within 6 s for a weavenet peer, whose heartbeats also say whether it
   hears ours (``RX_HEARTBEATS``). A healthy forwarder is the one the overlay switch picks; otherwise the
   connection uses the sleeve and ``reason`` says why, and the forwarder keeps heartbeating, so it becomes
   healthy again by itself when the path heals.

Everything is pure: time comes in as ``now``; heartbeats to send are queued in the overlay's ``outbox``.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass, field
from ipaddress import ip_address
from typing import TYPE_CHECKING

from weavenet.core import contact
from weavenet.core.fastdp_codec import (
    ASK,
    PROVE,
    RX_HEARTBEATS,
    RX_PROBES,
    UNDERLAY_OVERHEAD,
    Heartbeat,
    heartbeat_frame,
    parse_heartbeat,
    probe_frame,
    split_vni,
    vni_for,
)
from weavenet.core.fastdp_keep import CONTROL_GOODBYE, KEEP_FEATURE
from weavenet.core.names import PeerName
from weavenet.core.topology import Peer
from weavenet.errors import RemoteProtocolError

if TYPE_CHECKING:
    from weavenet.core.mesh_types import MeshConfig
    from weavenet.core.overlay import OverlayLink

log = logging.getLogger("weavenet.fastdp")

FAST_HEARTBEAT = 0.5  # until established (Weave's FastHeartbeat)
SLOW_HEARTBEAT = 10.0  # established, Go peer (Weave's SlowHeartbeat)
HEARTBEAT_TIMEOUT = 60.0  # Go peer silent this long: the forwarder fails, as Go's own does
GO_RX_TIMEOUT = 25.0  # Go peer: two and a half slow heartbeats missed -> on hold
QUICK_HEARTBEAT = 2.0  # weavenet peer, healthy
QUICK_RETRY = 1.0  # weavenet peer, not healthy: recovery is noticed within a second or two
QUICK_RX_TIMEOUT = 6.0  # weavenet peer: three heartbeats missed -> on hold
GRACE = 3.0  # weavenet peer: how long a first exchange may take before a fallback reason is shown
GO_GRACE = 10.0
SEND_ERROR_TTL = 10.0  # a local send error explains the state for this long
PROBES_ALONE = 1.5 * QUICK_RETRY  # probes still arriving this long after heartbeats stopped: heartbeats are too big

FASTDP_FEATURE = "WeavenetFastdp"  # speaks weavenet's fast-datapath heartbeat extension (flags, probes)

CONTROL_HEARTBEAT_ACK = 0
CONTROL_CRYPTO_INIT_SA_REMOTE = 1

Addr = tuple[str, int]


@dataclass(slots=True)
class SendVxlan:
    """A hand-made VXLAN packet for the daemon to send (UDP, don't-fragment) to ``addr``."""

    peer: PeerName
    conn_uid: int
    addr: Addr
    vni: int
    frame: bytes


@dataclass(slots=True)
class FastdpCounters:
    heartbeats: int = 0
    probes: int = 0
    wrong_destination: int = 0
    unknown_sender: int = 0
    wrong_connection: int = 0
    malformed: int = 0
    send_errors: int = 0

    def as_dict(self) -> dict[str, int]:
        return {k: getattr(self, k) for k in self.__slots__}


class FastdpForwarder:
    """Control state of the fast datapath for one mesh connection."""

    name = "fastdp"

    def __init__(
        self,
        overlay: FastdpOverlay,
        remote: Peer,
        conn_uid: int,
        outbound: bool,
        remote_addr: Addr | None,
        weavenet: bool,
        now: float,
    ) -> None:
        self.overlay = overlay
        self.remote = remote
        self.conn_uid = conn_uid
        self.outbound = outbound
        self.remote_addr = remote_addr
        self.weavenet = weavenet  # the peer speaks weavenet's extension (flags, probes)
        self.created_at = now
        self.confirmed = False
        self._grace_pending = True
        self.device_ready = False
        self.heartbeat_interval = FAST_HEARTBEAT
        self.next_heartbeat: float | None = None
        self.timeout_at: float | None = None
        self.acked_heartbeat = False
        self.established = False
        self.healthy = False
        self.last_rx: float | None = None  # last valid full-size heartbeat from the peer
        self.last_probe_rx: float | None = None
        self.peer_flags: int | None = None  # what the peer last said it receives from us
        self.peer_flags_at: float | None = None
        self.send_error: str | None = None
        self.send_error_at: float | None = None
        self.error: str | None = None
        self.stopped = False
        self.error_logged = False
        self.goodbye = False  # the peer closes this connection on purpose: do not keep its path (fastdp_keep)
        self.control_out: list[tuple[int, bytes]] = []
        self.owner: object = None
        # lean liveness (``contact``): small probes while healthy, full-size proofs when the receiver asks
        self.lean = False
        self.proven_at: float | None = None  # the last full-size heartbeat that proved the path (lean)
        self.proof_wanted_at: float | None = None  # since when we want the peer to prove the path again
        self.proof_asked_at = 0.0  # when we last asked for it
        self.proof_sent_at = -1e9  # when we last sent a full-size heartbeat because the peer asked

    def __repr__(self) -> str:
        addr = f"{self.remote_addr[0]}:{self.remote_addr[1]}" if self.remote_addr else "<nil>"
        return f"fastdp ->[{addr}|{self.remote.name}({self.remote.nickname})]"

    def _touch(self) -> None:
        self.overlay.changed.add(self)

    # -- outputs ------------------------------------------------------------------------------------------------

    def attrs(self) -> dict[str, object]:
        return {"name": "fastdp", "mtu": self.overlay.mtu}

    @property
    def on_hold(self) -> bool:
        """Established once, but not working now: the overlay switch passes over it."""
        return self.established and not self.healthy

    @property
    def vnis(self) -> tuple[int, int] | None:
        """(VNI we receive this peer's frames on, VNI we send to it with), or None without short IDs."""
        me, them = self.overlay.ourself, self.remote
        if not (me.has_short_id and them.has_short_id):
            return None
        return vni_for(them.short_id, me.short_id), vni_for(me.short_id, them.short_id)

    def underlay_size(self) -> int:
        """Bytes of one full-size VXLAN packet on the underlay (what the path must carry)."""
        return self.overlay.mtu + UNDERLAY_OVERHEAD

    def _recent(self, t: float | None, now: float, within: float) -> bool:
        # ``t + within``, the sum get_timer wakes at: ``now - t`` can round below ``within`` at that very moment,
        # and the forwarder would stay healthy and ask for the same wake again and again (a busy loop)
        return t is not None and now < t + within

    def _rx_timeout(self) -> float:
        return QUICK_RX_TIMEOUT if self.weavenet else GO_RX_TIMEOUT

    @property
    def last_any(self) -> float | None:
        """The last heartbeat or probe from the peer (contact through this path)."""
        times = [t for t in (self.last_rx, self.last_probe_rx) if t is not None]
        return max(times) if times else None

    def receiving(self, now: float) -> bool:
        """We hear the peer's full-size heartbeats (and our device can take its traffic); lean: the path was
        proven and the peer's probes still come."""
        if not self.lean:
            return self.device_ready and self._recent(self.last_rx, now, self._rx_timeout())
        return self.device_ready and self.proven_at is not None and self._recent(self.last_any, now, self._rx_timeout())

    def _flags(self, now: float) -> int:
        flags = RX_HEARTBEATS if self.receiving(now) else 0
        if self._recent(self.last_probe_rx, now, self._rx_timeout()):
            flags |= RX_PROBES
        if self.lean and self.proof_wanted_at is not None:
            flags |= PROVE
        return flags

    def _peer_flags(self, now: float) -> int | None:
        return self.peer_flags if self._recent(self.peer_flags_at, now, self._rx_timeout()) else None

    def _compute_health(self, now: float) -> bool:
        if self.stopped or not self.established or not self.receiving(now):
            return False
        if not self.weavenet:
            return True
        flags = self._peer_flags(now)
        return flags is not None and bool(flags & RX_HEARTBEATS)

    def reason(self, now: float) -> str | None:
        """Why this forwarder is not carrying the connection's traffic (None: it is, or it is still trying)."""
        if self.error:
            return self.error
        if self.healthy:
            return None
        size = self.underlay_size()
        port = self.remote_addr[1] if self.remote_addr else self.overlay.port
        if self.send_error and self._recent(self.send_error_at, now, SEND_ERROR_TTL):
            return self.send_error
        if self.vnis is None:
            return "no short ID to build a VXLAN network identifier"
        if now - self.created_at < (GRACE if self.weavenet else GO_GRACE):
            return None  # the first exchange is still under way
        if not self.weavenet:
            if not self.established:
                return f"no acknowledgement of {size}-byte VXLAN heartbeats (UDP port {port} blocked or MTU too small?)"
            return f"VXLAN heartbeats from the peer stopped (UDP port {port} blocked?)"
        got = self._recent(self.last_rx, now, QUICK_RX_TIMEOUT)
        if self.lean:  # probes keep a proven path's contact; a proof asked for and not come voided it
            got = self.proven_at is not None and self._recent(self.last_any, now, QUICK_RX_TIMEOUT)
        # probes count as getting through on their own only if they kept coming after the last heartbeat did
        # (when a path closes, the last probe often arrives just after the last heartbeat)
        probe_rx = self.last_probe_rx
        probes = (
            probe_rx is not None
            and self._recent(probe_rx, now, QUICK_RX_TIMEOUT)
            and (self.lean or self.last_rx is None or probe_rx > self.last_rx + PROBES_ALONE)
        )
        flags = self._peer_flags(now)
        if not got and not probes:
            if flags is not None and flags & RX_PROBES:
                return f"no VXLAN packets arrive from the peer, though it gets ours (UDP port {port} blocked one way?)"
            return f"no VXLAN packets get through (UDP port {port} blocked?)"
        if not got:
            return f"{size}-byte VXLAN packets from the peer do not arrive, small ones do: path MTU too small"
        if flags is None:
            return "waiting for the peer to report what it receives"
        if not flags & RX_HEARTBEATS:
            if flags & RX_PROBES:
                return f"the peer does not receive our {size}-byte VXLAN packets, only small ones: path MTU too small"
            return f"the peer receives no VXLAN packets from us (UDP port {port} blocked one way?)"
        if not self.established:
            return "waiting for the heartbeat acknowledgement"
        return None

    def _send_heartbeat(self, now: float) -> None:
        self.next_heartbeat = now + self.heartbeat_interval
        vnis = self.vnis
        if self.remote_addr is None or vnis is None:
            return
        mtu, out = self.overlay.mtu, self.overlay.outbox
        name, uid, addr, vni = self.remote.name, self.conn_uid, self.remote_addr, vnis[1]
        if self.lean and self.healthy:
            out.append(SendVxlan(name, uid, addr, vni, probe_frame(uid, self._flags(now))))  # the small beat
        elif self.weavenet:
            flags = self._flags(now)
            out.append(SendVxlan(name, uid, addr, vni, heartbeat_frame(uid, mtu, flags)))
            out.append(SendVxlan(name, uid, addr, vni, probe_frame(uid, flags)))
        else:
            out.append(SendVxlan(name, uid, addr, vni, heartbeat_frame(uid, mtu)))

    def _set_interval(self, now: float) -> None:
        if not self.established:
            young = now - self.created_at < (GRACE if self.weavenet else GO_GRACE)
            interval = FAST_HEARTBEAT if young or not self.weavenet else QUICK_RETRY
        elif not self.weavenet:
            interval = SLOW_HEARTBEAT
        elif self.lean and self.healthy:
            interval = contact.BEAT
        else:
            interval = QUICK_HEARTBEAT if self.healthy else QUICK_RETRY
        if interval != self.heartbeat_interval:
            self.heartbeat_interval = interval
            if self.next_heartbeat is not None:
                self.next_heartbeat = min(self.next_heartbeat, now + interval)

    def _update(self, now: float) -> None:
        healthy = self._compute_health(now)
        if healthy != self.healthy:
            self.healthy = healthy
            self._touch()
        self._set_interval(now)

    # -- inputs -------------------------------------------------------------------------------------------------

    def confirm(self, now: float) -> None:
        """The mesh added the connection: start heartbeating (the host side creates our VXLAN device)."""
        if self.confirmed:
            return
        self.confirmed = True
        self.overlay.add_forwarder(self)
        if not self.weavenet:
            self.timeout_at = now + HEARTBEAT_TIMEOUT
        self._send_heartbeat(now)
        self._touch()

    def set_device(self, error: str | None, now: float) -> None:
        """The host side created our VXLAN device for this peer (``error`` None) or could not."""
        self._touch()
        if error is not None:
            self.error = f"cannot create the VXLAN device: {error}"
            self.stop()
            return
        if self.device_ready:
            return
        self.device_ready = True
        if self.last_rx is not None and not self.acked_heartbeat:
            self._ack()
        self._send_heartbeat(now)  # tell a weavenet peer at once that we can take its traffic now
        self._update(now)

    def _ack(self) -> None:
        self.acked_heartbeat = True
        self.control_out.append((CONTROL_HEARTBEAT_ACK, b""))

    def heartbeat(self, hb: Heartbeat, sender_ip: str, now: float) -> None:
        """A valid heartbeat or probe of this connection (the overlay matched the UID)."""
        if self.stopped:
            return
        self._touch()
        if hb.flags is not None:
            self.peer_flags, self.peer_flags_at = hb.flags & (RX_HEARTBEATS | RX_PROBES), now
            self.weavenet = True
            if self.lean:
                self._answer(hb.flags, sender_ip, now)
        if hb.probe:
            self.last_probe_rx = now
            self._update(now)
            return
        self.last_rx = now
        if self.lean:
            self.proven_at, self.proof_wanted_at = now, None
        if self.remote_addr is None:
            self.remote_addr = (sender_ip, self.overlay.port)
            self._send_heartbeat(now)
        elif self.remote_addr[0] != sender_ip:
            log.info("%r: Peer IP address changed to %s", self, sender_ip)
            self.remote_addr = (sender_ip, self.remote_addr[1])
        if not self.acked_heartbeat and self.device_ready:
            self._ack()
        if self.timeout_at is not None:
            self.timeout_at = now + HEARTBEAT_TIMEOUT
        self._update(now)

    # -- lean liveness (``contact``) ----------------------------------------------------------------------------

    def _answer(self, flags: int, sender_ip: str, now: float) -> None:
        """What a lean peer's flags ask of us: a probe at once (``ASK``), a full-size heartbeat (``PROVE``)."""
        if self.remote_addr is not None and self.remote_addr[0] != sender_ip:
            self.want_proof(now)  # the peer's address changed: the path may be another one
        vnis = self.vnis
        if self.remote_addr is None or vnis is None or self.stopped:
            return
        name, uid, addr, vni, out = self.remote.name, self.conn_uid, self.remote_addr, vnis[1], self.overlay.outbox
        if flags & PROVE and now - self.proof_sent_at >= contact.PROOF_RETRY / 2:
            self.proof_sent_at = now
            out.append(SendVxlan(name, uid, addr, vni, heartbeat_frame(uid, self.overlay.mtu, self._flags(now))))
        elif flags & ASK:
            out.append(SendVxlan(name, uid, addr, vni, probe_frame(uid, self._flags(now))))

    def want_proof(self, now: float) -> None:
        """Ask the peer to prove the path with a full-size heartbeat (a probe carrying ``PROVE`` goes now)."""
        if not self.lean or self.proven_at is None or self.stopped:
            return
        if self.proof_wanted_at is None:
            self.proof_wanted_at = now
        self._request(now, 0)
        self._touch()

    def ask(self, now: float) -> None:
        """The connection's contact is late: ask the peer for a probe at once, and for proof of the path (a beat
        was lost: the path may have changed)."""
        if not self.lean or self.stopped:
            return
        if self.proven_at is not None and self.proof_wanted_at is None:
            self.proof_wanted_at = now
        self._request(now, ASK)
        self._touch()

    def _request(self, now: float, flags: int) -> None:
        vnis = self.vnis
        self.proof_asked_at = now
        if self.remote_addr is None or vnis is None:
            return
        frame = probe_frame(self.conn_uid, self._flags(now) | flags)
        self.overlay.outbox.append(SendVxlan(self.remote.name, self.conn_uid, self.remote_addr, vnis[1], frame))

    def _lean_timer(self, now: float) -> None:
        if not self.lean or self.proven_at is None:
            return
        wanted = self.proof_wanted_at
        if wanted is not None and now >= wanted + contact.PROOF_WAIT:
            log.info("%r: no full-size heartbeat %.0fs after asking for one: path MTU not proven", self, now - wanted)
            self.proven_at, self.proof_wanted_at = None, None  # re-proven as at establishment
        elif wanted is not None and now >= self.proof_asked_at + contact.PROOF_RETRY:
            self._request(now, 0)
        elif wanted is None and now >= self.proven_at + contact.PROOF_EVERY:
            self.want_proof(now)

    def _lean_times(self) -> list[float]:
        if not self.lean or self.proven_at is None:
            return []
        if self.proof_wanted_at is None:
            return [self.proven_at + contact.PROOF_EVERY]
        return [self.proof_wanted_at + contact.PROOF_WAIT, self.proof_asked_at + contact.PROOF_RETRY]

    def control_message(self, subtag: int, body: bytes, now: float) -> None:
        self._touch()
        if subtag == CONTROL_HEARTBEAT_ACK:
            if not self.established:
                self.established = True
                self.heartbeat_interval = 0.0  # re-derived below
                if not self.weavenet and self.next_heartbeat is not None:
                    self.next_heartbeat = now + SLOW_HEARTBEAT  # as Go: the slow phase starts at the ack
            self._update(now)
        elif subtag == CONTROL_CRYPTO_INIT_SA_REMOTE:
            log.info("%r: ignoring IPsec setup from the peer (no encrypted fast datapath here)", self)
        elif subtag == CONTROL_GOODBYE:
            self.goodbye = True
        else:
            log.info("%r: Ignoring unknown control message: %d", self, subtag)

    def send_failed(self, error: str, now: float) -> None:
        """Sending a heartbeat failed locally (EMSGSIZE: the route's MTU is too small for full-size packets)."""
        self.overlay.counters.send_errors += 1
        if self.send_error != error:
            self._touch()
        self.send_error, self.send_error_at = error, now

    def get_timer(self) -> float | None:
        if self.stopped or not self.confirmed:
            return None
        times = [t for t in (self.next_heartbeat, self.timeout_at) if t is not None]
        if self._grace_pending:
            times.append(self.created_at + (GRACE if self.weavenet else GO_GRACE))
        last = self.last_any if self.lean else self.last_rx
        if self.healthy and last is not None:
            times.append(last + self._rx_timeout())
        times.extend(self._lean_times())
        if self.healthy and self.peer_flags_at is not None and self.weavenet:
            times.append(self.peer_flags_at + self._rx_timeout())
        return min(times) if times else None

    def handle_timer(self, now: float) -> None:
        if self.stopped or not self.confirmed:
            return
        if self.timeout_at is not None and now >= self.timeout_at:
            self.error = "timed out waiting for vxlan heartbeat"
            self.stop()
            return
        if self._grace_pending and now >= self.created_at + (GRACE if self.weavenet else GO_GRACE):
            self._grace_pending = False  # a fallback reason may show from now on
        self._lean_timer(now)
        self._update(now)
        if self.next_heartbeat is not None and now >= self.next_heartbeat:
            self._send_heartbeat(now)
        self._touch()

    def stop(self) -> None:
        if not self.stopped:
            self.stopped = True
            self.healthy = False
            self.overlay.remove_forwarder(self)
            self._touch()


@dataclass
class FastdpOverlay:
    """All fast-datapath forwarders of this router, and the demultiplexing of received heartbeats.

    ``resolve`` maps a short ID to the peer that holds it (the topology's index), which is how a VNI names the
    sender: the VXLAN packet's outer source address need not be the sender's TCP address (NAT).
    """

    ourself: Peer
    mtu: int
    port: int  # our VXLAN UDP port (mesh port + 1)
    resolve: Callable[[int], Peer | None]
    outbox: list[SendVxlan] = field(default_factory=list)
    counters: FastdpCounters = field(default_factory=FastdpCounters)

    name = "fastdp"

    def __post_init__(self) -> None:
        self._by_peer: dict[PeerName, list[FastdpForwarder]] = {}
        self.changed: set[FastdpForwarder] = set()

    # -- the Overlay interface (``weavenet.core.overlay``) ------------------------------------------------------

    def features(self, config: MeshConfig) -> dict[str, str]:
        return {FASTDP_FEATURE: "1", KEEP_FEATURE: "1"}

    def forwarder(self, link: OverlayLink, now: float) -> FastdpForwarder | str:
        refusal = self.refusal(link)
        if refusal is not None:
            return refusal
        # Weave's choice of the peer's VXLAN port: its TCP port + 1 if we dialled it, else the one we listen on
        vx_port = link.port + 1 if link.outbound and link.port is not None else self.port
        weavenet = link.theirs.get(FASTDP_FEATURE) == "1"
        fwd = FastdpForwarder(self, link.remote, link.conn_uid, link.outbound, (link.host, vx_port), weavenet, now)
        fwd.lean = weavenet and contact.leans(link.ours, link.theirs)
        return fwd

    def refusal(self, link: OverlayLink) -> str | None:
        """Why this connection cannot try the fast datapath at all (Weave refuses the same cases)."""
        if link.config.password is not None and link.untrusted:
            if not link.config.esp:
                return "encrypted link and no IPsec ESP in the kernel to encrypt VXLAN"
            return "encrypted link: IPsec for VXLAN is not implemented"
        if not (self.ourself.has_short_id and link.remote.has_short_id):
            return "no short ID to build a VXLAN network identifier"
        try:
            if ip_address(link.host).version != 4:
                return "the peer's address is not IPv4"
        except ValueError:
            return "the peer's address is not an IP address"
        return None

    def take_actions(self) -> list[SendVxlan]:
        out, self.outbox = self.outbox, []
        return out

    def take_changed(self) -> set[FastdpForwarder]:
        changed, self.changed = self.changed, set()
        return changed

    def take_strangers(self) -> tuple[str, ...]:
        return ()

    # -- the data plane -----------------------------------------------------------------------------------------

    def add_forwarder(self, fwd: FastdpForwarder) -> None:
        self._by_peer.setdefault(fwd.remote.name, []).append(fwd)

    def remove_forwarder(self, fwd: FastdpForwarder) -> None:
        fwds = self._by_peer.get(fwd.remote.name)
        if fwds and fwd in fwds:
            fwds.remove(fwd)
            if not fwds:
                del self._by_peer[fwd.remote.name]

    def forwarders(self) -> list[FastdpForwarder]:
        return [f for fwds in self._by_peer.values() for f in fwds]

    def _running(self, peer: PeerName, conn_uid: int) -> FastdpForwarder | None:
        """The running forwarder of this connection (a forwarder is registered from ``confirm`` to ``stop``)."""
        return next((f for f in self._by_peer.get(peer, ()) if f.conn_uid == conn_uid and not f.stopped), None)

    def send_failed(self, peer: PeerName, conn_uid: int, error: str, now: float) -> None:
        """Sending a heartbeat of this connection failed locally (EMSGSIZE: the route's MTU is below a full-size
        packet)."""
        if (fwd := self._running(peer, conn_uid)) is not None:
            fwd.send_failed(error, now)

    def device_ready(self, peer: PeerName, conn_uid: int, error: str | None, now: float) -> None:
        """The host side created (``error`` None) or failed to create the VXLAN device for this connection."""
        if (fwd := self._running(peer, conn_uid)) is not None:
            fwd.set_device(error, now)

    def receive_special(self, src_ip: str, vni: int, head: bytes, length: int, now: float) -> None:
        """A special frame (all-zero Ethernet header) that arrived through the tunnel."""
        src_short, dst_short = split_vni(vni)
        if not self.ourself.has_short_id or dst_short != self.ourself.short_id:
            self.counters.wrong_destination += 1
            return
        peer = self.resolve(src_short)
        fwds = self._by_peer.get(peer.name, []) if peer is not None else []
        if not fwds:
            self.counters.unknown_sender += 1
            return
        try:
            hb = parse_heartbeat(head, length)
        except RemoteProtocolError as e:
            self.counters.malformed += 1
            log.debug("fastdp: dropping special frame from %s: %s", src_ip, e)
            return
        for fwd in fwds:
            if fwd.conn_uid == hb.conn_uid:
                if hb.probe:
                    self.counters.probes += 1
                else:
                    self.counters.heartbeats += 1
                fwd.heartbeat(hb, src_ip, now)
                return
        self.counters.wrong_connection += 1
