"""The registry of containers ``weave attach`` put on the network: what ``weave ps`` lists and the router watches.

One JSON file in the runtime directory (``attached.json``; tmpfs, so it ends with the host's containers),
keyed by the container's network-namespace path, holding the ident it was attached under (what IPAM and DNS
know it by: a PID, the namespace path, or a Docker ID), the namespace's inode, and the name and labels network
policy knows it by (``weave attach --label``; a restarted router reads them here). The inode makes reuse
visible: a namespace path (or a PID) that now leads to another namespace is another container, so the first
one is gone. The CLI writes entries, the daemon reads them; both rewrite the file under an exclusive lock, and
the file is replaced atomically, so a reader never sees half of it.

The first version of the file (``{netns: ident}``, without inodes) is still read.

A file that cannot be read (not JSON, not the registry's shape) is never taken for an empty registry: that made
``weave ps`` forget every container and let a restarted router hand out their addresses again. Whoever reads it
first rebuilds it from what is on the bridge (:mod:`weavenet.host.ports`), keeps the unreadable one as
``attached.json.corrupt`` and says so; a write that fails raises :class:`~weavenet.errors.StateError`.
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import logging
import os
from collections.abc import Callable, Iterable, Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from weavenet.errors import StateError

if TYPE_CHECKING:
    from weavenet.host.ports import Port

log = logging.getLogger("weavenet.host")

FILENAME = "attached.json"
CORRUPT_SUFFIX = ".corrupt"
VERSION = 2

Rebuild = Callable[[], dict[str, "Attached"]]


@dataclass(frozen=True, slots=True)
class Attached:
    netns: str  # path of the container's network namespace (/proc/<pid>/ns/net or a bind mount)
    ident: str  # what IPAM and DNS know it by
    inode: int  # the namespace's inode when it was attached (0: unknown, from the first file version)
    name: str = ""  # network policy's name for it ("": none given)
    labels: tuple[tuple[str, str], ...] = ()  # network policy's labels for it


def path(run_dir: str) -> Path:
    return Path(run_dir) / FILENAME


def ns_inode(netns: str) -> int | None:
    """The inode of the namespace at ``netns`` now, or None if there is none."""
    try:
        return os.stat(netns).st_ino
    except OSError:
        return None


def alive(entry: Attached) -> bool:
    """Its namespace still exists and is the same one (not a reused path or PID)."""
    ino = ns_inode(entry.netns)
    return ino is not None and (entry.inode == 0 or ino == entry.inode)


def _parse(text: str) -> dict[str, Attached]:
    """The registry; ValueError (with what is wrong) for anything that is not one."""
    try:
        data = json.loads(text)
    except ValueError as e:
        raise ValueError(f"not JSON: {e}") from e
    if not isinstance(data, dict):
        raise ValueError(f"a JSON {type(data).__name__}, not an object")
    if "version" in data:
        if data["version"] != VERSION or not isinstance(data.get("containers"), dict):
            raise ValueError(f"unknown layout (version {data['version']!r})")
        out = {}
        for netns, e in data["containers"].items():
            if not (isinstance(e, dict) and isinstance(e.get("id"), str) and isinstance(e.get("inode", 0), int)):
                raise ValueError(f"bad entry for {netns!r}")
            labels = e.get("labels") or {}
            name = e.get("name") or ""
            if not isinstance(labels, dict) or not all(isinstance(v, str) for v in labels.values()):
                raise ValueError(f"bad labels for {netns!r}")
            if not isinstance(name, str):
                raise ValueError(f"bad name for {netns!r}")
            out[str(netns)] = Attached(
                str(netns),
                e["id"],
                int(e.get("inode") or 0),
                name,
                tuple(sorted((str(k), v) for k, v in labels.items())),
            )
        return out
    if not all(isinstance(v, str) for v in data.values()):
        raise ValueError("bad entries")
    return {str(k): Attached(str(k), v, 0) for k, v in data.items()}


def read(run_dir: str) -> dict[str, Attached]:
    """The registry as stored ({} when there is none); StateError when the file cannot be read."""
    p = path(run_dir)
    try:
        text = p.read_text()
    except (FileNotFoundError, NotADirectoryError):
        return {}
    except (OSError, UnicodeDecodeError) as e:
        raise StateError(f"{p} is unreadable ({getattr(e, 'strerror', None) or e})") from e
    try:
        return _parse(text)
    except ValueError as e:
        raise StateError(f"{p} is unreadable ({e})") from e


def load(run_dir: str, rebuild: Rebuild | None = None, problems: list[str] | None = None) -> dict[str, Attached]:
    """The registry; an unreadable one is rebuilt from the bridge first (see the module docstring)."""
    try:
        return read(run_dir)
    except StateError:
        with _locked(run_dir):
            return _load_locked(run_dir, rebuild, problems)


def from_ports(ports: Iterable[Port], idents: Mapping[int, str] | None = None) -> dict[str, Attached]:
    """Entries for the containers found on the bridge, under the ident IPAM knows (``idents``: by namespace
    inode) or else the PID or namespace path they were found through; Docker's containers (other idents) are
    Docker's to list."""
    from weavenet.host.ports import display_path

    out: dict[str, Attached] = {}
    for p in ports:
        if p.netns is None:
            continue
        ident = (idents or {}).get(p.inode) or (str(p.pid) if p.pid else display_path(p.netns))
        if ident.isdigit():
            key = f"/proc/{ident}/ns/net"
        elif ident.startswith("/"):
            key = ident
        else:
            continue
        out[key] = Attached(key, ident, p.inode)
    return out


