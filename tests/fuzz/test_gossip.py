"""Fuzz every gossip channel's decoder on its own: ``topology``, ``IPallocation`` (broadcasts, gossip and the
three unicast kinds), ``nameserver``, weavenet's ``weavenet-topology-digest``, and a surrogate for any other name.

Accepted outcomes: the message is merged, or refused whole with ``RemoteProtocolError`` (and counted where the
channel counts refusals) leaving the state as it was. What is merged must be sendable again: the state
re-encodes and the re-encoding decodes (a peer must never accept what it cannot gossip on).

The router's side of the same channels (envelopes over a live connection) is in ``test_mesh.py``.
"""

from __future__ import annotations

import random

from hypothesis import given
from hypothesis import strategies as st

from tests.fuzz.budget import fuzz
from tests.unit.ipam.test_wire import SAMPLE, U, _View
from weavenet.core import topology_gossip as tg
from weavenet.core.gossip import SurrogateGossiper
from weavenet.core.names import PeerName
from weavenet.core.topology import ConnSummary, Peer, Topology
from weavenet.dns.entries import Entry
from weavenet.dns.nameserver import Nameserver
from weavenet.dns.wire import decode_gossip as decode_dns
from weavenet.dns.wire import encode_gossip as encode_dns
from weavenet.errors import RemoteProtocolError
from weavenet.ipam import wire
from weavenet.ipam.address import Range
from weavenet.ipam.allocator import Allocator, AllocatorConfig


def mutate(seed: bytes, flips: list[tuple[int, int]], cut: int | None, junk: bytes) -> bytes:
    """A valid message with bytes replaced, cut short, and/or junk appended."""
    data = bytearray(seed)
    for pos, val in flips:
        if data:
            data[pos % len(data)] = val
    if cut is not None:
        data = data[: cut % (len(data) + 1)]
    return bytes(data + junk)


flips = st.lists(st.tuples(st.integers(0, 1 << 16), st.integers(0, 255)), max_size=4)
cuts = st.one_of(st.none(), st.integers(0, 1 << 16))
junk = st.one_of(st.just(b""), st.binary(max_size=24))


# -- topology --------------------------------------------------------------------------------------------------

A, B, C, D = (PeerName.parse(f"ce:12:34:56:78:0{i}") for i in range(1, 5))


def _topo(name: PeerName = A, uid: int = 1) -> Topology:
    return Topology(Peer(name, "a", uid=uid, short_id=1, has_short_id=True), random.Random(0))


def _topology_seed() -> bytes:
    src = _topo(PeerName(0x0F0000000001), uid=99)
    for i, name in enumerate((B, C, D)):
        conns = {A: ConnSummary(A, "10.0.0.1:6783", True, True), C: ConnSummary(C, "10.0.0.3:6783", False, i > 0)}
        src.by_name[name] = Peer(name, f"n{i}", uid=7 + i, version=3 + i, short_id=5 + i, has_short_id=True,
                                 connections=conns)  # fmt: skip
    return src.encode_peers([B, C, D])


TOPOLOGY_SEED = _topology_seed()


def _check_topology(data: bytes) -> None:
    topo = _topo()
    before = {n: (p.uid, p.version) for n, p in topo.by_name.items()}
    try:
        topo.apply_update(data)
    except RemoteProtocolError:
        assert {n: (p.uid, p.version) for n, p in topo.by_name.items()} == before, "refused, so nothing merged"
        return
    again = topo.encode_peers(topo.names())
    _topo(PeerName(0x0E0000000001)).apply_update(again)  # what we merged, we can gossip on


@given(st.binary(max_size=300))
@fuzz(300)
def test_topology_random_bytes(data: bytes) -> None:
    _check_topology(data)


@given(flips, cuts, junk)
@fuzz(400)
def test_topology_mutated_updates(f: list[tuple[int, int]], cut: int | None, tail: bytes) -> None:
    _check_topology(mutate(TOPOLOGY_SEED, f, cut, tail))


# -- weavenet's topology digest --------------------------------------------------------------------------------

DIGEST_SEEDS = [tg.encode_digest(_topo(), kind) for kind in (tg.FULL, tg.HASH, tg.REPLY)]


@given(st.sampled_from(DIGEST_SEEDS), flips, cuts, junk)
@fuzz(200)
def test_topology_digests(seed: bytes, f: list[tuple[int, int]], cut: int | None, tail: bytes) -> None:
    topo = _topo()
    try:
        kind, body = tg.decode_digest(mutate(seed, f, cut, tail))
    except RemoteProtocolError:
        return
    assert kind in (tg.FULL, tg.HASH, tg.REPLY)
    if not isinstance(body, bytes):
        tg.compare(topo, body)


