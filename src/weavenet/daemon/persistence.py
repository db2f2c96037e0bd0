"""The router's persistent state: one SQLite file in the state directory.

Weave kept a BoltDB file whose values are gob encodings (peer name, IPAM ring, owned addresses, direct peers,
flags). We keep the same keys and the same gob values in a key/value table of an SQLite database from the
standard library, so the data can be converted either way and the golden vectors of Weave's file apply to ours.
Every write is one transaction; SQLite's journal makes it atomic, so a crash never leaves half a value.

Faults are :class:`StoreError` (a :class:`~weavenet.errors.StateError`) whose message names the file, says what
is wrong and what to do; no ``sqlite3`` or ``gob`` exception leaves this module. A file SQLite cannot read at
all stops the router (its peer name, ring and addresses are unknown, and guessing could hand out addresses in
use); a single unreadable value is the caller's to recover from (``StoreError.key`` says which).

While a launch is under way the store *holds* its writes in memory (:meth:`Store.hold`), and :meth:`Store.flush`
writes them in one transaction once the router is about to serve requests; a launch that fails before then
leaves the file as it found it, and :meth:`Store.discard` removes what opening it created (a fresh file, the
directories made for it).
"""

from __future__ import annotations

import errno
import os
import sqlite3
from collections.abc import Sequence
from pathlib import Path

from weavenet.core.codec.gob import STRING, UINT, Named, Slice, decode_stream, encode_stream
from weavenet.errors import RemoteProtocolError, StateError

DB_FILENAME = "weave-netdata.sqlite"
# Weave's own BoltDB files in the state directory (Kubernetes addon, Docker plugin); ``weave reset`` removes
# them as Weave's did, so a reset router does not import Weave's old state again (see ``daemon.weave_import``)
WEAVE_DB_FILENAMES = ("weave-netdata.db", "weavedata.db")
SCHEMA_VERSION = b"\x01\x00"  # (major, minor), as Weave's "version" key
SUFFIXES = ("", "-wal", "-shm", "-journal")

NAME_KEY = "peername"
DIRECT_PEERS_KEY = "directPeers"
VERSION_KEY = "version"

PEER_NAME = Named(UINT, "PeerName", go="mesh.PeerName")
STRINGS = Slice(STRING, go="[]string")

# What the file holds, for messages.
WHAT = {
    VERSION_KEY: "format version",
    NAME_KEY: "peer name",
    DIRECT_PEERS_KEY: "peers given to launch and connect",
    "ring": "IPAM ring",
    "ownedAddresses": "addresses of this peer's containers",
}


class StoreError(StateError):
    """The state file can't be used: unreadable, a value in it unreadable, or a write refused (disk full)."""

    def __init__(self, message: str, key: str | None = None, reason: str = "") -> None:
        super().__init__(message)
        self.key = key  # set when only this value is unreadable (the rest of the file is fine)
        self.reason = reason or message


def is_full(e: BaseException) -> bool:
    """A write refused for want of space (SQLite's SQLITE_FULL or the OS's ENOSPC/EDQUOT)."""
    if isinstance(e, OSError):
        return e.errno in (errno.ENOSPC, errno.EDQUOT)
    return isinstance(e, sqlite3.Error) and (
        getattr(e, "sqlite_errorcode", None) == sqlite3.SQLITE_FULL or "full" in str(e)
    )


