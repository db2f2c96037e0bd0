"""Lean liveness's pure parts: the contact's asks and verdict with time passed in, the sleeve's ask frame and
answer, the fast datapath's small beats, answers and path-MTU proofs (``core/contact.py``)."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from weavenet.core import contact
from weavenet.core.contact import ASK_EVERY, ASKS, BEAT, LATE, SILENT, Contact, leans
from weavenet.core.fastdp import QUICK_RX_TIMEOUT, FastdpForwarder, FastdpOverlay, SendVxlan
from weavenet.core.fastdp_codec import ASK, PROBE_LEN, PROVE, RX_HEARTBEATS, RX_PROBES, Heartbeat
from weavenet.core.features import LIVENESS_FEATURE
from weavenet.core.names import PeerName
from weavenet.core.sleeve import SleeveForwarder, SleeveOverlay
from weavenet.core.sleeve_codec import ASK_FRAME_LEN, HEARTBEAT_FRAME_LEN, ask_frame, heartbeat_frame, parse_ask
from weavenet.core.topology import Peer

ME = Peer(name=PeerName(0x0A0000000001), nickname="me", uid=1, short_id=0x101, has_short_id=True)
THEM = Peer(name=PeerName(0x0A0000000002), nickname="them", uid=2, short_id=0x202, has_short_id=True)
UID = 0x0E3D685BC2F1A497
ADDR = ("10.0.0.2", 6784)


def test_both_peers_must_announce_it() -> None:
    on = {LIVENESS_FEATURE: "1"}
    assert leans(on, on)
    assert not leans(on, {}) and not leans({}, on) and not leans(on, {LIVENESS_FEATURE: "0"})


def test_a_silent_peer_is_asked_three_times_then_declared_gone_6s_after_the_last_packet() -> None:
    c = Contact(0.0)
    steps = []
    t = 0.0
    while t <= 8.0:
        if c.timer() <= t:
            steps.append((t, c.step(t)))
        t = round(t + 0.05, 2)
    asks = [at for at, s in steps if s == "ask"]
    assert asks == [BEAT + LATE + k * ASK_EVERY for k in range(ASKS)]
    dead = [at for at, s in steps if s == "dead"]
    assert dead and dead[0] == SILENT == 6.0


def test_an_answer_ends_the_round_and_the_next_one_starts_from_it() -> None:
    c = Contact(0.0)
    assert c.step(4.5) == "ask"
    c.heard(4.51)
    assert c.step(5.0) is None and c.step(6.0) is None
    assert c.timer() == pytest.approx(4.51 + BEAT + LATE)
    assert c.step(4.51 + SILENT) == "dead"


@given(st.lists(st.floats(0.0, 3.99), max_size=50))
def test_beats_every_4s_are_never_asked_about(gaps: list[float]) -> None:
    c, t = Contact(0.0), 0.0
    for gap in gaps:
        t += gap
        assert c.step(t) is None
        c.heard(t)


# -- the sleeve ---------------------------------------------------------------------------------------------------


def sleeve(lean: bool = True) -> tuple[SleeveOverlay, SleeveForwarder]:
    ov = SleeveOverlay(ME.name)
    fwd = SleeveForwarder(ov, THEM.name, "them", UID, True, ("10.0.0.2", 6783), None)
    if lean:
        fwd.make_lean()
    fwd.confirm(0.0)
    fwd.control_message(1, b"", 0.1)  # ConnectionEstablished
    ov.outbox.clear()
    return ov, fwd


def test_the_ask_frame_round_trips_and_nothing_else_parses_as_one() -> None:
    assert len(ask_frame(UID)) == ASK_FRAME_LEN == HEARTBEAT_FRAME_LEN + 4
    assert parse_ask(ask_frame(UID)) == UID
    assert parse_ask(heartbeat_frame(UID)) is None
    assert parse_ask(bytes(ASK_FRAME_LEN)) is None
    assert parse_ask(b"\x01" + ask_frame(UID)[1:]) is None


@given(st.binary(max_size=64))
def test_parse_ask_never_raises(data: bytes) -> None:
    uid = parse_ask(data)
    assert uid is None or data == ask_frame(uid)


def test_a_lean_sleeve_answers_an_ask_at_once_and_beats_every_4s() -> None:
    ov, fwd = sleeve()
    assert fwd.heartbeat_interval == BEAT and fwd.heartbeat_timeout == contact.SLEEVE_GIVE_UP
    fwd.special_frame(ask_frame(UID), ("10.0.0.2", 6783), 1.0)
    assert len(ov.outbox) == 1 and ov.outbox[0][1].endswith(heartbeat_frame(UID))
    assert fwd.last_heard == 1.0 and fwd.timeout_at == 1.0 + contact.SLEEVE_GIVE_UP
    assert not fwd.control_out[1:]  # no PMTUVerified: an ask is not a PMTU frame to a lean peer


def test_a_sleeve_that_is_not_lean_takes_an_ask_for_a_pmtu_frame_as_weave_does() -> None:
    ov, fwd = sleeve(lean=False)
    fwd.special_frame(ask_frame(UID), ("10.0.0.2", 6783), 1.0)
    assert not ov.outbox and fwd.control_out[-1][0] == 3  # PMTUVerified
    fwd.ask()
    assert not ov.outbox  # asks only go to lean peers


def test_a_covered_sleeve_beats_rarely_and_lives_on_the_other_paths_contact() -> None:
    ov, fwd = sleeve()
    fwd.cover(True, 1.0)
    assert fwd.heartbeat_interval == contact.COVERED_BEAT
    fwd.heard_elsewhere(50.0)
    assert fwd.timeout_at == 50.0 + contact.SLEEVE_GIVE_UP
    fwd.cover(False, 51.0)  # the fast datapath stopped carrying: beat at once, then every 4 s
    assert fwd.heartbeat_interval == BEAT and fwd.next_heartbeat == 51.0 + BEAT and len(ov.outbox) == 1


# -- the fast datapath --------------------------------------------------------------------------------------------


def fastdp(lean: bool = True) -> tuple[FastdpOverlay, FastdpForwarder]:
    ov = FastdpOverlay(ME, 1376, 6784, lambda s: THEM if s == THEM.short_id else None)
    fwd = FastdpForwarder(ov, THEM, UID, True, ADDR, True, 0.0)
    fwd.lean = lean
    fwd.confirm(0.0)
    fwd.set_device(None, 0.0)
    fwd.heartbeat(Heartbeat(UID, 1390, False, RX_HEARTBEATS | RX_PROBES), ADDR[0], 0.1)
    fwd.control_message(0, b"", 0.1)  # HeartbeatAck
    assert fwd.healthy
    ov.outbox.clear()
    return ov, fwd


def sent(ov: FastdpOverlay) -> list[int]:
    """The lengths of the frames sent since the last call."""
    out = [len(a.frame) for a in ov.outbox if isinstance(a, SendVxlan)]
    ov.outbox.clear()
    return out


def run(fwd: FastdpForwarder, until: float, beat_from_peer: bool = True) -> None:
    """Drive the forwarder's timer to ``until``; the peer's probes arrive every 4 s if ``beat_from_peer``."""
    t, next_peer = 0.1, 4.0
    for _ in range(100_000):
        timer = fwd.get_timer()
        nxt = min(timer if timer is not None else until + 1, next_peer if beat_from_peer else until + 1)
        if nxt > until:
            return
        t = max(t, nxt)
        if beat_from_peer and t >= next_peer:
            fwd.heartbeat(Heartbeat(UID, PROBE_LEN, True, RX_HEARTBEATS | RX_PROBES), ADDR[0], t)
            next_peer += BEAT
        else:
            fwd.handle_timer(t)
    raise AssertionError(f"the timer does not move on at {t}: {fwd.get_timer()}")


def test_a_healthy_lean_fastdp_sends_one_small_probe_every_4s() -> None:
    ov, fwd = fastdp()
    run(fwd, 100.0)
    lengths = sent(ov)
    assert fwd.healthy
    assert set(lengths) == {PROBE_LEN} and 24 <= len(lengths) <= 26


def test_a_go_or_old_weavenet_peer_keeps_full_size_heartbeats() -> None:
    ov, fwd = fastdp(lean=False)
    for k in range(1, 5):
        fwd.handle_timer(k * 2.0 + 0.1)
        fwd.heartbeat(Heartbeat(UID, 1390, False, RX_HEARTBEATS | RX_PROBES), ADDR[0], k * 2.0 + 0.2)
    assert 1390 in sent(ov)


def test_the_receiver_asks_for_proof_every_proof_every_and_the_sender_proves_at_once() -> None:
    ov, fwd = fastdp()
    run(fwd, contact.PROOF_EVERY + 0.2)
    assert fwd.proof_wanted_at is not None
    assert any(a.frame[-1] & PROVE for a in ov.outbox)  # the request rides on a probe, sent at once
    # the peer asks us: we answer with one full-size heartbeat, not two within half a second
    ov.outbox.clear()
    fwd.heartbeat(Heartbeat(UID, PROBE_LEN, True, RX_HEARTBEATS | RX_PROBES | PROVE), ADDR[0], 400.0)
    fwd.heartbeat(Heartbeat(UID, PROBE_LEN, True, RX_HEARTBEATS | RX_PROBES | PROVE), ADDR[0], 400.1)
    assert sent(ov) == [1390]
    fwd.heartbeat(Heartbeat(UID, PROBE_LEN, True, RX_HEARTBEATS | RX_PROBES | ASK), ADDR[0], 400.2)
    assert sent(ov) == [PROBE_LEN]  # an ask is answered with a probe
    assert fwd.peer_flags == RX_HEARTBEATS | RX_PROBES  # the requests are not part of what the peer receives


def test_a_proof_that_does_not_come_voids_the_path_mtu_and_the_connection_falls_back() -> None:
    ov, fwd = fastdp()
    fwd.ask(10.0)  # a lost beat: ask, and want proof
    assert sent(ov) == [PROBE_LEN] and fwd.proof_wanted_at == 10.0
    # only probes come back (full-size frames no longer pass)
    for t in (10.05, 11.0, 12.0, 12.9):
        fwd.heartbeat(Heartbeat(UID, PROBE_LEN, True, RX_HEARTBEATS | RX_PROBES), ADDR[0], t)
        fwd.handle_timer(t)
    assert fwd.healthy
    fwd.handle_timer(10.0 + contact.PROOF_WAIT)
    assert not fwd.healthy and fwd.proven_at is None
    reason = fwd.reason(13.1)
    assert reason is not None and "path MTU too small" in reason, reason
    fwd.handle_timer(14.1)
    assert 1390 in sent(ov)  # not healthy: full-size heartbeats again, as at establishment


def test_a_proof_that_comes_keeps_the_path() -> None:
    _, fwd = fastdp()
    fwd.ask(10.0)
    fwd.heartbeat(Heartbeat(UID, 1390, False, RX_HEARTBEATS | RX_PROBES), ADDR[0], 10.05)
    assert fwd.proof_wanted_at is None and fwd.proven_at == 10.05
    fwd.handle_timer(14.0)
    assert fwd.healthy


def test_a_peer_heard_from_another_address_is_asked_to_prove_the_path() -> None:
    ov, fwd = fastdp()
    fwd.heartbeat(Heartbeat(UID, PROBE_LEN, True, RX_HEARTBEATS | RX_PROBES), "10.9.9.9", 5.0)
    assert fwd.proof_wanted_at == 5.0
    assert any(a.frame[-1] & PROVE for a in ov.outbox)


def test_a_lean_fastdp_goes_on_hold_after_6s_without_any_packet() -> None:
    _, fwd = fastdp()
    run(fwd, 20.0, beat_from_peer=False)
    assert not fwd.healthy and fwd.on_hold
    assert QUICK_RX_TIMEOUT == SILENT  # the path and the connection give up together
