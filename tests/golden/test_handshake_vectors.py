"""Golden vectors for the mesh TCP intro and framing (``vectors/handshake.json``, SPEC §3).

Every case is exercised through the public API: headers and features through ``Handshake`` itself, session
keys and nonces through ``weavenet.core.crypto``, frames through ``MessageFramer``, and the four transcripts
by playing each side against the other side's recorded bytes.
"""

from __future__ import annotations

from typing import Any

import nacl.bindings
import pytest

from tests.golden.wire_vectors import case, cases
from weavenet.core import crypto
from weavenet.core.codec.gob import BYTES, NEED_DATA, Decoder, Encoder
from weavenet.core.features import build_features, build_v1_features, parse_features
from weavenet.core.framing import MessageFramer
from weavenet.core.handshake import FEATURES, Handshake, HandshakeCompleted, HandshakeFailed
from weavenet.core.names import PeerName
from weavenet.errors import HandshakeError

FILE = "handshake"
ALL = cases(FILE)


def names(prefix: str) -> list[str]:
    return [c["name"] for c in ALL if c["name"].startswith(prefix)]


PREFIXES = (
    "header_",
    "features_",
    "session_key_",
    "tcp_nonce_",
    "encrypted_frames_",
    "parse_features_",
    "transcript_",
)


def test_every_case_is_covered():
    assert len(ALL) == 40
    uncovered = [c["name"] for c in ALL if not c["name"].startswith(PREFIXES)]
    assert uncovered == []


def peer_kwargs(peer: dict[str, Any], conn_id: int, *, outbound: bool) -> dict[str, Any]:
    return {
        "outbound": outbound,
        "name": PeerName.parse(peer["Name"]),
        "nickname": peer["NickName"],
        "uid": peer["UID"],
        "conn_id": conn_id,
        "short_id": peer["ShortID"],
    }


A_PEER = case(FILE, "features_A_untrusted_fastdp_sleeve")["inputs"]["peer"]
A_CONN_ID = case(FILE, "features_A_untrusted_fastdp_sleeve")["inputs"]["ConnID"]


def fixture_handshake(**overrides: Any) -> Handshake:
    kw: dict[str, Any] = peer_kwargs(A_PEER, A_CONN_ID, outbound=True)
    kw.update(trusted=False, overlays="fastdp sleeve", password=None)
    kw.update(overrides)
    return Handshake(**kw)


# --- 3.1 header ---------------------------------------------------------------------------------------------


@pytest.mark.parametrize("name", names("header_"))
def test_header(name):
    c = case(FILE, name)
    inp = c["inputs"]
    hs = fixture_handshake(min_version=inp["our_min_version"], max_version=inp["our_max_version"])
    assert hs.data_to_send().hex() == c["output_hex"]
    hs.receive_data(bytes.fromhex(inp["remote_header_hex"]))
    event = hs.next_event()
    if "error" in c["decoded"]:
        assert isinstance(event, HandshakeFailed)
        assert isinstance(event.error, HandshakeError)
        assert str(event.error) == c["decoded"]["error"]
        assert hs.data_to_send() == b""  # nothing after the header once the header is refused
    else:
        assert event is None  # more data needed
        assert hs.version == c["decoded"]["version"]
        after = hs.data_to_send()
        if hs.version == 2:
            assert after == b"\x00"  # no password: encryption flag 0
        else:
            assert after[:15].hex() == "0eff81040102ff8200010c010c0000"  # V1: the gob features stream starts


def test_header_split_across_reads():
    hs = fixture_handshake()
    hs.data_to_send()
    for b in bytes.fromhex("77656176650102"):
        assert hs.next_event() is None
        hs.receive_data(bytes([b]))
    assert hs.version == 2
    assert hs.next_event() is None


# --- 3.3 / 3.6 features -------------------------------------------------------------------------------------


