"""Sleeve packets against the Go-generated vectors (sleeve.json)."""

from __future__ import annotations

import hashlib

import pytest

from tests.golden.wire_vectors import case, cases
from weavenet.core.names import PeerName
from weavenet.core.sleeve_codec import (
    HEARTBEAT_FRAME_LEN,
    NACL_OVERHEAD,
    PLAIN_OVERHEAD,
    Decryptor,
    Encryptor,
    encode_frames,
    iter_frames,
    sleeve_nonce,
)
from weavenet.errors import RemoteProtocolError


def _name(s: str) -> bytes:
    return PeerName.parse(s).bytes6()


def _frames(inputs: dict) -> list[tuple[bytes, bytes, bytes]]:
    return [(_name(f["src_peer"]), _name(f["dst_peer"]), bytes.fromhex(f["frame_hex"])) for f in inputs["frames"]]


def test_constants() -> None:
    c = case("sleeve", "constants")["decoded"]
    assert c["plain_packet_overhead"] == PLAIN_OVERHEAD
    assert c["nacl_packet_overhead"] == NACL_OVERHEAD
    assert c["EthernetOverhead"] + 8 == HEARTBEAT_FRAME_LEN


def test_plain_two_frames() -> None:
    c = case("sleeve", "plain_two_frames")
    packet = _name(c["inputs"]["sender"]) + encode_frames(_frames(c["inputs"]))
    assert packet.hex() == c["output_hex"]
    got = [
        {
            "src_peer": str(PeerName.from_bytes6(f.src)),
            "dst_peer": str(PeerName.from_bytes6(f.dst)),
            "frame_hex": f.data.hex(),
        }
        for f in iter_frames(packet[6:])
    ]
    assert got == c["decoded"]["frames"]


@pytest.mark.parametrize("name", [c["name"] for c in cases("sleeve") if c["name"].startswith("encrypted_two_frames")])
def test_encrypted(name: str) -> None:
    c = case("sleeve", name)
    inp = c["inputs"]
    key = bytes.fromhex(inp["session_key_hex"])
    enc = Encryptor(key, inp["sender_is_outbound"], inp["df"], first_seq=inp["first_seq"])
    dec = Decryptor(key, remote_outbound=inp["sender_is_outbound"])
    sender = _name(inp["sender"])
    for p in c["packets"]:
        assert sleeve_nonce(inp["sender_is_outbound"], int(p["seq_and_df_hex"], 16)).hex() == p["nonce_hex"]
        packet = enc.seal(sender, bytes.fromhex(p["plaintext_hex"]))
        assert packet.hex() == p["packet_hex"]
        assert dec.open(packet) == bytes.fromhex(p["plaintext_hex"])
        assert dec.open(packet) is None  # the same packet again is a replay


@pytest.mark.parametrize(
    "name",
    [
        "heartbeat_plain",
        "heartbeat_encrypted",
        "pmtu_verification_probe_1410",
        "pmtu_verification_probe_1410_encrypted",
    ],
)
def test_special_packets(name: str) -> None:
    c = case("sleeve", name)
    inp = c["inputs"]
    body = encode_frames([(_name(inp["src_peer"]), _name(inp["dst_peer"]), bytes.fromhex(inp["frame_hex"]))])
    sender = _name(inp["sender"])
    if inp["encrypted"]:
        key = bytes.fromhex(inp["session_key_hex"])
        packet = Encryptor(key, inp["sender_is_outbound"], df=inp["df_path"], first_seq=inp.get("seq", 0)).seal(
            sender, body
        )
    else:
        packet = sender + body
    assert packet.hex() == c["output_hex"]


@pytest.mark.parametrize("name", ["frag_test_plain", "frag_test_encrypted", "pmtu_discovery_probe_plain"])
def test_large_special_packets(name: str) -> None:
    c = case("sleeve", name)
    inp = c["inputs"]
    frame = bytes(inp["frame_len"])
    body = encode_frames([(_name(inp["src_peer"]), _name(inp["dst_peer"]), frame)])
    sender = _name(inp["sender"])
    if inp["encrypted"]:
        key = bytes.fromhex(inp["session_key_hex"])
        packet = Encryptor(key, inp["sender_is_outbound"], df=inp["df_path"], first_seq=inp.get("seq", 0)).seal(
            sender, body
        )
    else:
        packet = sender + body
    assert len(packet) == c["output_len"]
    assert hashlib.sha256(packet).hexdigest() == c["output_sha256"]


def test_replay_window_and_forgery() -> None:
    key = bytes(range(32))
    enc = Encryptor(key, outbound=True, df=False)
    dec = Decryptor(key, remote_outbound=True)
    sender = bytes(6)
    packets = [enc.seal(sender, b"x" * i) for i in range(5)]
    for i in (3, 1, 4, 0, 2):  # any order within the window is fine, once
        assert dec.open(packets[i]) == b"x" * i
    assert all(dec.open(p) is None for p in packets)
    forged = bytearray(packets[0])
    forged[-1] ^= 1
    with pytest.raises(RemoteProtocolError):
        dec.open(bytes(forged))
    enc.seq = 5 << 20  # jump two windows ahead: everything older than the previous window is refused
    assert dec.open(enc.seal(sender, b"late")) == b"late"
    enc.seq = 1 << 20
    assert dec.open(enc.seal(sender, b"old")) is None


def test_frame_errors() -> None:
    body = encode_frames([(bytes(6), bytes(6), b"abc")])
    with pytest.raises(RemoteProtocolError, match="too short"):
        list(iter_frames(body[:-1]))
    with pytest.raises(RemoteProtocolError, match="trailing garbage"):
        list(iter_frames(body + b"xyz"))
