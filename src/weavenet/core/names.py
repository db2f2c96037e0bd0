"""Peer identities: PeerName, UIDs and short IDs.

Port of mesh ``peer_name_mac.go``. A peer name is a 48-bit MAC address held in an integer; its string form is
lowercase ``aa:bb:cc:dd:ee:ff`` and its wire forms are either 6 big-endian bytes (``NameByte``) or a gob uint.
The parser also accepts ``::``-abbreviated forms (``::1``, ``0a::1``), as Weave's does.
"""

from __future__ import annotations

import hashlib

from weavenet.errors import ConfigError

PEER_NAME_FLAVOUR = "mac"
UNKNOWN_PEER_NAME = 0
MAX_PEER_NAME = (1 << 48) - 1
SHORT_ID_BITS = 12
MAX_SHORT_ID = (1 << SHORT_ID_BITS) - 1


class PeerName(int):
    """A 48-bit peer name. Behaves as an int (hashable, ordered) and prints as a MAC."""

    __slots__ = ()

    def __new__(cls, value: int = 0) -> PeerName:
        if not 0 <= value <= MAX_PEER_NAME:
            raise ValueError(f"peer name out of range: {value}")
        return super().__new__(cls, value)

    @classmethod
    def parse(cls, text: str) -> PeerName:
        """Parse ``aa:bb:cc:dd:ee:ff`` or a ``::``-abbreviated form; raise ``ConfigError`` if malformed."""
        value = _parse_mac(text)
        if value is None:
            raise ConfigError(f"invalid peer name: {text!r}")
        return cls(value)

    @classmethod
    def from_bytes6(cls, data: bytes) -> PeerName:
        if len(data) != 6:
            raise ValueError(f"peer name needs 6 bytes, got {len(data)}")
        return cls(int.from_bytes(data, "big"))

    def bytes6(self) -> bytes:
        return int(self).to_bytes(6, "big")

    def __str__(self) -> str:
        return ":".join(f"{b:02x}" for b in self.bytes6())

    def __repr__(self) -> str:
        return f"PeerName('{self}')"


def _parse_mac(text: str) -> int | None:
    def groups(part: str) -> list[int] | None:
        if part == "":
            return []
        out = []
        for g in part.split(":"):
            if not 1 <= len(g) <= 2 or any(c not in "0123456789abcdefABCDEF" for c in g):
                return None
            out.append(int(g, 16))
        return out

    if text.count("::") > 1:
        return None
    if "::" in text:
        left_s, right_s = text.split("::")
        left, right = groups(left_s), groups(right_s)
        if left is None or right is None or len(left) + len(right) > 5:
            return None
        parts = left + [0] * (6 - len(left) - len(right)) + right
    else:
        parsed = groups(text)
        if parsed is None or len(parsed) != 6:
            return None
        parts = parsed
    value = 0
    for p in parts:
        value = (value << 8) | p
    return value


def mac_from_uuid(uuid: bytes) -> PeerName:
    """Weave's ``MACfromUUID``: sha256("9oBJ0Jmip-" + uuid)[:6], made unicast and locally administered."""
    digest = bytearray(hashlib.sha256(b"9oBJ0Jmip-" + uuid).digest()[:6])
    digest[0] = (digest[0] & 0xFE) | 0x02
    return PeerName.from_bytes6(bytes(digest))


def describe(name: int, nickname: str) -> str:
    """``name(nick)``, the way Weave prints a peer everywhere."""
    return f"{PeerName(name)}({nickname})"
