"""Space: lowest-free allocation, claims, frees, donation of CIDR-aligned halves (Weave's space_test cases)."""

from __future__ import annotations

from hypothesis import given, settings
from hypothesis import strategies as st

from weavenet.ipam.address import CIDR, Range, ip_str
from weavenet.ipam.space import Space

BASE = int(CIDR.parse("10.0.3.0/24").addr)


def test_allocate_lowest_free_and_reuse_first() -> None:
    s = Space()
    s.add(BASE, 20)
    got = [s.allocate(Range(BASE, BASE + 20)) for _ in range(3)]
    assert got == [BASE, BASE + 1, BASE + 2]
    s.free_addr(BASE + 1)
    assert s.allocate(Range(BASE, BASE + 20)) == BASE + 1
    assert s.num_owned() == 3 and s.num_free() == 17


def test_allocate_respects_the_range_and_runs_out() -> None:
    s = Space()
    s.add(BASE, 4)
    assert s.allocate(Range(BASE + 2, BASE + 3)) == BASE + 2
    assert s.allocate(Range(BASE + 2, BASE + 3)) is None
    assert s.allocate(Range(BASE + 10, BASE + 20)) is None


def test_claim_and_free_errors() -> None:
    s = Space()
    s.add(BASE, 4)
    s.claim(BASE + 3)
    for bad in (lambda: s.claim(BASE + 3), lambda: s.claim(BASE + 9), lambda: s.free_addr(BASE)):
        try:
            bad()
        except ValueError:
            continue
        raise AssertionError("expected ValueError")
    s.free_addr(BASE + 3)
    assert s.is_free(BASE + 3)


def test_donate_upper_half_of_biggest_cidr_block() -> None:
    s = Space()
    s.add(BASE, 256)
    r = s.donate(Range(BASE, BASE + 256))
    assert r == Range(BASE + 128, BASE + 256)
    assert s.owned_ranges() == [Range(BASE, BASE + 128)]
    s.claim(BASE + 0)
    r2 = s.donate(Range(BASE, BASE + 256))
    assert r2 is not None and r2.size == 32 and ip_str(r2.start) == "10.0.3.96"


def test_donate_nothing_when_full() -> None:
    s = Space()
    s.add(BASE, 2)
    s.claim(BASE)
    s.claim(BASE + 1)
    assert s.donate(Range(BASE, BASE + 2)) is None


def test_update_ranges_adds_only_what_is_missing() -> None:
    s = Space()
    s.add(BASE, 10)
    s.claim(BASE + 5)
    s.update_ranges([Range(BASE, BASE + 20)])
    assert s.owned_ranges() == [Range(BASE, BASE + 20)]
    assert s.is_allocated(BASE + 5) and s.num_free() == 19


def test_remove_range_forgets_it() -> None:
    s = Space()
    s.add(BASE, 16)
    s.claim(BASE + 9)
    assert s.allocated_in(Range(BASE + 8, BASE + 16)) == [BASE + 9]
    s.remove(Range(BASE + 8, BASE + 16))
    assert s.owned_ranges() == [Range(BASE, BASE + 8)] and s.num_owned() == 0


@settings(max_examples=200, deadline=None)
@given(st.lists(st.tuples(st.sampled_from("acfd"), st.integers(0, 63)), max_size=80))
def test_space_matches_a_set_model(ops: list[tuple[str, int]]) -> None:
    s = Space()
    s.add(BASE, 64)
    free, used = set(range(BASE, BASE + 64)), set()
    for op, x in ops:
        a = BASE + x
        if op == "a":
            got = s.allocate(Range(a, BASE + 64))
            want = min((y for y in free if y >= a), default=None)
            assert got == want
            if got is not None:
                free.discard(got)
                used.add(got)
        elif op == "c" and a in free:
            s.claim(a)
            free.discard(a)
            used.add(a)
        elif op == "f" and a in used:
            s.free_addr(a)
            used.discard(a)
            free.add(a)
        elif op == "d":
            r = s.donate(Range(BASE, BASE + 64))
            if r is not None:
                block = set(range(r.start, r.end))
                assert block <= free, "donated addresses must all be free"
                assert r.size & (r.size - 1) == 0 and r.start % r.size == 0, "CIDR aligned"
                free -= block
        assert s.num_free() == len(free) and s.num_owned() == len(used)
        assert all(s.is_free(y) for y in free) and all(s.is_allocated(y) for y in used)
