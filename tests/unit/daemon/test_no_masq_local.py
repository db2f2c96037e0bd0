"""``--no-masq-local``: this peer's ring ranges as the CIDRs of the set (``weavenet.daemon.no_masq_local``)."""

from __future__ import annotations

from weavenet.daemon.no_masq_local import local_cidrs
from weavenet.ipam.address import Range, parse_ip


def r(start: str, end: str) -> Range:
    return Range(parse_ip(start), parse_ip(end))


def test_adjacent_ranges_merge_before_they_become_cidrs() -> None:
    # two ring entries of ours side by side: one /12 half, not two /13s; an unaligned one is cut into CIDRs
    assert local_cidrs([r("10.40.0.0", "10.44.0.0"), r("10.44.0.0", "10.48.0.0")]) == {"10.40.0.0/13"}
    assert local_cidrs([r("10.32.0.3", "10.32.0.8")]) == {"10.32.0.3/32", "10.32.0.4/30"}
    assert local_cidrs([]) == frozenset()
