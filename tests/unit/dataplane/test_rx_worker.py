"""The receiving worker fed real datagrams: valid frames reach the TAP, hostile ones are dropped and counted.

The worker runs with real file descriptors (a pipe stands in for the TAP, socket pairs for its channels, a UDP
socket on loopback) and is driven through the same entry point its poll loop uses.
"""

from __future__ import annotations

import socket
import time
from collections.abc import Iterator
from dataclasses import replace

import pytest

from tests.unit.dataplane.chunking import chunks
from weavenet.core.sleeve_codec import Encryptor, encode_frames
from weavenet.dataplane import fastcrypto, fastwire, udp
from weavenet.dataplane.channel import Channel
from weavenet.dataplane.frames import ZERO_VNET
from weavenet.dataplane.mac_cache import REFRESH
from weavenet.dataplane.sender import Sender
from weavenet.dataplane.tables import Link, Tables
from weavenet.dataplane.worker import RxWorker
from weavenet.errors import RemoteProtocolError

ME = 0xCE1234567801
PEER = 0xCE1234567802
PEER_BIN = PEER.to_bytes(6, "big")
ME_BIN = ME.to_bytes(6, "big")
KEY = bytes(range(32))
FRAME = bytes.fromhex("ffffffffffff0a11223344550806") + bytes(range(46))  # a broadcast: always injected
# an ARP request (broadcast): the kernel that gets it answers inside the injecting writev
ARP_REQUEST = bytes.fromhex("ffffffffffff0a11223344550806" "0001080006040001") + bytes(38)


class Rig:
    def __init__(self, key: bytes | None, cipher: str = fastcrypto.SECRETBOX, steered: bool = False) -> None:
        # a datagram-preserving socket pair stands in for the TAP: one write, one frame
        self.tap_sock, self.tap_far = socket.socketpair(socket.AF_UNIX, socket.SOCK_SEQPACKET)
        self.tap_far.setblocking(False)
        self.tap_sock.setblocking(False)  # as the worker keeps the TAP
        tap_w = self.tap_sock.fileno()
        # with steering, a second pair stands in for the TAP queue where small frames from the bridge land
        self.rxq_sock, self.rxq_far = socket.socketpair(socket.AF_UNIX, socket.SOCK_SEQPACKET)
        self.rxq_sock.setblocking(False)
        self.sock, _gro = udp.open_socket("127.0.0.1", 0)  # as the router opens it: GRO on
        self.ends = [socket.socketpair() for _ in range(2)]
        self.worker = RxWorker(
            tap_w,
            self.sock,
            Channel(self.ends[0][0]),
            Channel(self.ends[1][0]),
            tap_rx=self.rxq_sock.fileno() if steered else -1,
        )
        for _, far in self.ends:
            far.setblocking(False)
        link = Link(PEER, 1, outbound=False, addr=self.sock.getsockname(), key=key, fast=True, cipher=cipher)
        self.worker.on_tables(Tables(me=ME, links={PEER: link}, unicast={PEER: PEER}, broadcast={PEER: [], ME: [PEER]}))

    def feed(self, data: bytes, size: int = 0) -> None:
        try:
            self.worker.buffer(data, size, ("127.0.0.1", 6783), 1.0)
        except RemoteProtocolError:
            self.worker.count("malformed")  # what the poll loop does

    def injected(self) -> list[bytes]:
        """Frames written to the TAP since the last call (the worker's messages to others are discarded)."""
        for _, far in self.ends:
            try:
                while far.recv(1 << 20):
                    pass
            except BlockingIOError:
                pass
        out = []
        while True:
            try:
                out.append(self.tap_far.recv(1 << 17))
            except BlockingIOError:
                return out

    def close(self) -> None:
        for s in (self.tap_sock, self.tap_far, self.rxq_sock, self.rxq_far):
            s.close()
        self.sock.close()
        for a, b in self.ends:
            a.close()
            b.close()


@pytest.fixture
def plain() -> Iterator[Rig]:
    rig = Rig(None)
    yield rig
    rig.close()


@pytest.fixture
def sealed() -> Iterator[Rig]:
    rig = Rig(KEY)
    yield rig
    rig.close()


