"""The warm tick's rehearsal (worker.REHEARSAL) replays the last frame an express path took and changes nothing.

Each case of the express tests runs on two fresh workers fed the same frame twice; one of them rehearses three
times in between. What leaves them (frames injected into the TAP, datagrams sent to the peer, messages to the
other worker, counters but the ticks, MAC cache, sequence numbers and replay windows as the second frame shows
them) must be the same: a rehearsal sends nothing (its UDP send is a MSG_PROBE), writes nothing and consumes no
nonce. Real sockets on loopback throughout, as in the express tests.
"""

from __future__ import annotations

import dataclasses
import socket
import time
from collections.abc import Callable
from contextlib import closing

import pytest

from tests.unit.dataplane.test_express import (
    ECHO_REPLY,
    IN_CASES,
    LOCAL_MAC,
    OTHER,
    OUT_CASES,
    REMOTE_MAC,
    Bed,
    Case,
    from_bridge,
    from_peer,
)
from tests.unit.dataplane.test_rx_worker import KEY, PEER, Rig
from tests.unit.dataplane.test_warm_tick import TxBed
from weavenet.config import from_argv as from_args
from weavenet.dataplane import fastwire, worker
from weavenet.dataplane.frames import ZERO_VNET
from weavenet.dataplane.gso import IDX_AT, SEQ_AT
from weavenet.dataplane.mac_cache import REFRESH
from weavenet.dataplane.sender import MSG_PROBE, Sender
from weavenet.dataplane.tables import Link
from weavenet.errors import RemoteProtocolError

REHEARSALS = 3


def without_ticks(outcome: dict) -> dict:
    outcome["counters"].pop("warm_ticks", None)
    return outcome


def twice(
    case: Case, feed: Callable[[Bed, Case], None], rehearse: bool, change: Callable[[Bed], None] | None = None
) -> tuple[dict, list[bool], int]:
    """Feed ``case`` twice (rehearsing in between if told, after ``change`` if given); the outcome, what the
    rehearsals' express calls returned, and how many frames the worker kept to rehearse (one per express path:
    in, and its answer out)."""
    with closing(Bed(case, express=True)) as bed:
        feed(bed, case)
        w = bed.w
        kept = bool(w._in_len) + bool(w._out_len)
        if change is not None:
            change(bed)
        before = len(bed.took)
        if rehearse:
            for _ in range(REHEARSALS):
                w.tick(time.monotonic())
        replayed = bed.took[before:]
        assert not w.rehearsing and not w.sender.rehearsing
        feed(bed, case)
        outcome = without_ticks(bed.outcome())
        outcome["send_stats"] = dataclasses.asdict(w.sender.stats)  # what `weave report` shows as tx_/rx_sent_
        return outcome, replayed, kept


def check(case: Case, feed: Callable[[Bed, Case], None]) -> None:
    plain, _, _ = twice(case, feed, rehearse=False)
    rehearsed, replayed, kept = twice(case, feed, rehearse=True)
    assert rehearsed == plain
    assert rehearsed["counters"].get("internal_errors") is None
    if not case.express:
        assert not kept  # only what an express path delivered is rehearsed
    if kept:
        assert replayed == [True] * (REHEARSALS * kept)  # and each rehearsal takes the express paths again


@pytest.mark.parametrize("case", IN_CASES.values(), ids=IN_CASES.keys())
def test_rehearsing_a_datagram_from_a_peer_changes_nothing(case: Case) -> None:
    check(case, from_peer)


OUT_SEALED = Case(express=True, frame=ECHO_REPLY, key=KEY)


@pytest.mark.parametrize("case", [*OUT_CASES.values(), OUT_SEALED], ids=[*OUT_CASES.keys(), "sealed"])
def test_rehearsing_a_frame_from_the_bridge_changes_nothing(case: Case) -> None:
    check(case, from_bridge)


def age(mac: bytes, by: float) -> Callable[[Bed], None]:
    def change(bed: Bed) -> None:
        bed.w.macs.entries[mac].seen -= by

    return change


def move(mac: bytes, to: int) -> Callable[[Bed], None]:
    def change(bed: Bed) -> None:
        bed.w.macs.entries[mac].peer = to

    return change


def shrink(payload: int) -> Callable[[Bed], None]:
    def change(bed: Bed) -> None:
        for link in bed.w.tables.links.values():
            link.max_payload = payload  # as after a path MTU drop: the saved frame no longer fits one datagram

    return change


def no_address(bed: Bed) -> None:
    for link in bed.w.tables.links.values():
        link.addr = None  # a fast link whose peer's address is not known (yet)


