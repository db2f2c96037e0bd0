"""Fuzz the connection's first bytes: the protocol header, the features map, the whole intro (plain and
encrypted, both protocol versions), and the message framing that follows it.

Accepted outcomes: the handshake completes, waits for more, or fails with ``HandshakeError`` (then refuses more
input with ``LocalProtocolError``); the framer yields messages or raises ``RemoteProtocolError``. Buffers stay
bounded whatever arrives.
"""

from __future__ import annotations

import itertools
import json
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from tests.fuzz.budget import fuzz
from tests.unit.core.test_framing import MODE_IDS, MODES
from tests.unit.core.test_handshake import HEADER_V12, VECTORS, A, make
from weavenet.core import crypto
from weavenet.core.features import PEER_NAME_FLAVOUR, RemoteFeatures, parse_features
from weavenet.core.framing import MessageFramer
from weavenet.core.handshake import MAX_FEATURES_SIZE, Handshake, HandshakeCompleted, HandshakeFailed
from weavenet.core.names import PeerName
from weavenet.errors import HandshakeError, LocalProtocolError, RemoteProtocolError


def transcripts() -> dict[str, Any]:
    with open(VECTORS / "handshake.json") as f:
        return {c["name"]: c for c in json.load(f)["cases"] if c["name"].startswith("transcript_")}


TRANSCRIPTS = transcripts()


def side_for(c: dict[str, Any], side: str) -> Handshake:
    inp = c["inputs"]
    fmap = inp[side]["features_map"]
    password = bytes.fromhex(inp["password_hex"]) if "password_hex" in inp else None
    return Handshake(
        outbound=inp[side]["outbound"],
        name=PeerName.parse(fmap["Name"]),
        nickname=fmap["NickName"],
        uid=int(fmap["UID"]),
        conn_id=int(fmap["ConnID"]),
        short_id=int(fmap["ShortID"]),
        trusted=False,
        overlays=fmap["Overlays"],
        password=password,
        private_key=bytes.fromhex(inp[f"{side}_private_key_hex"]) if password is not None else None,
        min_version=inp["min_version"],
        max_version=inp["max_version"],
    )


def drive(hs: Handshake, chunks: list[bytes]) -> None:
    """Feed chunks; only events or RemoteProtocolError from the framer afterwards are acceptable outcomes."""
    framer = None
    for chunk in chunks:
        if framer is None:
            hs.receive_data(chunk)
            assert hs.buffered <= MAX_FEATURES_SIZE + 64 + len(chunk)
            hs.data_to_send()
            ev = hs.next_event()
            if isinstance(ev, HandshakeFailed):
                assert isinstance(ev.error, HandshakeError)
                with pytest.raises(LocalProtocolError):
                    hs.receive_data(b"x")
                return
            if isinstance(ev, HandshakeCompleted):
                framer = ev.framer
                try:
                    framer.feed(b"")
                except RemoteProtocolError:
                    return
        else:
            try:
                framer.feed(chunk)
            except RemoteProtocolError:
                return


def split(data: bytes, cuts: list[int]) -> list[bytes]:
    points = sorted({c % (len(data) + 1) for c in cuts} | {0, len(data)})
    return [data[a:b] for a, b in itertools.pairwise(points)] or [b""]


