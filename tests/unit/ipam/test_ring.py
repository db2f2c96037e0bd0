"""The ring CRDT: Weave's rules case by case, then properties over random valid histories (hypothesis)."""

from __future__ import annotations

import random

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from weavenet.core.names import PeerName
from weavenet.ipam.address import CIDR, Range
from weavenet.ipam.ring import DifferentRange, DifferentSeeds, Entry, Ring, RingError

U = CIDR.parse_subnet("10.32.0.0/12")
START, END = U.addr, U.addr + U.size
P = [PeerName(0x0A0000000000 + i) for i in range(1, 9)]
OUTSIDER = PeerName(0x0AFFFFFFFFFF)


def ring(owner: PeerName, seeded: list[PeerName] | None = None) -> Ring:
    r = Ring(START, END, owner)
    if seeded:
        r.claim_for_peers(seeded)
    return r


def no_allocs(_: list[Range]) -> bool:
    return False


def all_allocs(_: list[Range]) -> bool:
    return True


def view(r: Ring) -> list[tuple[int, int, int, int]]:
    return [(e.token, e.peer, e.version, e.free) for e in r.entries]


def test_claim_for_peers_halves_cidr_aligned() -> None:
    r = ring(P[0], [P[0], P[1], P[2]])
    assert [(str(x.range), x.peer) for x in r.all_range_info()] == [
        ("10.32.0.0-10.39.255.255", P[0]),
        ("10.40.0.0-10.43.255.255", P[1]),
        ("10.44.0.0-10.47.255.255", P[2]),
    ]
    assert r.seeds == [P[0], P[1], P[2]]
    r.check()


def test_grant_inserts_tokens_and_bumps_versions() -> None:
    r = ring(P[0], [P[0], P[1]])
    mid = START + (1 << 17)
    r.grant_range_to_host(mid, mid + 256, P[2])
    r.check()
    assert r.owner(mid) == P[2] and r.owner(mid + 256) == P[0] and r.owner(mid - 1) == P[0]
    assert r.owned_size(P[2]) == 256
    with pytest.raises(ValueError):
        r.grant_range_to_host(START + (1 << 19), START + (1 << 19) + 4, P[2])  # P[1]'s range


def test_transfer_adds_100_to_versions() -> None:
    r = ring(P[0], [P[0], P[1], P[2]])
    moved = r.transfer(P[2], P[0])
    assert moved == [Range(START + (3 << 18), END)]
    assert [e.version for e in r.entries if e.token == START + (3 << 18)] == [100]


def test_merge_refuses_different_seeds_and_ranges() -> None:
    a, b = ring(P[0], [P[0], P[1]]), ring(P[1], [P[1], P[2]])
    with pytest.raises(DifferentSeeds):
        a.merge(b, no_allocs)
    other = Ring(START, START + 256, P[1])
    other.claim_for_peers([P[1]])
    other.seeds = []
    with pytest.raises(DifferentRange):
        a.merge(other, no_allocs)


def test_merge_refuses_bad_invariants_and_changes_nothing() -> None:
    a = ring(P[0], [P[0], P[1]])
    before = view(a)
    bad = a.copy()
    bad.peer = P[1]
    bad.entries[1].free = 1 << 30
    with pytest.raises(RingError, match="too much free space"):
        a.merge(bad, no_allocs)
    bad.entries.reverse()
    with pytest.raises(RingError, match="not sorted"):
        a.merge(bad, no_allocs)
    assert view(a) == before


def test_merge_protects_our_ranges_with_allocations() -> None:
    a = ring(P[0], [P[0], P[1]])
    theirs = a.copy()
    theirs.peer = P[1]
    e = theirs.entries[0]
    theirs.entries[0] = Entry(e.token, P[1], e.version + 1, e.free)  # "I own your range now"
    with pytest.raises(RingError, match="Received update for IP range I own"):
        a.merge(theirs, all_allocs)
    changed, _ = a.merge(theirs, no_allocs)  # no allocations there: repaired by accepting it
    assert changed and a.owner(START) == P[1]


def test_merge_refuses_a_split_of_our_range_with_allocations() -> None:
    a = ring(P[0], [P[0], P[1]])
    theirs = a.copy()
    theirs.peer = P[1]
    theirs.entries[0].free = 4096
    theirs.entries.insert(1, Entry(START + 4096, P[1], 0, 10))
    with pytest.raises(RingError, match="which I think I own"):
        a.merge(theirs, all_allocs)


def test_merge_about_our_own_entry_reimposes_ours() -> None:
    a = ring(P[0], [P[0], P[1]])
    theirs = a.copy()
    theirs.peer = P[1]
    theirs.entries[0].version = 7
    a.merge(theirs, all_allocs)
    assert a.entries[0].version == 8 and a.entries[0].peer == P[0]


def test_yield_transferred_gives_up_a_reclaimed_range() -> None:
    a = ring(P[0], [P[0], P[1], P[2]])
    theirs = a.copy()
    theirs.peer = P[1]
    theirs.transfer(P[0], P[1])
    with pytest.raises(RingError):
        a.merge(theirs, all_allocs)
    changed, lost = a.copy().merge(theirs, all_allocs, yield_transferred=True)
    assert changed and lost == [Range(START, START + (1 << 19))]


