"""PyNaCl's private ``nacl._sodium`` module, which the fast sleeve ciphers call (``dataplane/fastcrypto.py``,
``core/crypto.py``): the pin in pyproject.toml bounds PyNaCl below 1.7, and this fails loudly, naming what moved,
if an allowed version no longer has what the fast paths use, rather than letting them fall back or break."""

from __future__ import annotations

import importlib.metadata

USED = (
    "crypto_secretbox_easy",
    "crypto_secretbox_open_easy",
    "crypto_aead_aes256gcm_is_available",
)


def test_pynacl_is_within_the_pin() -> None:
    version = tuple(int(p) for p in importlib.metadata.version("pynacl").split(".")[:2])
    assert (1, 6) <= version < (1, 7), f"PyNaCl {version}: the pin in pyproject.toml says >=1.6.2,<1.7"


def test_the_private_module_has_what_the_fast_paths_call() -> None:
    from nacl._sodium import ffi, lib

    missing = [name for name in USED if not hasattr(lib, name)]
    assert not missing, f"nacl._sodium.lib lost {missing}: update dataplane/fastcrypto.py and core/crypto.py"
    assert callable(ffi.new) and callable(ffi.buffer)


def test_the_fast_secretbox_matches_the_public_bindings() -> None:
    from weavenet.core import crypto

    key, nonce = bytes(range(32)), bytes(range(24))
    for message in (b"", b"weave", bytes(range(256)) * 8):
        sealed = crypto.seal(message, nonce, key)
        assert sealed == crypto._bindings_seal(message, nonce, key)
        assert crypto.open_(sealed, nonce, key) == message
    assert crypto._seal_impl is not crypto._bindings_seal, "the fast path is off: nacl._sodium failed its self-test"
