"""The DaemonSet's policy controller container (Weave 2.8's ``weave-npc``), feeding the router's network policy.

It watches Namespaces, Pods and NetworkPolicies through the API (a list+watch each: ``api.Reflector``) and hands
what it saw to the router on this node, which compiles and enforces it like every other source of policy
(``weavenet.daemon.policy_service`` in ``--network-policy kubernetes``, set by the router container when
``EXPECT_NPC`` is not ``0``): a whole state once all three are listed, and after every restart of either side
(``PUT /policy/kubernetes``, in parts of at most ``PART_BYTES``); then the changes, gathered for ``DEBOUNCE``
(``PATCH``). A change the router does not take (it restarted, or one went missing) is answered by a whole state;
a router that does not answer is tried again with a back-off. Every ``HEARTBEAT`` an empty change tells a router
that restarted meanwhile to ask for the whole state, which the last run's table keeps in force until then.

What is handed over is what policy needs and nothing else (``weavenet.policy.kube_source``): names, namespaces
and labels; policies' specs; the pods weave-npc polices (not finished, with an address, not on the host
network) with their addresses, named ports and node.

Flags are weave-npc's: ``--metrics-addr`` (``:6781``: ``weavenpc_blocked_connections_total`` from the kernel's
counters, ``weavenpc_policy_enforcement_errors``, and the watches' own counters), ``--allow-mcast`` (true),
``--node-name`` (``$HOSTNAME``), ``--log-level``; ``--max-list-size`` and ``--bridge-port-name`` are taken and
have nothing to set (nftables sets have no size limit to choose, and pods are told apart by address).
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import logging
import os
import random
import sys
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

from weavenet.errors import ConfigError
from weavenet.kube.api import SERVICE_ACCOUNT, KubeAPI, Reflector

log = logging.getLogger("weavenet.npc")

DEBOUNCE = 0.05
HEARTBEAT = 2.0
PART_BYTES = 512 * 1024  # a whole state's pods go in parts of about this size (the router's API takes 1 MiB)
RETRY = (0.5, 10.0)
KINDS = ("Namespaces", "NetworkPolicies", "Pods")


# -- what policy needs of each object -------------------------------------------------------------------------------


def namespace_entry(obj: Any) -> dict[str, Any]:
    return {"apiVersion": "v1", "kind": "Namespace", "metadata": _meta(obj.metadata, namespaced=False)}


def policy_entry(obj: Any) -> dict[str, Any]:
    spec = obj.to_dict().get("spec") or {}
    return {
        "apiVersion": "networking.k8s.io/v1",
        "kind": "NetworkPolicy",
        "metadata": _meta(obj.metadata, namespaced=True),
        "spec": spec,
    }


def _meta(m: Any, namespaced: bool) -> dict[str, Any]:
    out: dict[str, Any] = {"name": m.name}
    if namespaced:
        out["namespace"] = m.namespace or "default"
    if m.labels:
        out["labels"] = dict(m.labels)
    if m.creationTimestamp is not None:  # for the AGE column of weave policy ls
        out["creationTimestamp"] = m.creationTimestamp.strftime("%Y-%m-%dT%H:%M:%SZ")
    return out


def pod_entry(obj: Any) -> dict[str, Any] | None:
    """The pod as policy sees it, or None if weave-npc would leave it out (finished, no address yet, or on the
    host's network, where its address is the node's)."""
    status, spec = obj.status, obj.spec
    if status is None or status.phase in ("Succeeded", "Failed") or not status.podIP:
        return None
    if spec is not None and spec.hostNetwork:
        return None
    ips = [a.ip for a in status.podIPs or () if a.ip] or [status.podIP]
    ports = [
        {"Name": cp.name, "Port": cp.containerPort, "Protocol": cp.protocol or "TCP"}
        for c in (spec.containers if spec is not None else None) or ()
        for cp in c.ports or ()
        if cp.name
    ]
    return {
        "Namespace": obj.metadata.namespace or "default",
        "Name": obj.metadata.name,
        "Labels": dict(obj.metadata.labels or {}),
        "IPs": ips,
        "Ports": ports,
        "Node": (spec.nodeName if spec is not None else None) or "",
    }


def _key(kind: str, obj: Any) -> str:
    m = obj.metadata
    return m.name if kind == "Namespaces" else f"{m.namespace or 'default'}/{m.name}"


REDUCE = {"Namespaces": namespace_entry, "NetworkPolicies": policy_entry, "Pods": pod_entry}


# -- the controller -------------------------------------------------------------------------------------------------


@dataclass
class NpcStats:
    wholes: int = 0
    patches: int = 0
    refused: int = 0  # changes the router did not take (out of step): a whole state followed
    push_errors: int = 0  # the router did not answer, or answered an error
    last_error: str = ""


class Controller:
    """The watches, the cache of what they saw, and the feed to the router (see the module docstring)."""

    def __init__(
        self,
        api: KubeAPI,
        router: str,
        node: str,
        allow_mcast: bool = True,
        *,
        debounce: float = DEBOUNCE,
        heartbeat: float = HEARTBEAT,
        retry: tuple[float, float] = RETRY,
        part_bytes: int = PART_BYTES,
        rng: random.Random | None = None,
    ) -> None:
        self.api = api
        self.router = router.rstrip("/")
        self.node = node
        self.allow_mcast = allow_mcast
        self.debounce = debounce
        self.heartbeat = heartbeat
        self.retry = retry
        self.part_bytes = part_bytes
        self.rng = rng or random.Random()
        self.session = uuid.uuid4().hex
        self.seq = -1
        self.cache: dict[str, dict[str, dict[str, Any]]] = {k: {} for k in KINDS}
        self.dirty: dict[str, set[str]] = {k: set() for k in KINDS}
        self.listed: set[str] = set()
        self.whole_needed = True
        self._weave_cleaned = False
        self.stats = NpcStats()
        self.reflectors: dict[str, Reflector] = {}
        self._wake = asyncio.Event()
        self._tasks: list[asyncio.Task[None]] = []

    # -- the watches' callbacks ------------------------------------------------------------------------------------

    def on_list(self, kind: str, objs: list[Any]) -> None:
        new = {}
        for o in objs:
            entry = REDUCE[kind](o)
            if entry is not None:
                new[_key(kind, o)] = entry
        old = self.cache[kind]
        self.dirty[kind] |= {k for k in old.keys() | new.keys() if old.get(k) != new.get(k)}
        self.cache[kind] = new
        self.listed.add(kind)
        self._wake.set()

    def on_event(self, kind: str, event: str, obj: Any) -> None:
        key = _key(kind, obj)
        entry = None if event == "DELETED" else REDUCE[kind](obj)
        cache = self.cache[kind]
        if entry is None:
            if cache.pop(key, None) is None:
                return
        elif cache.get(key) == entry:
            return  # a change policy does not see (a pod's status, an annotation)
        else:
            cache[key] = entry
        self.dirty[kind].add(key)
        self._wake.set()

    # -- running ------------------------------------------------------------------------------------------------

    async def run(self) -> None:
        import aiohttp
        from lightkube.resources.core_v1 import Namespace, Pod
        from lightkube.resources.networking_v1 import NetworkPolicy

        loop = asyncio.get_running_loop()
        for kind, res in (("Namespaces", Namespace), ("NetworkPolicies", NetworkPolicy), ("Pods", Pod)):
            r = Reflector(
                self.api,
                res,
                lambda objs, k=kind: self.on_list(k, objs),  # type: ignore[misc]
                lambda ev, obj, k=kind: self.on_event(k, ev, obj),  # type: ignore[misc]
                name=kind.lower(),
                rng=self.rng,
            )
            self.reflectors[kind] = r
            self._tasks.append(loop.create_task(r.run(), name=f"watch {kind}"))
        timeout = aiohttp.ClientTimeout(total=60)
        try:
            async with aiohttp.ClientSession(timeout=timeout) as http:
                await self._feed(http)
        finally:
            for t in self._tasks:
                t.cancel()
            for t in self._tasks:
                with contextlib.suppress(asyncio.CancelledError):
                    await t

    async def _feed(self, http: Any) -> None:
        delay = self.retry[0]
        while True:
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._wake.wait(), self.heartbeat)
            self._wake.clear()
            await asyncio.sleep(self.debounce)
            if len(self.listed) < len(KINDS):
                continue  # a whole state needs all three lists
            try:
                await self._push(http)
                delay = self.retry[0]
            except Exception as e:
                self.stats.push_errors += 1
                self.stats.last_error = f"{type(e).__name__}: {e}" if not isinstance(e, _PushError) else str(e)
                self.whole_needed = True
                log.warning("network policy: the router did not take the state (retrying in %.1fs): %s", delay,
                            self.stats.last_error)  # fmt: skip
                await asyncio.sleep(delay * (0.5 + self.rng.random() / 2))
                delay = min(delay * 2, self.retry[1])
                self._wake.set()

    async def _send(self, http: Any, method: str, body: dict[str, Any]) -> tuple[int, str]:
        async with http.request(method, f"{self.router}/policy/kubernetes", data=json.dumps(body).encode()) as resp:
            return resp.status, await resp.text()

    async def _push(self, http: Any) -> None:
        if not self.whole_needed:
            dirty = {k: set(v) for k, v in self.dirty.items()}
            body = {
                "Session": self.session,
                "Seq": self.seq + 1,
                "Set": {k: [self.cache[k][key] for key in sorted(dirty[k]) if key in self.cache[k]] for k in KINDS},
                "Delete": {k: sorted(key for key in dirty[k] if key not in self.cache[k]) for k in KINDS},
            }
            status, text = await self._send(http, "PATCH", body)
            if status == 200:
                self.seq += 1
                self.stats.patches += 1
                for k in KINDS:
                    self.dirty[k] -= dirty[k]
                self._said(text)
                return
            if status != 409:
                raise _PushError(f"PATCH /policy/kubernetes: {status} {text.strip()}")
            self.stats.refused += 1
            log.info("network policy: the router wants the whole state (%s)", text.strip())
        await self._push_whole(http)

    async def _push_whole(self, http: Any) -> None:
        dirty = {k: set(v) for k, v in self.dirty.items()}
        self.seq += 1
        for i, part in enumerate(parts := list(self._parts())):
            body = {
                "Session": self.session,
                "Seq": self.seq,
                "Node": self.node,
                "AllowMcast": self.allow_mcast,
                "Final": i == len(parts) - 1,
                **part,
            }
            status, text = await self._send(http, "PUT", body)
            if status != 200:
                raise _PushError(f"PUT /policy/kubernetes: {status} {text.strip()}")
        self.whole_needed = False
        self.stats.wholes += 1
        for k in KINDS:
            self.dirty[k] -= dirty[k]
        in_force = self._said(text)
        if in_force and not self._weave_cleaned:
            await self._remove_weaves()
        log.info("network policy: the whole state handed to the router (%d namespaces, %d policies, %d pods, "
                 "%d parts)", *(len(self.cache[k]) for k in KINDS), len(parts))  # fmt: skip

    def _parts(self) -> Iterator[dict[str, list[dict[str, Any]]]]:
        """The whole state: namespaces and policies first, then the pods in parts of about ``part_bytes``."""
        part: dict[str, list[dict[str, Any]]] = {k: [] for k in KINDS}
        size = 0
        for kind in KINDS:
            for _, entry in sorted(self.cache[kind].items()):
                n = len(json.dumps(entry))
                if size + n > self.part_bytes and size:
                    yield part
                    part, size = {k: [] for k in KINDS}, 0
                part[kind].append(entry)
                size += n
        yield part

    def _said(self, text: str) -> bool:
        """Log what the router said went wrong; whether the state is in force there."""
        try:
            answer = json.loads(text)
            problem, in_force = str(answer.get("Problem", "")), bool(answer.get("InForce"))
        except (ValueError, AttributeError):
            return False
        if problem:
            self.stats.last_error = problem
            log.warning("network policy: the router says: %s", problem)
        return in_force

    async def _remove_weaves(self) -> None:
        """Weave 2.8's weave-npc rules and sets, once the router enforces this node's state (an in-place move
        from Weave left them, see ``weavenet.host.weave_npc``)."""
        from weavenet.host.weave_npc import remove_leftovers

        self._weave_cleaned = True
        removed = await asyncio.to_thread(remove_leftovers)
        if removed:
            log.info("network policy: removed what Weave's weave-npc left: %s", "; ".join(removed))


class _PushError(Exception):
    pass


# -- metrics --------------------------------------------------------------------------------------------------------


class Collector:
    """weave-npc's metrics, and the watches' and the feed's counters."""

    def __init__(self, controller: Controller) -> None:
        self.controller = controller
        self._enforcer: Any = None

    def collect(self) -> Iterator[Any]:
        from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily

        from weavenet.errors import HostError
        from weavenet.host.npc import Enforcer

        c = self.controller
        blocked = CounterMetricFamily(
            "weavenpc_blocked_connections",
            "Connection attempts blocked by policy controller.",
            labels=["dport", "protocol"],
        )
        if self._enforcer is None:
            self._enforcer = Enforcer()
        with contextlib.suppress(HostError):
            for (proto, port), (packets, _) in sorted(self._enforcer.blocked_counts().items()):
                blocked.add_metric([str(port), proto], packets)
        yield blocked
        yield CounterMetricFamily(
            "weavenpc_policy_enforcement_errors",
            "States the router could not be given.",
            value=c.stats.push_errors,
        )
        watch = CounterMetricFamily(
            "weavenet_npc_watch_errors", "Failed list or watch calls, by resource.", labels=["resource"]
        )
        relists = CounterMetricFamily(
            "weavenet_npc_watch_relists", "Lists again after 410 Gone, by resource.", labels=["resource"]
        )
        synced = GaugeMetricFamily("weavenet_npc_watch_synced", "1 once listed, by resource.", labels=["resource"])
        for kind, r in sorted(c.reflectors.items()):
            watch.add_metric([kind.lower()], r.stats.errors)
            relists.add_metric([kind.lower()], r.stats.relists)
            synced.add_metric([kind.lower()], 1 if r.stats.synced else 0)
        yield watch
        yield relists
        yield synced
        pushes = CounterMetricFamily("weavenet_npc_states", "States handed to the router, by kind.", labels=["kind"])
        pushes.add_metric(["whole"], c.stats.wholes)
        pushes.add_metric(["change"], c.stats.patches)
        yield pushes


