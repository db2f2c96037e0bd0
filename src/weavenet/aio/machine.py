"""The one driver of the pure machines: run an input with ``now``, carry out what it asked for, re-arm timers.

Every pure core of the router (the mesh router, the IPAM allocator, weaveDNS's nameserver, the fast datapath's
forwarders inside the router) is a machine in the aioquic ``transmit()`` pattern: inputs take ``now`` and
return at once; what it wants done in the world (bytes to write, datagrams, dials) piles up as actions; when it
wants to be woken it says so through ``get_timer()``. This driver is the only place that turns that into
asyncio:

* :meth:`MachineDriver.run` feeds one input (a function of ``now``), then *flushes*: the after-input hooks run
  (tables for the data plane, the fast datapath's reconciler: they read the machines' new state, and a new link
  must be in the data plane's tables before the heartbeat that proves it is handed over, or that heartbeat is
  dropped and the link takes half a second longer each way), every registered machine's actions are drained by
  its own drain callback, given the input's ``now`` (one input of one machine can cause actions of another: an
  IPAM allocation gossips through the mesh router), and every machine's timer is re-armed;
* each machine has at most one ``loop.call_at``, re-armed only when its deadline moved; when it fires, the
  machine's ``handle_timer`` gets ``now = max(deadline, loop.time())``, so a machine never sees a time before
  the deadline it asked for (``call_at`` may fire a hair early);
* time is ``loop.time()`` (monotonic); :attr:`MachineDriver.wall_offset` turns it into Unix time for what must
  be wall-clock (gossiped timestamps, status output).

A failing input or drain is logged and does not stop the flush: the timers are re-armed whatever happened, so a
machine whose tick raised once still ticks again.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Protocol, TypeVar

log = logging.getLogger("weavenet.aio")

T = TypeVar("T")
MAX_ROUNDS = 100  # flush rounds for inputs fed from inside a flush; more means two parts feed each other forever


class Machine(Protocol):
    """What the driver needs of a pure machine: when to wake it, and the wake itself."""

    def get_timer(self) -> float | None: ...

    def handle_timer(self, now: float) -> None: ...


@dataclass(eq=False)
class _Registered:
    name: str
    machine: Machine
    drain: Callable[[float], None] | None
    timer: asyncio.TimerHandle | None = None
    timer_at: float | None = None


class MachineDriver:
    """Runs pure machines on one asyncio loop (see the module docstring)."""

    def __init__(self, loop: asyncio.AbstractEventLoop | None = None) -> None:
        self.loop = loop or asyncio.get_running_loop()
        self.wall_offset = time.time() - self.loop.time()
        self.after_input: list[Callable[[], None]] = []
        self._machines: list[_Registered] = []
        self._flushing = False
        self._again = False  # an input arrived during a flush (from a drain or a hook): flush once more
        self.closed = False

    def add(self, name: str, machine: Machine, drain: Callable[[float], None] | None = None) -> None:
        """Register a machine; ``drain(now)`` carries out its pending actions (called after every input)."""
        self._machines.append(_Registered(name, machine, drain))

    def now(self) -> float:
        return self.loop.time()

    def wall(self, now: float | None = None) -> float:
        """Unix time of ``now`` (default: the loop's current time), for what is shown with a date."""
        return (self.loop.time() if now is None else now) + self.wall_offset

    def run(self, fn: Callable[[float], T]) -> T | None:
        """Feed one input to a machine, then flush; the input's return value, None once closed."""
        if self.closed:
            return None
        now = self.loop.time()
        try:
            return fn(now)
        finally:
            self.flush(now)

    def flush(self, now: float | None = None) -> None:
        """Drain every machine's actions, run the after-input hooks, re-arm every timer.

        ``now``: the time of the input just fed (the drains see that time, never an earlier one; default the
        loop's time). A round for inputs fed during the flush takes the later of it and the loop's time."""
        if self._flushing:  # a drain or hook fed an input: the outer flush goes round once more
            self._again = True
            return
        self._flushing = True
        if now is None:
            now = self.loop.time()
        try:
            for round_ in range(MAX_ROUNDS):
                if round_:
                    now = max(now, self.loop.time())
                self._again = False
                for hook in self.after_input:  # first: the data plane must know a new link before its heartbeat
                    try:
                        hook()
                    except Exception:
                        log.exception("after-input hook %s failed", getattr(hook, "__qualname__", hook))
                for reg in self._machines:
                    if reg.drain is not None:
                        try:
                            reg.drain(now)
                        except Exception:
                            log.exception("carrying out what %s asked for failed", reg.name)
                if not self._again:
                    break
            else:
                log.error("inputs kept coming while flushing (%d rounds): the rest waits for another input", MAX_ROUNDS)
        finally:
            self._flushing = False
            if not self.closed:
                for reg in self._machines:
                    self._arm(reg)

    def _arm(self, reg: _Registered) -> None:
        deadline = reg.machine.get_timer()
        if deadline == reg.timer_at and (deadline is None or reg.timer is not None):
            return
        if reg.timer is not None:
            reg.timer.cancel()
        reg.timer_at = deadline
        reg.timer = None if deadline is None else self.loop.call_at(deadline, self._fire, reg)

    def _fire(self, reg: _Registered) -> None:
        deadline = reg.timer_at
        reg.timer = None
        reg.timer_at = None
        now = self.loop.time() if deadline is None else max(deadline, self.loop.time())
        if self.closed:
            return
        try:
            reg.machine.handle_timer(now)
        except Exception:
            log.exception("%s: timer failed; it is armed again", reg.name)
        finally:
            self.flush(now)

    def close(self) -> None:
        """No more inputs; every timer cancelled."""
        self.closed = True
        for reg in self._machines:
            if reg.timer is not None:
                reg.timer.cancel()
                reg.timer = None
                reg.timer_at = None
