"""The registry of containers ``weave attach`` put on the network: what ``weave ps`` lists and the router watches.

One JSON file in the runtime directory (``attached.json``; tmpfs, so it ends with the host's containers),
keyed by the container's network-namespace path, holding the ident it was attached under (what IPAM and DNS
know it by: a PID, the namespace path, or a Docker ID) and the namespace's inode. The inode makes reuse
visible: a namespace path (or a PID) that now leads to another namespace is another container, so the first
one is gone. The CLI writes entries, the daemon reads them; both rewrite the file under an exclusive lock, and
the file is replaced atomically, so a reader never sees half of it.

The first version of the file (``{netns: ident}``, without inodes) is still read.
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import os
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

FILENAME = "attached.json"
VERSION = 2


@dataclass(frozen=True, slots=True)
class Attached:
    netns: str  # path of the container's network namespace (/proc/<pid>/ns/net or a bind mount)
    ident: str  # what IPAM and DNS know it by
    inode: int  # the namespace's inode when it was attached (0: unknown, from the first file version)


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
    try:
        data = json.loads(text)
    except ValueError:
        return {}
    if not isinstance(data, dict):
        return {}
    if data.get("version") == VERSION and isinstance(data.get("containers"), dict):
        out = {}
        for netns, e in data["containers"].items():
            if isinstance(e, dict) and isinstance(e.get("id"), str):
                out[str(netns)] = Attached(str(netns), e["id"], int(e.get("inode") or 0))
        return out
    return {str(k): Attached(str(k), v, 0) for k, v in data.items() if isinstance(v, str)}


def load(run_dir: str) -> dict[str, Attached]:
    try:
        return _parse(path(run_dir).read_text())
    except (FileNotFoundError, NotADirectoryError):
        return {}


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


def _save(run_dir: str, entries: dict[str, Attached]) -> None:
    p = path(run_dir)
    tmp = p.with_suffix(".tmp")
    data = {"version": VERSION, "containers": {k: {"id": e.ident, "inode": e.inode} for k, e in entries.items()}}
    tmp.write_text(json.dumps(data, indent=1, sort_keys=True))
    os.replace(tmp, p)


def update(run_dir: str, change: Callable[[dict[str, Attached]], None]) -> dict[str, Attached]:
    """Read, change and write the registry under the lock; returns the new contents."""
    with _locked(run_dir):
        entries = load(run_dir)
        before = dict(entries)
        change(entries)
        if entries != before:
            _save(run_dir, entries)
        return entries


def record(run_dir: str, netns: str, ident: str) -> None:
    ino = ns_inode(netns) or 0

    def change(entries: dict[str, Attached]) -> None:
        entries[netns] = Attached(netns, ident, ino)

    update(run_dir, change)


def forget(run_dir: str, netns: str) -> None:
    def change(entries: dict[str, Attached]) -> None:
        entries.pop(netns, None)

    update(run_dir, change)


def prune(run_dir: str) -> list[Attached]:
    """Drop entries whose namespace is gone; returns them."""
    gone: list[Attached] = []

    def change(entries: dict[str, Attached]) -> None:
        for k, e in list(entries.items()):
            if not alive(e):
                gone.append(e)
                del entries[k]

    update(run_dir, change)
    return gone