CHANGES = {
    # what changed since the frame was saved: the rehearsal no longer takes the express path, and must not take
    # the general one (learning, refreshing, announcing, relaying, chunking) nor count anything
    "source-aged-in": (IN_CASES["known-unicast"], from_peer, age(REMOTE_MAC, REFRESH + 5)),
    "source-moved-in": (IN_CASES["known-unicast"], from_peer, move(REMOTE_MAC, OTHER)),
    "sealed-source-aged-in": (IN_CASES["sealed"], from_peer, age(REMOTE_MAC, REFRESH + 5)),
    "source-aged-out": (OUT_CASES["known-unicast"], from_bridge, age(LOCAL_MAC, REFRESH + 5)),
    "destination-moved-out": (OUT_CASES["known-unicast"], from_bridge, move(REMOTE_MAC, OTHER)),
    "path-mtu-out": (OUT_CASES["known-unicast"], from_bridge, shrink(120)),
    "sealed-path-mtu-out": (OUT_SEALED, from_bridge, shrink(120)),
    "no-address-out": (OUT_CASES["known-unicast"], from_bridge, no_address),
}


@pytest.mark.parametrize(("case", "feed", "change"), CHANGES.values(), ids=CHANGES.keys())
def test_a_rehearsal_after_a_change_does_nothing(
    case: Case, feed: Callable[[Bed, Case], None], change: Callable[[Bed], None]
) -> None:
    plain, _, _ = twice(case, feed, rehearse=False, change=change)
    rehearsed, _, kept = twice(case, feed, rehearse=True, change=change)
    assert kept
    assert rehearsed == plain


def test_a_failing_rehearsal_is_counted_once_and_ends() -> None:
    case = OUT_CASES["known-unicast"]
    with closing(Bed(case, express=True)) as bed:
        from_bridge(bed, case)
        w = bed.w

        def broken(*args: object) -> bool:
            raise RuntimeError("a bug")

        w.express_out = broken  # type: ignore[method-assign]
        w.tick(time.monotonic())
        assert w.counters["internal_errors"] == 1
        assert not w.rehearsing and not w.sender.rehearsing


@pytest.mark.parametrize(
    ("case", "feed"),
    [
        (IN_CASES["known-unicast"], from_peer),
        (IN_CASES["sealed"], from_peer),
        (OUT_CASES["known-unicast"], from_bridge),
    ],
    ids=["in", "in-sealed", "out"],
)
def test_the_common_frames_are_kept_and_replayed(case: Case, feed: Callable[[Bed, Case], None]) -> None:
    _, replayed, kept = twice(case, feed, rehearse=True)
    assert kept == 1 and replayed == [True] * REHEARSALS


def test_new_tables_forget_the_frames_to_rehearse() -> None:
    case = IN_CASES["known-unicast"]
    with closing(Bed(case, express=True)) as bed:
        from_peer(bed, case)
        assert bed.w._in_len
        bed.w.on_tables(bed.w.tables)
        assert not bed.w._in_len and not bed.w._out_len
        before = len(bed.took)
        bed.w.tick(time.monotonic())
        assert bed.took[before:] == []


def test_without_rehearsal_a_tick_only_counts() -> None:
    case = OUT_CASES["known-unicast"]
    with closing(Bed(case, express=True)) as bed:
        bed.w.rehearse = False
        from_bridge(bed, case)
        before = len(bed.took)
        bed.w.tick(time.monotonic())
        assert bed.took[before:] == []
        assert not bed.w._out_len  # nothing is even kept
        assert bed.w.counters["warm_ticks"] == 1


def test_a_rehearsal_reads_what_waits_for_real() -> None:
    """Its reads are real ones: a frame that came between the poll and the tick is handled, not lost."""
    case = OUT_CASES["known-unicast"]
    with closing(Bed(case, express=True)) as bed:
        bed.rig.rxq_far.send(bytes(10) + ECHO_REPLY)
        bed.w.tick(time.monotonic())
        assert len(bed.outcome()["sent"]) == 1


def test_a_rehearsed_send_sends_nothing_and_uses_no_sequence_number() -> None:
    with (
        socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sink,
        socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as tx,
    ):
        sink.bind(("127.0.0.1", 0))
        sink.settimeout(0.2)
        for key in (None, KEY):
            link = Link(7, 1, outbound=True, addr=sink.getsockname(), key=key, fast=True)
            s = Sender(tx, 5, 0)
            s.rehearsing = True
            s.send_fast(link, 5, 7, bytes(10), ECHO_REPLY)
            s.rehearsing = False
            assert s.stats.datagrams == 0 and s.stats.bytes == 0
            s.send_fast(link, 5, 7, bytes(10), ECHO_REPLY)
            data = sink.recv(70000)  # the real one only: the rehearsal's probe left nothing on the socket
            assert int.from_bytes(data[SEQ_AT:IDX_AT], "big") == 0
            with pytest.raises(TimeoutError):
                sink.recv(70000)