@pytest.mark.parametrize("name", [n for n in names("features_") if not n.startswith("features_v1")])
def test_features_v2(name):
    c = case(FILE, name)
    inp = c["inputs"]
    kw = peer_kwargs(inp["peer"], inp["ConnID"], outbound=True)
    features = build_features(
        name=kw["name"],
        nickname=kw["nickname"],
        uid=kw["uid"],
        conn_id=kw["conn_id"],
        short_id=kw["short_id"],
        trusted=inp["trust_remote"],
        overlays=inp["overlays"],
    )
    assert features == c["decoded"]
    assert list(features.items()) == [tuple(p) for p in c["gob"]["gob_values"][0]]
    assert Encoder().encode(FEATURES, features).hex() == c["output_hex"] == c["gob"]["gob_hex"]

    # The same bytes come out of a V2 handshake, as message 0 after the encryption flag.
    hs = Handshake(**kw, trusted=inp["trust_remote"], overlays=inp["overlays"], password=None, min_version=2)
    hs.receive_data(bytes.fromhex("77656176650202") + b"\x00")
    out = hs.data_to_send()
    gob = bytes.fromhex(c["output_hex"])
    assert out == bytes.fromhex("77656176650202") + b"\x00" + len(gob).to_bytes(4, "big") + gob

    # And they decode back to the map.
    d = Decoder(max_message_size=1 << 20)
    d.feed(gob)
    assert dict(d.next_value(FEATURES)) == c["decoded"]


@pytest.mark.parametrize("name", names("features_v1"))
def test_features_v1(name):
    c = case(FILE, name)
    inp = c["inputs"]
    kw = peer_kwargs(inp["peer"], inp["ConnID"], outbound=True)
    full = build_features(
        name=kw["name"],
        nickname=kw["nickname"],
        uid=kw["uid"],
        conn_id=kw["conn_id"],
        short_id=kw["short_id"],
        trusted=inp["trust_remote"],
        overlays=inp["overlays"],
    )
    public = bytes.fromhex(inp["public_key_hex"]) if "public_key_hex" in inp else None
    v1 = build_v1_features(full, public)
    assert v1 == c["decoded"]
    assert list(v1.items()) == [tuple(p) for p in c["gob"]["gob_values"][0]]
    assert Encoder().encode(FEATURES, v1).hex() == c["output_hex"]

    # Through a V1 handshake (A's fixed key yields exactly that public key).
    password = b"weave-test-password" if public is not None else None
    a_private = bytes.fromhex(case(FILE, "session_key_password")["inputs"]["A_private_key_hex"])
    hs = Handshake(
        **kw,
        trusted=inp["trust_remote"],
        overlays=inp["overlays"],
        password=password,
        private_key=a_private if password is not None else None,
        max_version=1,
    )
    assert hs.public_key == public
    hs.receive_data(bytes.fromhex("77656176650101"))
    assert hs.data_to_send().hex() == "77656176650101" + c["output_hex"]


@pytest.mark.parametrize("name", names("parse_features_"))
def test_parse_features(name):
    c = case(FILE, name)
    inp = c["inputs"]
    expected = c["decoded"]
    if "error" in expected:
        with pytest.raises(HandshakeError) as info:
            parse_features(inp["remote_features"])
        assert str(info.value) == expected["error"]
        return
    remote = parse_features(inp["remote_features"])
    assert str(remote.name) == expected["Name"]
    assert remote.name == expected["Name_uint64"]
    assert remote.nickname == expected["NickName"]
    assert remote.uid == expected["UID"]
    assert (remote.short_id is not None) == expected["HasShortID"]
    assert (remote.short_id or 0) == expected["ShortID"]
    assert remote.trusted == expected["trusted_by_remote"]
    assert inp["our_ConnID"] ^ remote.conn_id == expected["connection_uid"]
    assert dict(remote.raw) == inp["remote_features"]
    overlays = inp["remote_features"].get("Overlays")
    assert remote.overlays == (tuple(overlays.split(" ")) if overlays is not None else None)


@pytest.mark.parametrize("name", names("parse_features_"))
def test_parse_features_through_handshake(name):
    """The same results/errors when the map arrives in a real V2 intro."""
    c = case(FILE, name)
    inp = c["inputs"]
    hs = fixture_handshake(conn_id=inp["our_ConnID"])
    gob = Encoder().encode(FEATURES, inp["remote_features"])
    hs.receive_data(bytes.fromhex("77656176650102") + b"\x00" + len(gob).to_bytes(4, "big") + gob)
    event = hs.next_event()
    if "error" in c["decoded"]:
        assert isinstance(event, HandshakeFailed)
        assert str(event.error) == c["decoded"]["error"]
    else:
        assert isinstance(event, HandshakeCompleted)
        assert event.connection_uid == c["decoded"]["connection_uid"]
        assert event.remote.uid == c["decoded"]["UID"]


