"""NaCl primitives shared by the TCP control plane and the sleeve data plane.

Weave encrypts with NaCl ``secretbox`` (XSalsa20-Poly1305) under a per-connection session key that both ends
derive from an ephemeral X25519 exchange and the shared password (SPEC §3.4). The wire form of a sealed box is
``16-byte Poly1305 tag ‖ ciphertext`` (Go ``secretbox.Seal``), which is exactly libsodium's "easy" combined
mode, so no padding juggling is needed.

``seal``/``open_`` run for every TCP message and every encrypted sleeve packet, so they call libsodium
directly through PyNaCl's cffi handle when it is available (about 1.3-1.5x the speed of ``nacl.bindings`` and
2x the ``nacl.secret.SecretBox`` wrapper for small messages: they skip the per-call argument validation,
padding concatenation and double copy). PyNaCl's ``_sodium`` module is private, so the fast path is verified
against ``nacl.bindings`` at import time and we silently fall back to the bindings if anything about it
differs. Because the raw C calls trust their buffer sizes, every public entry point here checks key and nonce
lengths itself.
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable

import nacl.bindings as _nb
import nacl.exceptions as _nacl_exc

from weavenet.errors import RemoteProtocolError

KEY_SIZE = 32
NONCE_SIZE = 24
OVERHEAD = 16  # Poly1305 tag prepended by secretbox
PUBLIC_KEY_SIZE = 32
PRIVATE_KEY_SIZE = 32

TCP_NONCE_FLAG = 0x40  # bit 6 of nonce byte 0: "this is a TCP message" (keeps TCP and sleeve nonces disjoint)
OUTBOUND_NONCE_FLAG = 0x80  # bit 7 of nonce byte 0: the sender is the side that dialled the connection
SLEEVE_DF_FLAG = 1 << 63  # bit 63 of a sleeve seqNoAndDF: packet went on the DF (PMTU-probing) path

DECRYPT_ERROR = "Unable to decrypt TCP msg"

_ZERO15 = bytes(15)
_U64_MAX = (1 << 64) - 1


def generate_keypair(private: bytes | None = None) -> tuple[bytes, bytes]:
    """Return ``(private, public)`` X25519 keys; a fresh random private key unless one is given (tests).

    Key material deliberately comes from libsodium's CSPRNG, not from an injected ``random.Random``: these
    keys protect traffic, and tests that need determinism pass ``private`` explicitly.
    """
    if private is None:
        private = _nb.randombytes(PRIVATE_KEY_SIZE)
    elif len(private) != PRIVATE_KEY_SIZE:
        raise ValueError(f"private key must be {PRIVATE_KEY_SIZE} bytes, got {len(private)}")
    return bytes(private), _nb.crypto_scalarmult_base(bytes(private))


def session_key(our_private: bytes, their_public: bytes, password: bytes) -> bytes:
    """``SHA-256(box.beforenm(their_public, our_private) ‖ password)`` (SPEC §3.4).

    A public key that is a low-order point makes libsodium refuse the exchange (Go's ``box.Precompute`` does
    not check, but the resulting key would depend on the password alone); that is reported as a
    ``RemoteProtocolError`` because the public key always comes off the wire.
    """
    if len(our_private) != PRIVATE_KEY_SIZE:
        raise ValueError(f"private key must be {PRIVATE_KEY_SIZE} bytes, got {len(our_private)}")
    if len(their_public) != PUBLIC_KEY_SIZE:
        raise RemoteProtocolError(f"remote public key must be {PUBLIC_KEY_SIZE} bytes, got {len(their_public)}")
    try:
        shared = _nb.crypto_box_beforenm(bytes(their_public), bytes(our_private))
    except _nacl_exc.CryptoError as e:
        raise RemoteProtocolError("invalid remote public key (low-order point)") from e
    return hashlib.sha256(shared + bytes(password)).digest()


def tcp_nonce_prefix(outbound_sender: bool) -> bytes:
    """The constant first 16 bytes of every TCP nonce used by one sender."""
    return bytes((TCP_NONCE_FLAG | (OUTBOUND_NONCE_FLAG if outbound_sender else 0),)) + _ZERO15


def tcp_nonce(outbound_sender: bool, seq: int) -> bytes:
    """TCP message nonce (SPEC §3.5): flags in byte 0, the sender's sequence number (BE) in bytes 16..23.

    ``outbound_sender`` is the polarity of the *sender* of the message: a receiver passes the opposite of its
    own ``outbound``.
    """
    if not 0 <= seq <= _U64_MAX:
        raise ValueError(f"sequence number out of range: {seq}")
    return tcp_nonce_prefix(outbound_sender) + seq.to_bytes(8, "big")


def sleeve_nonce(outbound_sender: bool, seq_and_df: int) -> bytes:
    """Sleeve UDP nonce (SPEC §7.2): the TCP layout with bit 6 clear; bytes 16..23 = ``seqNoAndDF``."""
    if not 0 <= seq_and_df <= _U64_MAX:
        raise ValueError(f"seqNoAndDF out of range: {seq_and_df}")
    first = OUTBOUND_NONCE_FLAG if outbound_sender else 0
    return bytes((first,)) + _ZERO15 + seq_and_df.to_bytes(8, "big")


# --- secretbox ----------------------------------------------------------------------------------------------


def _bindings_seal(message: bytes, nonce: bytes, key: bytes) -> bytes:
    return _nb.crypto_secretbox(message, nonce, key)


def _bindings_open(box: bytes, nonce: bytes, key: bytes) -> bytes | None:
    if len(box) < OVERHEAD:
        return None
    try:
        return _nb.crypto_secretbox_open(box, nonce, key)
    except _nacl_exc.CryptoError:
        return None


def _make_fast() -> tuple[Callable[[bytes, bytes, bytes], bytes], Callable[[bytes, bytes, bytes], bytes | None]]:
    """Direct libsodium calls via PyNaCl's cffi handle (see module docstring); raise if unavailable."""
    from nacl._sodium import ffi, lib  # private module: guarded by the caller

    new = ffi.new
    buffer = ffi.buffer
    c_seal = lib.crypto_secretbox_easy
    c_open = lib.crypto_secretbox_open_easy

    def fast_seal(message: bytes, nonce: bytes, key: bytes) -> bytes:
        mlen = len(message)
        out = new("unsigned char[]", mlen + OVERHEAD)
        c_seal(out, message, mlen, nonce, key)
        sealed: bytes = buffer(out)[:]
        return sealed

    def fast_open(box: bytes, nonce: bytes, key: bytes) -> bytes | None:
        blen = len(box)
        if blen < OVERHEAD:
            return None
        out = new("unsigned char[]", blen - OVERHEAD + 1)  # +1: ffi.new of size 0 is legal but keep it simple
        if c_open(out, box, blen, nonce, key) != 0:
            return None
        opened: bytes = buffer(out, blen - OVERHEAD)[:]
        return opened

    # Self-test against the public bindings before trusting the private handle.
    k, n = bytes(range(32)), bytes(range(24))
    for m in (b"", b"x", bytes(range(200))):
        sealed = fast_seal(m, n, k)
        if sealed != _nb.crypto_secretbox(m, n, k) or fast_open(sealed, n, k) != m:
            raise RuntimeError("libsodium fast path disagrees with nacl.bindings")
    if fast_open(b"\x00" * 17, n, k) is not None:
        raise RuntimeError("libsodium fast path accepted a forged box")
    return fast_seal, fast_open


