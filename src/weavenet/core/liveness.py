"""Noticing a silent Go peer within seconds, from the traffic Weave 2.8 sends anyway.

Between weavenet peers both overlays heartbeat every 2 s, so an underlay that goes dark without an error (no FIN,
no RST, no ICMP) is noticed in about 6 s. A Weave 2.8 (Go) peer heartbeats every 10 s on each overlay once
established, gives up after 60 s, and sends a TCP heartbeat every 30 s: on its timings a silent Go peer was
noticed after 50-60 s. We cannot change what a Go peer sends, and asking it more often than it talks would add
traffic to every idle connection, so a connection to a peer without weavenet's features (``watch``) combines what
it hears from it and asks only when a heartbeat that was due does not come:

* **Two streams, interleaved.** A Go peer's sleeve and fast-datapath heartbeats each slow to every 10 s at the
  moment our first acknowledgement of that overlay arrives (``ConnectionEstablished``, ``HeartbeatAck``), and keep
  that phase. Sent together, as they used to be, the two acks put both streams on one phase: a pair of heartbeats
  every 10 s. The second of the two first acks is held until half a period after the first stream's phase
  (``ack_time``), and the peer then sends a heartbeat every 5 s: the same packets, interleaved. (The streams drift
  apart slowly -- Go re-arms the fast datapath's timer after sending, the sleeve's before -- so a connection days
  old may be back to gaps of up to 10 s; nothing costs more then, it only takes longer to notice.)
* **Expected heartbeats.** Each heartbeat stream (sleeve, fast datapath, TCP) comes at its period from its last
  arrival. Every TCP message and special frame is a sign of life too. When the first heartbeat expected after the
  last sign of life is ``LATE`` overdue, the peer may be gone: the connection *challenges* it.
* **A challenge Go answers.** A *PMTU verification frame* through the sleeve: a special frame of a length that is
  neither a heartbeat nor the fragmentation test, which Weave 2.8 answers at once with ``PMTUVerified`` over TCP,
  logging nothing (``router/sleeve.go`` handleMTUTest). Sent ``PROBES`` times, ``PROBE_EVERY`` apart; no sign of
  life by the last one's deadline and the connection is torn down and re-dialled, as between weavenet peers.

A silent peer is noticed ``LATE + PROBES * PROBE_EVERY`` (2 s) after its next sign of life was due: within 7 s
with interleaved streams, where an idle connection sends exactly what it did (a challenge only follows a lost or
missing heartbeat).

* **One stream: regular challenges.** A sleeve-only connection (no fast datapath on one side, an encrypted link,
  UDP 6784 blocked) hears one heartbeat every 10 s, which alone would take up to 12 s to notice; so a *regular*
  challenge goes half a period after each of the peer's sleeve heartbeats, and its answer is the sign of life in
  between (noticed within 7 s). To keep the datagrams we send at one every 10 s, our own heartbeats (which
  Weave needs within its 60 s timeout) go every ``SPACED_HEARTBEAT`` and ride in every other challenge's
  datagram. The link's idle bytes rise by the answers (a 9-byte TCP message every 10 s) and the challenge
  frames: +6 % plain, +9 % encrypted in the simulation (``docs/benchmarks.md``).

Only connections to peers without weavenet's features are watched, only once established, and challenges go
only while the peer's sleeve heartbeats still come (a challenge takes the same path the other way): silence
alone, unchallenged, never ends a connection here (the overlays' own 60 s timeouts still apply). So a sleeve path
that closes while the fast datapath still works costs one reconnection (challenges unanswered before the fast
datapath's next heartbeat was due), after which the connection runs on the fast datapath unchallenged; waiting
for every stream's next heartbeat instead would have made every silent peer take up to 10.5 s to notice.
"""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING

from weavenet.core.fastdp import CONTROL_HEARTBEAT_ACK, FastdpForwarder
from weavenet.core.sleeve import CONTROL_CONNECTION_ESTABLISHED, SLOW_HEARTBEAT, SleeveForwarder
from weavenet.core.sleeve_codec import ETHERNET_OVERHEAD

if TYPE_CHECKING:
    from weavenet.core.connection import LocalConnection
    from weavenet.core.overlay import Forwarder

log = logging.getLogger("weavenet.mesh")

