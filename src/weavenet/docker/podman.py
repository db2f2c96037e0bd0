"""Podman containers' labels for network policy: podman's API (its system service), asked as Docker's is.

A container podman puts on weave goes through the CNI plugin, and podman (4.x, CNI backend) tells a CNI plugin
nothing of its labels: ``CNI_ARGS`` is ``IgnoreUnknown=1;K8S_POD_NAME=<name>``, there is no ``runtimeConfig``
but published ports, and the OCI bundle's ``config.json`` (which holds annotations, not labels) is written only
after the network is set up. Nor can the plugin ask podman: podman holds the container's lock for the whole
start, so an inspect (or a listing) from within ADD waits until the start is over, which waits for the plugin.
So the router asks podman's Docker-compatible API, after the fact, as it asks Docker's for the plugin's network:

* the event stream (``type=container`` and ``network``): on ``init``/``start`` (the network is up, the lock soon
  free), and on ``podman network connect``/``disconnect``, the container is inspected: its labels
  (``Config.Labels``: the event's attributes mix podman's own keys, such as ``name`` and ``image``, with the
  labels) and its process, whose network namespace's ports on the weave bridge give its addresses. A container
  with no port on the bridge is not ours (another network): left alone, or forgotten if it was registered. A
  container runs unpoliced from its interface's creation until this registration (the rest of its start and one
  inspect: 0.25 to 0.5 s measured on a loaded machine), as a container of Docker's plugin network does until
  its start event;
* ``die``/``remove``, and the release of its addresses (the CNI plugin's DEL, which ``podman network disconnect``
  makes): the pod goes (and ``podman restart`` registers it again with its next ``start``);
* each time the stream opens (launch, podman's service restarted): the running containers are registered
  again, so a restarted router polices them with their labels; those remembered from its last run and no longer
  running are dropped by the policy service after its confirmation delay.

The stream is re-opened with a back-off while podman's API does not answer (no ``podman.socket``): its
containers are then no pods (only ``ipBlock`` peers match their addresses), which the log and ``weave status``
say.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
from collections.abc import Awaitable, Callable, Coroutine
from dataclasses import dataclass
from typing import Literal

from weavenet.docker.api import DockerClient, DockerError

log = logging.getLogger("weavenet.docker")

BACKOFF_MIN, BACKOFF_MAX = 0.5, 10.0
REGISTER = ("init", "start", "restart")  # the network is up: who it is, and where
FORGET = ("die", "died", "remove", "destroy", "cleanup")  # compat stream says die/remove; libpod's died/cleanup
NETWORK = ("connect", "disconnect")  # podman network connect/disconnect: events of type network

PodSink = Callable[..., Awaitable[None]]  # (ident, name, labels, ips, wait=False)
Forget = Callable[[str], Awaitable[object]]
Action = Literal["register", "forget"]


@dataclass(frozen=True)
class PodmanContainer:
    """What network policy needs of an inspected container: its ID, name, labels and process."""

    ident: str
    name: str
    labels: dict[str, str]
    pid: int
    running: bool


def event_action(msg: object) -> tuple[Action, str] | None:
    """(what to do, container ID) for one message of the event stream; None for others (and malformed ones).
    A container connected to a network or disconnected from one (``Type`` network, the container's ID) is looked
    at again: it may have come onto weave, or left it."""
    if not isinstance(msg, dict):
        return None
    kind = msg.get("Type", "container")
    action = str(msg.get("Action") or msg.get("status") or "")
    actor = msg.get("Actor")
    ident = str(msg.get("id") or (actor.get("ID") if isinstance(actor, dict) else "") or "")
    if not ident:
        return None
    if (kind == "container" and action in REGISTER) or (kind == "network" and action in NETWORK):
        return "register", ident
    if kind == "container" and action in FORGET:
        return "forget", ident
    return None


def container_of(info: object) -> PodmanContainer | None:
    """The container an inspect answer describes; None if it is not one (no ID)."""
    if not isinstance(info, dict) or not isinstance(info.get("Id"), str) or not info["Id"]:
        return None
    config = info.get("Config") if isinstance(info.get("Config"), dict) else {}
    raw = config.get("Labels") if isinstance(config, dict) else None
    labels = {str(k): str(v) for k, v in raw.items()} if isinstance(raw, dict) else {}
    state = info.get("State") if isinstance(info.get("State"), dict) else {}
    assert isinstance(state, dict)
    pid = state.get("Pid")
    return PodmanContainer(
        info["Id"],
        str(info.get("Name") or "").lstrip("/"),
        labels,
        pid if isinstance(pid, int) and pid > 0 else 0,
        bool(state.get("Running")),
    )


def _bridge_addresses(bridge: str, pid: int) -> list[str]:
    """The addresses of the process's network namespace on ``bridge`` ([] if it has no port there)."""
    from weavenet.host.ports import bridge_ports

    path = f"/proc/{pid}/ns/net"
    try:
        inode = os.stat(path).st_ino
    except OSError:
        return []
    return [c.split("/")[0] for p in bridge_ports(bridge, hints=[path]) if p.inode == inode for c in p.cidrs]


class PodmanWatch:
    """Podman's containers on the weave bridge, registered with their labels (see the module docstring)."""

    def __init__(self, api: str, bridge: str, on_pod: PodSink, on_gone: Forget, explicit: bool = True) -> None:
        """``explicit``: ``api`` was given (not the default), so failing to reach it is worth saying even if
        podman was never there."""
        self.api = api
        self.explicit = explicit
        self.ever_connected = False
        self.bridge = bridge
        self.on_pod = on_pod
        self.on_gone = on_gone
        self.client = DockerClient(api, option="--podman-api")
        self.connected = False
        self.last_error = ""
        self.registered: set[str] = set()  # containers of podman registered as pods now
        self.counts = {"registered": 0, "forgotten": 0, "failed": 0}
        self._generation: dict[str, int] = {}  # per container: bumped by every event, so a stale inspect is dropped
        self._task: asyncio.Task[None] | None = None
        self._children: set[asyncio.Task[None]] = set()

    def start(self) -> None:
        self._task = asyncio.get_running_loop().create_task(self._run())

    async def close(self) -> None:
        tasks = [t for t in (self._task, *self._children) if t is not None]
        for t in tasks:
            t.cancel()
        for t in tasks:
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await t
        await self.client.close()

    def status(self) -> str:
        """One line for ``weave status`` (network policy's ``Podman``); "" on a host that has no podman API at
        the default place and never had (nothing to say there)."""
        ep = self.client.endpoint
        there = ep.proto != "unix" or os.path.exists(ep.path)
        if not (self.connected or self.ever_connected or self.explicit or there):
            return ""
        if self.connected:
            return f"labels from {self.api}; containers on weave: {len(self.registered)}"
        why = self.last_error or "connecting"
        return f"no labels from {self.api} ({why}): podman's containers on weave are no pods"

    async def _run(self) -> None:
        backoff = BACKOFF_MIN
        while True:
            try:
                async for msg in self.client.events({"type": ["container", "network"]}, self._opened):
                    self._handle(msg)
                    backoff = BACKOFF_MIN
                self.last_error = "event stream closed by podman"
            except asyncio.CancelledError:
                raise
            except DockerError as e:
                self.last_error = e.message
            except Exception as e:  # never let the watch die: log and reconnect
                self.last_error = f"{type(e).__name__}: {e}"
                log.exception("podman event watch")
            if self.connected or (backoff == BACKOFF_MIN and self.status()):
                log.warning("podman: %s; its containers on weave are no pods until it answers "
                            "(retrying, every %.0fs at most)", self.last_error, BACKOFF_MAX)  # fmt: skip
            self.connected = False
            await asyncio.sleep(backoff)
            backoff = min(backoff * 2, BACKOFF_MAX)

    def _opened(self) -> None:
        self.connected = self.ever_connected = True
        self.last_error = ""
        log.info("podman: reading container labels from %s", self.api)
        self._spawn(self._register_running())

    def _spawn(self, coro: Coroutine[object, object, None]) -> None:
        task = asyncio.get_running_loop().create_task(coro)
        self._children.add(task)
        task.add_done_callback(self._children.discard)

    def _handle(self, msg: object) -> None:
        got = event_action(msg)
        if got is None:
            return
        action, ident = got
        gen = self._generation[ident] = self._generation.get(ident, 0) + 1
        if action == "register":
            self._spawn(self._register(ident, gen))
        else:
            self.released(ident)

    def released(self, ident: str) -> None:
        """IPAM released the container's addresses (the CNI plugin's DEL: ``podman network disconnect``, or the
        end of a container whose death we missed): no pod any more."""
        self._generation.pop(ident, None)
        if ident in self.registered:
            self.registered.discard(ident)
            self.counts["forgotten"] += 1
            self._spawn(self._forget(ident))

    async def _forget(self, ident: str) -> None:
        try:
            await self.on_gone(ident)
        except Exception:
            log.exception("network policy: removing podman container %s failed", ident[:12])

    async def _register_running(self) -> None:
        try:
            running = [str(c.get("Id", "")) for c in await self.client.containers() if isinstance(c, dict)]
        except DockerError as e:
            log.warning("podman: listing the running containers: %s", e.message)
            return
        for ident in running:
            if ident:
                await self._register(ident, self._generation.get(ident, 0))

    async def _register(self, ident: str, gen: int) -> None:
        """Inspect (it answers once podman's start is over) and register, unless an event came meanwhile."""
        try:
            c = container_of(await self.client.inspect_container(ident))
            if c is None or not c.running or not c.pid:
                return
            ips = await asyncio.to_thread(_bridge_addresses, self.bridge, c.pid)
            if self._generation.get(c.ident, 0) != gen:
                return  # it died (or started again, or changed networks) while we asked: the later event decides
            if not ips:
                self.released(c.ident)  # not on weave (any more: podman network disconnect)
                return
            await self.on_pod(c.ident, c.name, c.labels, ips, wait=False)
        except DockerError as e:
            if e.status != 404:  # gone already: its removal event follows
                self.counts["failed"] += 1
                log.warning("podman: container %s: %s", ident[:12], e.message)
            return
        except Exception:
            self.counts["failed"] += 1
            log.exception("network policy: registering podman container %s failed", ident[:12])
            return
        if c.ident not in self.registered:
            log.info("network policy: podman container %s (%s) registered with %d labels", c.ident[:12], c.name,
                     len(c.labels))  # fmt: skip
        self.registered.add(c.ident)
        self.counts["registered"] += 1
