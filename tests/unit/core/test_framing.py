"""weavenet.core.framing.MessageFramer: V2 length-prefix and V1 gob framing, plain and encrypted."""

from __future__ import annotations

import itertools
import json
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from weavenet.core import framing
from weavenet.core.framing import MAX_MESSAGE_SIZE, MessageFramer
from weavenet.errors import LocalProtocolError, RemoteProtocolError

VECTORS = Path(__file__).resolve().parents[2] / "golden" / "vectors"
KEY = bytes.fromhex("148f79d46aa9768f2a9971929a691996e41787907cb3e1d6eb3513aa93b89267")


def load(name: str) -> dict:
    with open(VECTORS / f"{name}.json") as f:
        return {c["name"]: c for c in json.load(f)["cases"]}


def pair(version: int = 2, key: bytes | None = None, **kw) -> tuple[MessageFramer, MessageFramer]:
    """(outbound sender, inbound receiver) of one direction."""
    return (
        MessageFramer(outbound=True, session_key=key, version=version, **kw),
        MessageFramer(outbound=False, session_key=key, version=version, **kw),
    )


MODES = [(2, None), (2, KEY), (1, None), (1, KEY)]
MODE_IDS = ["v2-plain", "v2-encrypted", "v1-plain", "v1-encrypted"]


def test_tags_match_vectors():
    tags = load("gossip")["protocol_tags"]["decoded"]
    mesh = tags["mesh_protocol_tags"]
    assert framing.TAG_HEARTBEAT == mesh["ProtocolHeartbeat"] == 0
    assert framing.TAG_RESERVED1 == framing.TAG_CONNECTION_ESTABLISHED == mesh["ProtocolReserved1"]
    assert framing.TAG_RESERVED2 == framing.TAG_FRAGMENTATION_RECEIVED == mesh["ProtocolReserved2"]
    assert framing.TAG_RESERVED3 == framing.TAG_PMTU_VERIFIED == mesh["ProtocolReserved3"]
    assert mesh["ProtocolGossip"] == framing.TAG_GOSSIP
    assert mesh["ProtocolGossipUnicast"] == framing.TAG_GOSSIP_UNICAST
    assert mesh["ProtocolGossipBroadcast"] == framing.TAG_GOSSIP_BROADCAST
    assert framing.TAG_OVERLAY_CONTROL == mesh["ProtocolOverlayControlMsg"] == 7
    sleeve = tags["sleeve_control_tags"]
    assert sleeve["ProtocolConnectionEstablished"] == framing.TAG_CONNECTION_ESTABLISHED
    assert sleeve["ProtocolPMTUVerified"] == framing.TAG_PMTU_VERIFIED


def test_v2_plain_bytes():
    tx = MessageFramer(outbound=True)
    assert tx.encode(b"\x00") == bytes.fromhex("0000000100")
    assert tx.encode(b"") == bytes(4)
    assert tx.send_seq == 0  # counters only move when encrypting
    rx = MessageFramer(outbound=False)
    assert rx.feed(bytes.fromhex("0000000100") + bytes(4) + b"\x00\x00") == [b"\x00", b""]
    assert rx.buffered == 2
    assert rx.feed(b"\x00\x02ab") == [b"ab"]
    assert rx.buffered == 0


def test_v1_bytes_match_transcripts():
    hs = load("handshake")
    for name, key in (("transcript_v1_plain", None), ("transcript_v1_encrypted", KEY)):
        writes = [w for w in hs[name]["a_to_b"] if w["label"].startswith("gob value: []byte")]
        tx = MessageFramer(outbound=True, session_key=key, version=1)
        rx = MessageFramer(outbound=False, session_key=key, version=1)
        wire = b""
        for w in writes:
            frame = tx.encode(bytes.fromhex(w.get("plaintext_hex", w["gob_bytes_value_hex"])))
            assert frame.hex() == w["hex"]
            wire += frame
        assert [m.hex() for m in rx.feed(wire)] == hs[name]["decoded"]["messages_received_by_B_hex"]


@pytest.mark.parametrize(("version", "key"), MODES, ids=MODE_IDS)
@given(
    messages=st.lists(st.binary(max_size=300), max_size=12),
    cuts=st.lists(st.integers(0, 5000), max_size=20),
)
@settings(max_examples=60, deadline=None)
def test_roundtrip_any_chunking(version, key, messages, cuts):
    tx, rx = pair(version, key)
    wire = b"".join(tx.encode(m) for m in messages)
    points = sorted({c % (len(wire) + 1) for c in cuts} | {0, len(wire)})
    got: list[bytes] = []
    for a, b in itertools.pairwise(points):
        got += rx.feed(wire[a:b])
    got += rx.feed(b"")
    assert got == messages
    if key is not None:
        assert tx.send_seq == rx.recv_seq == len(messages)


@pytest.mark.parametrize(("version", "key"), MODES, ids=MODE_IDS)
def test_byte_at_a_time(version, key):
    tx, rx = pair(version, key)
    messages = [b"\x00", b"\x04" + bytes(range(256)), b"", b"\x07\x01\x01"]
    wire = b"".join(tx.encode(m) for m in messages)
    got = []
    for i in range(len(wire)):
        got += rx.feed(wire[i : i + 1])
    assert got == messages


