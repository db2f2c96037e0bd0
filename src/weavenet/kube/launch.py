"""The DaemonSet's router container (Weave 2.8's ``prog/weave-kube/launch.sh`` and the ``kube-utils`` calls it
makes), as one process: the router runs here, in the foreground, and the Kubernetes side runs beside it.

In order, as Weave's script:

1. the init container's work, if the manifest has none (``INIT_CONTAINER`` not ``true``);
2. the iptables backend (``IPTABLES_BACKEND``, else Weave's guess), by putting the chosen ``iptables`` first on
   ``PATH``;
3. the range checked against the host's routes (Weave's ``netcheck``: an overlap stops the pod);
4. the peers: ``KUBE_PEERS``, else every other node's address from the node list; the consensus size is their
   number (``IPALLOC_INIT``);
5. the peer name (``--name`` as Weave's ``--print-peer-name`` finds it); if the saved state says the reclaim
   protocol was in use (``flag:peer-reclaim``) and this peer is no longer in the ConfigMap's list, another peer
   took its ranges over while it was away: the saved state is removed, so it starts afresh rather than claim
   ranges that are no longer its own;
6. the router (``plan.router_argv``), with ``flag:peer-reclaim`` set in its store;
7. once it serves: this peer added to the list and removed nodes reclaimed, the bridge exposed (``weave expose
   $WEAVE_EXPOSE_IP``), the node's ``NetworkUnavailable`` condition set to false, and the reclaim daemon: on
   each node deletion, after a random delay of up to 5 s (so not every peer competes at once), removed nodes
   are reclaimed and the router's peers replaced by the node list.

Nothing the API answers stops the router: a failure is logged, counted (``KubeMode.stats``) and retried with a
back-off (Weave's script gave up on some of them and left the node without its condition, or without the
reclaim daemon).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import random
import shutil
import subprocess
import sys
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from weavenet.errors import ConfigError, WeavenetError
from weavenet.kube import peers as p
from weavenet.kube import plan
from weavenet.kube.api import SERVICE_ACCOUNT, KubeAPI, KubeError, Reflector

if TYPE_CHECKING:
    from weavenet.daemon.root import Weaver

log = logging.getLogger("weavenet.kube")

RECLAIM_FLAG = "flag:peer-reclaim"
DELETE_DELAY = 5.0  # Go: a random delay up to this before acting on a node deletion
RETRY = (1.0, 60.0)


@dataclass
class KubeStats:
    """What Kubernetes mode did and what failed (logged as it happens; kept for the tests and the log)."""

    reclaimed: list[str] = field(default_factory=list)
    reclaim_runs: int = 0
    reclaim_errors: int = 0
    node_status_set: bool = False
    node_status_errors: int = 0
    peer_resets: int = 0
    last_error: str = ""


# -- before the router --------------------------------------------------------------------------------------------


def choose_iptables(launch: plan.KubeLaunch, bin_dir: Path) -> str:
    """Weave's ``setup_iptables_backend``: the backend, and ``iptables``, ``-save`` and ``-restore`` of it first on
    ``PATH`` (links in ``bin_dir``), so everything the router runs uses it."""

    def rules(tool: str) -> int:
        if shutil.which(tool) is None:
            return 0
        res = subprocess.run([tool], capture_output=True, text=True, timeout=60, check=False)
        return plan.rule_lines(res.stdout)

    backend = launch.iptables_backend
    if not backend:
        backend = plan.iptables_backend("", rules("iptables-legacy-save"), rules("iptables-nft-save"))
    bin_dir.mkdir(parents=True, exist_ok=True)
    for tool in ("iptables", "iptables-save", "iptables-restore"):
        target = shutil.which(f"{tool.replace('iptables', f'iptables-{backend}', 1)}")
        if target is None:
            if launch.iptables_backend:
                raise ConfigError(f"IPTABLES_BACKEND={backend}: {tool}-{backend} is not installed")
            continue
        link = bin_dir / tool
        with contextlib.suppress(FileNotFoundError):
            link.unlink()
        link.symlink_to(target)
    os.environ["PATH"] = f"{bin_dir}{os.pathsep}{os.environ.get('PATH', '')}"
    log.info("iptables backend: %s", backend)
    return backend


def local_ipv4() -> set[str]:
    """This host's IPv4 addresses (Go's ``isLocalNodeIP`` compares node addresses with them)."""
    from pyroute2 import IPRoute

    with IPRoute() as ipr:
        return {a.get_attr("IFA_ADDRESS") for a in ipr.get_addr(family=2)} - {None}


@dataclass(frozen=True)
class SavedIdentity:
    name: int | None  # the peer name saved (ours, or Weave's not imported yet)
    reclaim_flag: bool  # the reclaim protocol was in use when it was saved
    where: str


def saved_identity(state_dir: str, db_prefix: str) -> SavedIdentity | None:
    """What the saved state says, without changing it: weavenet's store, else Weave's file (not imported yet)."""
    from weavenet.daemon.persistence import Store, state_exists
    from weavenet.daemon.weave_import import find_weave_db, import_weave_state

    if state_exists(state_dir):
        store = Store(state_dir)
        try:
            return SavedIdentity(store.load_peer_name(), store.get_raw(RECLAIM_FLAG) is not None, str(store.path))
        finally:
            store.close()
    path = find_weave_db(db_prefix, state_dir)
    if path is None:
        return None
    state = import_weave_state(path)
    name = int(state.peer_name) if state.peer_name is not None else None
    return SavedIdentity(name, "peer-reclaim" in state.flags, str(path))


def remove_saved_state(state_dir: str, db_prefix: str) -> None:
    """Weave's ``rm -f ${DB_PREFIX}data.db``, and our store beside it."""
    from weavenet.daemon.persistence import remove_state

    remove_state(state_dir)
    Path(db_prefix + "data.db").unlink(missing_ok=True)