def fast_datagrams(seq: int, frame: bytes = FRAME, key: bytes | None = None) -> list[bytes]:
    body = fastwire.SUPER.pack(PEER_BIN, ME_BIN) + ZERO_VNET + frame
    payload = fastwire.seal(body, key, sender_outbound=True, stream=0, seq=seq) if key else body
    _, iov = chunks(PEER_BIN, 0, seq, payload, 1400, key is not None)
    return [b"".join(bytes(p) for p in iov[i : i + 3]) for i in range(0, len(iov), 3)]


def test_fast_and_classic_frames_are_injected(plain: Rig) -> None:
    big = FRAME + bytes(3000)
    for d in fast_datagrams(1, big):
        plain.feed(d)
    plain.feed(PEER_BIN + encode_frames([(PEER_BIN, ME_BIN, FRAME)]))
    got = plain.injected()
    assert got == [ZERO_VNET + big, ZERO_VNET + FRAME]
    assert plain.worker.counters.get("internal_errors", 0) == 0


def test_sealed_link_refuses_plaintext_forgeries_and_replays(sealed: Rig) -> None:
    for d in fast_datagrams(1, key=KEY):
        sealed.feed(d)
    assert sealed.injected() == [ZERO_VNET + FRAME]
    for d in fast_datagrams(1, key=KEY):  # the same super-frame again
        sealed.feed(d)
    for d in fast_datagrams(2):  # plaintext on an encrypted link
        sealed.feed(d)
    forged = bytearray(fast_datagrams(3, key=KEY)[0])
    forged[-1] ^= 0xFF
    sealed.feed(bytes(forged))
    wrong_key = Encryptor(bytes(32), outbound=True, df=False).seal(PEER_BIN, encode_frames([(PEER_BIN, ME_BIN, FRAME)]))
    sealed.feed(wrong_key)
    assert sealed.injected() == []
    c = sealed.worker.counters
    assert c.get("replayed") == 1 and c.get("unencrypted_refused") == 1 and c.get("decrypt_failed") == 2
    assert c.get("internal_errors", 0) == 0


def test_unknown_senders_and_short_datagrams_are_counted(plain: Rig) -> None:
    plain.feed(b"\x01\x02")
    plain.feed(bytes(6) + encode_frames([(bytes(6), ME_BIN, FRAME)]))
    assert plain.injected() == []
    assert plain.worker.counters.get("too_short") == 1 and plain.worker.counters.get("unknown_sender") == 1


def test_a_frame_nobody_answers_at_once_is_not_followed_by_a_read(plain: Rig) -> None:
    """An echo reply, a DNS query, a bare ACK: no read after injecting it (it would fail); tx takes what comes."""
    queued = bytes.fromhex("0a11223344550a00000000020800") + bytes(50)
    plain.tap_far.send(ZERO_VNET + queued)
    plain.feed(PEER_BIN + encode_frames([(PEER_BIN, ME_BIN, FRAME)]))
    assert plain.injected() == [ZERO_VNET + FRAME]
    assert plain.worker.counters.get("answers_sent") is None
    assert plain.tap_sock.recv(65535) == ZERO_VNET + queued


def test_an_answer_waiting_on_the_tap_after_an_injection_is_sent_at_once(plain: Rig) -> None:
    """The kernel runs the container's stack inside the injecting writev: its reply is sent by rx, not tx."""
    answer = bytes.fromhex("0a11223344550a00000000020800") + bytes(50)
    plain.tap_far.send(ZERO_VNET + answer)  # what the container put on the bridge in answer
    plain.feed(PEER_BIN + encode_frames([(PEER_BIN, ME_BIN, ARP_REQUEST)]))
    assert plain.injected() == [ZERO_VNET + ARP_REQUEST]
    plain.sock.settimeout(2)
    sent = plain.sock.recv(65535)
    assert fastwire.is_fast(sent) and sent.endswith(answer)
    assert plain.worker.counters.get("answers_sent") == 1