@pytest.mark.parametrize("version", [1, 2])
def test_replay_reorder_drop_and_polarity_are_detected(version):
    tx = MessageFramer(outbound=True, session_key=KEY, version=version)
    f0, f1, f2 = (tx.encode(bytes([i])) for i in range(3))

    def rx() -> MessageFramer:
        return MessageFramer(outbound=False, session_key=KEY, version=version)

    r = rx()
    assert r.feed(f0) == [b"\x00"]
    with pytest.raises(RemoteProtocolError, match=r"^Unable to decrypt TCP msg$"):
        r.feed(f0)  # replay
    with pytest.raises(RemoteProtocolError, match=r"^Unable to decrypt TCP msg$"):
        rx().feed(f1 + f0)  # reorder
    with pytest.raises(RemoteProtocolError, match=r"^Unable to decrypt TCP msg$"):
        rx().feed(f0 + f2)  # drop
    wrong_side = MessageFramer(outbound=True, session_key=KEY, version=version)
    with pytest.raises(RemoteProtocolError, match=r"^Unable to decrypt TCP msg$"):
        wrong_side.feed(f0)  # both ends think they dialled
    with pytest.raises(RemoteProtocolError, match=r"^Unable to decrypt TCP msg$"):
        MessageFramer(outbound=False, session_key=bytes(32), version=version).feed(f0)  # wrong key


def test_framer_is_dead_after_remote_error():
    r = MessageFramer(outbound=False, session_key=KEY)
    with pytest.raises(RemoteProtocolError):
        r.feed(bytes.fromhex("00000003") + b"abc")  # shorter than a Poly1305 tag
    with pytest.raises(LocalProtocolError):
        r.feed(b"")
    # sending still works (the adapter may want to flush before closing)
    assert len(r.encode(b"x")) == 4 + 1 + 16


def test_incoming_oversize():
    r = MessageFramer(outbound=False)
    with pytest.raises(RemoteProtocolError, match=r"^incoming message exceeds maximum size: 10485761 > 10485760$"):
        r.feed((MAX_MESSAGE_SIZE + 1).to_bytes(4, "big"))
    r = MessageFramer(outbound=False)
    assert r.feed(MAX_MESSAGE_SIZE.to_bytes(4, "big")) == []  # exactly the limit is fine
    small = MessageFramer(outbound=False, max_message_size=100)
    with pytest.raises(RemoteProtocolError, match=r"^incoming message exceeds maximum size: 101 > 100$"):
        small.feed(b"\x00\x00\x00\x64" + bytes(100) + b"\x00\x00\x00\x65")


@pytest.mark.parametrize(("version", "key"), MODES, ids=MODE_IDS)
def test_outgoing_oversize(version, key):
    tx = MessageFramer(outbound=True, session_key=key, version=version, max_message_size=100)
    overhead = 16 if key else 0
    ok = tx.encode(bytes(100 - overhead))
    with pytest.raises(LocalProtocolError, match=r"^outgoing message exceeds maximum size: 101 > 100$"):
        tx.encode(bytes(101 - overhead))
    # A refused message consumes no nonce: the next one still decrypts at the other end.
    nxt = tx.encode(b"after")
    rx = MessageFramer(outbound=False, session_key=key, version=version, max_message_size=100)
    assert rx.feed(ok + nxt) == [bytes(100 - overhead), b"after"]


def test_outgoing_oversize_default_limit():
    tx = MessageFramer(outbound=True, session_key=KEY)
    with pytest.raises(LocalProtocolError, match=r"^outgoing message exceeds maximum size: 10485761 > 10485760$"):
        tx.encode(bytes(MAX_MESSAGE_SIZE - 15))


def test_v2_buffer_is_bounded():
    r = MessageFramer(outbound=False, max_message_size=1000)
    r.feed((1000).to_bytes(4, "big"))
    for _ in range(999):
        assert r.feed(b"z") == []
        assert r.buffered <= 4 + 1000
    assert r.feed(b"z") == [b"z" * 1000]
    assert r.buffered == 0


def test_v1_incoming_oversize():
    tx = MessageFramer(outbound=True, version=1)
    rx = MessageFramer(outbound=False, version=1, max_message_size=100)
    with pytest.raises(RemoteProtocolError):
        rx.feed(tx.encode(bytes(500)))


def test_constructor_validation():
    with pytest.raises(ValueError):
        MessageFramer(outbound=True, version=3)
    with pytest.raises(ValueError):
        MessageFramer(outbound=True, session_key=b"short")
    with pytest.raises(ValueError):
        MessageFramer(outbound=True, max_message_size=0)
    f = MessageFramer(outbound=True, session_key=KEY, send_seq=5, recv_seq=9)
    assert (f.send_seq, f.recv_seq, f.encrypted, f.version) == (5, 9, True, 2)


def test_start_sequence_numbers():
    """A framer started at seq 1 continues a stream whose message 0 (the features) went elsewhere."""
    hs = load("handshake")["transcript_v2_encrypted"]
    later = [w for w in hs["a_to_b"] if w["label"].startswith("protocol message")]
    tx = MessageFramer(outbound=True, session_key=KEY, send_seq=1)
    rx = MessageFramer(outbound=False, session_key=KEY, recv_seq=1)
    wire = b""
    for w in later:
        assert tx.send_seq == w["seq"]
        frame = tx.encode(bytes.fromhex(w["plaintext_hex"]))
        assert frame.hex() == w["hex"]
        wire += frame
    assert [m.hex() for m in rx.feed(wire)] == [w["plaintext_hex"] for w in later]
