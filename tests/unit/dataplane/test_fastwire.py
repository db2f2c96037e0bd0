"""weavenet's fast sleeve format: chunking, GRO runs, reassembly, sealing, and what hostile datagrams do to it."""

from __future__ import annotations

import os
import random

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from tests.unit.dataplane.chunking import chunks
from weavenet.dataplane import fastcrypto, fastwire
from weavenet.errors import RemoteProtocolError

SENDER = bytes.fromhex("ce1234567801")
KEY = bytes(range(32))


def datagrams(iov: list[bytes | memoryview]) -> list[memoryview]:
    """The datagrams UDP GSO would put on the wire for a (header, index, piece) iov list."""
    out = []
    for i in range(0, len(iov), 3):
        out.append(memoryview(b"".join(bytes(p) for p in iov[i : i + 3])))
    return out


@settings(max_examples=150, deadline=None)
@given(
    size=st.integers(min_value=0, max_value=66000),
    max_payload=st.integers(min_value=fastwire.HDR_LEN + 300, max_value=9000),
    prefix=st.binary(max_size=40),
    seed=st.integers(min_value=0, max_value=2**32),
)
def test_chunks_reassemble_in_any_order(size: int, max_payload: int, prefix: bytes, seed: int) -> None:
    rng = random.Random(seed)
    payload = rng.randbytes(size)
    room = max_payload - fastwire.HDR_LEN
    if -(-(len(prefix) + size) // room) > fastwire.MAX_CHUNKS:
        with pytest.raises(ValueError):
            chunks(SENDER, 1, 7, payload, max_payload, False, prefix)
        return
    segment, iov = chunks(SENDER, 1, 7, payload, max_payload, False, prefix)
    dgrams = datagrams(iov)
    assert all(len(d) <= segment for d in dgrams) and segment <= max_payload
    assert all(len(d) == segment for d in dgrams[:-1])  # GSO: all but the last are full size
    rng.shuffle(dgrams)
    reasm = fastwire.Reassembler()
    results = [reasm.add(d, 0.0) for d in dgrams]
    done = [r for r in results if r is not None]
    assert len(done) == 1 and results[-1] is not None
    sender, stream, seq, flags, pieces = done[0]
    assert (sender, stream, seq, flags) == (SENDER, 1, 7, 0)
    assert b"".join(bytes(p) for p in pieces) == prefix + payload


@settings(max_examples=100, deadline=None)
@given(size=st.integers(min_value=1, max_value=66000), drop=st.data())
def test_gro_runs_are_recognised_and_a_missing_datagram_leaves_a_pending_frame(size: int, drop: st.DataObject) -> None:
    payload = random.Random(size).randbytes(size)
    segment, iov = chunks(SENDER, 0, 99, payload, 1400, False)
    dgrams = datagrams(iov)
    whole = memoryview(b"".join(bytes(d) for d in dgrams))
    items = fastwire.runs(whole, segment)
    assert len(items) == 1 and not isinstance(items[0], int)
    sender, stream, seq, count, idx, _flags, pieces = items[0]
    assert (sender, stream, seq, count, idx) == (SENDER, 0, 99, len(dgrams), 0)
    assert b"".join(bytes(p) for p in pieces) == payload
    if len(dgrams) < 2:
        return
    lost = drop.draw(st.integers(min_value=0, max_value=len(dgrams) - 1))
    kept = [d for i, d in enumerate(dgrams) if i != lost]
    reasm = fastwire.Reassembler()
    for item in fastwire.runs(memoryview(b"".join(bytes(d) for d in kept)), segment):
        assert not isinstance(item, int)
        assert reasm.add_run(*item, now=0.0) is None
    stale = reasm.take_stale(SENDER, 0, 100)
    assert len(stale) == 1 and lost not in stale[0][2] and len(stale[0][2]) == len(dgrams) - 1


def test_pending_super_frames_are_bounded_and_expire() -> None:
    reasm = fastwire.Reassembler()
    for seq in range(fastwire.MAX_PENDING * 3):
        hdr = fastwire.COMMON.pack(SENDER, fastwire.MAGIC, 0, 3, 0, seq) + b"\x00"
        assert reasm.add(memoryview(hdr + b"x" * 100), float(seq) * 1e-4) is None
    assert len(reasm.pending) <= fastwire.MAX_PENDING
    reasm.expire(1000.0)
    assert not reasm.pending and reasm.dropped >= fastwire.MAX_PENDING * 3


def test_a_super_frame_cannot_grow_past_its_bound() -> None:
    reasm = fastwire.Reassembler()
    with pytest.raises(RemoteProtocolError, match="too large"):
        for idx in range(200):
            hdr = fastwire.COMMON.pack(SENDER, fastwire.MAGIC, 0, 255, 0, 1) + bytes((idx,))
            reasm.add(memoryview(hdr + bytes(1400)), 0.0)


def test_inconsistent_chunk_numbering_is_refused() -> None:
    reasm = fastwire.Reassembler()
    with pytest.raises(RemoteProtocolError):
        reasm.add(memoryview(fastwire.COMMON.pack(SENDER, fastwire.MAGIC, 0, 2, 0, 5) + b"\x02" + b"x"), 0.0)
    with pytest.raises(RemoteProtocolError):
        reasm.add(memoryview(fastwire.COMMON.pack(SENDER, fastwire.MAGIC, 0, 0, 0, 5) + b"\x00" + b"x"), 0.0)
    reasm.add(memoryview(fastwire.COMMON.pack(SENDER, fastwire.MAGIC, 0, 3, 0, 6) + b"\x00" + b"x"), 0.0)
    with pytest.raises(RemoteProtocolError, match="count changed"):
        reasm.add(memoryview(fastwire.COMMON.pack(SENDER, fastwire.MAGIC, 0, 4, 0, 6) + b"\x01" + b"x"), 0.0)


def test_sealed_super_frames_open_once_and_forgeries_fail() -> None:
    plain = os.urandom(5000)
    sealed = fastwire.seal(plain, KEY, sender_outbound=True, stream=1, seq=42)
    dec = fastwire.FastDecryptor(KEY, remote_outbound=True)
    assert bytes(dec.open(1, 42, sealed) or b"") == plain
    assert dec.open(1, 42, sealed) is None  # replay
    tampered = bytearray(sealed)
    tampered[-1] ^= 1
    with pytest.raises(RemoteProtocolError):
        dec.open(1, 43, bytes(tampered))
    wrong_polarity = fastwire.FastDecryptor(KEY, remote_outbound=False)
    with pytest.raises(RemoteProtocolError):
        wrong_polarity.open(1, 42, sealed)
    other_stream = fastwire.FastDecryptor(KEY, remote_outbound=True)
    with pytest.raises(RemoteProtocolError):
        other_stream.open(2, 42, sealed)  # the stream is part of the nonce


@pytest.mark.skipif(not fastcrypto.aegis_available(), reason="no AEGIS-256 (libsodium) or no AES instructions")
def test_aegis_super_frames_use_a_derived_key_and_fail_under_the_other_cipher() -> None:
    plain = os.urandom(5000)
    sealed = fastwire.seal(plain, KEY, sender_outbound=False, stream=0, seq=7, cipher=fastcrypto.AEGIS256)
    assert len(sealed) == len(plain) + fastcrypto.AEGIS_TAG
    assert fastcrypto.cipher_key(fastcrypto.AEGIS256, KEY) != KEY
    dec = fastwire.FastDecryptor(KEY, remote_outbound=False, cipher=fastcrypto.AEGIS256)
    assert dec.flags == fastwire.FLAG_ENCRYPTED | fastwire.FLAG_AEGIS
    assert bytes(dec.open(0, 7, sealed) or b"") == plain
    assert dec.open(0, 7, sealed) is None  # replay
    tampered = bytearray(sealed)
    tampered[3] ^= 1
    with pytest.raises(RemoteProtocolError):
        dec.open(0, 8, bytes(tampered))
    with pytest.raises(RemoteProtocolError):
        fastwire.FastDecryptor(KEY, remote_outbound=False).open(0, 7, sealed)  # secretbox cannot open it
    with pytest.raises(RemoteProtocolError):
        fastwire.FastDecryptor(bytes(32), remote_outbound=False, cipher=fastcrypto.AEGIS256).open(0, 9, sealed)


def test_nonces_never_collide_between_directions_streams_and_the_classic_format() -> None:
    seen = set()
    for outbound in (True, False):
        for stream in range(4):
            for seq in (0, 1, 2**40):
                seen.add(fastwire.nonce(outbound, stream, seq))
    assert len(seen) == 2 * 4 * 3
    from weavenet.core.sleeve_codec import sleeve_nonce

    classic = {sleeve_nonce(o, s) for o in (True, False) for s in (0, 1, 2**40, 2**63 | 1)}
    assert not seen & classic
