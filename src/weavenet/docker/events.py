"""Docker's event stream into the daemon's container-event hub (``daemon.container_events``).

``start``, ``die`` and ``destroy`` of every container (whether or not it came through the proxy) are published
with the container's full ID as ident, so IPAM frees a dead container's addresses after Weave's grace period and
at once on ``destroy``, and weaveDNS drops its names. A ``start`` of a proxied container also attaches it again:
that is how ``docker restart`` and restart policies keep it on the weave network. The stream is re-opened with
backoff when the engine goes away; the error is shown in ``weave report``.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Awaitable, Callable
from typing import Any

from weavenet.core.container_events import DESTROY, DIE, START, ContainerEvent, ContainerEvents, EventKind
from weavenet.docker.api import DockerClient, DockerError

log = logging.getLogger("weavenet.docker")
KINDS: dict[str, EventKind] = {"start": START, "die": DIE, "destroy": DESTROY}
BACKOFF_MIN, BACKOFF_MAX = 0.5, 10.0


def to_event(msg: dict[str, Any], now: float) -> ContainerEvent | None:
    """A hub event from one Docker event message (old and new formats), or None if it is not one we carry."""
    if msg.get("Type", "container") != "container":
        return None
    action = str(msg.get("Action") or msg.get("status") or "")
    kind = KINDS.get(action)
    ident = str(msg.get("id") or (msg.get("Actor") or {}).get("ID") or "")
    if kind is None or not ident:
        return None
    return ContainerEvent(kind, ident, now)


class EventWatcher:
    def __init__(
        self,
        docker: DockerClient,
        hub: ContainerEvents,
        on_start: Callable[[str], Awaitable[None]] | None = None,
        on_destroy: Callable[[str], None] | None = None,
        on_connected: Callable[[], Awaitable[None]] | None = None,
    ) -> None:
        self.docker = docker
        self.hub = hub
        self.on_start = on_start
        self.on_destroy = on_destroy
        self.on_connected = on_connected
        self.connected = asyncio.Event()
        self.last_error = ""
        self.counts = {"start": 0, "die": 0, "destroy": 0}
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

    async def _run(self) -> None:
        backoff = BACKOFF_MIN
        loop = asyncio.get_running_loop()
        while True:
            try:
                async for msg in self.docker.events({"type": ["container"], "event": list(KINDS)}, self._opened):
                    self._handle(msg, loop.time())
                    backoff = BACKOFF_MIN
                self.last_error = "event stream closed by the engine"
            except asyncio.CancelledError:
                raise
            except DockerError as e:
                self.last_error = e.message
            except Exception as e:  # never let the watcher die: log and reconnect
                self.last_error = f"{type(e).__name__}: {e}"
                log.exception("Docker event watcher")
            self.connected.clear()
            log.warning("Docker events: %s; retrying in %.1fs", self.last_error, backoff)
            await asyncio.sleep(backoff)
            backoff = min(backoff * 2, BACKOFF_MAX)

    def _opened(self) -> None:
        self.connected.set()
        self.last_error = ""
        if self.on_connected is not None:
            self._spawn(self.on_connected())

    def _spawn(self, coro: Awaitable[None]) -> None:
        task = asyncio.get_running_loop().create_task(coro)  # type: ignore[arg-type]
        self._children.add(task)
        task.add_done_callback(self._children.discard)

    def _handle(self, msg: dict[str, Any], now: float) -> None:
        ev = to_event(msg, now)
        if ev is None:
            return
        self.counts[ev.kind] += 1
        try:
            self.hub.publish(ev)
        except Exception:
            log.exception("container event %s %s: a subscriber failed", ev.kind, ev.ident[:12])
        if ev.kind == START and self.on_start is not None:
            self._spawn(self.on_start(ev.ident))
        elif ev.kind == DESTROY and self.on_destroy is not None:
            self.on_destroy(ev.ident)
