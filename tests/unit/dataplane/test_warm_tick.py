"""The warm tick: after unicast traffic to or from the bridge, the worker that reads small frames wakes every
millisecond for a while, and only then; idle, or with only group-address chatter (router solicitations, ARP
requests), it sleeps in poll (see worker.WARM_TICK_MS).

The workers run their real poll loops in a thread, on real file descriptors (socket pairs for the TAP and the
channels, UDP sockets on loopback), with WARM_FOR shortened.
"""

from __future__ import annotations

import socket
import threading
import time
from collections.abc import Callable, Iterator

import pytest

from tests.unit.dataplane.test_rx_worker import FRAME, ME, PEER, Rig
from weavenet.config import from_argv as from_args
from weavenet.dataplane import worker
from weavenet.dataplane.channel import Channel
from weavenet.dataplane.frames import ZERO_VNET
from weavenet.dataplane.sender import Sender
from weavenet.dataplane.tables import Link, Tables
from weavenet.dataplane.worker import IDLE_POLL_MS, TxWorker, poll_timeout

WARM_FOR = 0.05
UNICAST = bytes.fromhex("0a0000000002" "0a1122334455" "0800") + bytes(46)  # to a MAC nobody knows yet: flooded


@pytest.fixture(autouse=True)
def short_warm_window(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(worker, "WARM_FOR", WARM_FOR)


@pytest.mark.parametrize(
    ("now", "traffic", "tick", "expected"),
    [
        (10.0, 10.0, 1, 1),  # just after traffic
        (10.0 + WARM_FOR / 2, 10.0, 1, 1),
        (10.0 + WARM_FOR, 10.0, 1, IDLE_POLL_MS),  # the window is over
        (10.0, float("-inf"), 1, IDLE_POLL_MS),  # no traffic yet (as the loops start)
        (10.0, 10.0, 0, IDLE_POLL_MS),  # turned off
    ],
)
def test_the_poll_waits_a_tick_only_within_the_window_after_traffic(
    now: float, traffic: float, tick: int, expected: int
) -> None:
    assert poll_timeout(now, traffic, tick) == expected


def ticks_around(w: worker._Base, ctl_far: socket.socket, stimulus: Callable[[], None]) -> tuple[int, int, int]:
    """Warm ticks counted idle before ``stimulus``, within the window after it, and long after it."""
    thread = threading.Thread(target=w.run, daemon=True)
    thread.start()
    try:
        time.sleep(0.15)
        before = w.counters.get("warm_ticks", 0)
        stimulus()
        time.sleep(WARM_FOR + 0.1)
        within = w.counters.get("warm_ticks", 0)
        time.sleep(0.2)
        after = w.counters.get("warm_ticks", 0)
    finally:
        Channel(ctl_far).send(("stop",))
        thread.join(5)
    assert not thread.is_alive()
    return before, within, after


@pytest.fixture
def rig() -> Iterator[Rig]:
    r = Rig(None)
    yield r
    r.close()


def datagram_to(rig: Rig, frame: bytes = UNICAST) -> None:
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as tx:
        link = Link(ME, 1, outbound=True, addr=rig.sock.getsockname(), key=None, fast=True)
        Sender(tx, PEER, 0).send_fast(link, PEER, ME, ZERO_VNET, frame)
    deadline = time.monotonic() + 2
    while not rig.worker.injected and time.monotonic() < deadline:
        time.sleep(0.005)
    assert rig.worker.injected == 1


def test_the_rx_worker_ticks_after_a_unicast_frame_and_stops_when_the_window_is_over(rig: Rig) -> None:
    before, within, after = ticks_around(rig.worker, rig.ends[0][1], lambda: datagram_to(rig))
    assert before == 0
    assert 0 < within <= WARM_FOR * 1000 + 5  # about one per millisecond of the window, never more
    assert after == within


def test_a_broadcast_alone_leaves_the_rx_worker_asleep(rig: Rig) -> None:
    assert ticks_around(rig.worker, rig.ends[0][1], lambda: datagram_to(rig, FRAME)) == (0, 0, 0)


def test_without_the_warm_tick_the_rx_worker_only_wakes_for_events(rig: Rig) -> None:
    rig.worker.warm_tick = 0
    assert ticks_around(rig.worker, rig.ends[0][1], lambda: datagram_to(rig)) == (0, 0, 0)


class TxBed:
    """A tx worker whose TAP is a socket pair and whose one peer's address is a sink socket."""

    def __init__(self, split: bool | None) -> None:
        self.tap, self.tap_far = socket.socketpair(socket.AF_UNIX, socket.SOCK_SEQPACKET)
        self.sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        self.sink = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        self.sink.bind(("127.0.0.1", 0))
        self.ends = [socket.socketpair() for _ in range(2)]
        self.worker = TxWorker(self.tap.fileno(), self.sock, Channel(self.ends[0][0]), Channel(self.ends[1][0]))
        link = Link(PEER, 1, outbound=True, addr=self.sink.getsockname(), key=None, fast=True)
        self.worker.handle(("tables", Tables(me=ME, links={PEER: link}, unicast={PEER: PEER}, broadcast={ME: [PEER]})))
        if split is not None:
            self.worker.handle(("steering", split))  # as the data plane says after each table update

    def frame_from_bridge(self, frame: bytes = UNICAST) -> None:
        self.tap_far.send(ZERO_VNET + frame)
        self.sink.settimeout(2)
        assert self.sink.recv(70000)  # flooded to the peer: the worker read it

    def close(self) -> None:
        for s in (self.tap, self.tap_far, self.sock, self.sink, *(e for pair in self.ends for e in pair)):
            s.close()


@pytest.mark.parametrize(
    ("split", "ticks"),
    [
        (None, True),  # nothing said yet: the tx worker may read small frames
        (False, True),  # one TAP queue, or steering off while a link speaks the classic format
        (True, False),  # every small frame goes to the rx worker, whose tick it is
    ],
)
def test_the_tx_worker_ticks_only_while_small_frames_come_to_it(split: bool | None, ticks: bool) -> None:
    bed = TxBed(split)
    try:
        before, within, after = ticks_around(bed.worker, bed.ends[0][1], bed.frame_from_bridge)
    finally:
        bed.close()
    assert before == 0 and after == within
    assert (within > 0) is ticks


def test_a_broadcast_from_the_bridge_alone_leaves_the_tx_worker_asleep() -> None:
    bed = TxBed(split=False)
    try:
        assert ticks_around(bed.worker, bed.ends[0][1], lambda: bed.frame_from_bridge(FRAME)) == (0, 0, 0)
    finally:
        bed.close()


def test_weave_no_warm_tick_turns_it_off() -> None:
    assert from_args([], {}).warm_tick
    assert not from_args([], {"WEAVE_NO_WARM_TICK": "1"}).warm_tick