STREAM_OFFSET = SLOW_HEARTBEAT / 2  # the second stream's phase, relative to the first
OFFSET_SLACK = 0.25  # a second ack this close to the wanted phase goes at once
LATE = 0.5  # an expected heartbeat this overdue (Go's timers and the path jitter by milliseconds): challenge
PROBE_EVERY = 0.5  # a challenge (one UDP datagram, answered over TCP) is repeated this often ...
PROBES = 3  # ... this many times; unanswered PROBE_EVERY after the last, the peer is gone
# One heartbeat stream only (no fast datapath): a regular challenge half a period after each of the peer's
# sleeve heartbeats, and our own heartbeats, which Weave needs within its 60 s timeout, every SPACED_HEARTBEAT
# riding in every other challenge's datagram (so the datagrams we send stay one every 10 s, as before).
SPACED_HEARTBEAT = 2 * SLOW_HEARTBEAT
MISSED = 2  # a stream that missed this many heartbeats in a row is not expected any more (a blocked path)
# A special frame of this length is a PMTU verification frame to Weave 2.8 (heartbeats are 22 bytes, the
# fragmentation test 60001); the answer carries length - 14, here 1, never a size our own PMTU search uses.
CHALLENGE_LEN = ETHERNET_OVERHEAD + 1


def ack_time(now: float, ref: float) -> float:
    """When to send the second first-ack so that its stream runs ``STREAM_OFFSET`` from the stream whose phase
    ``ref`` marks (the time that stream's ack was sent, or one of its heartbeats arrived): ``now`` if that is
    within ``OFFSET_SLACK`` of the wanted phase, else the next such moment."""
    phase = (now - ref - STREAM_OFFSET) % SLOW_HEARTBEAT  # seconds past the wanted phase
    if phase <= OFFSET_SLACK or phase >= SLOW_HEARTBEAT - OFFSET_SLACK:
        return now
    return now + SLOW_HEARTBEAT - phase


