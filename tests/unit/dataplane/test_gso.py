"""Prebuilt scatter/gather lists: the same bytes on the wire as the general chunker, and whole super-frames
recognised on receipt, over real UDP sockets on loopback (GSO on send, GRO on receive)."""

from __future__ import annotations

import random
import socket
from collections.abc import Iterator

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from tests.unit.dataplane.chunking import chunks
from weavenet.dataplane import fastwire, gso, udp
from weavenet.dataplane.frames import ZERO_VNET
from weavenet.dataplane.sender import Sender
from weavenet.dataplane.tables import Link

ME = 0xCE1234567801
PEER = 0xCE1234567802
KEY = bytes(range(32))


@settings(max_examples=200, deadline=None)
@given(
    total=st.integers(min_value=1, max_value=66000),
    room=st.integers(min_value=300, max_value=9000),
    seq=st.integers(min_value=0, max_value=2**64 - 1),
)
def test_writer_iov_is_what_the_general_chunker_sends(total: int, room: int, seq: int) -> None:
    if -(-total // room) > fastwire.MAX_CHUNKS:
        return
    payload = bytearray(random.Random(total).randbytes(total + 100))  # a buffer larger than the frame in it
    writer = gso.ChunkWriter()
    n = max(1, -(-total // room))
    common = fastwire.COMMON.pack(ME.to_bytes(6, "big"), fastwire.MAGIC, 1, n, 0, seq)
    for _ in range(2):  # the second call reuses the prebuilt list
        iov = writer.iov(common, payload, total, room)
        _, ref = chunks(ME.to_bytes(6, "big"), 1, seq, bytes(payload[:total]), room + fastwire.HDR_LEN, False)
        assert len(iov) == 2 * n
        assert b"".join(bytes(v) for v in iov) == b"".join(bytes(v) for v in ref)


@pytest.fixture
def pair() -> Iterator[tuple[socket.socket, socket.socket]]:
    rx, _gro = udp.open_socket("127.0.0.1", 0)
    tx, _ = udp.open_socket("127.0.0.1", 0)
    rx.settimeout(2)
    yield tx, rx
    tx.close()
    rx.close()


def link_to(rx: socket.socket, key: bytes | None = None, max_payload: int = 1472) -> Link:
    return Link(PEER, 7, outbound=True, addr=rx.getsockname(), key=key, fast=True, max_payload=max_payload)


@pytest.mark.parametrize("key", [None, KEY], ids=["plain", "sealed"])
@pytest.mark.parametrize("size", [60, 1400, 9000, 63000])
def test_a_sent_super_frame_arrives_whole_and_contiguous(pair, key: bytes | None, size: int) -> None:
    tx, rx = pair
    sender = Sender(tx, ME, 0)
    frame = random.Random(size).randbytes(size)
    sender.send_fast(link_to(rx, key), ME, PEER, ZERO_VNET, memoryview(frame))
    reader = gso.ChunkReader(1472)
    nbytes, anc, _addr = reader.receive(rx, socket.CMSG_SPACE(4))
    whole = reader.whole(nbytes, udp.gro_size(anc))
    assert whole is not None, (nbytes, udp.gro_size(anc))
    sender_bin, stream, seq, flags, payload = whole
    assert (sender_bin, stream, seq) == (ME.to_bytes(6, "big"), 0, 0)
    if key is None:
        assert flags == 0
        body = bytes(payload)
    else:
        assert flags == fastwire.FLAG_ENCRYPTED
        body = bytes(fastwire.FastDecryptor(key, remote_outbound=True).open(0, 0, payload) or b"")
    assert body == fastwire.SUPER.pack(ME.to_bytes(6, "big"), PEER.to_bytes(6, "big")) + ZERO_VNET + frame


def test_other_chunk_sizes_and_classic_packets_take_the_general_path(pair) -> None:
    tx, rx = pair
    sender = Sender(tx, ME, 0)
    frame = bytes(20000)
    sender.send_fast(link_to(rx, max_payload=1200), ME, PEER, ZERO_VNET, frame)
    reader = gso.ChunkReader(1472)
    nbytes, anc, _ = reader.receive(rx, socket.CMSG_SPACE(4))
    size = udp.gro_size(anc)
    assert size == 1200 and reader.whole(nbytes, size) is None
    data = reader.data(nbytes)
    runs = fastwire.runs(memoryview(data), size)
    assert len(runs) == 1 and b"".join(bytes(p) for p in runs[0][-1]).endswith(frame)
    classic = bytes.fromhex("ce1234567802") + bytes(100)
    tx.sendto(classic, rx.getsockname())
    nbytes, anc, _ = reader.receive(rx, socket.CMSG_SPACE(4))
    assert reader.whole(nbytes, udp.gro_size(anc)) is None and reader.data(nbytes) == classic


def test_a_run_of_two_super_frames_is_not_taken_for_one() -> None:
    reader = gso.ChunkReader(100)
    room = 100 - fastwire.HDR_LEN
    for i, seq in enumerate((5, 6)):  # two single-chunk super-frames of equal size, coalesced by GRO
        reader.hdrs[i * 20 : (i + 1) * 20] = fastwire.COMMON.pack(bytes(6), fastwire.MAGIC, 0, 1, 0, seq) + b"\x00"
        reader.body[i * room : (i + 1) * room] = bytes(room)
    assert reader.whole(200, 100) is None
    assert reader.whole(100, 0) is not None


@pytest.mark.parametrize("key", [None, KEY], ids=["plain", "sealed"])
@pytest.mark.parametrize("size", [14, 60, 1400, 1472 - 20 - 12 - 10 - 16])
def test_single_datagram_super_frames_are_the_bytes_of_the_general_format(pair, key: bytes | None, size: int) -> None:
    """Small frames skip the chunk machinery; what they send must not differ by a bit."""
    tx, rx = pair
    sender = Sender(tx, ME, 1)
    vnet = bytes(range(1, 11))
    frame = random.Random(size).randbytes(size)
    for seq in range(3):
        sender.send_fast(link_to(rx, key), ME, PEER, vnet, memoryview(frame))
        got = rx.recv(70000)
        body = fastwire.SUPER.pack(ME.to_bytes(6, "big"), PEER.to_bytes(6, "big")) + vnet + frame
        if key is not None:
            body = fastwire.seal(body, key, sender_outbound=True, stream=1, seq=seq)
        _, ref = chunks(ME.to_bytes(6, "big"), 1, seq, body, 1472, key is not None)
        assert got == b"".join(bytes(v) for v in ref)
    assert sender.stats.super_frames == 3 and sender.stats.datagrams == 3