# --- 3.4 session key, 3.5 nonces ----------------------------------------------------------------------------


@pytest.mark.parametrize("name", names("session_key_"))
def test_session_key(name):
    c = case(FILE, name)
    inp = c["inputs"]
    mid = c["intermediate"]
    a_priv, a_pub = crypto.generate_keypair(bytes.fromhex(inp["A_private_key_hex"]))
    b_priv, b_pub = crypto.generate_keypair(bytes.fromhex(inp["B_private_key_hex"]))
    assert a_pub.hex() == inp["A_public_key_hex"]
    assert b_pub.hex() == inp["B_public_key_hex"]
    assert nacl.bindings.crypto_scalarmult(a_priv, b_pub).hex() == mid["x25519_shared_secret_hex"]
    assert nacl.bindings.crypto_box_beforenm(b_pub, a_priv).hex() == mid["nacl_box_precompute_hex"]
    password = bytes.fromhex(inp["password_hex"])
    assert password == inp["password"].encode()
    assert crypto.session_key(a_priv, b_pub, password).hex() == c["output_hex"]
    assert crypto.session_key(b_priv, a_pub, password).hex() == c["output_hex"]


@pytest.mark.parametrize("name", names("tcp_nonce_"))
def test_tcp_nonce(name):
    c = case(FILE, name)
    inp = c["inputs"]
    assert crypto.tcp_nonce(inp["sender_is_outbound"], inp["seq"]).hex() == c["output_hex"]


# --- 3.2 / 3.5 encrypted frames -----------------------------------------------------------------------------


@pytest.mark.parametrize("name", names("encrypted_frames_"))
def test_encrypted_frames(name):
    c = case(FILE, name)
    inp = c["inputs"]
    key = bytes.fromhex(inp["session_key_hex"])
    outbound = inp["sender_is_outbound"]
    sender = MessageFramer(outbound=outbound, session_key=key)
    receiver = MessageFramer(outbound=not outbound, session_key=key)
    assert [f["plaintext_hex"] for f in c["frames"]] == inp["plaintexts_hex"]
    wire = b""
    for f in c["frames"]:
        assert sender.send_seq == f["seq"]
        assert crypto.tcp_nonce(outbound, f["seq"]).hex() == f["nonce_hex"]
        frame = sender.encode(bytes.fromhex(f["plaintext_hex"]))
        assert frame.hex() == f["frame_hex"]
        assert int.from_bytes(frame[:4], "big") == f["length_prefix"]
        # the low-level helper gives the same box
        box = crypto.seal(bytes.fromhex(f["plaintext_hex"]), bytes.fromhex(f["nonce_hex"]), key)
        assert box == frame[4:]
        wire += frame
    assert wire.hex() == c["output_hex"]
    assert [m.hex() for m in receiver.feed(wire)] == inp["plaintexts_hex"]


# --- 3.7 transcripts ----------------------------------------------------------------------------------------

SIDES = {
    # side: (the list of its writes, the list of the other side's writes, its fixed private key)
    "A": ("a_to_b", "b_to_a", "A_private_key_hex"),
    "B": ("b_to_a", "a_to_b", "B_private_key_hex"),
}


def transcript_side(c: dict[str, Any], side: str) -> Handshake:
    inp = c["inputs"]
    fmap = inp[side]["features_map"]
    outbound = inp[side]["outbound"]
    password = bytes.fromhex(inp["password_hex"]) if "password_hex" in inp else None
    return Handshake(
        outbound=outbound,
        name=PeerName.parse(fmap["Name"]),
        nickname=fmap["NickName"],
        uid=int(fmap["UID"]),
        conn_id=int(fmap["ConnID"]),
        short_id=int(fmap["ShortID"]),
        trusted=fmap["Trusted"] == "true",
        overlays=fmap["Overlays"],
        password=password,
        private_key=bytes.fromhex(inp[SIDES[side][2]]) if password is not None else None,
        min_version=inp["min_version"],
        max_version=inp["max_version"],
    )