def peer_name(launch: plan.KubeLaunch, saved: SavedIdentity | None) -> str:
    """The name the router will have (Weave's ``weaver --print-peer-name``): the bridge's, else the one saved
    if it is the old system-UUID one, else the machine id's under ``HOST_ROOT``."""
    from weavenet.daemon.identity import resolve_peer_name

    return str(resolve_peer_name(None, "weave", saved.name if saved else None, launch.host_root))


# -- Kubernetes mode --------------------------------------------------------------------------------------------------


class KubeMode:
    """The router's Kubernetes side (see the module docstring)."""

    def __init__(
        self,
        launch: plan.KubeLaunch,
        api: KubeAPI,
        me: str,
        *,
        rng: random.Random | None = None,
        delete_delay: float = DELETE_DELAY,
        retry: tuple[float, float] = RETRY,
        run_dir: str = "/run/weave",
    ) -> None:
        from weavenet.kube.reclaim import ConfigMapAnnotations

        self.launch = launch
        self.api = api
        self.me = me
        self.node = launch.node_name
        self.rng = rng or random.Random()
        self.delete_delay = delete_delay
        self.retry = retry
        self.run_dir = run_dir
        self.cml = ConfigMapAnnotations(api, rng=self.rng)
        self.stats = KubeStats()
        self.weaver: Weaver | None = None
        self._local: set[str] = set()
        self._tasks: list[asyncio.Task[None]] = []
        self._reclaim_lock = asyncio.Lock()
        self._nodes: set[str] | None = None
        self.node_count: int | None = None

    def is_local(self, ip: str) -> bool:
        return ip in self._local

    async def peers(self) -> list[str]:
        """``KUBE_PEERS``, else the other nodes' addresses (Go's ``kube-utils`` with no flag); ``node_count``
        is then the number of nodes with an address, this one included."""
        if self.launch.kube_peers is not None:
            return list(self.launch.kube_peers)
        self._local = await asyncio.to_thread(local_ipv4)
        delay = self.retry[0]
        while True:
            try:
                listed = await self.api.nodes()
                self.node_count = len(p.node_peers(listed, lambda ip: False))
                return [n.addr for n in p.node_peers(listed, self.is_local)]
            except KubeError as e:
                if e.code in (401, 403):  # the service account or its role: no retry mends that
                    raise
                log.warning("Failed to get peers (retrying in %.0fs): %s", delay, e)
            await asyncio.sleep(delay * (0.5 + self.rng.random() / 2))
            delay = min(delay * 2, self.retry[1])

    async def still_listed(self) -> bool:
        """Is this peer still in the ConfigMap's list (Go's ``-check-peer-new``)? Retried as the peers are; a
        list that cannot be read stops the launch: guessing could keep ranges another peer took over."""
        from weavenet.kube.reclaim import in_peer_list

        delay = self.retry[0]
        while True:
            try:
                return await in_peer_list(self.cml, self.me)
            except KubeError as e:
                if e.code in (401, 403):
                    raise ConfigError(f"cannot check the peer list in ConfigMap kube-system/weave-net: {e}") from e
                log.warning("checking the peer list failed (retrying in %.0fs): %s", delay, e)
            except ValueError as e:
                raise ConfigError(f"cannot check the peer list in ConfigMap kube-system/weave-net: {e}") from e
            await asyncio.sleep(delay * (0.5 + self.rng.random() / 2))
            delay = min(delay * 2, self.retry[1])

    # -- after the router started ----------------------------------------------------------------------------------

    def collect(self) -> Iterator[Any]:
        """Prometheus: the API calls and what failed, reclaims, the node watch (on the router's ``/metrics``)."""
        from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily

        st = self.stats
        for name, doc, value in (
            ("weavenet_kube_api_calls", "Calls to the Kubernetes API.", self.api.calls),
            (
                "weavenet_kube_api_failures",
                "Calls to the Kubernetes API that failed (and were retried).",
                self.api.failures,
            ),
            ("weavenet_kube_reclaim_runs", "Reclaims of removed nodes' ranges run.", st.reclaim_runs),
            ("weavenet_kube_reclaim_errors", "Reclaims that failed (retried).", st.reclaim_errors),
            ("weavenet_kube_reclaimed_peers", "Peers whose ranges this peer took over.", len(st.reclaimed)),
            ("weavenet_kube_peer_resets", "Router peers replaced by the node list.", st.peer_resets),
        ):
            yield CounterMetricFamily(name, doc, value=value)
        r = getattr(self, "reflector", None)
        if r is not None:
            yield CounterMetricFamily(
                "weavenet_kube_node_watch_errors", "Node list or watch failures.", value=r.stats.errors
            )
            yield CounterMetricFamily(
                "weavenet_kube_node_watch_relists", "Node lists after 410 Gone.", value=r.stats.relists
            )
        yield GaugeMetricFamily("weavenet_kube_node_status_set", "1 once NetworkUnavailable=false is set.",
                                value=1 if st.node_status_set else 0)  # fmt: skip

    def start(self, weaver: Weaver) -> None:
        self.weaver = weaver
        loop = asyncio.get_running_loop()
        self._tasks.append(loop.create_task(self._post_start(), name="kube post-start"))

    async def close(self) -> None:
        for t in self._tasks:
            t.cancel()
        for t in self._tasks:
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await t
        await self.api.close()

    async def _post_start(self) -> None:
        """Weave's ``post_start_actions``; the reclaim at start is retried until it succeeds (the peer list must
        name us, or a later start would take us for reclaimed), without holding the rest up."""
        self._local = await asyncio.to_thread(local_ipv4)
        loop = asyncio.get_running_loop()
        self._tasks.append(loop.create_task(self._retrying("reclaiming removed nodes at start", self._startup_reclaim)))
        await self._expose()
        await self._retrying("setting the node's NetworkUnavailable condition", self._set_node_status)
        self._tasks.append(loop.create_task(self._watch_nodes(), name="kube node watch"))

    async def _startup_reclaim(self) -> None:
        await self.reclaim(startup=True)

    async def _retrying(self, what: str, step: Any) -> None:
        delay = self.retry[0]
        while True:
            try:
                await step()
                return
            except Exception as e:  # whatever it was, the router goes on and the step is tried again
                said = str(e) if isinstance(e, WeavenetError) else f"{type(e).__name__}: {e}"
                self.stats.last_error = said
                log.warning("%s failed (retrying in %.0fs): %s", what, delay, said)
            await asyncio.sleep(delay * (0.5 + self.rng.random() / 2))
            delay = min(delay * 2, self.retry[1])

    async def _set_node_status(self) -> None:
        try:
            await self.api.set_network_available(self.node)
        except KubeError:
            self.stats.node_status_errors += 1
            raise
        self.stats.node_status_set = True
        log.info("node %s: NetworkUnavailable=false", self.node)

    async def _expose(self) -> None:
        """``weave --local expose $WEAVE_EXPOSE_IP``, as Weave's script runs it."""
        argv = [sys.executable, "-m", "weavenet.cli", "--local", "expose"]
        if self.launch.expose_ip:
            argv.append(self.launch.expose_ip)
        env = {**os.environ, "WEAVE_HTTP_ADDR": self.launch.http_addr, "WEAVE_RUN_DIR": self.run_dir}
        proc = await asyncio.create_subprocess_exec(
            *argv, env=env, stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE
        )
        out, err = await proc.communicate()
        if proc.returncode == 0:
            log.info("exposed the weave network on this host: %s", out.decode().strip())
        else:
            log.error("weave expose failed: %s", (err or out).decode().strip())

    def _rmpeer(self, peer: str) -> int:
        assert self.weaver is not None
        if self.weaver.ipam is None:
            log.warning("[kube-peers] not taking over %s: IPAM is off", peer)
            return 0
        return self.weaver.ipam.rmpeer(peer)

    async def reclaim(self, startup: bool = False) -> list[str]:
        """Go's ``-reclaim`` (at start: after adding ourselves to the list) and what a node deletion runs."""
        from weavenet.kube.reclaim import add_myself, reclaim_removed_peers

        async with self._reclaim_lock:
            self.stats.reclaim_runs += 1
            try:
                if startup:
                    listed = await add_myself(self.cml, self.me, self.node)
                    log.info("[kube-peers] Added myself to peer list %s", listed.names())
                done = await reclaim_removed_peers(self.api, self.cml, self.me, self.node, self._rmpeer, self.is_local)
            except Exception as e:
                self.stats.reclaim_errors += 1
                self.stats.last_error = str(e)
                if isinstance(e, WeavenetError | ValueError):
                    raise WeavenetError(f"reclaiming removed nodes: {e}") from e
                raise
            self.stats.reclaimed += done
            return done

    async def _reset_peers(self) -> None:
        """Go's ``resetPeers``: the router's peers replaced by the node list."""
        assert self.weaver is not None
        nodes = p.node_peers(await self.api.nodes(), self.is_local)
        addrs = [n.addr for n in nodes]
        errors = await self.weaver.connect(addrs, replace=True)
        self.stats.peer_resets += 1
        said = f" ({'; '.join(errors)})" if errors else ""
        log.info("[kube-peers] peers replaced by the node list: %s%s", addrs, said)

    async def _node_deleted(self) -> None:
        await asyncio.sleep(self.rng.random() * self.delete_delay)
        try:
            await self.reclaim()
            await self._reset_peers()
        except Exception as e:  # logged; the next deletion, or the next start, tries again
            said = str(e) if isinstance(e, WeavenetError) else f"{type(e).__name__}: {e}"
            log.error("[kube-peers] after a node was removed: %s", said)

    async def _watch_nodes(self) -> None:
        """The reclaim daemon: node deletions seen in a list+watch of nodes (a node gone between two lists, after
        a 410 or an error, counts too)."""
        from lightkube.resources.core_v1 import Node

        loop = asyncio.get_running_loop()

        def deleted(name: str) -> None:
            log.debug("Delete event for %s", name)
            self._tasks = [t for t in self._tasks if not t.done()]
            self._tasks.append(loop.create_task(self._node_deleted(), name=f"node {name} deleted"))

        def on_list(objs: list[Any]) -> None:
            names = {o.metadata.name for o in objs}
            if self._nodes is not None:
                for gone in sorted(self._nodes - names):
                    deleted(gone)
            self._nodes = names

        def on_event(kind: str, obj: Any) -> None:
            name = obj.metadata.name
            if self._nodes is None:
                self._nodes = set()
            if kind == "DELETED":
                self._nodes.discard(name)
                deleted(name)
            else:
                self._nodes.add(name)

        self.reflector = Reflector(self.api, Node, on_list, on_event, name="nodes")
        await self.reflector.run()