class Silence:
    """What a watched connection has heard from its peer, and its challenge round if one is under way."""

    __slots__ = ("heard_at", "last_regular", "next_probe", "next_regular", "probes", "streams")

    def __init__(self, now: float) -> None:
        self.heard_at = now  # the last sign of life of any kind
        self.streams: dict[str, tuple[float, float]] = {}  # heartbeat stream -> (last arrival, period)
        self.probes = 0
        self.next_probe = 0.0
        self.last_regular = -1e9  # when the last regular challenge went
        self.next_regular: float | None = None  # when the next is due (one heartbeat stream only)

    def heard(self, at: float) -> None:
        if at > self.heard_at:
            self.heard_at = at
            self.probes = 0

    def beat(self, stream: str, at: float, period: float) -> None:
        """A heartbeat of a periodic stream arrived at ``at`` (a sign of life that also says when the next is due)."""
        last = self.streams.get(stream)
        if last is None or at > last[0]:
            self.streams[stream] = (at, period)
        self.heard(at)

    def expected(self) -> float:
        """The first moment after the last sign of life at which a heartbeat should have arrived."""
        due = []
        for last, period in self.streams.values():
            missed = int((self.heard_at - last) // period)  # beats of this stream due since, and not seen
            if missed < MISSED:
                due.append(last + (missed + 1) * period)
        return min(due) if due else self.heard_at + SLOW_HEARTBEAT

    def live(self, stream: str, now: float) -> bool:
        """Whether ``stream`` still comes (it missed fewer than ``MISSED`` beats by ``now``)."""
        got = self.streams.get(stream)
        return got is not None and int((now - got[0]) // got[1]) < MISSED

    def step(self, now: float, can_probe: bool) -> str | None:
        """``"probe"`` (send a challenge now), ``"dead"`` (challenged ``PROBES`` times, in vain) or None."""
        if now < self.expected() + LATE or now < self.next_probe:
            return None
        if self.probes >= PROBES:
            return "dead"
        self.next_probe = now + PROBE_EVERY  # also when no challenge can go: the timer moves on
        if not can_probe:
            return None
        self.probes += 1
        return "probe"

    def timer(self) -> float:
        at = max(self.expected() + LATE, self.next_probe)
        return at if self.next_regular is None else min(at, self.next_regular)

    def regular(self, now: float, single: bool) -> bool:
        """Whether a regular challenge is due: only the sleeve's stream comes (``single``), and half a period
        has passed since the peer's last sleeve heartbeat (or since the moment one was due); one per period."""
        got = self.streams.get("sleeve")
        if not single or got is None:
            self.next_regular = None
            self.streams.pop("answer", None)
            return False
        at = got[0] + STREAM_OFFSET
        if self.last_regular > at - STREAM_OFFSET:  # already challenged in this period: the next one
            at += SLOW_HEARTBEAT * (1 + int((self.last_regular - at + STREAM_OFFSET) // SLOW_HEARTBEAT))
        self.next_regular = at
        if now < at:
            return False
        self.last_regular = now
        self.next_regular = at + SLOW_HEARTBEAT
        return True

    def describe(self, now: float) -> str:
        return (
            f"no sign of life from the peer for {now - self.heard_at:.1f}s "
            f"(heartbeats overdue, {self.probes} challenges unanswered)"
        )


# -- a watched connection (the router calls these) --------------------------------------------------------------


def watches(conn: LocalConnection, extensions: bool) -> bool:
    """Whether to watch a connection just given its forwarders: its sleeve runs on Weave's timings (the peer has
    no weavenet features that turn on quick heartbeats), and we speak weavenet's extensions at all."""
    return extensions and any(isinstance(f, SleeveForwarder) and not f.quick_heartbeats for f in conn.forwarders)


def check(conn: LocalConnection, silence: Silence, now: float) -> bool:
    """The connection's timer: challenge a quiet peer; False if it is gone (challenged in vain)."""
    _heard_through_overlays(conn, silence)
    sleeve = conn.sleeve_forwarder()
    # a challenge goes through the sleeve: only while the peer's sleeve heartbeats still come that way
    can = sleeve is not None and sleeve.remote_addr is not None and silence.live("sleeve", now)
    single = not silence.live("fastdp", now)  # one stream only: a Go heartbeat every 10 s, too few alone
    if sleeve is not None:
        sleeve.space_heartbeats(SPACED_HEARTBEAT if single and can else SLOW_HEARTBEAT)
    if silence.regular(now, single and can):
        assert sleeve is not None
        sleeve.challenge(CHALLENGE_LEN, now)
        log.debug("%s: regular challenge sent", conn.describe())
    step = silence.step(now, can)
    if step == "probe":
        assert sleeve is not None
        sleeve.challenge(CHALLENGE_LEN)
        log.debug("%s: heartbeat overdue, challenge %d sent", conn.describe(), silence.probes)
    return step != "dead"


def _heard_through_overlays(conn: LocalConnection, silence: Silence) -> None:
    """The overlays' heartbeats (each a stream with Go's slow period) and other specials are signs of life."""
    for fwd in conn.forwarders:
        if isinstance(fwd, SleeveForwarder):
            if fwd.last_heartbeat is not None:
                silence.beat("sleeve", fwd.last_heartbeat, SLOW_HEARTBEAT)
            if fwd.last_answer is not None and silence.next_regular is not None:
                silence.beat("answer", fwd.last_answer, SLOW_HEARTBEAT)  # regular challenges are answered
            if fwd.last_heard is not None:
                silence.heard(fwd.last_heard)
        elif isinstance(fwd, FastdpForwarder) and fwd.last_rx is not None:
            silence.beat("fastdp", fwd.last_rx, SLOW_HEARTBEAT)


def hold_ack(conn: LocalConnection, index: int, fwd: Forwarder, subtag: int, body: bytes, now: float) -> bool:
    """A control message about to go to a watched peer: True if it is the second of the two first acks and is
    held (in ``conn.held``) until its stream will interleave with the first's; when each first ack went is kept."""
    kind = _first_ack(conn, fwd, subtag) if conn.watch else None
    if kind is None:
        return False
    hold = _ack_hold(conn, kind, now)
    if hold is not None:
        conn.held.append((hold, index, subtag, body))
        return True
    conn.first_acks.setdefault(kind, now)
    return False


def due_acks(conn: LocalConnection, now: float) -> list[tuple[int, int, bytes]]:
    """The held acks due by ``now`` of forwarders still running, as (forwarder index, sub-tag, body) to send."""
    due = [h for h in conn.held if h[0] <= now]
    conn.held = [h for h in conn.held if h[0] > now]
    out = []
    for _, index, subtag, body in due:
        fwd = conn.forwarders[index]
        if fwd is None or fwd.stopped:
            continue
        kind = _first_ack(conn, fwd, subtag)
        if kind is not None:
            conn.first_acks.setdefault(kind, now)
        out.append((index, subtag, body))
    return out


def _first_ack(conn: LocalConnection, fwd: Forwarder, subtag: int) -> str | None:
    """Which overlay's first acknowledgement this control message is (each overlay sends one), if any."""
    if isinstance(fwd, SleeveForwarder) and subtag == CONTROL_CONNECTION_ESTABLISHED and not conn.compat:
        return "sleeve"
    if isinstance(fwd, FastdpForwarder) and subtag == CONTROL_HEARTBEAT_ACK:
        return "fastdp"
    return None


def _ack_hold(conn: LocalConnection, kind: str, now: float) -> float | None:
    """When the second first-ack may go so that the two heartbeat streams interleave, or None for now."""
    other = "fastdp" if kind == "sleeve" else "sleeve"
    sent = conn.first_acks.get(other)
    if sent is None:
        return None
    fwd = conn.fastdp_forwarder() if other == "fastdp" else conn.sleeve_forwarder()
    last = None if fwd is None else (fwd.last_rx if isinstance(fwd, FastdpForwarder) else fwd.last_heartbeat)
    # a heartbeat that came well after the ack is on the slow phase, more exactly than the ack's send time
    ref = last if last is not None and last > sent + SLOW_HEARTBEAT / 2 else sent
    at = ack_time(now, ref)
    return at if at > now else None