def is_protocol_message(write: dict[str, Any]) -> bool:
    return write["label"].startswith(("protocol message", "gob value: []byte"))


@pytest.mark.parametrize("name", names("transcript_"))
@pytest.mark.parametrize("side", ["A", "B"])
@pytest.mark.parametrize("delivery", ["whole", "per_write", "byte_at_a_time"])
def test_transcript(name, side, delivery):
    c = case(FILE, name)
    decoded = c["decoded"]
    mine, theirs, _ = SIDES[side]
    other = "B" if side == "A" else "A"
    hs = transcript_side(c, side)

    written = hs.data_to_send()
    assert written == bytes.fromhex(c[mine][0]["hex"])  # the header goes out before anything is read

    incoming = [bytes.fromhex(w["hex"]) for w in c[theirs]]
    if delivery == "whole":
        chunks = [b"".join(incoming)]
    elif delivery == "per_write":
        chunks = incoming
    else:
        chunks = [bytes([b]) for b in b"".join(incoming)]

    event = None
    received: list[bytes] = []
    leftover: list[bytes] = []
    for chunk in chunks:
        if event is None:
            hs.receive_data(chunk)
            written += hs.data_to_send()
            event = hs.next_event()
            if event is not None:
                assert isinstance(event, HandshakeCompleted), event
                received = event.framer.feed(b"")
        else:
            leftover.append(chunk)
    assert isinstance(event, HandshakeCompleted)
    framer = event.framer
    for chunk in leftover:
        received += framer.feed(chunk)

    # What we received.
    assert event.version == decoded["version"]
    assert event.session_key == (bytes.fromhex(decoded["session_key_hex"]) if decoded["session_key_hex"] else None)
    assert dict(event.remote.raw) == decoded[f"features_received_by_{side}"]
    remote_map = c["inputs"][other]["features_map"]
    assert event.remote.conn_id == int(remote_map["ConnID"])
    assert event.connection_uid == int(c["inputs"][side]["features_map"]["ConnID"]) ^ int(remote_map["ConnID"])
    assert event.remote.uid == int(remote_map["UID"])
    assert str(event.remote.name) == remote_map["Name"]
    if decoded["version"] == 2:
        assert event.remote.overlays == tuple(remote_map["Overlays"].split(" "))
        assert event.remote.short_id == int(remote_map["ShortID"])
    else:
        assert event.remote.overlays is None  # filtered out by V1
        assert event.remote.short_id is None
    assert [m.hex() for m in received] == decoded[f"messages_received_by_{side}_hex"]

    # What we wrote: the intro exactly as the Go side did, then the same protocol messages through the framer.
    for w in c[mine]:
        if is_protocol_message(w):
            written += framer.encode(bytes.fromhex(w.get("plaintext_hex", w.get("gob_bytes_value_hex", ""))))
    assert written.hex() == "".join(w["hex"] for w in c[mine])
    if side == "A":
        assert written.hex() == c["output_hex"]


@pytest.mark.parametrize("name", names("transcript_"))
def test_transcript_gob_streams(name):
    """The recorded gob objects agree with the writes (V2: features frame plaintext; V1: whole stream)."""
    c = case(FILE, name)
    decoded = c["decoded"]
    for side, (mine, _, _) in SIDES.items():
        if decoded["version"] == 2:
            obj = decoded[f"features_gob_{side}"]
            feats = next(w for w in c[mine] if w["label"].startswith("features"))
            assert feats["plaintext_hex"] == obj["gob_hex"]
            d = Decoder(max_message_size=1 << 20)
            d.feed(bytes.fromhex(obj["gob_hex"]))
            assert list(dict(d.next_value(FEATURES)).items()) == [tuple(p) for p in obj["gob_decoded"][0]]
        else:
            obj = decoded[f"gob_stream_{side}"]
            assert "".join(w["hex"] for w in c[mine][1:]) == obj["gob_hex"]
            d = Decoder(max_message_size=1 << 20)
            d.feed(bytes.fromhex(obj["gob_hex"]))
            assert list(dict(d.next_value(FEATURES)).items()) == [tuple(p) for p in obj["gob_decoded"][0]]
            rest = []
            while (v := d.next_value(BYTES)) is not NEED_DATA:
                rest.append(bytes(v).hex())
            assert rest == obj["gob_decoded"][1:]