@pytest.mark.parametrize("classic", [False, True], ids=["all-fast", "classic-link"])
def test_with_steering_the_answer_is_read_from_the_queue_small_frames_go_to(classic: bool) -> None:
    """All links fast: small frames from the bridge land on the rx worker's queue, so its answer is there; with
    a link to a Go peer every frame goes to the shared queue, and the answer is read from that one."""
    rig = Rig(None, steered=True)
    try:
        if classic:
            go = Link(0xCE1234567803, 1, outbound=True, addr=("127.0.0.1", 9), key=None, fast=False)
            rig.worker.on_tables(replace(rig.worker.tables, links={**rig.worker.tables.links, go.peer: go}))
        answer = bytes.fromhex("0a11223344550a00000000020800") + bytes(50)
        other = bytes.fromhex("0a11223344550a00000000020800") + bytes(1400)  # on the queue answers don't go to
        answers, elsewhere = (rig.tap_far, rig.rxq_far) if classic else (rig.rxq_far, rig.tap_far)
        answers.send(ZERO_VNET + answer)
        elsewhere.send(ZERO_VNET + other)
        rig.feed(PEER_BIN + encode_frames([(PEER_BIN, ME_BIN, ARP_REQUEST)]))
        assert rig.injected() == [ZERO_VNET + ARP_REQUEST]
        rig.sock.settimeout(2)
        assert rig.sock.recv(65535).endswith(answer)
        assert rig.worker.counters.get("answers_sent") == 1
        untouched = rig.rxq_sock if classic else rig.tap_sock
        assert untouched.recv(65535) == ZERO_VNET + other  # still queued: the answer read took only its own queue
    finally:
        rig.close()


@pytest.mark.parametrize("key", [None, KEY], ids=["plain", "sealed"])
def test_super_frames_from_the_socket_take_the_prebuilt_path_and_reach_the_tap(key: bytes | None) -> None:
    rig = Rig(key)
    tx = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    try:
        peer_sender = Sender(tx, PEER, 0)  # the peer's own tx worker
        link = Link(ME, 1, outbound=True, addr=rig.sock.getsockname(), key=key, fast=True, max_payload=1472)
        big, odd = FRAME + bytes(30000), FRAME + bytes(5000)
        peer_sender.send_fast(link, PEER, ME, ZERO_VNET, big)
        link.max_payload = 1000  # another chunk size: the general path, then the reader follows it
        peer_sender.send_fast(link, PEER, ME, ZERO_VNET, odd)
        peer_sender.send_fast(link, PEER, ME, ZERO_VNET, odd)
        rig.sock.setblocking(False)
        time.sleep(0.1)
        rig.worker.read_socket(socket.CMSG_SPACE(4))
        assert rig.injected() == [ZERO_VNET + big, ZERO_VNET + odd, ZERO_VNET + odd]
        assert rig.worker.reader.segment == 1000
        assert rig.worker.counters.get("internal_errors", 0) == 0
    finally:
        tx.close()
        rig.close()


@pytest.mark.skipif(not fastcrypto.aegis_available(), reason="no AEGIS-256 (libsodium) or no AES instructions")
@pytest.mark.parametrize(
    ("sent", "expected", "injected"),
    [
        (fastcrypto.AEGIS256, fastcrypto.AEGIS256, True),
        (fastcrypto.SECRETBOX, fastcrypto.AEGIS256, False),  # a downgrade is refused
        (fastcrypto.AEGIS256, fastcrypto.SECRETBOX, False),
    ],
    ids=["aegis", "secretbox-on-aegis-link", "aegis-on-secretbox-link"],
)
def test_sealed_super_frames_open_only_with_the_negotiated_cipher(sent: str, expected: str, injected: bool) -> None:
    rig = Rig(KEY, cipher=expected)
    tx = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    try:
        peer_sender = Sender(tx, PEER, 0)
        link = Link(
            ME, 1, outbound=True, addr=rig.sock.getsockname(), key=KEY, fast=True, max_payload=1472, cipher=sent
        )
        big = FRAME + bytes(30000)
        peer_sender.send_fast(link, PEER, ME, ZERO_VNET, big)
        peer_sender.send_fast(link, PEER, ME, ZERO_VNET, FRAME)
        rig.sock.setblocking(False)
        time.sleep(0.1)
        rig.worker.read_socket(socket.CMSG_SPACE(4))
        assert rig.injected() == ([ZERO_VNET + big, ZERO_VNET + FRAME] if injected else [])
        c = rig.worker.counters
        assert c.get("cipher_mismatch", 0) == (0 if injected else 2)
        assert c.get("internal_errors", 0) == 0
    finally:
        tx.close()
        rig.close()


