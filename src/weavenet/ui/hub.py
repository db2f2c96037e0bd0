"""The web view's hub: one snapshot per tick, shared by every viewer, so viewers cost the router almost nothing.

Why this shape: the report behind the page is the one ``weave status`` builds, and building it is the only real
work; 50 open pages must not mean 50 reports a second. So the hub builds one per tick, encodes each message once
(a full snapshot only when it differs from the last one, the throughput sample every tick, timeline entries as
they happen) and hands the same bytes to every viewer's queue. A queue holds ``QUEUE`` messages at most: a
viewer that does not read (a stalled browser, a slow link) fills it and is dropped (its connection closed), so it
holds neither memory nor the router's loop; the browser's EventSource reconnects by itself when it can.

With no viewer the hub still ticks, every ``IDLE_TICK`` seconds, to keep the timeline (what happened before the
page was opened); a viewer that joins wakes it at once. A tick costs about the size of the report, which grows
with the mesh (every peer's connections), so with no viewer the pace also keeps the ticks under ``IDLE_SHARE``
of a core: a tick that took 40 ms of CPU waits 16 s for the next (at 20 routers idle, unwatched ticks were a
fifth of what a daemon spent).
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import time
from collections import deque
from collections.abc import Callable
from typing import Any, Protocol

from weavenet.ui import events, model, rates

log = logging.getLogger("weavenet.ui")

TICK = 1.0  # seconds between ticks while someone watches
IDLE_TICK = 5.0  # ... and while nobody does (the timeline)
IDLE_SHARE = 0.0025  # ... at most this share of a core for ticks nobody watches


def idle_wait(idle_tick: float, tick_cpu: float) -> float:
    """Seconds from one unwatched tick to the next: ``idle_tick``, longer if the last tick's CPU time says that
    would cost more than ``IDLE_SHARE`` of a core."""
    return max(idle_tick, tick_cpu / IDLE_SHARE)


QUEUE = 16  # messages a viewer may be behind before it is dropped
MAX_VIEWERS = 64  # the listener (API, status) serves 128 connections: the CLI and plugins keep room
HISTORY = 200  # timeline entries kept


class ViewSource(Protocol):
    """What the router gives the view each tick (``weavenet.daemon.ui_source``)."""

    def view_input(self) -> model.ViewInput: ...


def sse(event: str, data: Any) -> bytes:
    """One server-sent event (the JSON has no newline, so one ``data:`` line)."""
    return f"event: {event}\ndata: {json.dumps(data, separators=(',', ':'))}\n\n".encode()


class Viewer:
    """One open event stream: a bounded queue of encoded messages."""

    def __init__(self, close: Callable[[], None] | None = None, alive: Callable[[], bool] | None = None) -> None:
        """``close`` ends its connection; ``alive`` says whether its client is still connected (None: assumed)."""
        self.queue: asyncio.Queue[bytes | None] = asyncio.Queue(QUEUE)
        self.dropped = False
        self._close = close
        self._alive = alive

    def connected(self) -> bool:
        return self._alive is None or self._alive()

    def offer(self, message: bytes) -> bool:
        """Queue a message; False (and the viewer dropped) if it is ``QUEUE`` messages behind."""
        if self.dropped:
            return False
        try:
            self.queue.put_nowait(message)
        except asyncio.QueueFull:
            self.drop()
            return False
        return True

    def drop(self) -> None:
        self.dropped = True
        while not self.queue.empty():
            self.queue.get_nowait()
        self.queue.put_nowait(None)  # wakes a reader waiting for the next message
        if self._close is not None:
            self._close()  # a writer stuck on a full socket is woken by its connection closing

    async def next(self) -> bytes | None:
        """The next message, or None once dropped."""
        if self.dropped:
            return None
        return await self.queue.get()


class Hub:
    def __init__(
        self,
        source: ViewSource,
        *,
        tick: float = TICK,
        idle_tick: float = IDLE_TICK,
        max_viewers: int = MAX_VIEWERS,
        wall: Callable[[], float] = time.time,
        mono: Callable[[], float] = time.monotonic,
    ) -> None:
        self.source = source
        self.tick = tick
        self.idle_tick = idle_tick
        self.max_viewers = max_viewers
        self._wall = wall
        self._mono = mono
        self.tick_cpu = 0.0  # CPU time of the last tick (this thread's), for the unwatched pace
        self.viewers: set[Viewer] = set()
        self.snapshot: dict[str, Any] | None = None
        self._snapshot_msg = b""
        self._memory = model.Memory()
        self.rates = rates.Rates()
        self.timeline: deque[dict[str, Any]] = deque(maxlen=HISTORY)
        self.ticks = 0
        self.dropped = 0  # viewers dropped for not keeping up
        self._wake = asyncio.Event()
        self._task: asyncio.Task[None] | None = None

    # -- viewers ---------------------------------------------------------------------------------------------

    def join(self, close: Callable[[], None] | None = None, alive: Callable[[], bool] | None = None) -> Viewer | None:
        """A new viewer, or None when ``max_viewers`` are watching already.

        A viewer whose client has gone is only noticed when a message is next written to it (the server does not
        tell its handler), a tick later: so when the hub is full, those are let go first and their places given
        out, and streams opened and closed faster than ticks (a page reloaded over and over) are never refused."""
        if len(self.viewers) >= self.max_viewers:
            for gone in [v for v in self.viewers if not v.connected()]:
                self.viewers.discard(gone)
                gone.drop()
            if len(self.viewers) >= self.max_viewers:
                return None
        viewer = Viewer(close, alive)
        self.viewers.add(viewer)
        if len(self.viewers) == 1:
            self._wake.set()  # from the idle pace to one tick a second, now
        return viewer

    def leave(self, viewer: Viewer) -> None:
        self.viewers.discard(viewer)

    def hello(self) -> bytes:
        """What a new viewer gets first: the snapshot, the timeline and the throughput history."""
        if self.snapshot is None:
            self.step()
        return sse(
            "hello",
            {"snapshot": self.snapshot, "timeline": list(self.timeline), "rates": list(self.rates.history)},
        )

    # -- ticking ---------------------------------------------------------------------------------------------

    def step(self) -> None:
        """One tick: build the snapshot, note what changed, send what is new to every viewer."""
        wall, mono = self._wall(), self._mono()
        inp = self.source.view_input()
        snap, self._memory = model.build(inp, self._memory, wall)
        new = events.diff(self.snapshot, snap, wall)
        self.timeline.extend(new)
        sample = self.rates.update(mono, wall, rates.counters(inp.report))
        self.ticks += 1
        messages = []
        encoded = sse("snapshot", snap)
        if encoded != self._snapshot_msg:
            self._snapshot_msg = encoded
            messages.append(encoded)
        self.snapshot = snap
        if new:
            messages.append(sse("events", new))
        messages.append(sse("rates", sample))
        for viewer in list(self.viewers):
            for message in messages:
                if not viewer.offer(message):
                    self.dropped += 1
                    self.viewers.discard(viewer)
                    log.info("web view: a viewer %d messages behind was dropped", QUEUE)
                    break

    async def _run(self) -> None:
        while True:
            started = time.thread_time()
            try:
                self.step()
            except Exception:  # a bug in the view must never take the router down
                log.exception("web view: building the snapshot failed")
            self.tick_cpu = time.thread_time() - started
            self._wake.clear()
            wait = self.tick if self.viewers else idle_wait(self.idle_tick, self.tick_cpu)
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._wake.wait(), wait)

    def start(self) -> None:
        if self._task is None:
            self._task = asyncio.get_running_loop().create_task(self._run(), name="web view hub")

    async def close(self) -> None:
        for viewer in list(self.viewers):
            viewer.drop()
        self.viewers.clear()
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
            self._task = None
