"""The workers' express paths do exactly what the general path does, for the frames they take, and take no others.

Each case runs twice on fresh workers fed the same input, once with the express paths and once without; what
leaves them (frames injected into the TAP, datagrams sent to the peer, messages to the other worker, counters,
what the MAC cache learned) must be the same. A spy records whether the express path took the frame.
"""

from __future__ import annotations

import socket
import time
from collections.abc import Callable
from dataclasses import dataclass, replace
from typing import Any

import pytest

from tests.unit.dataplane.test_rx_worker import KEY, ME, PEER, Rig
from weavenet.dataplane import worker
from weavenet.dataplane.frames import ZERO_VNET
from weavenet.dataplane.sender import Sender
from weavenet.dataplane.tables import Link

LOCAL_MAC = bytes.fromhex("0a0000000002")
REMOTE_MAC = bytes.fromhex("0a0000000001")
OTHER = 0xCE1234567809  # a third peer
IP = bytes.fromhex("4500005400004000400100000a0201010a020102")
ECHO_REQUEST = LOCAL_MAC + REMOTE_MAC + b"\x08\x00" + IP + bytes([8, 0]) + bytes(62)  # from the overlay
ECHO_REPLY = REMOTE_MAC + LOCAL_MAC + b"\x08\x00" + IP + bytes([0, 0]) + bytes(62)  # from our bridge


@dataclass
class Case:
    express: bool  # whether the express path should take it
    frame: bytes = ECHO_REQUEST
    src_peer: int = PEER
    dst_peer: int = ME
    local: tuple[bytes, float] | None = (LOCAL_MAC, 1.0)  # a MAC of ours and how long ago it was seen
    remote: tuple[bytes, int, float] | None = (REMOTE_MAC, PEER, 1.0)  # a peer's MAC, its peer, age
    announced: float | None = 1.0  # how long ago the local MAC was announced to the other worker
    key: bytes | None = None
    fast: bool = True
    pending: bool = False  # a super-frame waits for chunks
    answer: bytes | None = None  # what the container answers at once (on the rx worker's queue)
    other_via_peer: bool = False  # the third peer is reached through the first


class Bed:
    """A steered rx worker whose peer's address is a sink socket, with MAC cache and tables as a case says."""

    def __init__(self, case: Case, express: bool) -> None:
        self.rig = Rig(case.key, steered=True)
        w = self.w = self.rig.worker
        w.express = express
        self.sink = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        self.sink.bind(("127.0.0.1", 0))
        self.sink.setblocking(False)
        t = w.tables
        link = replace(t.links[PEER], addr=self.sink.getsockname(), fast=case.fast)
        other = Link(OTHER, 1, outbound=True, addr=self.sink.getsockname(), key=None, fast=True)
        unicast = {PEER: PEER, OTHER: PEER if case.other_via_peer else OTHER}
        w.on_tables(replace(t, links={PEER: link, OTHER: other}, unicast=unicast))
        self.now = time.monotonic()
        if case.local:
            mac, age = case.local
            w.macs.add_local(mac, self.now - age)
            if case.announced is not None:
                w._announced[mac] = self.now - case.announced
        if case.remote:
            mac, peer, age = case.remote
            w.macs.add_forced(mac, peer, self.now - age)
        if case.pending:
            w.reasm.add_run(PEER.to_bytes(6, "big"), 0, 99, 2, 0, 0, [memoryview(b"x" * 10)], self.now)
        self.took: list[bool] = []
        for name in ("express_in", "express_out"):
            real = getattr(w, name)
            setattr(w, name, self._spy(real))
        self.rig.sock.setblocking(False)
        w.reader.single = True  # as after any single datagram (a reader starts on its scatter list)

    def _spy(self, real: Callable[..., bool]) -> Callable[..., bool]:
        def spy(*args: Any) -> bool:
            took = real(*args)
            self.took.append(took)
            return took

        return spy

    def outcome(self) -> dict[str, Any]:
        w = self.w
        sent = []
        try:
            while True:
                sent.append(self.sink.recv(70000))
        except BlockingIOError:
            pass
        others = []
        for _, far in self.rig.ends:
            try:
                while True:
                    others.append(far.recv(1 << 20))
            except BlockingIOError:
                pass
        macs = {mac.hex(): (peer, seen > self.now) for mac, peer, seen in w.macs.items()}  # learned or refreshed
        return {
            "injected": self.rig.injected(),
            "sent": sent,
            "to_others": others,
            "counters": dict(w.counters),
            "macs": macs,
            "pending": len(w.reasm.pending),
            "injected_count": w.injected,
        }

    def close(self) -> None:
        self.sink.close()
        self.rig.close()


