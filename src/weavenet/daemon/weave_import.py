"""Upgrading in place from Weave Net 2.8: import the state Weave kept in its BoltDB file, once.

Weave stored its peer name, direct peers, IPAM ring and owned addresses (which container holds which address)
as gob values in bucket ``top`` of ``<db-prefix>data.db``. weavenet's store keeps the same keys with the same
gob values (see ``daemon.persistence``), so importing is: read the file with the bolt reader
(``core.codec.bolt``), decode every value we use (so a damaged file is refused before anything is written), and
copy Weave's bytes into our store in one transaction. The allocator then starts from them as Weave's would: it
keeps the ring if the peer name and range match, and every owned address stays taken until its container is
known to be gone, so no address Weave gave to a running container is handed out again.

Rules: Weave's file is only read, never changed (a rollback to Weave still finds it). A store that already has
state (any key besides ``version``) is never overwritten: after a successful import it holds a marker
(:data:`MARKER_KEY`), so later starts say "already imported", and a store with state of its own keeps it. A Weave
file that cannot be read or decoded stops the router with a one-line error naming the file and the fault:
starting without it could hand out addresses that running containers use.
"""

from __future__ import annotations

import enum
import logging
import os
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import TypeVar

from weavenet.core.codec.bolt import BoltError, BoltFile, parse
from weavenet.core.codec.gob import STRING, decode_stream, encode_stream
from weavenet.core.names import PeerName
from weavenet.daemon.persistence import (
    DIRECT_PEERS_KEY,
    NAME_KEY,
    STRINGS,
    VERSION_KEY,
    WEAVE_DB_FILENAMES,
    Store,
)
from weavenet.errors import RemoteProtocolError, WeavenetError
from weavenet.ipam import wire
from weavenet.ipam.address import CIDR, Range
from weavenet.ipam.ring import Ring
from weavenet.ipam.wire import Owned

log = logging.getLogger("weavenet.daemon")
T = TypeVar("T")

DB_SUFFIX = "data.db"  # Weave's file is <db-prefix>data.db
WEAVEDB_DIR = "/weavedb"  # where Weave's container and its Kubernetes pod mount the file's directory
TOP_BUCKET = b"top"
RING_KEY = "ring"
OWNED_KEY = "ownedAddresses"
FLAG_PREFIX = "flag:"
MARKER_KEY = "weavenetImportedFrom"  # gob string: the file our state came from
MAX_FILE_BYTES = 256 << 20  # Weave's files are kilobytes; refuse to load anything absurd into memory


class WeaveImportError(WeavenetError):
    """Weave's state file exists but cannot be imported; the message names the file and the fault."""


class Outcome(enum.Enum):
    IMPORTED = "imported"
    ALREADY_IMPORTED = "already imported"
    STORE_HAS_STATE = "store has state of its own"


@dataclass(frozen=True)
class ImportedState:
    """What Weave's file holds, decoded, plus the exact bytes that go into our store."""

    path: str
    txid: int
    peer_name: PeerName | None
    ring: Ring | None
    owned: dict[str, Owned]
    direct_peers: list[str]
    flags: dict[str, str]
    values: dict[str, bytes]  # store key -> Weave's bytes, as in the file
    ignored: list[str] = field(default_factory=list)  # what the file holds that we do not import

    def addresses(self) -> list[tuple[str, CIDR]]:
        """Every owned address with its owner, in the file's order."""
        return [(ident, c) for ident, o in self.owned.items() for c in o.cidrs]

    def describe(self) -> list[str]:
        """Log lines saying what was imported."""
        lines = [f"Imported Weave Net state from {self.path} (bolt transaction {self.txid})"]
        lines.append(f"  peer name {self.peer_name if self.peer_name is not None else '(none)'}")
        if self.ring is not None:
            ours = sum(r.size for r in self.ring.owned_ranges()) if not self.ring.empty() else 0
            lines.append(
                f"  IPAM ring {Range(self.ring.start, self.ring.end).as_cidr_string()} of peer {self.ring.peer}: "
                f"{len(self.ring.entries)} entries, {ours} addresses owned here"
            )
            lines += [f"  {line}" for line in self.ring.describe().splitlines()[1:]]
        else:
            lines.append("  no IPAM ring")
        lines += [f"  address {c} owned by {ident}" for ident, c in self.addresses()]
        lines.append(f"  direct peers: {' '.join(self.direct_peers) or '(none)'}")
        lines += [f"  flag {k} = {v}" for k, v in self.flags.items()]
        if self.ignored:
            lines.append(f"  not imported: {', '.join(self.ignored)}")
        return lines


# ============================================================================================== where to look


def weave_db_candidates(db_prefix: str, state_dir: str, weavedb_dir: str = WEAVEDB_DIR) -> list[Path]:
    """Where Weave's file may be, in the order looked at.

    ``--db-prefix`` names it exactly, as for Weave (``<prefix>data.db``). Without it: the state directory
    (``/var/lib/weave``) under the names Weave's Kubernetes addon (``weave-netdata.db``) and its Docker plugin
    (``weavedata.db``) gave it there, then ``/weavedb``, where Weave's own container (prefix ``/weavedb/weave``)
    and its Kubernetes pod (``/weavedb/weave-net``) see it.
    """
    if db_prefix:
        return [Path(db_prefix + DB_SUFFIX)]
    return [Path(d) / n for d in (state_dir, weavedb_dir) for n in WEAVE_DB_FILENAMES]


