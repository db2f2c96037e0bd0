"""``--no-masq-local`` in the router: the set of this peer's ranges kept in step with the IPAM ring (Weave's
``NoMasqLocalTracker``), see :mod:`weavenet.host.no_masq_local`.

After every input the router handles, the ranges this peer owns are compared with the last ones (cheap: the ring
has an entry per range); a change is written to the set in a thread, the newest wanted set each time, so a burst
of changes costs one ``ipset restore``. A failure is logged and tried again at the next change.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Callable

from weavenet.errors import HostError
from weavenet.host import no_masq_local as host
from weavenet.ipam.address import Range, merge_ranges

log = logging.getLogger("weavenet.daemon")


def local_cidrs(ranges: list[Range]) -> frozenset[str]:
    """The ranges as CIDRs, adjacent ones merged first (Weave's ``address.Merge`` then ``NewCIDRs``)."""
    return frozenset(str(c) for r in merge_ranges(ranges) for c in r.cidrs())


class NoMasqLocal:
    def __init__(self, ranges: Callable[[], list[Range]]) -> None:
        self.ranges = ranges
        self.wanted: frozenset[str] = frozenset()
        self.applied: frozenset[str] = frozenset()
        self.failures = 0
        self._task: asyncio.Task[None] | None = None

    async def start(self) -> None:
        await asyncio.to_thread(host.setup)
        log.info("Using %r LocalRangeTracker", "no-masq-local")
        self.check()

    def check(self) -> None:
        wanted = local_cidrs(self.ranges())
        if wanted == self.wanted:
            return
        self.wanted = wanted
        if self._task is None or self._task.done():
            self._task = asyncio.get_running_loop().create_task(self._sync())

    async def _sync(self) -> None:
        while self.applied != self.wanted:
            want = self.wanted
            try:
                await asyncio.to_thread(host.update, want - self.applied, self.applied - want)
            except HostError as e:
                self.failures += 1
                log.error("no-masq-local: the set of local ranges could not be updated: %s", e)
                return
            self.applied = want

    async def close(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
