"""Which AEAD seals the fast sleeve's super-frames on an encrypted connection (negotiated in the handshake).

Every weavenet peer speaks secretbox, Weave's cipher; a peer that can also seal with a faster one lists it under
``WeavenetSleeveCiphers`` in its handshake features (Go peers ignore the key, and never see the fast format).
Both ends compute the same answer from the two lists, so no extra round trip is needed.
"""

from __future__ import annotations

from collections.abc import Mapping

SECRETBOX = "secretbox"
AEGIS256 = "aegis256"
CIPHERS_FEATURE = "WeavenetSleeveCiphers"  # comma-separated; secretbox is implied and always there


def negotiate(ours: tuple[str, ...], remote_features: Mapping[str, str]) -> str:
    """The first of our ciphers the remote peer also offers, else secretbox.

    Both peers list the same one cipher today; with several, each would pick its own first, so ``ours`` must be
    in a globally agreed order (fastest first).
    """
    theirs = set(remote_features.get(CIPHERS_FEATURE, "").split(","))
    return next((c for c in ours if c in theirs), SECRETBOX)