def test_opening_without_recording_leaves_the_replay_window_alone() -> None:
    with (
        socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sink,
        socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as tx,
    ):
        sink.bind(("127.0.0.1", 0))
        link = Link(7, 1, outbound=True, addr=sink.getsockname(), key=KEY, fast=True)
        Sender(tx, 5, 0).send_fast(link, 5, 7, bytes(10), ECHO_REPLY)
        data = sink.recv(70000)
    dec = fastwire.FastDecryptor(KEY, remote_outbound=True)
    sealed = memoryview(data)[fastwire.HDR_LEN :]
    for _ in range(2):
        assert dec.open(0, 0, sealed, record=False) is not None
    assert dec.open(0, 0, sealed) is not None  # still new to the window
    assert dec.open(0, 0, sealed) is None  # now a replay
    assert dec.open(0, 0, sealed, record=False) is not None  # what a rehearsal of it opens


def test_the_tx_worker_rehearses_its_express_path_too() -> None:
    """Without steering the tx worker reads small frames and ticks: it rehearses them the same way."""
    with closing(TxBed(split=False)) as bed:
        w, now = bed.worker, time.monotonic()
        bed.tap.setblocking(False)  # as the worker's poll loop keeps it
        w.macs.add_local(ECHO_REPLY[6:12], now)
        w._announced[ECHO_REPLY[6:12]] = now
        w.macs.add_forced(ECHO_REPLY[0:6], PEER, now)
        took: list[bool] = []
        real = w.express_out

        def spy(*args: object) -> bool:
            took.append(real(*args))  # type: ignore[arg-type]
            return took[-1]

        w.express_out = spy  # type: ignore[method-assign]
        bed.sink.settimeout(1)
        seqs = []
        for rehearsals in (REHEARSALS, 0):
            bed.tap_far.send(ZERO_VNET + ECHO_REPLY)
            w.read_tap(1)
            seqs.append(int.from_bytes(bed.sink.recv(70000)[SEQ_AT:IDX_AT], "big"))
            for _ in range(rehearsals):
                w.tick(time.monotonic())
        assert took == [True] * (2 + REHEARSALS)
        assert seqs == [0, 1]  # no datagram and no sequence number in between
        assert w.sender.stats.datagrams == 2
        bed.sink.settimeout(0.1)
        with pytest.raises(TimeoutError):
            bed.sink.recv(70000)


@pytest.mark.parametrize(
    ("no_warm_tick", "no_rehearsal", "expected"),
    [
        (False, False, (worker.WARM_TICK_MS, True)),
        (False, True, (worker.WARM_TICK_MS, False)),
        (True, False, (0, False)),
    ],
)
def test_the_worker_flags(no_warm_tick: bool, no_rehearsal: bool, expected: tuple[int, bool]) -> None:
    assert worker.tick_settings(no_warm_tick, no_rehearsal) == expected


def test_weave_no_rehearsal_turns_it_off_and_keeps_the_tick() -> None:
    assert from_args([], {}).rehearsal
    config = from_args([], {"WEAVE_NO_REHEARSAL": "1"})
    assert not config.rehearsal and config.warm_tick


class RecordingSocket:
    """Records what a Sender hands the kernel (to look at a probe's bytes, which no socket receives)."""

    def __init__(self) -> None:
        self.calls: list[tuple[bytes, int]] = []

    def sendmsg(self, bufs: tuple[bytes, ...], anc: object, flags: int, addr: object) -> int:
        data = b"".join(bytes(b) for b in bufs)
        self.calls.append((data, flags))
        return len(data)


def test_a_rehearsed_seal_uses_a_key_of_its_own() -> None:
    """Were MSG_PROBE ever ignored, the rehearsal's datagram would carry the next real nonce: never under the
    link's key."""
    rec = RecordingSocket()
    link = Link(7, 1, outbound=True, addr=("127.0.0.1", 9), key=KEY, fast=True)
    s = Sender(rec, 5, 0)  # type: ignore[arg-type]
    s.rehearsing = True
    s.send_fast(link, 5, 7, bytes(10), ECHO_REPLY)
    s.rehearsing = False
    s.send_fast(link, 5, 7, bytes(10), ECHO_REPLY)
    (probe, probe_flags), (real, real_flags) = rec.calls
    assert (probe_flags, real_flags) == (MSG_PROBE, 0)
    assert probe[:IDX_AT] == real[:IDX_AT]  # same header, same sequence number
    dec = fastwire.FastDecryptor(KEY, remote_outbound=True)
    assert dec.open(0, 0, memoryview(real)[fastwire.HDR_LEN :], record=False) is not None
    with pytest.raises(RemoteProtocolError):
        dec.open(0, 0, memoryview(probe)[fastwire.HDR_LEN :], record=False)


def test_without_steering_the_rx_worker_leaves_the_tap_to_the_tx_worker() -> None:
    """With one TAP queue the rx worker reads it only for the answer to what it injected, never on a tick."""
    with closing(Rig(None)) as rig:
        rig.sock.setblocking(False)  # as the poll loop keeps it
        rig.tap_far.send(ZERO_VNET + ECHO_REPLY)
        rig.worker.tick(time.monotonic())
        assert rig.tap_sock.recv(4096) == ZERO_VNET + ECHO_REPLY  # still there for the tx worker
