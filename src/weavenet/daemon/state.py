"""The router's saved state at launch: the store opened (and held), Weave 2.8's state imported, the peer name, and
what could not be read or saved.

A launch either succeeds or leaves the host as it found it, so the store *holds* its writes in memory until the
router is about to serve requests (:meth:`~weavenet.daemon.persistence.Store.flush`) and a failed launch
discards what it opened fresh. State that cannot be read is said (:class:`Problems`: the log, ``weave status``,
and ``weave launch`` prints it) and rebuilt where it can be; what could not be saved since is kept there too.
"""

from __future__ import annotations

import logging
import os

from weavenet.core.names import PeerName
from weavenet.daemon.identity import resolve_peer_name
from weavenet.daemon.persistence import Store, StoreError
from weavenet.daemon.weave_import import at_start as import_weave_state_at_start

log = logging.getLogger("weavenet.daemon")


class Problems:
    """State found unreadable at launch (and what was done about it), and what could not be saved lately."""

    def __init__(self) -> None:
        self.found: list[str] = []
        self.unsaved: dict[str, str] = {}  # what -> why

    def problem(self, message: str) -> None:
        log.warning("%s", message)
        self.found.append(message)


def open_store(
    state_dir: str, db_prefix: str, name: str | None, host_root: str, problems: Problems
) -> tuple[Store, PeerName]:
    """The store, holding its writes, with Weave 2.8's state imported into it if it was empty, and our peer
    name chosen and saved; a failure discards what was opened fresh (StoreError names the file and what to do)."""
    store = Store(state_dir)
    store.hold()  # nothing reaches the file before the router serves (see the module docstring)
    try:
        # upgrade in place from Weave 2.8: its BoltDB state, once, into an empty store, before the name is chosen
        import_weave_state_at_start(store, db_prefix, state_dir)
        try:
            persisted = store.load_peer_name()
        except StoreError as e:
            if e.key is None:
                raise
            problems.problem(f"{e}; the peer name comes from the bridge again")
            persisted = None
        ours = resolve_peer_name(name, "weave", persisted, host_root)
        store.save_peer_name(ours)
    except BaseException:
        store.discard()
        raise
    return store, ours


def check_space(store: Store, problems: Problems) -> None:
    """A full state directory does not stop a router with nothing to save, but it must be said."""
    try:
        full = os.statvfs(store.path.parent).f_bavail == 0
    except OSError:
        return
    if full:
        problems.problem(
            f"at launch the state directory {store.path.parent} was full: changes cannot be saved to "
            f"{store.path}, so new addresses are refused until there is room"
        )


def check_registry(run_dir: str, problems: Problems) -> None:
    """Without IPAM nobody else reads the attach registry at launch: an unreadable one is rebuilt and said."""
    from weavenet.host import attached

    found: list[str] = []
    attached.load(run_dir, problems=found)
    for message in found:
        problems.problem(message)


def resumed_peers(store: Store, problems: Problems) -> list[str]:
    """The peers saved by the last run (``--resume``)."""
    try:
        return store.load_direct_peers()
    except StoreError as e:
        if e.key is None:
            raise
        problems.problem(f"{e}; --resume has no peers to connect to")
        return []


def save_peers(store: Store, peers: list[str], problems: Problems, launching: bool = False) -> str | None:
    """Save the direct peers (for ``--resume``); a failure is said and kept until a save succeeds (at launch it
    fails the launch)."""
    try:
        store.save_direct_peers(peers)
    except StoreError as e:
        if launching:
            raise
        log.error("the peers were not saved: %s", e)
        problems.unsaved["peers"] = str(e)
        return f"the peers were not saved: {e}"
    problems.unsaved.pop("peers", None)
    return None
