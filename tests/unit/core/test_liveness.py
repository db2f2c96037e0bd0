"""The rules that notice a silent Go peer (``core/liveness.py``): when the second ack goes, when a challenge is due,
when the peer is given up; and that a challenge is a frame Weave 2.8 answers without logging."""

from __future__ import annotations

from hypothesis import given
from hypothesis import strategies as st

from weavenet.core import liveness
from weavenet.core.liveness import CHALLENGE_LEN, LATE, PROBE_EVERY, PROBES, Silence, ack_time
from weavenet.core.names import PeerName
from weavenet.core.sleeve import SLOW_HEARTBEAT, SleeveForwarder, SleeveOverlay
from weavenet.core.sleeve_codec import ETHERNET_OVERHEAD, FRAG_TEST_SIZE, HEARTBEAT_FRAME_LEN


@given(now=st.floats(0, 1e6), since=st.floats(0, 1e4))
def test_the_second_ack_goes_half_a_period_after_the_first_streams_phase(now: float, since: float) -> None:
    ref = now - since
    at = ack_time(now, ref)
    assert now <= at < now + SLOW_HEARTBEAT
    phase = (at - ref) % SLOW_HEARTBEAT
    assert abs(phase - SLOW_HEARTBEAT / 2) <= liveness.OFFSET_SLACK + 1e-6


def test_a_challenge_is_a_pmtu_verification_frame_to_weave() -> None:
    # Go's sleeve tells its special frames apart by length: 22 heartbeat, 60001 fragmentation test, else PMTU
    # verification, answered with PMTUVerified(len - 14) and no log line
    assert CHALLENGE_LEN >= ETHERNET_OVERHEAD and CHALLENGE_LEN not in (HEARTBEAT_FRAME_LEN, FRAG_TEST_SIZE)
    assert CHALLENGE_LEN - ETHERNET_OVERHEAD < 552  # never a size our own PMTU search waits for


def run(s: Silence, until: float) -> list[tuple[float, str]]:
    """Step the silence at each moment it asks to be woken; the events with their times."""
    out: list[tuple[float, str]] = []
    t = s.heard_at
    while t < until:
        t = max(s.timer(), t + 0.001)
        got = s.step(t, can_probe=True)
        if got:
            out.append((round(t, 2), got))
        if got == "dead":
            break
    return out


def test_interleaved_streams_never_challenge_and_their_end_is_noticed_quickly() -> None:
    s = Silence(0.0)
    for k in range(10):  # sleeve at 0, 10, 20 ...; fast datapath at 5, 15, 25 ...
        s.beat("sleeve", k * 10.0, SLOW_HEARTBEAT)
        assert s.step(k * 10.0 + 4.9, True) is None
        s.beat("fastdp", k * 10.0 + 5, SLOW_HEARTBEAT)
        assert s.step(k * 10.0 + 9.9, True) is None
    # silent after the fast datapath's beat at 95: the sleeve's at 100 is missed
    events = run(s, 200)
    assert events[0] == (100 + LATE, "probe")
    assert [e for _, e in events] == ["probe"] * PROBES + ["dead"]
    assert events[-1][0] == round(100 + LATE + PROBES * PROBE_EVERY, 2)


def test_an_answer_ends_the_round_and_one_stream_is_expected_every_period() -> None:
    s = Silence(0.0)
    s.beat("sleeve", 0.0, SLOW_HEARTBEAT)
    assert s.step(10.0 + LATE - 0.01, True) is None
    assert s.step(10.0 + LATE, True) == "probe"  # a single stream: noticed LATE after its next beat
    s.heard(10.52)  # PMTUVerified over TCP
    assert s.probes == 0 and s.step(11.0, True) is None
    s.beat("sleeve", 20.0, SLOW_HEARTBEAT)  # the late beat was lost, the next one comes
    assert s.step(30.0 + LATE - 0.01, True) is None


def test_a_stream_that_stopped_is_not_expected_for_ever() -> None:
    s = Silence(0.0)
    s.beat("fastdp", 5.0, SLOW_HEARTBEAT)  # the fast datapath's path closes after this one
    for k in range(1, 10):
        s.beat("sleeve", k * 10.0, SLOW_HEARTBEAT)
    # fastdp missed 2 beats by 90: only the sleeve's next beat (100) is expected
    assert s.expected() == 100.0


def test_no_challenge_can_go_no_end() -> None:
    s = Silence(0.0)
    s.beat("sleeve", 0.0, SLOW_HEARTBEAT)
    for t in range(11, 200):
        assert s.step(float(t), can_probe=False) is None  # no sleeve address: the 60 s timeouts decide
    assert s.timer() > 199.0  # and the timer moves on (no busy loop)


def test_tcp_heartbeats_and_other_messages_count() -> None:
    s = Silence(0.0)
    s.beat("tcp", 0.0, 30.0)
    assert s.expected() == 30.0
    s.heard(12.0)  # a gossip message
    assert s.expected() == 30.0  # the next heartbeat due after it
    assert "no sign of life from the peer for" in s.describe(33.0)


# -- one heartbeat stream (sleeve only): regular challenges ------------------------------------------------------


def test_regular_challenges_go_half_a_period_after_each_sleeve_heartbeat_once_per_period() -> None:
    s = Silence(0.0)
    s.beat("sleeve", 1.0, SLOW_HEARTBEAT)
    assert not s.regular(3.0, single=True) and s.next_regular == 6.0
    assert s.timer() <= 6.0
    assert s.regular(6.0, single=True) and not s.regular(6.2, single=True)
    s.beat("sleeve", 11.0, SLOW_HEARTBEAT)
    assert s.next_regular == 16.0 and s.regular(16.0, single=True)
    # the peer's heartbeats stop: one challenge per period still, at the same phase
    assert not s.regular(25.9, single=True) and s.regular(26.0, single=True)
    # a second stream (the fast datapath) comes: no regular challenges
    assert not s.regular(36.0, single=False) and s.next_regular is None


def test_a_regular_challenge_carries_the_heartbeat_due_before_the_next_one() -> None:
    ov = SleeveOverlay(PeerName(0x0A0000000001))
    fwd = SleeveForwarder(ov, PeerName(0x0A0000000002), "go", 7, True, ("10.0.0.2", 6783), None)
    fwd.confirm(0.0)
    fwd.control_message(1, b"", 0.1)  # established: Weave's 10 s heartbeats
    fwd.space_heartbeats(liveness.SPACED_HEARTBEAT)
    ov.outbox.clear()
    sizes = []
    for t in (5.0, 15.0, 25.0, 35.0):
        fwd.handle_timer(t)
        fwd.challenge(CHALLENGE_LEN, t)
        sizes.append([len(p) for _, p in ov.outbox])
        ov.outbox.clear()
    one, both = 6 + 14 + CHALLENGE_LEN, 6 + 14 + CHALLENGE_LEN + 14 + HEARTBEAT_FRAME_LEN
    assert sizes == [[one], [both], [one], [both]]  # one datagram every 10 s, a heartbeat every 20 s
    assert fwd.next_heartbeat is not None and fwd.next_heartbeat > 45.0  # the timer never sends one alone
