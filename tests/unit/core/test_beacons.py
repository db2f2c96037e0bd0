"""Liveness beacons: whom, when, and for how long (pure, exact times)."""

from __future__ import annotations

import itertools

from weavenet.core import beacons as bc
from weavenet.core.names import PeerName


def test_beacon_format() -> None:
    b = bc.beacon(PeerName(0x0A0000000001))
    assert b[:6] == bytes.fromhex("0a0000000001") and bc.is_beacon(b)
    assert not bc.is_beacon(b[:-1]) and not bc.is_beacon(b"\x00" * len(b))


def test_every_second_then_every_ten_then_never() -> None:
    beacons = bc.Beacons()
    p = PeerName(2)
    beacons.lost(p, ("10.0.0.2", 6783), now=100.0)
    assert beacons.next_deadline() == 101.0
    assert beacons.due(100.5) == []
    sent = []
    t = 101.0
    while (deadline := beacons.next_deadline()) is not None:
        t = deadline
        sent.extend(t for _ in beacons.due(t))
    assert sent[0] == 101.0 and sent[1] == 102.0
    fast = [x for x in sent if x - 100 < bc.FAST_FOR + bc.INTERVAL]
    assert len(fast) == bc.FAST_FOR / bc.INTERVAL
    slow = sent[len(fast) :]
    assert all(b - a == bc.SLOW_INTERVAL for a, b in itertools.pairwise(slow))
    assert sent[-1] - 100 < bc.GIVE_UP_AFTER and beacons.peers() == []
    assert len(sent) < 700  # an hour: 300 fast, ~330 slow


def test_found_stops_and_the_oldest_go_first_beyond_the_limit() -> None:
    beacons = bc.Beacons()
    for i in range(bc.MAX_LOST + 5):
        beacons.lost(PeerName(i + 1), ("10.0.0.1", 6783), now=float(i))
    assert len(beacons.peers()) == bc.MAX_LOST and PeerName(1) not in beacons.peers()
    beacons.found(PeerName(bc.MAX_LOST + 5))
    assert PeerName(bc.MAX_LOST + 5) not in beacons.peers()
    assert len(beacons.due(1e6)) == 0  # all older than an hour by then: forgotten