def from_peer(bed: Bed, case: Case) -> None:
    """``case.frame`` arrives from ``case.src_peer``'s tx worker in one datagram; the rx worker reads it."""
    if case.answer is not None:
        bed.rig.rxq_far.send(ZERO_VNET + case.answer)
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as tx:
        link = Link(ME, 1, outbound=True, addr=bed.rig.sock.getsockname(), key=case.key, fast=True)
        Sender(tx, case.src_peer, 0).send_fast(link, case.src_peer, case.dst_peer, ZERO_VNET, case.frame)
    bed.w.read_socket(socket.CMSG_SPACE(4))


def from_bridge(bed: Bed, case: Case) -> None:
    """``case.frame`` comes out of the rx worker's TAP queue (a small frame from the bridge)."""
    bed.rig.rxq_far.send(ZERO_VNET + case.frame)
    bed.w.read_tap(1, bed.w.tap_rx)


def run(case: Case, feed: Callable[[Bed, Case], None]) -> None:
    outcomes, took = [], []
    for express in (True, False):
        bed = Bed(case, express)
        try:
            feed(bed, case)
            outcomes.append(bed.outcome())
            took.append(bed.took)
        finally:
            bed.close()
    assert outcomes[0] == outcomes[1]
    assert outcomes[0]["counters"].get("internal_errors") is None
    assert any(took[0]) == case.express
    assert took[1] == []  # off means off


IN_CASES = {
    "known-unicast": Case(express=True),
    "answered-at-once": Case(express=True, answer=ECHO_REPLY),
    "source-to-refresh": Case(express=False, remote=(REMOTE_MAC, PEER, worker.REFRESH + 5)),
    "source-moved-here-from-another-peer": Case(express=False, remote=(REMOTE_MAC, OTHER, 1.0)),
    "source-unknown": Case(express=False, remote=None),
    "destination-unknown": Case(express=False, local=None),
    "destination-remote": Case(express=False, local=None, remote=(LOCAL_MAC, OTHER, 1.0)),
    "broadcast": Case(express=False, frame=b"\xff" * 6 + ECHO_REQUEST[6:]),
    "for-another-peer": Case(express=False, dst_peer=OTHER),
    "reassembly-pending": Case(express=False, pending=True),
    "sealed": Case(express=True, key=KEY),  # opened at once, then decided as any other frame
    "sealed-source-unknown": Case(express=True, key=KEY, remote=None),
    "sealed-answered-at-once": Case(express=True, key=KEY, answer=ECHO_REPLY),
    "too-short": Case(express=False, frame=ECHO_REQUEST[:13]),
}

OUT_CASES = {
    "known-unicast": Case(express=True, frame=ECHO_REPLY),
    "to-another-peer": Case(express=True, frame=ECHO_REPLY, remote=(REMOTE_MAC, OTHER, 1.0)),
    "to-a-peer-reached-through-another": Case(
        express=True, frame=ECHO_REPLY, remote=(REMOTE_MAC, OTHER, 1.0), other_via_peer=True
    ),
    "source-unknown": Case(express=False, frame=ECHO_REPLY, local=None),
    "source-to-refresh": Case(express=False, frame=ECHO_REPLY, local=(LOCAL_MAC, worker.REFRESH + 5)),
    "announcement-due": Case(express=False, frame=ECHO_REPLY, announced=worker.ANNOUNCE_EVERY + 5),
    "source-known-remote": Case(express=False, frame=ECHO_REPLY, local=None, remote=(LOCAL_MAC, PEER, 1.0)),
    "destination-unknown": Case(express=False, frame=ECHO_REPLY, remote=None),
    "destination-local": Case(express=False, frame=ECHO_REPLY, remote=None, local=(REMOTE_MAC, 1.0)),
    "broadcast": Case(express=False, frame=b"\xff" * 6 + ECHO_REPLY[6:]),
    "classic-link": Case(express=False, frame=ECHO_REPLY, fast=False),
}


@pytest.mark.parametrize("case", IN_CASES.values(), ids=IN_CASES.keys())
def test_a_datagram_from_a_peer_is_handled_alike_on_both_paths(case: Case) -> None:
    run(case, from_peer)


@pytest.mark.parametrize("case", OUT_CASES.values(), ids=OUT_CASES.keys())
def test_a_frame_from_the_bridge_is_handled_alike_on_both_paths(case: Case) -> None:
    run(case, from_bridge)

