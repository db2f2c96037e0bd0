"""The rx worker tells the router of datagrams from peer names it has no link to (signs of life), rate-limited."""

from __future__ import annotations

from tests.unit.dataplane.test_rx_worker import Rig
from weavenet.core import beacons
from weavenet.core.names import PeerName
from weavenet.dataplane.channel import Channel
from weavenet.dataplane.worker import STRANGER_GAP


def _told(rig: Rig) -> list[tuple[object, ...]]:
    ctl = Channel(rig.ends[0][1])  # what the router reads
    try:
        return [m for m in ctl.receive() if m[0] == "stranger"]
    finally:
        rig.ends[0][1].setblocking(False)  # as the rig keeps it (Channel made it blocking)


def test_a_beacon_is_reported_at_most_every_gap_per_ip() -> None:
    rig = Rig(None)
    try:
        beacon = beacons.beacon(PeerName(0xCE1234567809))  # a peer we have no link to
        rig.worker.datagram(memoryview(beacon), ("10.0.0.9", 6783), 100.0)
        rig.worker.datagram(memoryview(beacon), ("10.0.0.9", 6783), 100.0 + STRANGER_GAP / 2)
        rig.worker.datagram(memoryview(beacon), ("10.0.0.8", 6783), 100.0 + STRANGER_GAP / 2)
        rig.worker.datagram(memoryview(beacon), ("10.0.0.9", 6783), 100.0 + STRANGER_GAP)
        assert _told(rig) == [("stranger", "10.0.0.9"), ("stranger", "10.0.0.8"), ("stranger", "10.0.0.9")]
        assert rig.worker.counters["unknown_sender"] == 4
        assert rig.injected() == []  # nothing of it reaches the bridge
    finally:
        rig.close()