def test_receives_switch_between_the_plain_buffer_and_the_scatter_list_as_traffic_changes() -> None:
    """Single datagrams come through one plain buffer, chunk runs through the scatter list; either may come first."""
    rig = Rig(None)
    tx = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    try:
        peer_sender = Sender(tx, PEER, 0)
        link = Link(ME, 1, outbound=True, addr=rig.sock.getsockname(), key=None, fast=True, max_payload=1472)
        big = FRAME + bytes(20000)
        rig.sock.setblocking(False)
        modes = []
        for frame in (FRAME, big, big, FRAME, FRAME, big):
            peer_sender.send_fast(link, PEER, ME, ZERO_VNET, frame)
            time.sleep(0.02)
            rig.worker.read_socket(socket.CMSG_SPACE(4))
            modes.append(rig.worker.reader.single)
        assert rig.injected() == [ZERO_VNET + f for f in (FRAME, big, big, FRAME, FRAME, big)]
        assert modes == [True, False, False, True, True, False]
        assert rig.worker.counters.get("internal_errors", 0) == 0
    finally:
        tx.close()
        rig.close()


@pytest.mark.parametrize("express", [True, False], ids=["express", "general"])
def test_an_idle_worker_takes_one_datagram_per_wake_and_a_busy_one_drains_the_socket(express: bool) -> None:
    """Idle: one datagram, then back to poll (no receive that fails); in a burst, until EAGAIN (see BURST_GAP)."""
    rig = Rig(None)
    rig.worker.express = express
    local, remote = bytes.fromhex("0a0000000002"), bytes.fromhex("0a0000000001")
    rig.worker.macs.add_local(local, time.monotonic())
    rig.worker.macs.add_forced(remote, PEER, time.monotonic())
    unicast = local + remote + bytes.fromhex("0800") + bytes(46)  # known MACs: the express path's, if on
    tx = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    try:
        peer_sender = Sender(tx, PEER, 0)
        link = Link(ME, 1, outbound=True, addr=rig.sock.getsockname(), key=None, fast=True, max_payload=1472)
        rig.sock.setblocking(False)
        rig.worker.reader.single = True  # as after any single datagram
        for _ in range(3):
            peer_sender.send_fast(link, PEER, ME, ZERO_VNET, unicast)
        time.sleep(0.05)
        rig.worker.burst = False
        rig.worker.read_socket(socket.CMSG_SPACE(4))
        assert len(rig.injected()) == 1
        rig.worker.burst = True
        rig.worker.read_socket(socket.CMSG_SPACE(4))
        assert len(rig.injected()) == 2
    finally:
        tx.close()
        rig.close()


@pytest.mark.parametrize(("age", "told"), [(1.0, False), (REFRESH + 5, True)], ids=["fresh", "stale"])
def test_a_remote_mac_refreshed_here_is_refreshed_for_the_tx_worker_too(plain: Rig, age: float, told: bool) -> None:
    """The tx worker learns remote MACs only from rx: a refresh here is passed on, or its entry would expire while
    the MAC still talks (and its frames would then be flooded to every peer)."""
    mac = FRAME[6:12]
    plain.worker.macs.add_forced(mac, PEER, 1.0 - age)  # feed() runs at 1.0 on the worker's clock
    plain.feed(PEER_BIN + encode_frames([(PEER_BIN, ME_BIN, FRAME)]))
    far = plain.ends[1][1]
    msgs = Channel(far).receive()  # what rx told the tx worker (already queued: a local socket)
    far.setblocking(False)  # as the rig keeps it (a Channel makes its socket blocking)
    assert (("mac", mac, PEER) in msgs) == told
    assert plain.injected() == [ZERO_VNET + FRAME]