async def drop_state_if_reclaimed(mode: KubeMode, saved: SavedIdentity | None) -> bool:
    """Weave's check at start: the saved state says the reclaim protocol was in use and this peer is no longer in
    the ConfigMap's list, so another peer took its ranges over while it was away: the saved state goes (ours and
    Weave's file), and the router starts afresh rather than claim ranges that are no longer its own."""
    if saved is None or not saved.reclaim_flag or await mode.still_listed():
        return False
    log.warning("Peer not in list; removing persisted data (%s): another peer took over its ranges", saved.where)
    await asyncio.to_thread(remove_saved_state, mode.launch.state_dir, mode.launch.db_prefix)
    return True


# -- the entry point --------------------------------------------------------------------------------------------------


async def launch_router(env: Mapping[str, str], args: Sequence[str], service_account: str = SERVICE_ACCOUNT) -> int:
    """Steps 2-7 of the module docstring; returns when the router stops (SIGTERM)."""
    from weavenet.config import from_argv
    from weavenet.daemon.root import Weaver
    from weavenet.host.netcheck import network_overlap

    k = plan.from_env(env)
    if not k.node_name:
        raise ConfigError("HOSTNAME is not set: the manifest sets it to the node's name (spec.nodeName)")
    run_dir = env.get("WEAVE_RUN_DIR") or "/run/weave"
    await asyncio.to_thread(choose_iptables, k, Path(run_dir) / "iptables-bin")
    overlap = await asyncio.to_thread(network_overlap, k.ipalloc_range)
    if overlap:
        raise ConfigError(overlap)
    api = KubeAPI.in_cluster(service_account)
    try:
        saved = await asyncio.to_thread(saved_identity, k.state_dir, k.db_prefix)
        me = peer_name(k, saved)
        mode = KubeMode(k, api, me, run_dir=run_dir)
        try:
            peers = await mode.peers()
        except KubeError as e:
            raise ConfigError(f"Failed to get peers: {e}") from e
        await drop_state_if_reclaimed(mode, saved)
    except BaseException:
        await api.close()
        raise
    argv = plan.router_argv(k, me, peers, args, mode.node_count)
    log.info("weave router for node %s, peer %s, peers %s", k.node_name, me, " ".join(peers) or "(none)")
    config = from_argv(argv)
    os.makedirs(config.run_dir, exist_ok=True)
    try:
        weaver = Weaver(config)
    except BaseException:
        await api.close()
        raise
    from weavenet.core.codec.gob import STRING, encode_stream

    weaver.store.set_raw(RECLAIM_FLAG, encode_stream([(STRING, "ok")]))  # written with the launch's first flush
    weaver.collectors.append(mode)
    try:
        await weaver.start()
    except BaseException:
        await api.close()
        raise
    mode.start(weaver)
    try:
        await weaver.run_until_stopped()
    finally:
        await mode.close()
    return 0
