"""The handshake features map: what we tell a peer about ourselves, and what we make of what it tells us.

SPEC §3.3 / §3.6. The map is a gob ``map[string]string``; Go writes map entries in random order, so receivers
accept any order, and we emit a fixed order (the one captured in the golden vectors) so that our bytes can be
compared with them. Parsing reproduces Weave's checks in Weave's order and with Weave's error texts, because
those texts end up in ``weave status connections`` and in logs that users compare across mixed clusters.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from types import MappingProxyType

from weavenet.core.names import MAX_SHORT_ID, PEER_NAME_FLAVOUR, SHORT_ID_BITS, PeerName
from weavenet.errors import ConfigError, HandshakeError
from weavenet.gocompat import go_quote

# Keys, in the order we emit them (V2, SPEC §3.3).
PEER_NAME_FLAVOUR_KEY = "PeerNameFlavour"
NAME_KEY = "Name"
NICKNAME_KEY = "NickName"
SHORT_ID_KEY = "ShortID"
UID_KEY = "UID"
CONN_ID_KEY = "ConnID"
TRUSTED_KEY = "Trusted"
OVERLAYS_KEY = "Overlays"
PUBLIC_KEY_KEY = "PublicKey"  # V1 only: hex public key, its presence plays the role of the V2 encryption flag
# weavenet's extension keys (Go ignores keys it does not know)
LIVENESS_FEATURE = "WeavenetLiveness"  # lean liveness: small heartbeats, asks when one is late (core/contact.py)

# Checked by the receiver, in this order ("field X is missing").
REQUIRED_KEYS = (PEER_NAME_FLAVOUR_KEY, NAME_KEY, NICKNAME_KEY, UID_KEY, CONN_ID_KEY)
# The only keys a V1 connection sends or keeps (they travel unencrypted), in the order of the vectors.
V1_KEYS = (CONN_ID_KEY, NAME_KEY, NICKNAME_KEY, PEER_NAME_FLAVOUR_KEY, UID_KEY)

_U64_MAX = (1 << 64) - 1


@dataclass(frozen=True, slots=True)
class RemoteFeatures:
    """What the remote peer told us about itself in the intro.

    ``trusted`` is whether the *remote* trusts *us* (its ``Trusted`` feature); ``overlays`` is ``None`` for a
    legacy peer that sent no ``Overlays`` feature (sleeve with raw control tags, SPEC §4.3). ``raw`` keeps the
    whole received map (filtered for V1) for overlay negotiation and diagnostics.
    """

    name: PeerName
    nickname: str
    uid: int
    conn_id: int
    short_id: int | None
    trusted: bool
    overlays: tuple[str, ...] | None
    raw: Mapping[str, str] = field(hash=False)


def build_features(
    *,
    name: int,
    nickname: str,
    uid: int,
    conn_id: int,
    short_id: int | None,
    trusted: bool,
    overlays: str | None,
    extra: dict[str, str] | None = None,
) -> dict[str, str]:
    """Our V2 features map (Weave's ``makeFeatures`` + the overlay switch's ``Overlays``), in vector order.

    ``trusted`` is whether we consider the remote's address to be inside our trusted subnets; ``short_id`` is
    omitted when we have none; ``overlays`` (e.g. ``"fastdp sleeve"``) is omitted when ``None``.
    """
    if not 0 <= uid <= _U64_MAX:
        raise ValueError(f"UID out of range: {uid}")
    if not 0 <= conn_id <= _U64_MAX:
        raise ValueError(f"ConnID out of range: {conn_id}")
    features = {
        PEER_NAME_FLAVOUR_KEY: PEER_NAME_FLAVOUR,
        NAME_KEY: str(PeerName(name)),
        NICKNAME_KEY: nickname,
    }
    if short_id is not None:
        if not 0 <= short_id <= MAX_SHORT_ID:
            raise ValueError(f"short ID out of range: {short_id}")
        features[SHORT_ID_KEY] = str(short_id)
    features[UID_KEY] = str(uid)
    features[CONN_ID_KEY] = str(conn_id)
    features[TRUSTED_KEY] = "true" if trusted else "false"
    if overlays is not None:
        features[OVERLAYS_KEY] = overlays
    for key, value in (extra or {}).items():
        features.setdefault(key, value)  # extensions Go peers ignore; never override a standard key
    return features


def filter_v1(features: Mapping[str, str]) -> dict[str, str]:
    """Keep only the V1-safe keys, in vector order (V1 sends the intro unencrypted)."""
    return {k: features[k] for k in V1_KEYS if k in features}


def build_v1_features(features: Mapping[str, str], public_key: bytes | None) -> dict[str, str]:
    """The V1 intro map: the safe subset of ``features`` plus ``PublicKey`` (lowercase hex) if encrypting."""
    out = filter_v1(features)
    if public_key is not None:
        out[PUBLIC_KEY_KEY] = public_key.hex()
    return out


def parse_features(features: Mapping[str, str]) -> RemoteFeatures:
    """Validate and interpret the remote's map; raise ``HandshakeError`` with Weave's message on failure.

    Order of checks as in mesh ``parseFeatures``: required keys, flavour, name, ShortID, Trusted, UID, ConnID.
    """
    for key in REQUIRED_KEYS:
        if key not in features:
            raise HandshakeError(f"field {key} is missing")
    flavour = features[PEER_NAME_FLAVOUR_KEY]
    if flavour != PEER_NAME_FLAVOUR:
        raise HandshakeError(f"Peer name flavour mismatch (ours: '{PEER_NAME_FLAVOUR}', theirs: '{flavour}')")
    name_text = features[NAME_KEY]
    try:
        name = PeerName.parse(name_text)
    except (ConfigError, ValueError):
        raise HandshakeError(f"invalid peer name format: {go_quote(name_text)}") from None
    short_id: int | None = None
    if SHORT_ID_KEY in features:
        short_id = parse_uint(features[SHORT_ID_KEY], SHORT_ID_BITS)
    trusted = False
    if TRUSTED_KEY in features:
        trusted = parse_bool(features[TRUSTED_KEY])
    uid = parse_uint(features[UID_KEY], 64)
    conn_id = parse_uint(features[CONN_ID_KEY], 64)
    overlays = tuple(features[OVERLAYS_KEY].split(" ")) if OVERLAYS_KEY in features else None
    return RemoteFeatures(
        name=name,
        nickname=features[NICKNAME_KEY],
        uid=uid,
        conn_id=conn_id,
        short_id=short_id,
        trusted=trusted,
        overlays=overlays,
        raw=MappingProxyType(dict(features)),
    )


# --- Go strconv semantics -----------------------------------------------------------------------------------


def parse_uint(text: str, bits: int) -> int:
    """Go ``strconv.ParseUint(text, 10, bits)``, including which of its two errors wins.

    Go scans left to right and reports "value out of range" at the first digit that overflows, even if an
    invalid character follows, and "invalid syntax" for an empty string, a sign, or any non-digit seen first.
    """
    limit = (1 << bits) - 1
    if text == "":
        raise HandshakeError(f"strconv.ParseUint: parsing {go_quote(text)}: invalid syntax")
    n = 0
    for ch in text:
        if not "0" <= ch <= "9":
            raise HandshakeError(f"strconv.ParseUint: parsing {go_quote(text)}: invalid syntax")
        n = n * 10 + (ord(ch) - 48)
        if n > limit:
            raise HandshakeError(f"strconv.ParseUint: parsing {go_quote(text)}: value out of range")
    return n


_TRUE = frozenset(("1", "t", "T", "TRUE", "true", "True"))
_FALSE = frozenset(("0", "f", "F", "FALSE", "false", "False"))


def parse_bool(text: str) -> bool:
    """Go ``strconv.ParseBool``."""
    if text in _TRUE:
        return True
    if text in _FALSE:
        return False
    raise HandshakeError(f"strconv.ParseBool: parsing {go_quote(text)}: invalid syntax")


def go_hex_decode(text: str) -> bytes:
    """Go ``hex.DecodeString`` with its error texts (``encoding/hex: invalid byte: U+0067 'g'``, odd length).

    Used for the V1 ``PublicKey`` feature. Go walks the string's bytes in pairs and reports the first invalid
    byte before complaining about an odd length.
    """
    raw = text.encode("utf-8", "surrogateescape")
    digits = b"0123456789abcdefABCDEF"

    def bad(b: int) -> HandshakeError:
        ch = chr(b)
        shown = f" '{ch}'" if ch.isprintable() else ""
        return HandshakeError(f"encoding/hex: invalid byte: U+{b:04X}{shown}")

    pairs = len(raw) // 2 * 2
    for i in range(0, pairs, 2):
        if raw[i] not in digits:
            raise bad(raw[i])
        if raw[i + 1] not in digits:
            raise bad(raw[i + 1])
    if len(raw) % 2:
        if raw[-1] not in digits:
            raise bad(raw[-1])
        raise HandshakeError("encoding/hex: odd length hex string")
    return bytes.fromhex(raw.decode("ascii"))
