"""Digest-based anti-entropy and per-neighbour filtering of topology gossip."""

from __future__ import annotations

import random

import pytest

from weavenet.core import topology_gossip as tg
from weavenet.core.names import PeerName
from weavenet.core.topology import Peer, Topology
from weavenet.errors import RemoteProtocolError


def topo(*entries: tuple[int, int, int]) -> Topology:
    t = Topology(Peer(PeerName(1), "a", uid=11, version=3, has_short_id=True), random.Random(0))
    for name, uid, version in entries:
        t.by_name[PeerName(name)] = Peer(PeerName(name), "x", uid=uid, version=version)
    return t


def test_digest_round_trip_and_placeholders_left_out() -> None:
    t = topo((2, 22, 5), (3, 0, 0))  # peer 3 is a placeholder
    kind, body = tg.decode_digest(tg.encode_digest(t, tg.FULL))
    assert kind == tg.FULL and body == {PeerName(1): (11, 3), PeerName(2): (22, 5)}
    kind, h = tg.decode_digest(tg.encode_digest(t, tg.HASH))
    assert kind == tg.HASH and h == tg.digest_hash(t) and len(h) == tg.HASH_SIZE
    assert tg.held_versions(t) == body


def test_hash_changes_with_any_version() -> None:
    a, b = topo((2, 22, 5)), topo((2, 22, 6))
    assert tg.digest_hash(a) != tg.digest_hash(b)
    assert tg.digest_hash(a) == tg.digest_hash(topo((2, 22, 5)))


def test_compare_finds_what_each_side_lacks() -> None:
    ours = topo((2, 22, 5), (4, 44, 1))
    theirs = {PeerName(1): (11, 3), PeerName(2): (22, 4), PeerName(5): (55, 1)}
    send, they_have_more = tg.compare(ours, theirs)
    assert send == {PeerName(2), PeerName(4)}  # older at theirs, missing at theirs
    assert they_have_more  # peer 5
    assert tg.compare(ours, tg.held_versions(ours)) == (set(), False)


@pytest.mark.parametrize("bad", [b"", b"\x02short", b"\x01" + bytes(21), b"\x09", b"\x03" + bytes(23)])
def test_malformed_digests(bad: bytes) -> None:
    with pytest.raises(RemoteProtocolError):
        tg.decode_digest(bad)


def test_for_neighbour_leaves_out_what_it_holds() -> None:
    t = topo((2, 22, 5), (4, 44, 1))
    data = tg.TopologyGossipData(t, {PeerName(2), PeerName(4)})
    assert data.for_neighbour({PeerName(2): (22, 5), PeerName(4): (44, 1)}) is None
    out = data.for_neighbour({PeerName(2): (22, 4)})
    assert out is not None and out.names == {PeerName(2), PeerName(4)}
    full = tg.TopologyGossipData(t, {PeerName(2)}, full=True)
    assert full.for_neighbour({PeerName(2): (22, 5)}) is not None