def test_choose_peers_weighted_and_never_ourselves() -> None:
    a = ring(P[0], [P[0], P[1], P[2]])
    got = a.choose_peers_to_ask_for_space(START, END, random.Random(1))
    assert sorted(got) == [P[1], P[2]]
    assert a.choose_peers_to_ask_for_space(START, START + 16, random.Random(1)) == []


def test_report_free_bumps_version_only_on_change() -> None:
    a = ring(P[0], [P[0], P[1]])
    assert not a.report_free({START: 1 << 19})
    assert a.report_free({START: 5})
    assert a.entries[0].version == 1 and a.entries[0].free == 5


# ------------------------------------------------------------------------------------------------ properties


def random_history(seed: int, n_peers: int, steps: int) -> list[Ring]:
    """Replicas of a ring after a random valid history: owners grant parts of what they own, report free
    counts, and replicas gossip (merge) with each other; nobody has allocations."""
    rng = random.Random(seed)
    peers = P[:n_peers]
    replicas = {p: ring(p, peers) for p in peers}
    for _ in range(steps):
        p = rng.choice(peers)
        r = replicas[p]
        action = rng.random()
        owned = [x for x in r.owned_ranges() if x.size >= 2]
        if action < 0.35 and owned:
            x = rng.choice(owned)
            start = rng.randrange(x.start, x.end - 1)
            end = rng.randrange(start + 1, x.end + 1)
            to = rng.choice([q for q in peers if q != p])
            r.grant_range_to_host(start, end, to)
        elif action < 0.5 and owned:
            x = rng.choice(r.owned_ranges())
            i = next(k for k, e in enumerate(r.entries) if e.token == x.start)
            nxt = r.entries[(i + 1) % len(r.entries)].token
            r.report_free({x.start: rng.randrange(0, r.distance(x.start, nxt) + 1)})
        else:
            q = rng.choice(peers)
            if q != p:
                incoming = replicas[q].copy()
                r.merge(incoming, no_allocs)
        r.check()
    return list(replicas.values())


def observer(replica: Ring) -> Ring:
    """The same replica as seen by a peer that owns nothing (so the owner's special rules do not apply)."""
    o = replica.copy()
    o.peer = OUTSIDER
    return o


histories = st.tuples(st.integers(0, 10_000), st.integers(2, 6), st.integers(0, 60))


@settings(max_examples=60, deadline=None)
@given(histories)
def test_merge_is_idempotent(h: tuple[int, int, int]) -> None:
    reps = random_history(*h)
    o = observer(ring(OUTSIDER, P[: h[1]]))
    for r in reps:
        o.merge(r.copy(), no_allocs)
        snapshot = view(o)
        changed, _ = o.merge(r.copy(), no_allocs)
        assert not changed and view(o) == snapshot


@settings(max_examples=60, deadline=None)
@given(histories)
def test_merge_is_commutative(h: tuple[int, int, int]) -> None:
    reps = random_history(*h)
    a, b = reps[0], reps[-1]
    x = observer(ring(OUTSIDER, P[: h[1]]))
    y = x.copy()
    x.merge(a.copy(), no_allocs)
    x.merge(b.copy(), no_allocs)
    y.merge(b.copy(), no_allocs)
    y.merge(a.copy(), no_allocs)
    assert view(x) == view(y)
    # and as replicas: a ⊔ b seen from outside equals b ⊔ a
    ab, ba = observer(a), observer(b)
    ab.merge(b.copy(), no_allocs)
    ba.merge(a.copy(), no_allocs)
    assert view(ab) == view(ba)


@settings(max_examples=60, deadline=None)
@given(histories)
def test_merge_is_associative(h: tuple[int, int, int]) -> None:
    reps = random_history(*h)
    a, b, c = reps[0], reps[len(reps) // 2], reps[-1]
    left = observer(a)
    left.merge(b.copy(), no_allocs)
    left.merge(c.copy(), no_allocs)
    bc = observer(b)
    bc.merge(c.copy(), no_allocs)
    right = observer(a)
    right.merge(bc, no_allocs)
    assert view(left) == view(right)


@settings(max_examples=40, deadline=None)
@given(histories)
def test_replicas_converge_and_never_overlap(h: tuple[int, int, int]) -> None:
    reps = random_history(*h)
    for r in reps:  # what each peer believes it owns never overlaps another's belief
        for s in reps:
            if r.peer != s.peer:
                assert not any(x.overlaps(y) for x in r.owned_ranges() for y in s.owned_ranges())
    for _ in range(2):
        for r in reps:
            for s in reps:
                if r is not s:
                    r.merge(s.copy(), no_allocs)
    assert all(view(r) == view(reps[0]) for r in reps)
    total = sum(r.size for p in {e.peer for e in reps[0].entries} for r in reps[0].owned_ranges(p))
    assert total == U.size
