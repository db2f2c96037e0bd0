"""The entry store and its merge rules (the CRDT that gossip relies on)."""

from __future__ import annotations

import random

from hypothesis import given
from hypothesis import strategies as st

from weavenet.dns.entries import Entries, Entry, addr_text, parse_addr


def test_add_is_sorted_case_insensitively_and_lookup_ignores_case() -> None:
    s = Entries()
    s.add("web.weave.local.", "c1", 1, 1)
    s.add("Web.weave.local.", "c2", 1, 2)
    s.add("db.weave.local.", "c3", 1, 3)
    assert [e.hostname for e in s] == ["db.weave.local.", "web.weave.local.", "Web.weave.local."]
    assert {e.container_id for e in s.lookup("WEB.weave.local.")} == {"c1", "c2"}
    assert s.lookup("nope.weave.local.") == []


def test_readd_revives_a_tombstone_with_a_new_version() -> None:
    s = Entries()
    s.add("a.weave.local.", "c", 1, 1)
    (dead,) = s.tombstone(1, lambda e: True, 100)
    assert (dead.version, dead.tombstone) == (1, 100)
    back = s.add("a.weave.local.", "c", 1, 1)
    assert (back.version, back.tombstone) == (2, 0)
    assert len(s) == 1


def test_only_our_origin_is_tombstoned() -> None:
    s = Entries()
    s.add("a.weave.local.", "c", 1, 1)
    s.merge([Entry("d", 2, 2, "a.weave.local.")])
    gone = s.tombstone(1, lambda e: True, 5)
    assert [e.origin for e in gone] == [1]
    assert [e.live for e in s] == [False, True]


def test_merge_rules_version_then_tombstone() -> None:
    s = Entries([Entry("c", 1, 1, "a.", version=2)])
    assert s.merge([Entry("c", 1, 1, "a.", version=1, tombstone=9)]) == []  # older version loses
    (new,) = s.merge([Entry("c", 1, 1, "a.", version=2, tombstone=9)])  # same version, later tombstone
    assert new.tombstone == 9
    assert s.merge([Entry("c", 1, 1, "a.", version=2, tombstone=3)]) == []
    (new,) = s.merge([Entry("c", 1, 1, "a.", version=3)])  # revived at a higher version
    assert new.live


def test_filter_and_generation() -> None:
    s = Entries()
    g = s.generation
    s.add("a.", "c", 1, 1)
    s.add("b.", "c", 2, 1)
    assert s.generation > g
    assert s.filter(lambda e: e.origin != 2) == 1
    assert [e.hostname for e in s] == ["a."]


def test_addr_text_roundtrip() -> None:
    assert addr_text(parse_addr("10.32.0.1")) == "10.32.0.1"
    for bad in ("10.32.0", "10.32.0.256", "a.b.c.d", "1.2.3.4.5", "-1.2.3.4"):
        try:
            parse_addr(bad)
        except ValueError:
            continue
        raise AssertionError(bad)


_entry = st.builds(
    Entry,
    st.sampled_from(["c1", "c2"]),
    st.sampled_from([1, 2]),
    st.sampled_from([1, 2]),
    st.sampled_from(["a.weave.local.", "A.weave.local.", "b.weave.local."]),
    st.integers(0, 3),
    st.sampled_from([0, 10, 20]),
)


@given(st.lists(_entry, max_size=12), st.randoms())
def test_merge_is_order_independent(updates: list[Entry], rnd: random.Random) -> None:
    """Whatever order gossip arrives in, every peer ends with the same state (commutative, idempotent)."""
    a, b = Entries(), Entries()
    for e in updates:
        a.merge([e])
    shuffled = list(updates)
    rnd.shuffle(shuffled)
    b.merge(shuffled)
    b.merge(shuffled)
    state = lambda s: [(e.sort_key(), e.version, e.tombstone) for e in s]  # noqa: E731
    assert state(a) == state(b)