try:
    _seal_impl, _open_impl = _make_fast()
    FAST_SECRETBOX = True
except Exception:  # ImportError, AttributeError, RuntimeError: any doubt means the safe path
    _seal_impl, _open_impl = _bindings_seal, _bindings_open
    FAST_SECRETBOX = False


def _check(nonce: bytes, key: bytes) -> None:
    if len(key) != KEY_SIZE:
        raise ValueError(f"secretbox key must be {KEY_SIZE} bytes, got {len(key)}")
    if len(nonce) != NONCE_SIZE:
        raise ValueError(f"secretbox nonce must be {NONCE_SIZE} bytes, got {len(nonce)}")


def seal(message: bytes, nonce: bytes, key: bytes) -> bytes:
    """NaCl ``secretbox.Seal``: ``tag(16) ‖ ciphertext``."""
    _check(nonce, key)
    return _seal_impl(bytes(message), nonce, key)


def open_(box: bytes, nonce: bytes, key: bytes, error: str = DECRYPT_ERROR) -> bytes:
    """NaCl ``secretbox.Open``; a box too short or failing to authenticate raises ``RemoteProtocolError``.

    ``error`` lets the sleeve reuse this with its own message.
    """
    _check(nonce, key)
    plain = _open_impl(bytes(box), nonce, key)
    if plain is None:
        raise RemoteProtocolError(error)
    return plain


def open_or_none(box: bytes, nonce: bytes, key: bytes) -> bytes | None:
    """Like ``open_`` but returns ``None`` on failure (for the sleeve, which drops bad packets silently)."""
    _check(nonce, key)
    return _open_impl(bytes(box), nonce, key)


# Unchecked variants for the framer's hot loop: it validates key and nonce sizes once, at construction.
seal_unchecked = _seal_impl
open_unchecked = _open_impl