def find_weave_db(db_prefix: str, state_dir: str, weavedb_dir: str = WEAVEDB_DIR) -> Path | None:
    """The first candidate that exists; the others that exist too are logged and left alone."""
    found = [p for p in weave_db_candidates(db_prefix, state_dir, weavedb_dir) if p.is_file()]
    for other in found[1:]:
        log.warning("Weave Net state file %s also exists; only %s is imported", other, found[0])
    return found[0] if found else None


# ================================================================================================= decoding


def import_weave_state(path: str | os.PathLike[str]) -> ImportedState:
    """Read and decode Weave's file; :class:`WeaveImportError` if it cannot be used."""
    name = str(path)
    try:
        size = os.stat(path).st_size
        if size > MAX_FILE_BYTES:
            raise WeaveImportError(f"{name}: {size} bytes is too large for a Weave Net state file")
        data = Path(path).read_bytes()
    except OSError as e:
        raise WeaveImportError(f"{name}: cannot read: {e.strerror or e}") from e
    try:
        db = parse(data, name)
    except BoltError as e:
        raise WeaveImportError(str(e)) from e
    return from_bolt(db, name)


def _decode(name: str, key: str, fn: Callable[[bytes], T], raw: bytes) -> T:
    try:
        return fn(raw)
    except RemoteProtocolError as e:
        raise WeaveImportError(f"{name}: value of {key!r} in bucket 'top' cannot be decoded: {e}") from e


def _decode_strings(raw: bytes) -> list[str]:
    return [str(p) for p in decode_stream(raw, [STRINGS])[0]]


def _decode_string(raw: bytes) -> str:
    return str(decode_stream(raw, [STRING])[0])


def _decode_ring(raw: bytes) -> Ring:
    ring = wire.decode_ring(raw)
    ring.check()  # raises RingError, a RemoteProtocolError
    return ring


def from_bolt(db: BoltFile, name: str) -> ImportedState:
    """Decode bucket ``top`` of a parsed Weave file (pure: no I/O)."""
    top = db.root.bucket(TOP_BUCKET)
    if top is None:
        raise WeaveImportError(f"{name}: no bucket 'top': not a Weave Net state file")
    ignored = [f"bucket {k!r}" for k in db.root.buckets if k != TOP_BUCKET]
    ignored += [f"bucket top/{k!r}" for k in top.buckets]
    version = top.values.get(VERSION_KEY.encode())
    if version is not None and version[:1] != b"\x01":
        raise WeaveImportError(f"{name}: unsupported Weave Net data version {version.hex() or '(empty)'}")
    values: dict[str, bytes] = {}
    peer_name: PeerName | None = None
    ring: Ring | None = None
    owned: dict[str, Owned] = {}
    direct: list[str] = []
    flags: dict[str, str] = {}
    for raw_key, raw in top.values.items():
        try:
            key = raw_key.decode()
        except UnicodeDecodeError:
            ignored.append(repr(raw_key))
            continue
        if key == VERSION_KEY:
            continue
        if key == NAME_KEY:
            peer_name = _decode(name, key, wire.decode_peer_name, raw)
        elif key == RING_KEY:
            ring = _decode(name, key, _decode_ring, raw)
        elif key == OWNED_KEY:
            owned = _decode(name, key, wire.decode_owned, raw)
        elif key == DIRECT_PEERS_KEY:
            direct = _decode(name, key, _decode_strings, raw)
        elif key.startswith(FLAG_PREFIX):
            flags[key[len(FLAG_PREFIX) :]] = _decode(name, key, _decode_string, raw)
        else:
            ignored.append(key)
            continue
        values[key] = raw
    return ImportedState(
        path=name,
        txid=db.txid,
        peer_name=peer_name,
        ring=ring,
        owned=owned,
        direct_peers=direct,
        flags=flags,
        values=values,
        ignored=ignored,
    )


# ================================================================================================ applying


def _has_state(store: Store) -> list[str]:
    return [k for k in store.keys() if k != VERSION_KEY]  # noqa: SIM118 (a Store is not iterable)


def imported_from(store: Store) -> str | None:
    """The Weave file this store's state was imported from, if it was."""
    raw = store.get_raw(MARKER_KEY)
    if raw is None:
        return None
    try:
        return _decode_string(raw)
    except RemoteProtocolError:
        return "(unreadable marker)"


def apply(state: ImportedState, store: Store) -> Outcome:
    """Write the imported values into an empty store, in one transaction; a store with state is left as it is."""
    if store.get_raw(MARKER_KEY) is not None:
        return Outcome.ALREADY_IMPORTED
    if _has_state(store):
        return Outcome.STORE_HAS_STATE
    store.set_many_raw({**state.values, MARKER_KEY: encode_stream([(STRING, state.path)])})
    return Outcome.IMPORTED


def at_start(store: Store, db_prefix: str, state_dir: str, weavedb_dir: str = WEAVEDB_DIR) -> Outcome | None:
    """The daemon's one call, before it picks its peer name: import Weave's file if there is one and our store
    is empty. None when there is no Weave file; raises :class:`WeaveImportError` for a file it cannot use."""
    path = find_weave_db(db_prefix, state_dir, weavedb_dir)
    if path is None:
        return None
    previous = imported_from(store)
    if previous is not None:
        log.info("Weave Net state in %s was imported from %s before; not importing again", store.path, previous)
        return Outcome.ALREADY_IMPORTED
    if _has_state(store):
        log.info("Not importing Weave Net state from %s: %s already holds weavenet state", path, store.path)
        return Outcome.STORE_HAS_STATE
    try:
        state = import_weave_state(path)
    except WeaveImportError as e:
        raise WeaveImportError(f"cannot import Weave Net state: {e} (move the file away to start without it)") from e
    outcome = apply(state, store)
    for line in state.describe():
        log.info("%s", line)
    return outcome
