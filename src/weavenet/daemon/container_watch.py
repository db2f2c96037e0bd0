"""Noticing that containers attached by ``weave attach`` are gone, and telling IPAM and weaveDNS.

Weave learns of container deaths from Docker's event stream. Containers attached by PID or namespace path have
no such stream, so the router reads the attach registry (``weavenet.host.attached``) every few seconds and
checks each namespace: when it no longer exists, or its path now leads to another namespace (a reused PID or a
re-created namespace), the container is gone and a ``die`` event goes out on the daemon's
:class:`~weavenet.core.container_events.ContainerEvents` hub, as Docker's would; IPAM then frees its addresses
after Weave's 30 s grace (``weave attach`` of the same ident within it keeps them, like ``docker restart``)
and DNS drops its names. A container that shows up in the registry (attached, or attached again) is announced
with ``start``. A container that was detached (its entry removed while its namespace lives on) is not a death.

The decision is the pure :class:`WatchState`; :class:`ContainerWatch` only reads the file and the namespaces
(in a thread) and publishes.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
from collections.abc import Callable
from dataclasses import dataclass, field

from weavenet.core.container_events import DIE, START, ContainerEvent, ContainerEvents
from weavenet.host import attached

log = logging.getLogger("weavenet.daemon")

WATCH_INTERVAL = 3.0


def ident_alive(ident: str) -> bool:
    """``check-alive`` for idents we can check ourselves: a PID must exist, a namespace path must be a
    namespace; other idents (Docker IDs, ``weave:expose``) are taken as alive (Docker's events cover them)."""
    if ident.isdigit():
        return os.path.exists(f"/proc/{ident}")
    if ident.startswith("/"):
        return attached.ns_inode(ident) is not None
    return True


def checkable(ident: str) -> bool:
    """Idents whose liveness this host can decide without Docker."""
    return ident.isdigit() or ident.startswith("/")


@dataclass
class WatchState:
    """What was seen on the last scan; ``observe`` turns the next scan into events."""

    known: dict[str, attached.Attached] = field(default_factory=dict)  # by netns path

    def observe(
        self,
        entries: dict[str, attached.Attached],
        alive: Callable[[attached.Attached], bool],
        now: float,
    ) -> tuple[list[ContainerEvent], list[str]]:
        """Events for this scan, and the registry keys to drop (their containers are gone)."""
        events: list[ContainerEvent] = []
        drop: list[str] = []
        for key, e in entries.items():
            old = self.known.get(key)
            if not alive(e):
                drop.append(key)
                events.append(ContainerEvent(DIE, e.ident, now))
                self.known.pop(key, None)
                continue
            if old is None or old.inode != e.inode or old.ident != e.ident:
                if old is not None and old.ident != e.ident:
                    events.append(ContainerEvent(DIE, old.ident, now))
                events.append(ContainerEvent(START, e.ident, now))
            self.known[key] = e
        for key in [k for k in self.known if k not in entries]:
            old = self.known.pop(key)
            if not alive(old):  # gone while out of the registry (pruned by `weave ps`): still a death
                events.append(ContainerEvent(DIE, old.ident, now))
        return events, drop


class ContainerWatch:
    def __init__(
        self,
        run_dir: str,
        hub: ContainerEvents,
        clock: Callable[[], float],
        interval: float = WATCH_INTERVAL,
        hints: Callable[[], list[str]] = list,
    ) -> None:
        self.run_dir = run_dir
        self.hints = hints  # idents IPAM knows: an unreadable registry is rebuilt under them
        self.hub = hub
        self.clock = clock
        self.interval = interval
        self.state = WatchState()
        self.deaths = 0
        self._task: asyncio.Task[None] | None = None

    def start(self, initial: dict[str, attached.Attached]) -> None:
        """Begin watching; ``initial`` (live entries at launch) are known already, so no ``start`` for them."""
        self.state.known = dict(initial)
        self._task = asyncio.get_running_loop().create_task(self._loop())

    async def close(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task

    async def scan(self) -> None:
        entries, status = await asyncio.to_thread(_read_registry, self.run_dir, self.hints())
        events, drop = self.state.observe(entries, lambda e: status.get(e.netns, False), self.clock())
        if drop:
            await asyncio.to_thread(_drop, self.run_dir, drop)
        for ev in events:
            if ev.kind == DIE:
                self.deaths += 1
                log.info("container %s is gone (its network namespace no longer exists)", ev.ident)
            try:
                self.hub.publish(ev)
            except Exception:
                log.exception("a container event subscriber failed on %s %s", ev.kind, ev.ident)

    async def _loop(self) -> None:
        while True:
            await asyncio.sleep(self.interval)
            try:
                await self.scan()
            except Exception:
                log.exception("container watch failed; trying again")


def _read_registry(run_dir: str, hints: list[str]) -> tuple[dict[str, attached.Attached], dict[str, bool]]:
    entries = attached.load(run_dir, rebuild=lambda: attached.rebuild_from_bridge(hints))
    return entries, {e.netns: attached.alive(e) for e in entries.values()}


def _drop(run_dir: str, keys: list[str]) -> None:
    def change(entries: dict[str, attached.Attached]) -> None:
        for k in keys:
            e = entries.get(k)
            if e is not None and not attached.alive(e):
                del entries[k]

    attached.update(run_dir, change)
