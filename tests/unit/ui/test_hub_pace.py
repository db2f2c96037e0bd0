"""The hub's pace with nobody watching: bounded by the CPU its ticks take, so a big mesh's report does not
cost every router a steady share of a core for a page nobody has open."""

from __future__ import annotations

import asyncio
import time

from weavenet.status import sample_report
from weavenet.ui.hub import IDLE_SHARE, Hub, idle_wait
from weavenet.ui.model import ViewInput


def test_idle_wait_keeps_unwatched_ticks_under_their_share() -> None:
    assert idle_wait(5.0, 0.001) == 5.0  # a cheap tick: the usual pace
    assert idle_wait(5.0, 0.04) == 0.04 / IDLE_SHARE  # 40 ms of CPU: 16 s apart
    assert 0.04 / idle_wait(5.0, 0.04) <= IDLE_SHARE


class _Costly:
    """A report that takes ``cost`` seconds of CPU to build (a big mesh's)."""

    def __init__(self, cost: float) -> None:
        self.cost = cost
        self.calls = 0

    def view_input(self) -> ViewInput:
        self.calls += 1
        end = time.thread_time() + self.cost
        while time.thread_time() < end:
            pass
        return ViewInput(sample_report())


async def test_an_unwatched_hub_ticks_less_when_ticks_cost_more() -> None:
    source = _Costly(0.01)
    hub = Hub(source, tick=0.01, idle_tick=0.01)
    hub.start()
    await asyncio.sleep(1.0)
    unwatched = source.calls
    viewer = hub.join()  # someone opens the page: the hub wakes at once and ticks at its watched pace
    await asyncio.sleep(0.3)
    watched = source.calls - unwatched
    assert viewer is not None
    await hub.close()
    assert unwatched <= 2  # 10+ ms a tick: at most one every 4 s (it was one every 10 ms)
    assert watched >= 5
