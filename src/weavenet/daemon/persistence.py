"""The router's persistent state: one SQLite file in the state directory.

Weave kept a BoltDB file whose values are gob encodings (peer name, IPAM ring, owned addresses, direct peers,
flags). We keep the same keys and the same gob values in a key/value table of an SQLite database from the
standard library, so the data can be converted either way and the golden vectors of Weave's file apply to ours.
Every write is one transaction; SQLite's journal makes it atomic, so a crash never leaves half a value.
"""

from __future__ import annotations

import os
import sqlite3
from pathlib import Path

from weavenet.core.codec.gob import STRING, UINT, Named, Slice, decode_stream, encode_stream

DB_FILENAME = "weave-netdata.sqlite"
SCHEMA_VERSION = b"\x01\x00"  # (major, minor), as Weave's "version" key

NAME_KEY = "peername"
DIRECT_PEERS_KEY = "directPeers"
VERSION_KEY = "version"

PEER_NAME = Named(UINT, "PeerName", go="mesh.PeerName")
STRINGS = Slice(STRING, go="[]string")


class StoreError(Exception):
    """The state file can't be used (wrong version, unreadable)."""


class Store:
    """A small durable key/value store of gob-encoded values."""

    def __init__(self, state_dir: str | os.PathLike[str]) -> None:
        self.path = Path(state_dir) / DB_FILENAME
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self._db = sqlite3.connect(self.path, isolation_level=None, check_same_thread=False)
        self._db.execute("PRAGMA journal_mode=WAL")
        self._db.execute("PRAGMA synchronous=FULL")
        self._db.execute("CREATE TABLE IF NOT EXISTS top (key TEXT PRIMARY KEY, value BLOB NOT NULL)")
        version = self.get_raw(VERSION_KEY)
        if version is None:
            self.set_raw(VERSION_KEY, SCHEMA_VERSION)
        elif version[:1] != SCHEMA_VERSION[:1]:
            raise StoreError(f"{self.path}: unsupported data version {version.hex()}")

    def close(self) -> None:
        self._db.close()

    def get_raw(self, key: str) -> bytes | None:
        row = self._db.execute("SELECT value FROM top WHERE key = ?", (key,)).fetchone()
        return bytes(row[0]) if row else None

    def set_raw(self, key: str, value: bytes) -> None:
        with self._db:
            self._db.execute("BEGIN IMMEDIATE")
            self._db.execute("INSERT OR REPLACE INTO top (key, value) VALUES (?, ?)", (key, value))

    def set_many_raw(self, items: dict[str, bytes]) -> None:
        """Write several values in one transaction (all or nothing)."""
        with self._db:
            self._db.execute("BEGIN IMMEDIATE")
            self._db.executemany("INSERT OR REPLACE INTO top (key, value) VALUES (?, ?)", list(items.items()))

    def delete(self, key: str) -> None:
        with self._db:
            self._db.execute("BEGIN IMMEDIATE")
            self._db.execute("DELETE FROM top WHERE key = ?", (key,))

    def keys(self) -> list[str]:
        return [r[0] for r in self._db.execute("SELECT key FROM top ORDER BY key")]

    # -- typed accessors ----------------------------------------------------------------------------------------

    def load_peer_name(self) -> int | None:
        raw = self.get_raw(NAME_KEY)
        return None if raw is None else int(decode_stream(raw, [PEER_NAME])[0])

    def save_peer_name(self, name: int) -> None:
        self.set_raw(NAME_KEY, encode_stream([(PEER_NAME, name)]))

    def load_direct_peers(self) -> list[str]:
        raw = self.get_raw(DIRECT_PEERS_KEY)
        return [] if raw is None else list(decode_stream(raw, [STRINGS])[0])

    def save_direct_peers(self, peers: list[str]) -> None:
        self.set_raw(DIRECT_PEERS_KEY, encode_stream([(STRINGS, list(peers))]))


def state_exists(state_dir: str | os.PathLike[str]) -> bool:
    """Is there a router's state (it was launched and not reset)?"""
    return (Path(state_dir) / DB_FILENAME).exists()


def remove_state(state_dir: str | os.PathLike[str]) -> None:
    """Delete the state file and its journal (``weave reset``)."""
    base = Path(state_dir) / DB_FILENAME
    for suffix in ("", "-wal", "-shm", "-journal"):
        p = Path(str(base) + suffix)
        if p.exists():
            p.unlink()
