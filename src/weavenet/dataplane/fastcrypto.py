"""XSalsa20-Poly1305 (NaCl secretbox) straight from libsodium, into preallocated buffers.

PyNaCl's ``crypto_secretbox`` wrapper copies the message twice (to add and strip the legacy zero padding); on
64 KB super-frames those copies cost as much as the cipher. The ``_easy`` functions of the same libsodium, called
with buffers we own, produce the same bytes (MAC ‖ ciphertext, Weave's layout) without them.
"""

from __future__ import annotations

from nacl._sodium import ffi, lib

MAC = 16


class Sealer:
    """Seals into an internal buffer that is reused: the result is valid until the next call."""

    def __init__(self, capacity: int = 70000) -> None:
        self._out = bytearray(capacity + MAC)

    def seal(self, message: bytes | bytearray | memoryview, nonce: bytes, key: bytes) -> memoryview:
        n = len(message)
        if n + MAC > len(self._out):
            self._out = bytearray(n + MAC)
        rc = lib.crypto_secretbox_easy(ffi.from_buffer(self._out), ffi.from_buffer(message), n, nonce, key)
        if rc != 0:
            raise ValueError("secretbox failed")
        return memoryview(self._out)[: n + MAC]

    @property
    def buffer(self) -> bytearray:
        """The buffer the last ``seal`` wrote into (its result is ``buffer[:len(message) + MAC]``)."""
        return self._out

    def open(self, sealed: bytes | bytearray | memoryview, nonce: bytes, key: bytes) -> memoryview | None:
        """The plaintext (a view into the buffer), or None if the MAC does not verify."""
        n = len(sealed) - MAC
        if n < 0:
            return None
        if n > len(self._out):
            self._out = bytearray(n + MAC)
        rc = lib.crypto_secretbox_open_easy(ffi.from_buffer(self._out), ffi.from_buffer(sealed), n + MAC, nonce, key)
        return None if rc != 0 else memoryview(self._out)[:n]