class Store:
    """A small durable key/value store of gob-encoded values."""

    def __init__(self, state_dir: str | os.PathLike[str]) -> None:
        self.path = Path(state_dir) / DB_FILENAME
        self.fresh = not self.path.exists()  # this open creates the file: a failed launch removes it again
        self._made_dirs = [p for p in (self.path.parent, *self.path.parent.parents) if not p.exists()]
        self._held: dict[str, bytes | None] | None = None
        self._db: sqlite3.Connection | None = None
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True)
        except OSError as e:
            raise StoreError(f"cannot create the state directory {self.path.parent}: {e.strerror}") from e
        try:
            self._db = sqlite3.connect(self.path, isolation_level=None, check_same_thread=False)
            # Exclusive: WAL then keeps its index in our memory instead of a shared-memory file, so a full disk
            # still lets the state be read (a ``-shm`` file cannot be grown there: "disk I/O error"); and a
            # second router on the same state directory is refused instead of sharing it.
            self._db.execute("PRAGMA locking_mode=EXCLUSIVE")
            self._db.execute("PRAGMA journal_mode=WAL")
            self._db.execute("PRAGMA synchronous=FULL")
            self._db.execute("CREATE TABLE IF NOT EXISTS top (key TEXT PRIMARY KEY, value BLOB NOT NULL)")
            version = self.get_raw(VERSION_KEY)
            if version is None:
                self.set_raw(VERSION_KEY, SCHEMA_VERSION)
        except (sqlite3.Error, OSError) as e:
            self.discard()
            raise self._failure("open", e) from e
        except StoreError:
            self.discard()
            raise
        if version is not None and version[:1] != SCHEMA_VERSION[:1]:
            self.close()
            raise StoreError(
                f"{self.path}: unsupported data version {version.hex()} (written by another version of weave); "
                "'weave reset' starts afresh"
            )

    # -- errors -------------------------------------------------------------------------------------------------

    def _failure(self, doing: str, e: BaseException) -> StoreError:
        """One line: which file, what is wrong, what to do."""
        reason = e.strerror if isinstance(e, OSError) and e.strerror else str(e)
        code = getattr(e, "sqlite_errorcode", 0) & 0xFF
        if code in (sqlite3.SQLITE_BUSY, sqlite3.SQLITE_LOCKED):
            return StoreError(
                f"the state file {self.path} is in use by another process ({reason}): is weave already running?"
            )
        if is_full(e) or (code == sqlite3.SQLITE_IOERR and self._dir_full()):
            return StoreError(
                f"cannot {doing} the state file {self.path}: {reason}; "
                f"free some space in {self.path.parent} (or launch with another --state-dir)"
            )
        if doing == "write":
            return StoreError(f"cannot write the state file {self.path}: {reason}")
        return StoreError(
            f"the state file {self.path} is unreadable ({reason}): the peer name, peers and IPAM ring and "
            "addresses in it cannot be used. Move the file away to launch with an empty state (the addresses of "
            "attached containers are found again on the bridge), or 'weave reset --force' to start afresh"
        )

    def _dir_full(self) -> bool:
        try:
            return os.statvfs(self.path.parent).f_bavail == 0
        except OSError:
            return False

    def unreadable(self, key: str, reason: str) -> StoreError:
        what = WHAT.get(key, "value")
        return StoreError(f"{self.path}: the saved {what} (key {key!r}) is unreadable: {reason}", key, reason)

    # -- lifecycle ----------------------------------------------------------------------------------------------

    def close(self) -> None:
        if self._db is not None:
            self._db.close()
            self._db = None

    def hold(self) -> None:
        """Keep writes in memory until :meth:`flush` (a launch in progress)."""
        if self._held is None:
            self._held = {}

    def flush(self) -> None:
        """Write what was held, in one transaction, and write through from now on."""
        held, self._held = self._held, None
        if held:
            self._write([(k, v) for k, v in held.items() if v is not None], [k for k, v in held.items() if v is None])

    def discard(self) -> None:
        """Close, and remove what opening the store created: a fresh file and its journal, new directories."""
        self.close()
        self._held = None
        if not self.fresh:
            return
        for suffix in SUFFIXES:
            Path(str(self.path) + suffix).unlink(missing_ok=True)
        for d in self._made_dirs:  # deepest first
            try:
                d.rmdir()
            except OSError:
                break

    # -- raw access ---------------------------------------------------------------------------------------------

    def _conn(self) -> sqlite3.Connection:
        if self._db is None:
            raise StoreError(f"the state file {self.path} is closed")
        return self._db

    def get_raw(self, key: str) -> bytes | None:
        if self._held is not None and key in self._held:
            return self._held[key]
        try:
            row = self._conn().execute("SELECT value FROM top WHERE key = ?", (key,)).fetchone()
        except sqlite3.Error as e:
            raise self._failure("read", e) from e
        if row is None:
            return None
        if not isinstance(row[0], bytes):
            raise self.unreadable(key, f"stored as {type(row[0]).__name__}, not as bytes")
        return row[0]

    def _write(self, items: list[tuple[str, bytes]], deletes: Sequence[str] = ()) -> None:
        db = self._conn()
        try:
            with db:
                db.execute("BEGIN IMMEDIATE")
                if items:
                    db.executemany("INSERT OR REPLACE INTO top (key, value) VALUES (?, ?)", items)
                for key in deletes:
                    db.execute("DELETE FROM top WHERE key = ?", (key,))
        except sqlite3.Error as e:
            raise self._failure("write", e) from e

    def set_raw(self, key: str, value: bytes) -> None:
        self.set_many_raw({key: value})

    def set_many_raw(self, items: dict[str, bytes]) -> None:
        """Write several values in one transaction (all or nothing)."""
        if self._held is not None:
            self._held.update(items)
            return
        self._write(list(items.items()))

    def delete(self, key: str) -> None:
        if self._held is not None:
            self._held[key] = None
            return
        self._write([], [key])

    def keys(self) -> list[str]:
        try:
            stored = {r[0] for r in self._conn().execute("SELECT key FROM top")}
        except sqlite3.Error as e:
            raise self._failure("read", e) from e
        for key, value in (self._held or {}).items():
            (stored.add if value is not None else stored.discard)(key)
        return sorted(stored)

    # -- typed accessors ----------------------------------------------------------------------------------------

    def load_peer_name(self) -> int | None:
        raw = self.get_raw(NAME_KEY)
        try:
            return None if raw is None else int(decode_stream(raw, [PEER_NAME])[0])
        except RemoteProtocolError as e:
            raise self.unreadable(NAME_KEY, str(e)) from e

    def save_peer_name(self, name: int) -> None:
        self._save_if_changed(NAME_KEY, encode_stream([(PEER_NAME, name)]))

    def load_direct_peers(self) -> list[str]:
        raw = self.get_raw(DIRECT_PEERS_KEY)
        try:
            return [] if raw is None else list(decode_stream(raw, [STRINGS])[0])
        except RemoteProtocolError as e:
            raise self.unreadable(DIRECT_PEERS_KEY, str(e)) from e

    def save_direct_peers(self, peers: list[str]) -> None:
        self._save_if_changed(DIRECT_PEERS_KEY, encode_stream([(STRINGS, list(peers))]))

    def _save_if_changed(self, key: str, value: bytes) -> None:
        """An unchanged value is not written again: a router on a full disk still launches and runs."""
        try:
            same = self.get_raw(key) == value
        except StoreError:
            same = False
        if not same:
            self.set_raw(key, value)


def state_exists(state_dir: str | os.PathLike[str]) -> bool:
    """Is there a router's state (it was launched and not reset)?"""
    return (Path(state_dir) / DB_FILENAME).exists()


def remove_state(state_dir: str | os.PathLike[str]) -> None:
    """Delete the state file and its journal, and Weave's state files beside them (``weave reset``)."""
    base = Path(state_dir) / DB_FILENAME
    paths = [Path(str(base) + suffix) for suffix in SUFFIXES]
    for p in [*paths, *(Path(state_dir) / n for n in WEAVE_DB_FILENAMES)]:
        if p.exists():
            p.unlink()