def idents_by_inode(idents: Iterable[str]) -> dict[int, str]:
    """The namespace inode of each PID or namespace-path ident that still leads to one."""
    out = {}
    for ident in idents:
        if ident.isdigit() or ident.startswith("/"):
            ino = ns_inode(f"/proc/{ident}/ns/net" if ident.isdigit() else ident)
            if ino is not None:
                out[ino] = ident
    return out


def rebuild_from_bridge(hints: Iterable[str] = ()) -> dict[str, Attached]:
    """Entries for the containers on the weave bridge; ``hints`` are idents IPAM knows (preferred for them)."""
    from weavenet.host.bridge import BRIDGE
    from weavenet.host.ports import bridge_ports

    hints = list(hints)
    return from_ports(bridge_ports(BRIDGE, hints), idents_by_inode(hints))


def _load_locked(run_dir: str, rebuild: Rebuild | None, problems: list[str] | None) -> dict[str, Attached]:
    try:
        return read(run_dir)
    except StateError as e:
        unreadable = e
    entries = (rebuild or rebuild_from_bridge)()
    p = path(run_dir)
    kept = p.with_name(p.name + CORRUPT_SUFFIX)
    message = f"{unreadable}: rebuilt from the {len(entries)} container(s) found on the weave bridge"
    try:
        tmp = _write_tmp(run_dir, entries)
        os.replace(p, kept)
        os.replace(tmp, p)
        message += f" (the unreadable file is kept as {kept})"
    except (OSError, StateError) as e:
        message += f", but not saved: {getattr(e, 'strerror', None) or e}"
    message += "; 'weave attach' a container that is missing again, or 'weave reset' to start afresh"
    if problems is None:
        log.warning("%s", message)
    else:
        problems.append(message)
    return entries


@contextlib.contextmanager
def _locked(run_dir: str) -> Iterator[None]:
    p = path(run_dir)
    p.parent.mkdir(parents=True, exist_ok=True)
    fd = os.open(str(p) + ".lock", os.O_RDWR | os.O_CREAT, 0o600)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)
        yield
    finally:
        os.close(fd)


def _write_tmp(run_dir: str, entries: dict[str, Attached]) -> Path:
    p = path(run_dir)
    tmp = p.with_suffix(".tmp")
    data = {"version": VERSION, "containers": {k: _entry_json(e) for k, e in entries.items()}}
    try:
        tmp.write_text(json.dumps(data, indent=1, sort_keys=True))
    except OSError as e:
        with contextlib.suppress(OSError):
            tmp.unlink(missing_ok=True)
        raise StateError(f"cannot write {p}: {e.strerror or e}") from e
    return tmp


def _entry_json(e: Attached) -> dict[str, object]:
    out: dict[str, object] = {"id": e.ident, "inode": e.inode}
    if e.name:
        out["name"] = e.name
    if e.labels:
        out["labels"] = dict(e.labels)
    return out


def _save(run_dir: str, entries: dict[str, Attached]) -> None:
    os.replace(_write_tmp(run_dir, entries), path(run_dir))


def update(
    run_dir: str,
    change: Callable[[dict[str, Attached]], None],
    rebuild: Rebuild | None = None,
    problems: list[str] | None = None,
) -> dict[str, Attached]:
    """Read, change and write the registry under the lock; returns the new contents (StateError if unsaved)."""
    with _locked(run_dir):
        entries = _load_locked(run_dir, rebuild, problems)
        before = dict(entries)
        change(entries)
        if entries != before:
            _save(run_dir, entries)
        return entries


def record(
    run_dir: str,
    netns: str,
    ident: str,
    problems: list[str] | None = None,
    name: str = "",
    labels: Mapping[str, str] | None = None,
) -> None:
    """Note a container attached; ``name`` and ``labels`` (network policy's) replace earlier ones when given."""
    ino = ns_inode(netns) or 0

    def change(entries: dict[str, Attached]) -> None:
        old = entries.get(netns)
        same = old is not None and old.ident == ident and old.inode == ino
        keep_name, keep_labels = (old.name, old.labels) if same and old is not None else ("", ())
        entries[netns] = Attached(
            netns, ident, ino, name or keep_name, tuple(sorted(labels.items())) if labels is not None else keep_labels
        )

    update(run_dir, change, problems=problems)


def forget(run_dir: str, netns: str, problems: list[str] | None = None) -> None:
    def change(entries: dict[str, Attached]) -> None:
        entries.pop(netns, None)

    update(run_dir, change, problems=problems)


def prune(run_dir: str, problems: list[str] | None = None) -> list[Attached]:
    """Drop entries whose namespace is gone; returns them."""
    gone: list[Attached] = []

    def change(entries: dict[str, Attached]) -> None:
        for k, e in list(entries.items()):
            if not alive(e):
                gone.append(e)
                del entries[k]

    update(run_dir, change, problems=problems)
    return gone
