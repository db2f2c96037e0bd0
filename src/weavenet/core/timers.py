"""Named deadlines for pure state machines: set, cancel, pop the due ones, report the earliest.

A heap with lazy deletion: re-setting a key to a new deadline leaves the old heap entry behind, to be skipped
when it surfaces. Setting a key to the deadline it already has is free, so callers may re-arm freely.
"""

from __future__ import annotations

import heapq
from collections.abc import Hashable


class Timers:
    def __init__(self) -> None:
        self._deadline: dict[Hashable, float] = {}
        self._heap: list[tuple[float, int, Hashable]] = []
        self._seq = 0

    def set(self, key: Hashable, when: float) -> None:
        if self._deadline.get(key) == when:
            return
        self._deadline[key] = when
        self._seq += 1
        heapq.heappush(self._heap, (when, self._seq, key))
        if len(self._heap) > 64 and len(self._heap) > 4 * len(self._deadline):
            self._compact()

    def cancel(self, key: Hashable) -> None:
        self._deadline.pop(key, None)

    def pending(self, key: Hashable) -> bool:
        return key in self._deadline

    def deadline(self, key: Hashable) -> float | None:
        return self._deadline.get(key)

    def next_deadline(self) -> float | None:
        heap = self._heap
        while heap:
            when, _, key = heap[0]
            if self._deadline.get(key) == when:
                return when
            heapq.heappop(heap)
        return None

    def pop_due(self, now: float) -> list[Hashable]:
        """Remove and return the keys whose deadline is <= now, earliest first."""
        due: list[Hashable] = []
        heap = self._heap
        while heap and heap[0][0] <= now:
            when, _, key = heapq.heappop(heap)
            if self._deadline.get(key) == when:
                del self._deadline[key]
                due.append(key)
        return due

    def _compact(self) -> None:
        self._heap = [(w, s, k) for (w, s, k) in self._heap if self._deadline.get(k) == w]
        heapq.heapify(self._heap)