async def serve_metrics(addr: str, controller: Controller) -> Any:
    from aiohttp import web
    from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, generate_latest

    registry = CollectorRegistry(auto_describe=False)
    registry.register(Collector(controller))  # type: ignore[arg-type]

    async def metrics(request: web.Request) -> web.Response:
        body = await asyncio.to_thread(generate_latest, registry)
        return web.Response(body=body, headers={"Content-Type": CONTENT_TYPE_LATEST})

    app = web.Application()
    app.router.add_get("/metrics", metrics)
    runner = web.AppRunner(app, access_log=None, shutdown_timeout=2.0)
    await runner.setup()
    host, _, port = addr.rpartition(":")
    try:
        await web.TCPSite(runner, host or None, int(port)).start()
    except (OSError, ValueError) as e:
        await runner.cleanup()
        raise ConfigError(f"--metrics-addr {addr}: {e}") from e
    return runner


# -- the entry point ------------------------------------------------------------------------------------------------


def _gobool(text: str) -> bool:
    t = text.lower()
    if t in ("1", "t", "true"):
        return True
    if t in ("0", "f", "false"):
        return False
    raise argparse.ArgumentTypeError(f"invalid boolean {text!r}")


def parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="weave-npc", description="weavenet's Kubernetes network policy controller")
    p.add_argument("--metrics-addr", default=":6781", help="metrics server bind address")
    p.add_argument("--log-level", default="info", choices=("debug", "info", "warning", "error"))
    p.add_argument("--allow-mcast", type=_gobool, nargs="?", const=True, default=True, help="allow all multicast")
    p.add_argument("--node-name", default="", help="this node's name (default $HOSTNAME)")
    p.add_argument("--max-list-size", type=int, default=1024, help="accepted for compatibility (no limit to set)")
    p.add_argument("--bridge-port-name", default="vethwe-bridge", help="accepted for compatibility")
    return p


async def run(args: argparse.Namespace, service_account: str = SERVICE_ACCOUNT) -> None:
    node = args.node_name or os.environ.get("HOSTNAME", "")
    if not node:
        raise ConfigError("Must set node name via --node-name or $HOSTNAME")
    api = KubeAPI.in_cluster(service_account)
    router = "http://" + (os.environ.get("WEAVE_HTTP_ADDR") or "127.0.0.1:6784")
    controller = Controller(api, router, node, args.allow_mcast)
    log.info("Starting weavenet's network policy controller; node name %r, router %s", node, router)
    runner = await serve_metrics(args.metrics_addr, controller) if args.metrics_addr else None
    try:
        await controller.run()
    finally:
        if runner is not None:
            await runner.cleanup()
        await api.close()


def main(argv: list[str]) -> int:
    import signal

    from weavenet.kube.__main__ import _logging

    try:
        args = parser().parse_args(argv)
    except SystemExit as e:
        return int(e.code or 0)
    _logging(args.log_level)

    async def body() -> None:
        task = asyncio.current_task()
        assert task is not None
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(sig, task.cancel)
        with contextlib.suppress(asyncio.CancelledError):
            await run(args)

    asyncio.run(body())
    log.info("network policy controller stopped")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
