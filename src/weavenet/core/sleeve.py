"""The sleeve overlay's per-connection control: UDP heartbeats, establishment, probes.

Port of the control half of Weave's ``router/sleeve.go``. A mesh connection becomes *established* only once UDP
works between the two peers, because that is what will carry the containers' frames:

1. When the connection is confirmed, the outbound side (which knows the remote UDP address: the TCP remote
   address) sends a heartbeat every 0.5 s: a special frame of 14 zero bytes and the connection UID.
2. The inbound side learns the remote address from the first valid heartbeat, starts sending its own, and
   answers once with the control message ``ConnectionEstablished`` (over TCP).
3. A side that receives ``ConnectionEstablished`` is established: heartbeats slow to every 10 s, and it sends
   the fragmentation test (a 60001-byte frame the kernel must fragment), answered by ``FragmentationReceived``.
4. 60 s without a valid heartbeat kills the connection ("timed out waiting for UDP heartbeat").

Probes from the peer (PMTU verification frames) are answered with ``PMTUVerified`` carrying their size, so Go
peers can finish their MTU discovery against us. Data frames are handed back to the caller (the data plane).
"""

from __future__ import annotations

import logging
import struct
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from weavenet.core import contact, sleeve_cipher
from weavenet.core.mesh_types import SendDatagram, SendSpecial
from weavenet.core.names import PeerName
from weavenet.core.sleeve_codec import (
    ETHERNET_OVERHEAD,
    FRAG_TEST_SIZE,
    HEARTBEAT_FRAME_LEN,
    NACL_OVERHEAD,
    NAME_SIZE,
    PLAIN_OVERHEAD,
    Decryptor,
    Encryptor,
    Frame,
    ask_frame,
    encode_frames,
    heartbeat_frame,
    iter_frames,
    parse_ask,
)
from weavenet.core.topology_gossip import DIGEST_FEATURE
from weavenet.errors import RemoteProtocolError

if TYPE_CHECKING:
    from weavenet.core.mesh_types import MeshConfig
    from weavenet.core.overlay import OverlayLink

log = logging.getLogger("weavenet.sleeve")

FAST_HEARTBEAT = 0.5
FIRST_RETRY = 0.05  # until established, heartbeats start this close and double up to FAST_HEARTBEAT
SLOW_HEARTBEAT = 10.0
HEARTBEAT_TIMEOUT = 60.0
# Between two weavenet peers (negotiated): a silent peer is noticed in seconds instead of a minute, so traffic
# moves to another route quickly. Heartbeats are 22-byte frames; every 2 s is still negligible.
PMTU_FLOOR = 552
PMTU_VERIFY_TIMEOUT = 0.01
PMTU_VERIFY_ATTEMPTS = 8
PMTU_LADDER_STEP = 32
PMTU_LADDER_TIMEOUT = 0.1
PMTU_LADDER_ATTEMPTS = 3
QUICK_SLOW_HEARTBEAT = 2.0
QUICK_HEARTBEAT_TIMEOUT = 8.0
FRAG_TEST_INTERVAL = 300.0
ANSWER_SIZE = 1  # PMTUVerified of this size answers a liveness challenge (a 15-byte frame, ``liveness``)
DEFAULT_MTU = 65535

FAST_SLEEVE_FEATURE = "WeavenetSleeve"  # speaks weavenet's fast sleeve (super-frames), quick heartbeats

# sleeve control-message sub-tags (also the raw mesh tags used with legacy peers)
CONTROL_CONNECTION_ESTABLISHED = 1
CONTROL_FRAGMENTATION_RECEIVED = 2
CONTROL_PMTU_VERIFIED = 3

Addr = tuple[str, int]


@dataclass(slots=True)
class SleeveCounters:
    """Why received packets were dropped (shown by ``weave report``)."""

    packets: int = 0
    too_short: int = 0
    unknown_sender: int = 0
    malformed: int = 0
    decrypt_failed: int = 0
    replayed: int = 0
    bad_special: int = 0

    def as_dict(self) -> dict[str, int]:
        return {k: getattr(self, k) for k in self.__slots__}