# -- IPallocation ----------------------------------------------------------------------------------------------


def _allocator() -> Allocator:
    a = Allocator(AllocatorConfig(PeerName(2), 9, "host-b", U), _View(), random.Random(0), 0.0)
    a.start({}, [], 0.0)
    return a


@given(st.binary(max_size=300))
@fuzz(300)
def test_ipam_decoders_random_bytes(data: bytes) -> None:
    for fn in (wire.decode_gossip, wire.decode_range, wire.decode_ring, wire.decode_owned, wire.decode_peer_name):
        try:
            fn(data)
        except RemoteProtocolError:
            pass


@given(flips, cuts, junk, st.sampled_from(["broadcast", "gossip", "ring-update"]))
@fuzz(300)
def test_ipam_mutated_ring_gossip(f: list[tuple[int, int]], cut: int | None, tail: bytes, how: str) -> None:
    """Refused whole and counted, or merged into a ring that passes every invariant and encodes again."""
    payload = mutate(SAMPLE, f, cut, tail)
    a = _allocator()
    before = (list(a.ring.entries), dict(a.nicknames))
    try:
        if how == "broadcast":
            a.on_gossip_broadcast(PeerName(1), payload, 0.0)
        elif how == "gossip":
            a.on_gossip(payload, 0.0)
        else:
            a.on_gossip_unicast(PeerName(1), wire.encode_unicast(wire.MSG_RING_UPDATE, payload), 0.0)
    except RemoteProtocolError:
        assert (list(a.ring.entries), dict(a.nicknames)) == before, "refused, so nothing merged"
        assert a.refused_count == 1
        return
    a.ring.check()
    wire.decode_gossip(a.encode_state())


RANGE_SEED = wire.encode_range(Range(U.addr + 16, U.addr + 32))


@given(st.sampled_from([wire.MSG_SPACE_REQUEST, wire.MSG_SPACE_REQUEST_DENIED, 0, 7, 255]), flips, cuts, junk)
@fuzz(200)
def test_ipam_unicasts(kind: int, f: list[tuple[int, int]], cut: int | None, tail: bytes) -> None:
    a = _allocator()
    a.on_gossip_broadcast(PeerName(1), SAMPLE, 0.0)  # a ring, so a space request is acted upon
    refused = a.refused_count
    try:
        a.on_gossip_unicast(PeerName(1), bytes((kind,)) + mutate(RANGE_SEED, f, cut, tail), 0.0)
    except RemoteProtocolError:
        assert a.refused_count == refused + 1
        return
    a.ring.check()


# -- nameserver ------------------------------------------------------------------------------------------------

NOW = 1_700_000_000.0
DNS_SEED = encode_dns(
    int(NOW),
    [Entry("c1", 2, 0x0A000001, "a.weave.local."), Entry("c2", 3, 0x0A000002, "b.weave.local.", 1, int(NOW))],
)


def _check_dns(data: bytes, broadcast: bool) -> None:
    ns = Nameserver(PeerName(1), "weave.local.", lambda p: True)
    try:
        ns.on_gossip_broadcast(PeerName(2), data, NOW) if broadcast else ns.on_gossip(data, NOW)
    except RemoteProtocolError:
        assert ns.counters["gossip_malformed"] + ns.counters["gossip_clock_skew"] == 1
        assert not len(ns.entries)
        return
    gossip = ns.gossip(NOW)
    if gossip is not None:
        for payload in gossip.encode():
            decode_dns(payload)


@given(st.binary(max_size=400), st.booleans())
@fuzz(300)
def test_nameserver_random_bytes(data: bytes, broadcast: bool) -> None:
    _check_dns(data, broadcast)


@given(flips, cuts, junk, st.booleans())
@fuzz(500)
def test_nameserver_mutated(f: list[tuple[int, int]], cut: int | None, tail: bytes, broadcast: bool) -> None:
    _check_dns(mutate(DNS_SEED, f, cut, tail), broadcast)


# -- any other channel: a surrogate relays it verbatim ----------------------------------------------------------


@given(st.lists(st.tuples(st.binary(max_size=64), st.floats(0, 100)), max_size=8))
@fuzz(100)
def test_surrogate_channel(updates: list[tuple[bytes, float]]) -> None:
    s = SurrogateGossiper(interval=30.0)
    s.on_gossip_unicast(PeerName(3), b"x", 0.0)
    for update, at in sorted(updates, key=lambda u: u[1]):
        out = s.on_gossip(update, at)
        assert out is None or out.encode() == [update]
        assert s.on_gossip_broadcast(PeerName(3), update, at).encode() == [update]  # type: ignore[union-attr]
    assert s.gossip(100.0) is None
