"""weavenet.core.handshake: two in-memory Handshakes, error paths, bounds and fuzzing."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from weavenet.core.codec.gob import Encoder
from weavenet.core.features import RemoteFeatures, parse_bool, parse_features, parse_uint
from weavenet.core.handshake import (
    FEATURES,
    HEADER_TIMEOUT,
    HEARTBEAT_INTERVAL,
    MAX_FEATURES_SIZE,
    READ_TIMEOUT,
    Handshake,
    HandshakeCompleted,
    HandshakeFailed,
)
from weavenet.core.names import PeerName
from weavenet.errors import HandshakeError, LocalProtocolError, RemoteProtocolError

VECTORS = Path(__file__).resolve().parents[2] / "golden" / "vectors"
HEADER_V12 = b"weave\x01\x02"

A = {"name": PeerName.parse("ce:12:34:56:78:01"), "nickname": "host-a", "uid": 1234567890123456789,
     "conn_id": 0x0123456789ABCDEF, "short_id": 291}  # fmt: skip
B = {"name": PeerName.parse("ce:12:34:56:78:02"), "nickname": "host-b", "uid": 9876543210987654321,
     "conn_id": 0x0F1E2D3C4B5A6978, "short_id": 2748}  # fmt: skip


def make(peer: dict[str, Any], *, outbound: bool, **kw: Any) -> Handshake:
    args: dict[str, Any] = {"trusted": False, "overlays": "fastdp sleeve", "password": None, **peer}
    args.update(kw)
    return Handshake(outbound=outbound, **args)


def run(a: Handshake, b: Handshake, chunk: int | None = None) -> tuple[Any, Any, bytes, bytes]:
    """Shuttle bytes between a and b until neither has anything to say; return both events and leftovers.

    Bytes that arrive after a side's event are returned (they belong to that side's framer).
    """
    ev_a = ev_b = None
    extra_to_a = b""
    extra_to_b = b""
    for _ in range(10_000):
        out_a, out_b = a.data_to_send(), b.data_to_send()
        if not out_a and not out_b:
            break
        for data, dst, is_a in ((out_a, b, False), (out_b, a, True)):
            pieces = [data] if chunk is None else [data[i : i + chunk] for i in range(0, len(data), chunk)]
            for p in pieces:
                if not p:
                    continue
                ev = ev_a if is_a else ev_b
                if ev is not None:
                    if is_a:
                        extra_to_a += p
                    else:
                        extra_to_b += p
                    continue
                dst.receive_data(p)
                ev = dst.next_event()
                if is_a:
                    ev_a = ev
                else:
                    ev_b = ev
    return ev_a, ev_b, extra_to_a, extra_to_b


def test_timeouts_are_documented_constants():
    assert (HEADER_TIMEOUT, READ_TIMEOUT, HEARTBEAT_INTERVAL) == (10.0, 60.0, 30.0)


@pytest.mark.parametrize("password", [None, b"secret", b""], ids=["plain", "encrypted", "empty-password"])
@pytest.mark.parametrize(
    ("range_a", "range_b", "expected"),
    [((1, 2), (1, 2), 2), ((1, 1), (1, 2), 1), ((1, 2), (1, 1), 1), ((2, 2), (1, 2), 2), ((1, 1), (1, 1), 1)],
)
@pytest.mark.parametrize("a_outbound", [True, False])
@pytest.mark.parametrize("chunk", [None, 1, 7])
def test_pair_completes(password, range_a, range_b, expected, a_outbound, chunk):
    a = make(A, outbound=a_outbound, password=password, min_version=range_a[0], max_version=range_a[1])
    b = make(B, outbound=not a_outbound, password=password, min_version=range_b[0], max_version=range_b[1],
             trusted=True, overlays="sleeve")  # fmt: skip
    ev_a, ev_b, _, _ = run(a, b, chunk)
    assert isinstance(ev_a, HandshakeCompleted), ev_a
    assert isinstance(ev_b, HandshakeCompleted), ev_b
    assert ev_a.version == ev_b.version == expected
    assert ev_a.connection_uid == ev_b.connection_uid == A["conn_id"] ^ B["conn_id"]
    if password is None:
        assert ev_a.session_key is ev_b.session_key is None
    else:
        assert ev_a.session_key == ev_b.session_key
        assert len(ev_a.session_key) == 32
    assert ev_a.remote.name == B["name"] and ev_b.remote.name == A["name"]
    assert ev_a.remote.uid == B["uid"] and ev_b.remote.uid == A["uid"]
    assert ev_a.remote.nickname == "host-b"
    if expected == 2:
        assert ev_a.remote.trusted is True and ev_b.remote.trusted is False
        assert ev_a.remote.overlays == ("sleeve",) and ev_b.remote.overlays == ("fastdp", "sleeve")
        assert ev_a.remote.short_id == 2748
    else:  # V1 keeps only the five safe features
        assert ev_a.remote.trusted is False and ev_a.remote.overlays is None and ev_a.remote.short_id is None
        assert set(ev_a.remote.raw) == {"ConnID", "Name", "NickName", "PeerNameFlavour", "UID"}
    # the framers talk to each other, both ways
    fa, fb = ev_a.framer, ev_b.framer
    assert fa.encrypted == fb.encrypted == (password is not None)
    assert fb.feed(fa.encode(b"\x04gossip") + fa.encode(b"\x00")) == [b"\x04gossip", b"\x00"]
    assert fa.feed(fb.encode(b"\x07\x01\x01")) == [b"\x07\x01\x01"]
    # done is done
    assert a.next_event() is None
    with pytest.raises(LocalProtocolError):
        a.receive_data(b"more")


def test_header_is_sent_immediately_and_nothing_else():
    a = make(A, outbound=True, password=b"pw")
    assert a.data_to_send() == HEADER_V12
    assert a.data_to_send() == b""
    assert a.next_event() is None
    a.receive_data(HEADER_V12)
    assert a.data_to_send() == b"\x01" + a.public_key  # flag and key only after their header
    assert a.next_event() is None


def test_messages_pipelined_with_the_intro_reach_the_framer():
    a = make(A, outbound=True, password=b"pw")
    b = make(B, outbound=False, password=b"pw")
    a_header, b_header = a.data_to_send(), b.data_to_send()
    a.receive_data(b_header)
    b.receive_data(a_header + a.data_to_send())  # a's header, flag and key
    a.receive_data(b.data_to_send())  # b's flag, key and features
    ev_a = a.next_event()
    assert isinstance(ev_a, HandshakeCompleted)
    burst = a.data_to_send() + ev_a.framer.encode(b"\x00") + ev_a.framer.encode(b"\x04x")
    b.receive_data(burst)
    ev_b = b.next_event()
    assert isinstance(ev_b, HandshakeCompleted)
    assert ev_b.framer.buffered > 0
    assert ev_b.framer.feed(b"") == [b"\x00", b"\x04x"]


@pytest.mark.parametrize("version", [1, 2])
def test_password_presence_mismatch(version):
    a = make(A, outbound=True, password=b"pw", max_version=version)
    b = make(B, outbound=False, password=None, max_version=version)
    ev_a, ev_b, _, _ = run(a, b)
    assert isinstance(ev_a, HandshakeFailed) and isinstance(ev_b, HandshakeFailed)
    assert str(ev_a.error) == "password specified, but peer requested an unencrypted connection"
    assert str(ev_b.error) == "no password specificed, but peer requested an encrypted connection"
    assert ev_a.error.retry and isinstance(ev_a.error, HandshakeError)
    with pytest.raises(LocalProtocolError):
        a.receive_data(b"x")


def test_wrong_password_v2_fails_on_the_features_frame():
    a = make(A, outbound=True, password=b"pw1")
    b = make(B, outbound=False, password=b"pw2")
    ev_a, ev_b, _, _ = run(a, b)
    for ev in (ev_a, ev_b):
        assert isinstance(ev, HandshakeFailed)
        assert str(ev.error) == "Unable to decrypt TCP msg"


def test_wrong_password_v1_fails_on_the_first_framed_message():
    a = make(A, outbound=True, password=b"pw1", max_version=1)
    b = make(B, outbound=False, password=b"pw2", max_version=1)
    ev_a, ev_b, _, _ = run(a, b)
    assert isinstance(ev_a, HandshakeCompleted) and isinstance(ev_b, HandshakeCompleted)  # V1 intro is clear
    assert ev_a.session_key != ev_b.session_key
    with pytest.raises(RemoteProtocolError, match=r"^Unable to decrypt TCP msg$"):
        ev_b.framer.feed(ev_a.framer.encode(b"\x00"))


def test_both_sides_outbound_is_a_decryption_failure():
    a = make(A, outbound=True, password=b"pw")
    b = make(B, outbound=True, password=b"pw")
    ev_a, _, _, _ = run(a, b)
    assert isinstance(ev_a, HandshakeFailed) and str(ev_a.error) == "Unable to decrypt TCP msg"


@pytest.mark.parametrize(("ours", "theirs", "ours_err", "theirs_err"), [
    ((2, 2), (1, 1), "remote version range [1,1] is incompatible with ours [2,2]",
     "remote version range [2,2] is incompatible with ours [1,1]"),
])  # fmt: skip
def test_incompatible_versions(ours, theirs, ours_err, theirs_err):
    a = make(A, outbound=True, min_version=ours[0], max_version=ours[1])
    b = make(B, outbound=False, min_version=theirs[0], max_version=theirs[1])
    ev_a, ev_b, _, _ = run(a, b)
    assert str(ev_a.error) == ours_err
    assert str(ev_b.error) == theirs_err


def test_invalid_version_range_is_local_misuse():
    for lo, hi in ((0, 2), (2, 1), (1, 3)):
        with pytest.raises(ValueError):
            make(A, outbound=True, min_version=lo, max_version=hi)


@pytest.mark.parametrize(("flag", "password", "message"), [
    (b"\x02", None, "Bad encryption flag 2"),
    (b"\xff", b"pw", "Bad encryption flag 255"),
    (b"\x01", None, "no password specificed, but peer requested an encrypted connection"),
    (b"\x00", b"pw", "password specified, but peer requested an unencrypted connection"),
])  # fmt: skip
def test_encryption_flag_errors(flag, password, message):
    a = make(A, outbound=True, password=password)
    a.receive_data(HEADER_V12 + flag)
    ev = a.next_event()
    assert isinstance(ev, HandshakeFailed) and str(ev.error) == message


def test_bad_magic_and_partial_header():
    a = make(A, outbound=True)
    a.receive_data(b"HTTP/1")
    assert a.next_event() is None  # Weave reads all 7 bytes before judging
    a.receive_data(b".1 200 OK\r\n")
    ev = a.next_event()
    assert str(ev.error) == "remote protocol header not recognised: [72 84 84 80 47]"


def test_low_order_public_key_v2():
    a = make(A, outbound=True, password=b"pw")
    a.receive_data(HEADER_V12 + b"\x01" + bytes(32))
    ev = a.next_event()
    assert isinstance(ev, HandshakeFailed)
    assert "invalid remote public key" in str(ev.error)


def v2_features_frame(features: dict[str, str]) -> bytes:
    gob = Encoder().encode(FEATURES, features)
    return len(gob).to_bytes(4, "big") + gob


GOOD = {"PeerNameFlavour": "mac", "Name": "ce:12:34:56:78:02", "NickName": "b", "UID": "5", "ConnID": "3"}


@pytest.mark.parametrize(("change", "message"), [
    ({"Name": "bogus"}, 'invalid peer name format: "bogus"'),
    ({"UID": "-1"}, 'strconv.ParseUint: parsing "-1": invalid syntax'),
    ({"UID": "18446744073709551616"},
     'strconv.ParseUint: parsing "18446744073709551616": value out of range'),
    ({"ConnID": ""}, 'strconv.ParseUint: parsing "": invalid syntax'),
    ({"ShortID": "12a"}, 'strconv.ParseUint: parsing "12a": invalid syntax'),
    ({"ShortID": "40960x"}, 'strconv.ParseUint: parsing "40960x": value out of range'),
    ({"Trusted": "yes"}, 'strconv.ParseBool: parsing "yes": invalid syntax'),
    ({"NickName": None}, "field NickName is missing"),
    ({"PeerNameFlavour": None, "UID": None}, "field PeerNameFlavour is missing"),
])  # fmt: skip
def test_feature_errors_through_handshake(change, message):
    features = dict(GOOD)
    for k, v in change.items():
        if v is None:
            del features[k]
        else:
            features[k] = v
    a = make(A, outbound=True)
    a.receive_data(HEADER_V12 + b"\x00" + v2_features_frame(features))
    ev = a.next_event()
    assert isinstance(ev, HandshakeFailed), ev
    assert str(ev.error) == message


def test_features_parsing_details():
    r = parse_features({**GOOD, "Trusted": "T", "ShortID": "4095", "Overlays": "", "Extra": "kept"})
    assert isinstance(r, RemoteFeatures)
    assert r.trusted is True and r.short_id == 4095 and r.overlays == ("",) and r.raw["Extra"] == "kept"
    with pytest.raises(TypeError):
        r.raw["x"] = "y"  # type: ignore[index]
    assert hash(r) == hash(parse_features({**GOOD, "Trusted": "T", "ShortID": "4095", "Overlays": ""}))
    for text in ("1", "t", "T", "TRUE", "true", "True"):
        assert parse_bool(text) is True
    for text in ("0", "f", "F", "FALSE", "false", "False"):
        assert parse_bool(text) is False
    for text in ("", "tRUE", "yes", " true"):
        with pytest.raises(HandshakeError):
            parse_bool(text)
    assert parse_uint("0", 12) == 0 and parse_uint("18446744073709551615", 64) == 2**64 - 1


def test_v1_public_key_errors():
    def v1_intro(features: dict[str, str]) -> HandshakeFailed | HandshakeCompleted | None:
        a = make(A, outbound=True, password=b"pw", max_version=1)
        a.receive_data(b"weave\x01\x01" + Encoder().encode(FEATURES, features))
        return a.next_event()

    ev = v1_intro({**GOOD, "PublicKey": "zz"})
    assert str(ev.error) == "encoding/hex: invalid byte: U+007A 'z'"
    ev = v1_intro({**GOOD, "PublicKey": "abc"})
    assert str(ev.error) == "encoding/hex: odd length hex string"
    ev = v1_intro({**GOOD, "PublicKey": "ab\x01"})
    assert str(ev.error) == "encoding/hex: invalid byte: U+0001"
    ev = v1_intro({**GOOD, "PublicKey": ""})  # zero-padded to all zeros: a low-order point
    assert isinstance(ev, HandshakeFailed) and "invalid remote public key" in str(ev.error)
    ev = v1_intro({**GOOD, "PublicKey": "09"})  # Go zero-pads short keys: 09 00.. is the base point
    assert isinstance(ev, HandshakeCompleted)
    assert ev.session_key is not None
    ev = v1_intro(GOOD)
    assert str(ev.error) == "password specified, but peer requested an unencrypted connection"


def test_v2_features_frame_cap():
    a = make(A, outbound=True)
    a.receive_data(HEADER_V12 + b"\x00" + (MAX_FEATURES_SIZE + 1).to_bytes(4, "big"))
    ev = a.next_event()
    assert str(ev.error) == f"incoming features message exceeds maximum size: {MAX_FEATURES_SIZE + 1} > 65536"
    a = make(A, outbound=True)
    a.receive_data(HEADER_V12 + b"\x00" + (10 * 1024 * 1024 + 1).to_bytes(4, "big"))
    assert str(a.next_event().error) == "incoming message exceeds maximum size: 10485761 > 10485760"


def test_v2_empty_and_garbage_features():
    a = make(A, outbound=True)
    a.receive_data(HEADER_V12 + b"\x00" + bytes(4))
    assert str(a.next_event().error) == "EOF"
    a = make(A, outbound=True)
    a.receive_data(HEADER_V12 + b"\x00" + b"\x00\x00\x00\x03\xff\xff\xff")
    assert isinstance(a.next_event(), HandshakeFailed)


def gob_map_definition(type_id: int) -> bytes:
    """A valid gob definition message of an unnamed map[string]string with the given id (SPEC §2.4)."""

    def uint(n: int) -> bytes:
        if n < 128:
            return bytes((n,))
        raw = n.to_bytes((n.bit_length() + 7) // 8, "big")
        return bytes((256 - len(raw),)) + raw

    def sint(i: int) -> bytes:
        return uint(i * 2 if i >= 0 else (~i) * 2 + 1)

    body = sint(-type_id) + b"\x04\x01\x02" + sint(type_id) + b"\x00\x01\x0c\x01\x0c\x00\x00"
    return uint(len(body)) + body


@pytest.mark.parametrize("attack", ["v2-slow-frame", "v1-endless-definitions", "v1-huge-message", "slow-header"])
def test_buffering_is_bounded(attack):
    """Whatever a peer sends before its features complete, we hold at most MAX_FEATURES_SIZE-ish bytes."""
    if attack == "v2-slow-frame":
        a = make(A, outbound=True)
        stream = HEADER_V12 + b"\x00" + MAX_FEATURES_SIZE.to_bytes(4, "big") + b"\xaa" * (MAX_FEATURES_SIZE + 100)
    elif attack == "v1-endless-definitions":
        a = make(A, outbound=True, max_version=1)
        stream = b"weave\x01\x01" + b"".join(gob_map_definition(i) for i in range(65, 65 + 20000))
    elif attack == "v1-huge-message":
        a = make(A, outbound=True, max_version=1)
        stream = b"weave\x01\x01" + b"\xfc\x10\x00\x00\x00" + b"\x00" * (MAX_FEATURES_SIZE + 100)
    else:
        a = make(A, outbound=True)
        stream = b"weav"
    fed = 0
    ev = None
    for i in range(0, len(stream), 1000):
        a.receive_data(stream[i : i + 1000])
        fed += len(stream[i : i + 1000])
        assert a.buffered <= MAX_FEATURES_SIZE + 64 + 1000
        ev = a.next_event()
        if ev is not None:
            break
    if attack == "slow-header":
        assert ev is None and a.buffered == 4
    else:
        assert isinstance(ev, HandshakeFailed)
        assert fed <= MAX_FEATURES_SIZE + 2000



@pytest.mark.parametrize(
    ("received", "message"),
    [
        (b"", "failed to receive remote protocol header: EOF"),
        (
            b"wea",
            "received incomplete remote protocol header (3 octets instead of 7): [119 101 97]; error: unexpected EOF",
        ),
        (HEADER_V12, "EOF"),
        (HEADER_V12 + b"\x00", "EOF"),
        (HEADER_V12 + b"\x00\x00\x00", "unexpected EOF"),
        (HEADER_V12 + b"\x00\x00\x00\x00\x10", "EOF"),
        (HEADER_V12 + b"\x00\x00\x00\x00\x10abc", "unexpected EOF"),
        (b"weave\x01\x01", "EOF"),
        (b"weave\x01\x01\x0e", "unexpected EOF"),
    ],
)
def test_eof_during_intro(received, message):
    a = make(A, outbound=True)
    a.receive_data(received)
    assert a.next_event() is None
    a.receive_eof()
    ev = a.next_event()
    assert isinstance(ev, HandshakeFailed) and str(ev.error) == message
    with pytest.raises(LocalProtocolError):
        a.receive_eof()
