"""The fast sleeve's ciphers, straight from libsodium, into preallocated buffers.

Two AEADs seal a super-frame. **secretbox** (XSalsa20-Poly1305, Weave's cipher) under the session key, spoken by
every weavenet peer. **AEGIS-256** under a key derived from the session key, negotiated when both peers have it
and the CPU has AES instructions: measured on this project's 2-core test machine, sealing a 64 KB super-frame
takes 7 µs against 85 µs for secretbox, and a super-frame is sealed once and opened once per hop, so secretbox
alone cost more CPU than all the rest of the encrypted sleeve. The classic (Go-compatible) format never uses it.

PyNaCl's ``crypto_secretbox`` wrapper copies the message twice (to add and strip the legacy zero padding); on
64 KB super-frames those copies cost as much as the cipher. The ``_easy`` / AEAD functions of the same libsodium,
called with buffers we own, produce the same bytes (for secretbox: MAC ‖ ciphertext, Weave's layout) without them.
"""

from __future__ import annotations

from typing import Protocol

from nacl._sodium import ffi, lib
from nacl.bindings import sodium_init
from nacl.encoding import RawEncoder
from nacl.hash import blake2b

from weavenet.core.sleeve_cipher import AEGIS256, SECRETBOX

MAC = 16
AEGIS_TAG = 32
NONCE = 24  # what fastwire.nonce gives; AEGIS-256 takes 32 bytes, the rest zero
_AEGIS_LABEL = b"weavenet fast sleeve aegis-256 v1"

sodium_init()


def aegis_available() -> bool:
    """AEGIS-256 is offered only where it is fast: a libsodium that has it and a CPU with AES instructions."""
    return hasattr(lib, "crypto_aead_aegis256_encrypt") and bool(lib.crypto_aead_aes256gcm_is_available())


def cipher_key(cipher: str, session_key: bytes) -> bytes:
    """The key a cipher uses on a link: secretbox the session key itself, AEGIS-256 one derived from it (BLAKE2b
    keyed by the session key over a label), so no key ever serves two algorithms."""
    if cipher == AEGIS256:
        return blake2b(_AEGIS_LABEL, digest_size=32, key=session_key, encoder=RawEncoder)
    return session_key


class Cipher(Protocol):
    overhead: int

    @property
    def buffer(self) -> bytearray: ...

    def seal(self, message: bytes | bytearray | memoryview, nonce: bytes, key: bytes) -> memoryview: ...

    def open(self, sealed: bytes | bytearray | memoryview, nonce: bytes, key: bytes) -> memoryview | None: ...


class _Buffered:
    overhead = MAC

    def __init__(self, capacity: int = 70000) -> None:
        self._out = bytearray(capacity + self.overhead)

    def _room(self, n: int) -> bytearray:
        if n > len(self._out):
            self._out = bytearray(n)
        return self._out

    @property
    def buffer(self) -> bytearray:
        """The buffer the last ``seal`` / ``open`` wrote into (valid until the next call)."""
        return self._out


class Sealer(_Buffered):
    """secretbox: seals into an internal buffer that is reused; the result is valid until the next call."""

    def seal(self, message: bytes | bytearray | memoryview, nonce: bytes, key: bytes) -> memoryview:
        n = len(message)
        out = self._room(n + MAC)
        rc = lib.crypto_secretbox_easy(ffi.from_buffer(out), ffi.from_buffer(message), n, nonce, key)
        if rc != 0:
            raise ValueError("secretbox failed")
        return memoryview(out)[: n + MAC]

    def open(self, sealed: bytes | bytearray | memoryview, nonce: bytes, key: bytes) -> memoryview | None:
        """The plaintext (a view into the buffer), or None if the MAC does not verify."""
        n = len(sealed) - MAC
        if n < 0:
            return None
        out = self._room(n + MAC)
        rc = lib.crypto_secretbox_open_easy(ffi.from_buffer(out), ffi.from_buffer(sealed), n + MAC, nonce, key)
        return None if rc != 0 else memoryview(out)[:n]


class Aegis256(_Buffered):
    """AEGIS-256: ciphertext ‖ 32-byte tag, nonce = the fast format's 24 bytes ‖ 8 zero bytes."""

    overhead = AEGIS_TAG

    def __init__(self, capacity: int = 70000) -> None:
        super().__init__(capacity)
        self._len = ffi.new("unsigned long long *")

    def seal(self, message: bytes | bytearray | memoryview, nonce: bytes, key: bytes) -> memoryview:
        n = len(message)
        out = self._room(n + AEGIS_TAG)
        rc = lib.crypto_aead_aegis256_encrypt(
            ffi.from_buffer(out), self._len, ffi.from_buffer(message), n, ffi.NULL, 0, ffi.NULL, nonce + bytes(8), key
        )
        if rc != 0:
            raise ValueError("aegis256 failed")
        return memoryview(out)[: n + AEGIS_TAG]

    def open(self, sealed: bytes | bytearray | memoryview, nonce: bytes, key: bytes) -> memoryview | None:
        n = len(sealed) - AEGIS_TAG
        if n < 0:
            return None
        out = self._room(n + AEGIS_TAG)
        rc = lib.crypto_aead_aegis256_decrypt(
            ffi.from_buffer(out),
            self._len,
            ffi.NULL,
            ffi.from_buffer(sealed),
            n + AEGIS_TAG,
            ffi.NULL,
            0,
            nonce + bytes(8),
            key,
        )
        return None if rc != 0 else memoryview(out)[:n]


def overhead(cipher: str) -> int:
    """Bytes a cipher adds to what it seals (its tag)."""
    return AEGIS_TAG if cipher == AEGIS256 else MAC


def make(cipher: str) -> Cipher:
    if cipher == AEGIS256:
        return Aegis256()
    if cipher == SECRETBOX:
        return Sealer()
    raise ValueError(f"unknown fast sleeve cipher {cipher!r}")