class SleeveForwarder:
    """Control state of the sleeve for one mesh connection."""

    name = "sleeve"

    def __init__(
        self,
        overlay: SleeveOverlay,
        remote: PeerName,
        remote_nick: str,
        conn_uid: int,
        outbound: bool,
        remote_tcp_addr: Addr | None,
        session_key: bytes | None,
    ) -> None:
        self.overlay = overlay
        self.remote = remote
        self.remote_nick = remote_nick
        self.conn_uid = conn_uid
        self.outbound = outbound
        self.remote_addr: Addr | None = remote_tcp_addr if outbound else None
        self.session_key = session_key
        if session_key is not None:
            self.enc = Encryptor(session_key, outbound, df=False)
            self.enc_df = Encryptor(session_key, outbound, df=True)
            self.dec: Decryptor | None = Decryptor(session_key, remote_outbound=not outbound)
        else:
            self.dec = None
        self.heartbeat_interval = 0.0
        self._ramp = 0.0  # the current gap between heartbeats while not yet established (see _send_heartbeat)
        self.next_heartbeat: float | None = None
        self.timeout_at: float | None = None
        self.next_frag_test: float | None = None
        self.acked_heartbeat = False
        self.established = False
        self.stack_frag = False
        self.mtu = DEFAULT_MTU
        self.error: str | None = None
        self.stopped = False
        self.error_logged = False
        self.control_out: list[tuple[int, bytes]] = []  # (sub-tag, body) to send over TCP
        self.slow_heartbeat = SLOW_HEARTBEAT
        self.heartbeat_timeout = HEARTBEAT_TIMEOUT
        self.quick_heartbeats = False  # a weavenet peer's timings (see ``quick``); else Weave's (a Go peer's)
        self.lean = False  # lean liveness (``contact``): 4 s beats, asks answered, covered by a healthy fastdp
        self.covered = False
        # path MTU discovery: ``pmtu_ceiling`` (largest frame payload the local route allows) is set by the data
        # plane's owner; the search runs between 552 and it once the connection is established
        self.pmtu_ceiling: int | None = None
        self.pmtu_candidate = 0
        self.pmtu_good = PMTU_FLOOR
        self.pmtu_bad = 0
        self.pmtu_tries = 0
        self.pmtu_deadline: float | None = None
        self.pmtu_verified = False
        self.pmtu_ladder: list[int] = []
        self.owner: object = None  # the mesh connection this forwarder belongs to (set by the router)
        self.last_heard: float | None = None  # the last valid special frame from the peer (a sign of life)
        self.last_heartbeat: float | None = None  # the last valid heartbeat (its arrivals mark the peer's phase)
        self.last_answer: float | None = None  # the last answer to a challenge (``liveness``)

    def _touch(self) -> None:
        """Tell the overlay this forwarder has output, a new state or a new timer for its owner to look at."""
        self.overlay.changed.add(self)

    def __repr__(self) -> str:
        addr = f"{self.remote_addr[0]}:{self.remote_addr[1]}" if self.remote_addr else "<nil>"
        return f"sleeve ->[{addr}|{self.remote}({self.remote_nick})]"

    # -- outputs ------------------------------------------------------------------------------------------------

    def attrs(self) -> dict[str, object]:
        return {"name": "sleeve", "mtu": self.mtu}

    @property
    def on_hold(self) -> bool:
        return False  # a sleeve forwarder that stops working stops

    def _send_special(self, data: bytes, df: bool = True, more: tuple[bytes, ...] = ()) -> None:
        """Send special frames to the peer: ``data``, and ``more`` in the same datagram."""
        if self.remote_addr is None:
            return
        if self.overlay.external:
            # a data plane owns the socket and the encryptors: hand it the frame, it encodes and sends
            self.overlay.specials.append((self.remote, self.conn_uid, data, df, more))
            return
        src, dst = self.overlay.local_bin, self.remote.bytes6()
        body = encode_frames([(src, dst, f) for f in (data, *more)])
        if self.session_key is None:
            packet = self.overlay.local_bin + body
        else:
            packet = (self.enc_df if df else self.enc).seal(self.overlay.local_bin, body)
        self.overlay.outbox.append((self.remote_addr, packet))

    def _send_heartbeat(self, now: float) -> None:
        """Send a heartbeat and schedule the next one.

        Until the connection is established they ramp up from ``FIRST_RETRY`` (0.05, 0.1, 0.2, 0.4, then every
        0.5 s): the first one often meets a peer whose data plane has not yet heard of the connection (both ends
        finish the handshake at about the same moment), and waiting a full 0.5 s for the next cost every link,
        new or restored, that much on each side."""
        interval = self.heartbeat_interval
        if not self.established and interval == FAST_HEARTBEAT:
            self._ramp = min(self._ramp * 2, FAST_HEARTBEAT) if self._ramp else FIRST_RETRY
            interval = self._ramp
        self.next_heartbeat = now + interval
        self._send_special(heartbeat_frame(self.conn_uid))

    def challenge(self, size: int, now: float | None = None) -> bool:
        """Send a special frame of ``size`` bytes that a peer answers with ``PMTUVerified`` (see ``liveness``);
        False if there is no address to send it to yet. With ``now`` (a regular challenge), a heartbeat due
        before the next regular challenge rides in the same datagram, and the heartbeat timer starts again."""
        if self.remote_addr is None or self.stopped:
            return False
        more: tuple[bytes, ...] = ()
        if now is not None and self.next_heartbeat is not None and self.next_heartbeat < now + SLOW_HEARTBEAT:
            more = (heartbeat_frame(self.conn_uid),)
            # a second late: the regular challenge that carries the next one comes first (its phase jitters)
            self.next_heartbeat = now + self.heartbeat_interval + 1.0
        self._send_special(bytes(size), more=more)
        return True

    def space_heartbeats(self, interval: float) -> None:
        """Heartbeat every ``interval`` (they ride on regular challenges: ``liveness``), or as Weave again."""
        if self.established and not self.quick_heartbeats and self.heartbeat_interval != interval:
            if self.next_heartbeat is not None:
                self.next_heartbeat += interval - self.heartbeat_interval
            self.heartbeat_interval = interval
            self._touch()

    # -- inputs -------------------------------------------------------------------------------------------------

    def confirm(self, now: float) -> None:
        """The mesh added the connection: start heartbeating and accepting its UDP packets."""
        if self.heartbeat_interval:
            return
        self.overlay.add_forwarder(self)
        self.heartbeat_interval = FAST_HEARTBEAT
        if self.remote_addr is not None:
            self._send_heartbeat(now)
        self.timeout_at = now + max(self.heartbeat_timeout, HEARTBEAT_TIMEOUT / 2)  # the first exchange may be slow
        self._touch()

    def control_message(self, subtag: int, body: bytes, now: float) -> None:
        self._touch()
        if subtag == CONTROL_CONNECTION_ESTABLISHED:
            if self.heartbeat_interval != self.slow_heartbeat:
                self.heartbeat_interval = self.slow_heartbeat
                if self.next_heartbeat is not None:
                    self.next_heartbeat = now + self.slow_heartbeat
                self.established = True
                self._start_pmtu(now)
            self._send_frag_test(now)
        elif subtag == CONTROL_FRAGMENTATION_RECEIVED:
            self.stack_frag = True
        elif subtag == CONTROL_PMTU_VERIFIED:
            if len(body) < 2:
                log.info("%r: Received truncated MTUTestAck", self)
            else:
                size = struct.unpack(">H", body[:2])[0]
                if self.pmtu_ladder:
                    if size in self.pmtu_ladder and size > self.pmtu_good:
                        self.pmtu_good = size
                        if size == self.pmtu_ladder[0]:
                            self._ladder_done(now)  # the route's own MTU works: nothing to search
                elif self.pmtu_candidate and size == self.pmtu_candidate:
                    self.pmtu_good = self.pmtu_candidate
                    self._search_pmtu(now)
                if size == ANSWER_SIZE:
                    self.last_answer = now  # the answer to a challenge (``liveness``)
        else:
            log.info("%r: Ignoring unknown control message tag: %d", self, subtag)

    def _send_frag_test(self, now: float) -> None:
        if self.overlay.external:
            return  # our data plane never relies on IP fragmentation: nothing to test
        self.stack_frag = False
        self.next_frag_test = now + FRAG_TEST_INTERVAL
        self._send_special(bytes(FRAG_TEST_SIZE), df=False)

    def special_frame(self, frame: bytes, sender: Addr, now: float) -> None:
        self._touch()
        asked = self.lean and parse_ask(frame) == self.conn_uid
        if asked or len(frame) == HEARTBEAT_FRAME_LEN:
            (uid,) = struct.unpack_from(">Q", frame, ETHERNET_OVERHEAD)
            if uid != self.conn_uid:
                return
            self.last_heard = self.last_heartbeat = now
            if self.remote_addr is None:
                self.remote_addr = sender
                if self.heartbeat_interval:
                    self._send_heartbeat(now)
            elif self.remote_addr != sender:
                log.info("%r: Peer UDP address changed to %s:%d", self, *sender)
                self.remote_addr = sender
            if not self.acked_heartbeat:
                self.acked_heartbeat = True
                self.control_out.append((CONTROL_CONNECTION_ESTABLISHED, b""))
            if self.timeout_at is not None:
                self.timeout_at = now + self.heartbeat_timeout
            if asked and self.heartbeat_interval:
                self._send_special(heartbeat_frame(self.conn_uid))  # the answer: at once, by the same path
        elif len(frame) == FRAG_TEST_SIZE:
            self.last_heard = now
            if not any(frame):
                self.control_out.append((CONTROL_FRAGMENTATION_RECEIVED, b""))
        else:
            self.last_heard = now
            self.control_out.append((CONTROL_PMTU_VERIFIED, struct.pack(">H", len(frame) - ETHERNET_OVERHEAD)))

    # -- path MTU discovery (Weave's sleeve: DF probes of candidate+14 bytes, acknowledged over TCP) -------------

    def _start_pmtu(self, now: float) -> None:
        """Probe a ladder of sizes at once (every 32 bytes down from the ceiling), then binary-search the gap.

        Go's sleeve searches one candidate at a time, each failure costing 2.5 s of retries, so a path narrower
        than the route promises stays a black hole for 10-20 s. The ladder finds the 32-byte range in one round
        trip (three retries for loss), and the binary search below finishes within it.
        """
        if self.pmtu_ceiling is None:
            return  # no external data plane to say what the local route allows: nothing to discover
        self.pmtu_good = PMTU_FLOOR
        self.pmtu_bad = self.pmtu_ceiling + 1
        self.pmtu_ladder = list(range(self.pmtu_ceiling, PMTU_FLOOR, -PMTU_LADDER_STEP))
        self.pmtu_tries = 0
        self._send_ladder(now)

    def _send_ladder(self, now: float) -> None:
        for size in self.pmtu_ladder:
            if size > self.pmtu_good:
                self._send_special(bytes(size + ETHERNET_OVERHEAD))
        self.pmtu_deadline = now + PMTU_LADDER_TIMEOUT * (1 << self.pmtu_tries)
        self.pmtu_tries += 1

    def _ladder_done(self, now: float) -> None:
        above = [c for c in self.pmtu_ladder if c > self.pmtu_good]
        if above:
            self.pmtu_bad = min(above)
        else:
            assert self.pmtu_ceiling is not None  # the ladder is built from it (_start_pmtu)
            self.pmtu_bad = self.pmtu_ceiling + 1
        self.pmtu_ladder = []
        self._search_pmtu(now)

    def _probe(self, candidate: int, now: float) -> None:
        self.pmtu_candidate = candidate
        self.pmtu_tries = 0
        self._send_probe(now)

    def _send_probe(self, now: float) -> None:
        self._send_special(bytes(self.pmtu_candidate + ETHERNET_OVERHEAD))
        self.pmtu_deadline = now + PMTU_VERIFY_TIMEOUT * (1 << self.pmtu_tries)
        self.pmtu_tries += 1

    def _search_pmtu(self, now: float) -> None:
        if self.pmtu_good + 1 >= self.pmtu_bad:
            self.pmtu_candidate = 0
            self.pmtu_deadline = None
            if self.mtu != self.pmtu_good:
                log.info("%r: Effective MTU verified at %d", self, self.pmtu_good)
            self.mtu = self.pmtu_good
            self.pmtu_verified = True
            return
        self._probe((self.pmtu_good + self.pmtu_bad) // 2, now)

    def _pmtu_timer(self, now: float) -> None:
        if self.pmtu_deadline is None or now < self.pmtu_deadline:
            return
        if self.pmtu_ladder:
            if self.pmtu_tries < PMTU_LADDER_ATTEMPTS:
                self._send_ladder(now)  # again, for probes lost to congestion rather than size
            else:
                self._ladder_done(now)
            return
        if self.pmtu_tries < PMTU_VERIFY_ATTEMPTS:
            self._send_probe(now)
            return
        self.pmtu_bad = self.pmtu_candidate
        self._search_pmtu(now)

    def quick(self) -> None:
        """The remote is a weavenet peer: heartbeat every 2 s once established, give up after 8 s of silence."""
        self.slow_heartbeat = QUICK_SLOW_HEARTBEAT
        self.heartbeat_timeout = QUICK_HEARTBEAT_TIMEOUT
        self.quick_heartbeats = True

    def make_lean(self) -> None:
        """Both peers run lean liveness (``contact``): a heartbeat every 4 s (every 60 s while covered), asks
        answered, given up 8 s after the last packet from the peer on either path."""
        self.quick()
        self.lean = True
        self.slow_heartbeat = contact.BEAT
        self.heartbeat_timeout = contact.SLEEVE_GIVE_UP

    def ask(self) -> None:
        """Ask the peer for an immediate heartbeat (its contact is late)."""
        if self.lean and self.remote_addr is not None and not self.stopped:
            self._send_special(ask_frame(self.conn_uid))

    def heard_elsewhere(self, at: float) -> None:
        """The peer was heard at ``at`` on another path: a lean sleeve is given up only after the last packet."""
        if self.lean and self.timeout_at is not None and self.established:
            self.timeout_at = max(self.timeout_at, at + self.heartbeat_timeout)

    def cover(self, covered: bool, now: float) -> None:
        """A healthy fast datapath carries the connection's beats (``covered``) or no longer does: while covered,
        heartbeat rarely; uncovered again, heartbeat at once, then every ``BEAT``."""
        if not self.lean or covered == self.covered or not self.established:
            return
        self.covered = covered
        self.heartbeat_interval = self.slow_heartbeat = contact.COVERED_BEAT if covered else contact.BEAT
        self._touch()
        if not covered and not self.stopped:
            self._send_heartbeat(now)

    def get_timer(self) -> float | None:
        if self.stopped:
            return None
        times = [
            t for t in (self.next_heartbeat, self.timeout_at, self.next_frag_test, self.pmtu_deadline) if t is not None
        ]
        return min(times) if times else None

    def handle_timer(self, now: float) -> None:
        if self.stopped:
            return
        self._touch()
        if self.timeout_at is not None and now >= self.timeout_at:
            self.error = "timed out waiting for UDP heartbeat"
            self.stop()
            return
        if self.next_heartbeat is not None and now >= self.next_heartbeat:
            self._send_heartbeat(now)
        if self.next_frag_test is not None and now >= self.next_frag_test:
            self._send_frag_test(now)
        self._pmtu_timer(now)

    def stop(self) -> None:
        if not self.stopped:
            self.stopped = True
            self.overlay.remove_forwarder(self)
            self._touch()


@dataclass(slots=True)
class ReceivedFrame:
    forwarder: SleeveForwarder
    frame: Frame


@dataclass
class SleeveOverlay:
    """All sleeve forwarders of this router and the demultiplexing of received UDP packets."""

    local_name: PeerName
    outbox: list[tuple[Addr, bytes]] = field(default_factory=list)
    counters: SleeveCounters = field(default_factory=SleeveCounters)
    # With an external data plane (the router's workers), special frames are not encoded here but queued in
    # ``specials`` as (peer, connection uid, frame, df), and arrive already decoded via ``receive_special``.
    external: bool = False
    specials: list[tuple[PeerName, int, bytes, bool, tuple[bytes, ...]]] = field(default_factory=list)
    # IPs that sent us packets under a peer name we have no connection to (beacons, a peer that still thinks it is
    # connected): signs of life the router drains after each input
    strangers: list[str] = field(default_factory=list)

    name = "sleeve"

    def __post_init__(self) -> None:
        self.local_bin = self.local_name.bytes6()
        self._by_peer: dict[bytes, list[SleeveForwarder]] = {}
        self.changed: set[SleeveForwarder] = set()

    # -- the Overlay interface (``weavenet.core.overlay``) ------------------------------------------------------

    def features(self, config: MeshConfig) -> dict[str, str]:
        if not config.fast_sleeve:
            return {}
        offered = {FAST_SLEEVE_FEATURE: "1"}
        if config.fast_sleeve_ciphers:
            offered[sleeve_cipher.CIPHERS_FEATURE] = ",".join(config.fast_sleeve_ciphers)
        return offered

    def forwarder(self, link: OverlayLink, now: float) -> SleeveForwarder:
        addr = (link.host, link.port) if link.port is not None else None
        remote = link.remote
        fwd = SleeveForwarder(self, remote.name, remote.nickname, link.conn_uid, link.outbound, addr, link.session_key)
        # Quick heartbeats only if both sides advertise a weavenet feature that turns them on: each side decides
        # from the other's features, so a one-sided decision would time out on the 10 s heartbeats of a peer that
        # heartbeats as Weave does.
        if _quick(link.ours) and _quick(link.theirs):
            fwd.quick()
        if contact.leans(link.ours, link.theirs):
            fwd.make_lean()
        return fwd

    def take_actions(self) -> list[SendDatagram | SendSpecial]:
        out: list[SendDatagram | SendSpecial] = [SendDatagram(addr, data) for addr, data in self.outbox]
        self.outbox.clear()
        out.extend(SendSpecial(p, uid, frame, df, more) for p, uid, frame, df, more in self.specials)
        self.specials.clear()
        return out

    def take_changed(self) -> set[SleeveForwarder]:
        changed, self.changed = self.changed, set()
        return changed

    def take_strangers(self) -> set[str]:
        strangers, self.strangers = set(self.strangers), []
        return strangers

    # -- the data plane -----------------------------------------------------------------------------------------

    def add_forwarder(self, fwd: SleeveForwarder) -> None:
        self._by_peer.setdefault(fwd.remote.bytes6(), []).append(fwd)

    def remove_forwarder(self, fwd: SleeveForwarder) -> None:
        fwds = self._by_peer.get(fwd.remote.bytes6())
        if fwds and fwd in fwds:
            fwds.remove(fwd)
            if not fwds:
                del self._by_peer[fwd.remote.bytes6()]

    def receive_special(self, peer: PeerName, conn_uid: int, frame: bytes, sender: Addr, now: float) -> None:
        """A special frame the external data plane received and decoded."""
        for fwd in self._by_peer.get(peer.bytes6(), ()):
            if fwd.conn_uid == conn_uid:
                fwd.special_frame(frame, sender, now)
                return
        self.counters.unknown_sender += 1

    def packet_overhead(self, encrypted: bool) -> int:
        return NACL_OVERHEAD if encrypted else PLAIN_OVERHEAD

    def receive_datagram(self, data: bytes, sender: Addr, now: float) -> list[ReceivedFrame]:
        """Handle one UDP packet: special frames are consumed here, data frames are returned."""
        self.counters.packets += 1
        if len(data) < NAME_SIZE:
            self.counters.too_short += 1
            return []
        fwds = self._by_peer.get(data[:NAME_SIZE])
        if not fwds:
            self.counters.unknown_sender += 1
            if len(self.strangers) < 64:
                self.strangers.append(sender[0])
            return []
        fwd, body = self._open(fwds, data)
        if fwd is None or body is None:
            return []
        out: list[ReceivedFrame] = []
        try:
            for frame in iter_frames(body):
                if frame.special:
                    target = self._heartbeat_owner(fwds, frame.data) or fwd
                    if frame.src == target.remote.bytes6() and frame.dst == self.local_bin:
                        target.special_frame(frame.data, sender, now)
                    else:
                        self.counters.bad_special += 1
                else:
                    out.append(ReceivedFrame(fwd, frame))
        except RemoteProtocolError as e:
            self.counters.malformed += 1
            log.debug("sleeve: dropping packet from %s:%d: %s", *sender, e)
        return out

    @staticmethod
    def _heartbeat_owner(fwds: list[SleeveForwarder], data: bytes) -> SleeveForwarder | None:
        if len(fwds) < 2 or len(data) != HEARTBEAT_FRAME_LEN:
            return None
        (uid,) = struct.unpack_from(">Q", data, ETHERNET_OVERHEAD)
        return next((f for f in fwds if f.conn_uid == uid), None)

    def _open(self, fwds: list[SleeveForwarder], data: bytes) -> tuple[SleeveForwarder | None, bytes | None]:
        # Usually one forwarder per peer; during a reconnect both old and new may briefly coexist.
        plain = [f for f in fwds if f.dec is None]
        if plain:
            return plain[-1], data[NAME_SIZE:]
        for fwd in reversed(fwds):
            assert fwd.dec is not None
            try:
                body = fwd.dec.open(data)
            except RemoteProtocolError:
                continue
            if body is None:
                self.counters.replayed += 1
                return None, None
            return fwd, body
        self.counters.decrypt_failed += 1
        return None, None


def _quick(features: Mapping[str, str]) -> bool:
    return bool(features.get(DIGEST_FEATURE) or features.get(FAST_SLEEVE_FEATURE))
