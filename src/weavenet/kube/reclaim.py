"""Weave's reclaim of removed nodes' address ranges, over the Kubernetes API (``kube-utils -reclaim`` and its
daemon), with the decisions of :mod:`weavenet.kube.peers` and the router's own ``rmpeer``.

Each step is Go's, in Go's order, so a Go peer and a weavenet peer racing for the same removed node (a rolling
upgrade) see each other's locks and exactly one of them takes the ranges over:

* :func:`add_myself`: at start, this peer is added to the stored list (retried on conflicts);
* :func:`reclaim_removed_peers`: for each stored peer whose node is gone, :func:`reclaim_peer`; again while
  something changed, until three passes change nothing or nothing is left;
* :func:`reclaim_peer`: read the ConfigMap; take the peer's lock if it is free (a ``PUT`` at the version read: the
  loser of a race gets ``409 Conflict`` and leaves it to the winner); holding it, ``rmpeer`` the peer if it is
  still listed, then remove it, its lock and the locks it held, retried on conflicts.

Where Go wrote the clean-up in three ``PUT``\\s, one is written here: the same final state, never a half of it.
"""

from __future__ import annotations

import asyncio
import logging
import random
from collections.abc import Callable, Iterable
from typing import Any

from weavenet.kube import peers as p
from weavenet.kube.api import KubeAPI, KubeError

log = logging.getLogger("weavenet.kube")

RETRY_PERIOD = 2.0  # Go's LoopUpdate: a conflict is retried after 2-4 s (jitter factor 1)
PASSES = 3  # Go: give up after this many passes in a row that changed nothing


class ConfigMapAnnotations:
    """Go's ``configMapAnnotations``: the ConfigMap as last read or written, created if missing."""

    def __init__(
        self,
        api: KubeAPI,
        namespace: str = p.CONFIGMAP_NAMESPACE,
        name: str = p.CONFIGMAP_NAME,
        rng: random.Random | None = None,
        retry_period: float = RETRY_PERIOD,
    ) -> None:
        self.api = api
        self.namespace = namespace
        self.name = name
        self.rng = rng or random.Random()
        self.retry_period = retry_period
        self.cm: Any = None
        self.conflicts = 0

    async def init(self) -> None:
        """Read it (create it empty if there is none; one created meanwhile by another is read)."""
        while True:
            cm = await self.api.get_configmap(self.namespace, self.name)
            if cm is None:
                try:
                    cm = await self.api.create_configmap(self.namespace, self.name)
                except KubeError as e:
                    if e.code == 409:
                        continue
                    raise
            self.cm = cm
            return

    @property
    def annotations(self) -> dict[str, str]:
        if self.cm is None:
            raise KubeError("the ConfigMap was not read")
        return dict(self.cm.metadata.annotations or {})

    def peer_list(self) -> p.PeerList:
        return p.decode_peer_list(self.annotations.get(p.PEERS_KEY))

    async def update(self, annotations: dict[str, str]) -> None:
        """Write at the version read; ``KubeError`` 409 if it changed since. Keeps the server's copy."""
        try:
            self.cm = await self.api.replace_configmap(self.cm, annotations)
        except BaseException:
            self.cm = None  # as Go's speculative update: read it again before the next step
            raise

    async def loop_update(self, change: Callable[[dict[str, str]], dict[str, str] | None]) -> None:
        """Go's ``LoopUpdate``: read, ``change`` the annotations (None: nothing to write), write; a conflict is
        tried again after 2-4 s, any other error raised."""
        while True:
            await self.init()
            new = change(self.annotations)
            if new is None:
                return
            try:
                await self.update(new)
                return
            except KubeError as e:
                if e.code != 409:
                    raise
                self.conflicts += 1
                log.info("[kube-peers] Optimistic locking conflict: trying again: %s", e)
            await asyncio.sleep(self.retry_period * (1 + self.rng.random()))


async def add_myself(cml: ConfigMapAnnotations, me: str, my_node: str) -> p.PeerList:
    """Go's ``addMyselfToPeerList``; the list as stored afterwards."""
    await cml.loop_update(lambda ann: p.add_myself(ann, me, my_node))
    return cml.peer_list()


async def in_peer_list(cml: ConfigMapAnnotations, me: str) -> bool:
    """Go's ``checkIamInPeerList``: is this peer in the stored list? (No: another peer took our ranges over.)"""
    await cml.init()
    return cml.peer_list().contains(me)


async def reclaim_peer(cml: ConfigMapAnnotations, peer_name: str, me: str, rmpeer: Callable[[str], int]) -> bool:
    """Go's ``reclaimPeer``: whether we did anything (took over, or found the work done). ``rmpeer`` is the
    router's (it raises when the peer cannot be removed, e.g. it is still reachable: the lock stays ours and
    the next pass, or the next start, tries again)."""
    log.debug("[kube-peers] Preparing to remove disappeared peer %s", peer_name)
    await cml.init()
    state = p.lock_state(cml.annotations, peer_name, me, cml.peer_list())
    if state == p.HELD:
        log.debug("[kube-peers] %s is being reclaimed by %s", peer_name, cml.annotations.get(p.lock_key(peer_name)))
        return False
    if state == p.FREE and not cml.peer_list().contains(peer_name):
        return False  # another peer finished with it since our pass read the list: nothing left to do
    if state == p.FREE:
        log.debug("[kube-peers] Noting I plan to remove %s", peer_name)
        try:
            await cml.update(p.take_lock(cml.annotations, peer_name, me))
        except KubeError as e:
            log.info("[kube-peers] not reclaiming %s: %s", peer_name, e)
            return False
    await cml.init()
    if cml.peer_list().contains(peer_name):
        count = rmpeer(peer_name)
        log.info("[kube-peers] rmpeer of %s: %d IPs taken over from %s", peer_name, count, peer_name)

    def clean(ann: dict[str, str]) -> dict[str, str]:
        out, listed = p.release(ann, peer_name)
        if not listed:
            log.info("[kube-peers] annotation was removed already for %s", peer_name)
        return out

    await cml.loop_update(clean)
    return True


async def reclaim_removed_peers(
    api: KubeAPI,
    cml: ConfigMapAnnotations,
    me: str,
    my_node: str,
    rmpeer: Callable[[str], int],
    is_local: Callable[[str], bool],
) -> list[str]:
    """Go's ``reclaimRemovedPeers``; the peers whose ranges this peer took over (``KubeError``, or rmpeer's error,
    stops it)."""
    done: list[str] = []

    def taking(peer: str) -> int:
        count = rmpeer(peer)
        done.append(peer)
        return count

    quiet = 0
    while quiet < PASSES:
        await cml.init()
        stored = cml.peer_list()
        nodes = p.node_peers(await api.nodes(), is_local, include_without_addr=True)
        gone = p.disappeared(stored, (n.name for n in nodes), me, my_node)
        log.debug("[kube-peers] Nodes that have disappeared: %s", [g.peer_name for g in gone])
        if not gone:
            break
        changed = False
        for peer in gone:
            if await reclaim_peer(cml, peer.peer_name, me, taking):
                changed = True
        quiet = 0 if changed else quiet
        quiet += 1
    return done


def addresses(nodes: Iterable[p.NodeInfo]) -> list[str]:
    return [n.addr for n in nodes if n.addr]