@pytest.mark.parametrize("name", sorted(TRANSCRIPTS))
@pytest.mark.parametrize("side", ["A", "B"])
@given(data=st.data())
@fuzz(60)
def test_transcript_mutations(name: str, side: str, data: st.DataObject) -> None:
    """Go's own intros (golden transcripts), with bits flipped, cut short and junk inserted."""
    c = TRANSCRIPTS[name]
    theirs = "b_to_a" if side == "A" else "a_to_b"
    wire = bytearray(b"".join(bytes.fromhex(w["hex"]) for w in c[theirs]))
    for bit in data.draw(st.lists(st.integers(0, len(wire) * 8 - 1), max_size=3)):
        wire[bit // 8] ^= 1 << (bit % 8)
    wire = wire[: data.draw(st.integers(0, len(wire)))]
    if data.draw(st.booleans()):
        pos = data.draw(st.integers(0, len(wire)))
        wire[pos:pos] = data.draw(st.binary(max_size=40))
    drive(side_for(c, side), split(bytes(wire), data.draw(st.lists(st.integers(0, 4000), max_size=6))))


@pytest.mark.parametrize("version", [1, 2])
@pytest.mark.parametrize("password", [None, b"pw"])
@given(
    prefix_len=st.integers(0, 60),
    junk=st.binary(max_size=300),
    cuts=st.lists(st.integers(0, 400), max_size=5),
)
@fuzz(100)
def test_random_bytes_after_a_valid_prefix(
    version: int, password: bytes | None, prefix_len: int, junk: bytes, cuts: list[int]
) -> None:
    """Random bytes after a (partial) valid prefix: header, flag and key, start of a features frame."""
    hs = make(A, outbound=False, password=password, max_version=version)
    if version == 2:
        valid = HEADER_V12 + (b"\x01" + crypto.generate_keypair(bytes(range(1, 33)))[1] if password else b"\x00")
    else:
        valid = b"weave\x01\x01" + bytes.fromhex("0eff81040102ff8200010c010c0000")
    drive(hs, split(valid[:prefix_len] + junk, cuts))


@given(st.binary(max_size=64))
@fuzz(200)
def test_headers(data: bytes) -> None:
    drive(make(A, outbound=True), [data])


GOOD_FEATURES = {
    "PeerNameFlavour": PEER_NAME_FLAVOUR,
    "Name": "ce:12:34:56:78:02",
    "NickName": "b",
    "UID": "123",
    "ConnID": "456",
    "ShortID": "7",
    "Trusted": "false",
    "Overlays": "fastdp sleeve",
}
HOSTILE_TEXT = st.one_of(
    st.text(max_size=30),
    st.sampled_from(["", "-1", "18446744073709551616", "0x10", "4096", "ce:12:34:56:78", "::", "TRUE", "1e3"]),
)


@given(
    changes=st.dictionaries(st.sampled_from(sorted(GOOD_FEATURES)), HOSTILE_TEXT, max_size=4),
    drop=st.sets(st.sampled_from(sorted(GOOD_FEATURES)), max_size=2),
    extra=st.dictionaries(st.text(max_size=20), st.text(max_size=40), max_size=3),
)
@fuzz(300)
def test_features_map(changes: dict[str, str], drop: set[str], extra: dict[str, str]) -> None:
    """The decoded features map, any key missing or any value hostile: a peer or a ``HandshakeError``."""
    features = {**extra, **GOOD_FEATURES, **changes}
    for key in drop:
        features.pop(key, None)
    try:
        got = parse_features(features)
    except HandshakeError:
        return
    assert isinstance(got, RemoteFeatures) and 0 <= got.uid < 2**64 and 0 <= got.conn_id < 2**64
    assert got.short_id is None or 0 <= got.short_id < 4096


def fuzz_feed(framer: MessageFramer, chunks: list[bytes]) -> None:
    try:
        for c in chunks:
            framer.feed(c)
            assert framer.buffered <= 4 + 4096 + max(len(c) for c in chunks)
    except RemoteProtocolError:
        pass


@pytest.mark.parametrize(("version", "key"), MODES, ids=MODE_IDS)
@given(chunks=st.lists(st.binary(max_size=200), min_size=1, max_size=8))
@fuzz(100)
def test_framing_random_bytes(version: int, key: bytes | None, chunks: list[bytes]) -> None:
    fuzz_feed(MessageFramer(outbound=False, session_key=key, version=version, max_message_size=4096), chunks)


@pytest.mark.parametrize(("version", "key"), MODES, ids=MODE_IDS)
@given(data=st.data())
@fuzz(100)
def test_framing_bit_flips_and_truncation(version: int, key: bytes | None, data: st.DataObject) -> None:
    tx = MessageFramer(outbound=True, session_key=key, version=version)
    wire = bytearray(b"".join(tx.encode(m) for m in (b"\x00", b"\x04hello gossip", b"\x07\x01\x01", b"x" * 300)))
    for i in data.draw(st.lists(st.integers(0, len(wire) * 8 - 1), max_size=4)):
        wire[i // 8] ^= 1 << (i % 8)
    wire = wire[: data.draw(st.integers(0, len(wire)))]
    rx = MessageFramer(outbound=False, session_key=key, version=version, max_message_size=4096)
    fuzz_feed(rx, [bytes(wire)])
