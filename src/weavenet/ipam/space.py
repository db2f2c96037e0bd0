"""The addresses of the ranges this peer owns: which are allocated, which are free (Weave's ``ipam/space``).

Two sorted boundary lists, ``ours`` (allocated) and ``free``: even positions open a range, odd ones close it,
neighbours are coalesced, so both lists stay short however many addresses are in use. Allocation hands out
the *lowest* free address of the requested range, so a freed address is the first to be reused (Weave's
behaviour, which its users and tests rely on); donation gives away the upper half of the biggest CIDR-aligned
free block, which keeps every peer's holdings CIDR-shaped.
"""

from __future__ import annotations

from bisect import bisect_left, bisect_right

from weavenet.ipam.address import Range


def _add(bounds: list[int], start: int, end: int) -> list[int]:
    return _add_sub(bounds, start, end, 0)


def _subtract(bounds: list[int], start: int, end: int) -> list[int]:
    return _add_sub(bounds, start, end, 1)


def _add_sub(bounds: list[int], start: int, end: int, sense: int) -> list[int]:
    if start >= end:
        return bounds
    start_pos = bisect_left(bounds, start)
    end_pos = bisect_right(bounds, end, lo=start_pos)
    res = bounds[:start_pos]
    if start_pos & 1 == sense:
        res.append(start)
    if end_pos & 1 == sense:
        res.append(end)
    res.extend(bounds[end_pos:])
    return res


def _contains(bounds: list[int], addr: int) -> bool:
    return bisect_right(bounds, addr) & 1 == 1


def _pairs(bounds: list[int]) -> list[Range]:
    return [Range(bounds[i], bounds[i + 1]) for i in range(0, len(bounds), 2)]


class Space:
    def __init__(self) -> None:
        self.ours: list[int] = []
        self.free: list[int] = []

    def add(self, start: int, size: int) -> None:
        self.free = _add(self.free, start, start + size)

    def clear(self) -> None:
        self.ours = []
        self.free = []

    def _free_chunks(self, r: Range) -> list[Range]:
        """The free parts of ``r``, in address order."""
        if r.start >= r.end:
            return []
        out = []
        i = bisect_right(self.free, r.start)
        i -= i & 1  # back to the start of the chunk containing r.start (if any)
        free = self.free
        while i < len(free):
            s, e = free[i], free[i + 1]
            if s >= r.end:
                break
            if e > r.start:
                out.append(Range(max(s, r.start), min(e, r.end)))
            i += 2
        return out

    def allocate(self, r: Range) -> int | None:
        """The lowest free address in ``r`` (now allocated), or None."""
        chunks = self._free_chunks(r)
        if not chunks:
            return None
        addr = chunks[0].start
        self.ours = _add(self.ours, addr, addr + 1)
        self.free = _subtract(self.free, addr, addr + 1)
        return addr

    def claim(self, addr: int) -> None:
        if not _contains(self.free, addr):
            raise ValueError(f"Address {addr} is not free to claim")
        self.ours = _add(self.ours, addr, addr + 1)
        self.free = _subtract(self.free, addr, addr + 1)

    def free_addr(self, addr: int) -> None:
        if not _contains(self.ours, addr):
            raise ValueError(f"Address {addr} is not ours")
        if _contains(self.free, addr):
            raise ValueError(f"Address {addr} is already free")
        self.ours = _subtract(self.ours, addr, addr + 1)
        self.free = _add(self.free, addr, addr + 1)

    def is_allocated(self, addr: int) -> bool:
        return _contains(self.ours, addr)

    def is_free(self, addr: int) -> bool:
        return _contains(self.free, addr)

    def num_owned(self) -> int:
        return sum(r.size for r in _pairs(self.ours))

    def num_free(self) -> int:
        return sum(r.size for r in _pairs(self.free))

    def num_free_in_range(self, r: Range) -> int:
        return sum(c.size for c in self._free_chunks(r))

    def allocated_in(self, r: Range) -> list[int]:
        """Allocated addresses inside ``r`` (used when a range must be given up)."""
        out: list[int] = []
        for a in _pairs(self.ours):
            out.extend(range(max(a.start, r.start), min(a.end, r.end)))
        return out

    def _biggest_free_range(self, r: Range) -> Range:
        biggest = Range(0, 0)
        for chunk in self._free_chunks(r):
            if chunk.size >= biggest.size:
                c = chunk.biggest_cidr_range()
                if c.size >= biggest.size:
                    biggest = c
        return biggest

    def donate(self, r: Range) -> Range | None:
        """Give away free space in ``r``: the biggest CIDR block, at most (about) half of what is free."""
        biggest = self._biggest_free_range(r)
        if biggest.size == 0:
            return None
        if biggest.size > self.num_free_in_range(r) // 2:
            biggest = Range(biggest.start + biggest.size // 2, biggest.end)
        self.ours = _subtract(self.ours, biggest.start, biggest.end)
        self.free = _subtract(self.free, biggest.start, biggest.end)
        return biggest

    def remove(self, r: Range) -> None:
        """Forget ``r`` entirely (it now belongs to another peer)."""
        self.ours = _subtract(self.ours, r.start, r.end)
        self.free = _subtract(self.free, r.start, r.end)

    def _everything(self) -> list[int]:
        out = list(self.ours)
        for c in _pairs(self.free):
            out = _add(out, c.start, c.end)
        return out

    def owned_ranges(self) -> list[Range]:
        """Everything we hold, allocated or free, as coalesced ranges."""
        return _pairs(self._everything())

    def add_ranges(self, ranges: list[Range]) -> None:
        for r in ranges:
            self.free = _add(self.free, r.start, r.end)

    def update_ranges(self, ranges: list[Range]) -> None:
        """``ranges`` is all we should own: add what is missing as free space."""
        new: list[int] = []
        for r in ranges:
            new = _add(new, r.start, r.end)
        for c in _pairs(self._everything()):
            new = _subtract(new, c.start, c.end)
        for c in _pairs(new):
            self.free = _add(self.free, c.start, c.end)

    def __repr__(self) -> str:
        return f"Space(ours={_pairs(self.ours)}, free={_pairs(self.free)})"
