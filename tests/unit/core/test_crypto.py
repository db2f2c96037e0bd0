"""weavenet.core.crypto: key pairs, session keys, nonces and the secretbox helpers."""

from __future__ import annotations

import json
from pathlib import Path

import nacl.bindings
import pytest
from hypothesis import given
from hypothesis import strategies as st

from weavenet.core import crypto
from weavenet.errors import RemoteProtocolError

VECTORS = Path(__file__).resolve().parents[2] / "golden" / "vectors"
A_PRIV = bytes.fromhex("77076d0a7318a57d3c16c17251b26645df4c2f87ebc0992ab177fba51db92c2a")
B_PRIV = bytes.fromhex("5dab087e624a8a4b79e17f8b83800ee66f3bb1292618b6fd1c2f8b27ff88e0eb")
KEY = bytes.fromhex("148f79d46aa9768f2a9971929a691996e41787907cb3e1d6eb3513aa93b89267")


def test_generate_keypair_fixed_and_random():
    priv, pub = crypto.generate_keypair(A_PRIV)
    assert priv == A_PRIV
    assert pub.hex() == "8520f0098930a754748b7ddcb43ef75a0dbf3a0d26381af4eba4a98eaa9b4e6a"
    p1, q1 = crypto.generate_keypair()
    p2, q2 = crypto.generate_keypair()
    assert len(p1) == len(q1) == 32
    assert p1 != p2 and q1 != q2
    with pytest.raises(ValueError):
        crypto.generate_keypair(b"short")


def test_session_key_symmetric_and_password_sensitive():
    a, a_pub = crypto.generate_keypair()
    b, b_pub = crypto.generate_keypair()
    k1 = crypto.session_key(a, b_pub, b"pw")
    assert k1 == crypto.session_key(b, a_pub, b"pw")
    assert k1 != crypto.session_key(a, b_pub, b"pw2")
    assert crypto.session_key(a, b_pub, b"") != k1
    assert len(k1) == 32


def test_session_key_rfc7748_fixture():
    _, a_pub = crypto.generate_keypair(A_PRIV)
    _, b_pub = crypto.generate_keypair(B_PRIV)
    assert crypto.session_key(A_PRIV, b_pub, b"weave-test-password") == KEY
    assert crypto.session_key(B_PRIV, a_pub, b"weave-test-password") == KEY


@pytest.mark.parametrize("bad", [bytes(32), b"\x01" + bytes(31)])
def test_session_key_low_order_point_is_remote_error(bad):
    with pytest.raises(RemoteProtocolError, match="invalid remote public key"):
        crypto.session_key(A_PRIV, bad, b"pw")


def test_session_key_bad_lengths():
    with pytest.raises(RemoteProtocolError):
        crypto.session_key(A_PRIV, b"\x09" * 31, b"pw")
    with pytest.raises(ValueError):
        crypto.session_key(b"x", bytes(32), b"pw")


def test_tcp_nonce_layout():
    assert crypto.tcp_nonce(True, 0) == b"\xc0" + bytes(23)
    assert crypto.tcp_nonce(False, 0) == b"\x40" + bytes(23)
    n = crypto.tcp_nonce(True, 0x0102030405060708)
    assert n[:16] == b"\xc0" + bytes(15) and n[16:] == bytes(range(1, 9))
    assert crypto.tcp_nonce(False, 2**64 - 1)[16:] == b"\xff" * 8
    for bad in (-1, 2**64):
        with pytest.raises(ValueError):
            crypto.tcp_nonce(True, bad)


def test_sleeve_nonce_layout():
    assert crypto.sleeve_nonce(True, 0) == b"\x80" + bytes(23)
    assert crypto.sleeve_nonce(False, 5) == bytes(23) + b"\x05"
    assert crypto.sleeve_nonce(True, crypto.SLEEVE_DF_FLAG | 1)[16:].hex() == "8000000000000001"
    with pytest.raises(ValueError):
        crypto.sleeve_nonce(True, 2**64)


def sleeve_cases():
    with open(VECTORS / "sleeve.json") as f:
        data = json.load(f)
    return [c for c in data["cases"] if c["name"].startswith("encrypted_two_frames")]


@pytest.mark.parametrize("c", sleeve_cases(), ids=lambda c: c["name"])
def test_sleeve_nonce_and_seal_match_sleeve_vectors(c):
    inp = c["inputs"]
    key = bytes.fromhex(inp["session_key_hex"])
    for p in c["packets"]:
        seq_and_df = int(p["seq_and_df_hex"], 16)
        assert seq_and_df & ~crypto.SLEEVE_DF_FLAG == p["seq"]
        nonce = crypto.sleeve_nonce(inp["sender_is_outbound"], seq_and_df)
        assert nonce.hex() == p["nonce_hex"]
        box = crypto.seal(bytes.fromhex(p["plaintext_hex"]), nonce, key)
        packet = bytes.fromhex(p["packet_hex"])
        assert packet[14:] == box
        assert crypto.open_(packet[14:], nonce, key).hex() == p["plaintext_hex"]


def test_seal_open_roundtrip_and_failures():
    nonce = crypto.tcp_nonce(True, 7)
    box = crypto.seal(b"hello", nonce, KEY)
    assert len(box) == 5 + crypto.OVERHEAD
    assert crypto.open_(box, nonce, KEY) == b"hello"
    assert crypto.open_(crypto.seal(b"", nonce, KEY), nonce, KEY) == b""
    tampered = bytes([box[0] ^ 1]) + box[1:]
    with pytest.raises(RemoteProtocolError, match=r"^Unable to decrypt TCP msg$"):
        crypto.open_(tampered, nonce, KEY)
    with pytest.raises(RemoteProtocolError, match=r"^Unable to decrypt TCP msg$"):
        crypto.open_(box, crypto.tcp_nonce(True, 8), KEY)
    with pytest.raises(RemoteProtocolError, match=r"^custom$"):
        crypto.open_(box[:10], nonce, KEY, error="custom")
    assert crypto.open_or_none(box[:15], nonce, KEY) is None
    assert crypto.open_or_none(tampered, nonce, KEY) is None
    assert crypto.open_or_none(box, nonce, KEY) == b"hello"
    for args in ((b"x", nonce, b"short"), (b"x", b"short", KEY)):
        with pytest.raises(ValueError):
            crypto.seal(*args)
        with pytest.raises(ValueError):
            crypto.open_(*args)


@given(st.binary(max_size=600), st.integers(0, 2**64 - 1), st.booleans())
def test_fast_path_matches_bindings(message, seq, outbound):
    nonce = crypto.tcp_nonce(outbound, seq)
    box = crypto.seal(message, nonce, KEY)
    assert box == nacl.bindings.crypto_secretbox(message, nonce, KEY)
    assert crypto.seal_unchecked(message, nonce, KEY) == box
    assert crypto.open_unchecked(box, nonce, KEY) == message
    assert crypto._bindings_open(box, nonce, KEY) == message
    assert crypto._bindings_seal(message, nonce, KEY) == box


@given(st.binary(max_size=64))
def test_open_never_raises_other_errors(junk):
    nonce = crypto.tcp_nonce(False, 1)
    assert crypto.open_unchecked(junk, nonce, KEY) is None
    assert crypto._bindings_open(junk, nonce, KEY) is None
    with pytest.raises(RemoteProtocolError):
        crypto.open_(junk, nonce, KEY)


def test_fast_path_is_active():
    # Not a correctness requirement (the fallback is equivalent) but a performance one worth noticing.
    assert crypto.FAST_SECRETBOX
