"""Fuzz: any bytes into the query path and the gossip decoder. Never a crash, never an oversized UDP answer,
never an answer to a response; the gossip decoder raises RemoteProtocolError and nothing else."""

from __future__ import annotations

import random
import struct

import dns.message
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from weavenet.core.names import PeerName
from weavenet.dns.entries import Entry, parse_addr
from weavenet.dns.nameserver import Nameserver
from weavenet.dns.query import QR, UDP_MAX, UDP_MIN, Drop, Forward, QueryEngine, Reply
from weavenet.dns.wire import encode_gossip
from weavenet.errors import RemoteProtocolError

NOW = 1_700_000_000.0
_ns = Nameserver(PeerName(1), "weave.local.", lambda: NOW, lambda p: True)
for _i in range(80):
    _ns.add("many.weave.local", f"m{_i}", parse_addr(f"10.3.0.{_i + 1}"), NOW)
_ns.add("a1.weave.local", "c1", parse_addr("10.2.1.1"), NOW)
ENGINE = QueryEngine(_ns.index, "weave.local.", 1, random.Random(3))

SEEDS = [
    dns.message.make_query(n, t, **kw).to_wire()  # type: ignore[arg-type]
    for n, t, kw in [
        ("a1.weave.local.", "A", {}),
        ("many.weave.local.", "A", {"use_edns": 0, "payload": 600}),
        ("1.1.2.10.in-addr.arpa.", "PTR", {}),
        ("example.com.", "AAAA", {}),
        ("a1", "TXT", {"use_edns": 0}),
    ]
]


def _udp_limit(query: bytes) -> int:
    """The most a UDP answer to ``query`` may have: 512, or its OPT size within 512..4096 if it has one."""
    limit = UDP_MIN
    if b"\x00\x00\x29" in query:  # maybe an OPT record: allow up to what we ever send
        limit = UDP_MAX
    return limit


def check(data: bytes) -> None:
    d = ENGINE.handle(data, tcp=False)
    assert isinstance(d, Reply | Forward | Drop)
    if isinstance(d, Reply):
        assert len(d.data) <= _udp_limit(data)
        assert len(data) >= 12 and not struct.unpack("!H", data[2:4])[0] & QR
        assert d.data[:2] == data[:2]
        if len(d.data) == 12:
            assert len(d.data) <= len(data)  # errors never amplify
    if isinstance(d, Forward):
        assert d.message == data
        out = ENGINE.upstream_reply(d.question, b"\x00\x00\x81\x80" + b"\x00" * 8 + b"x" * 3000)
        assert len(out) <= d.question.limit


@settings(max_examples=1200, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.binary(max_size=600))
def test_random_bytes(data: bytes) -> None:
    check(data)


@settings(max_examples=1200, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.sampled_from(SEEDS), st.lists(st.tuples(st.integers(0, 600), st.integers(0, 255)), max_size=6))
def test_mutated_queries(seed: bytes, flips: list[tuple[int, int]]) -> None:
    data = bytearray(seed)
    for pos, val in flips:
        if pos < len(data):
            data[pos] = val
        else:
            data.append(val)
    check(bytes(data))


@given(st.integers(12, 80), st.integers(0, 0x3FFF))
def test_compression_pointer_chains(at: int, target: int) -> None:
    head = struct.pack("!HHHHHH", 1, 0x0100, 1, 0, 0, 0)
    body = bytearray(b"\x01a" * 40)
    pos = at - 12
    body[pos : pos + 2] = bytes((0xC0 | target >> 8, target & 0xFF))
    check(head + bytes(body) + b"\x00\x01\x00\x01")
    check(head + b"\xc0\x0c\x00\x01\x00\x01")  # points at itself
    check(head + b"\x01a\xc0\x0c\x00\x01\x00\x01")  # a loop through a label


def _decode(data: bytes) -> None:
    ns = Nameserver(PeerName(1), "weave.local.", lambda: NOW, lambda p: True)
    try:
        ns.on_gossip(data)
    except RemoteProtocolError:
        pass


GOSSIP_SEED = encode_gossip(
    int(NOW),
    [Entry("c1", 2, 0x0A000001, "a.weave.local."), Entry("c2", 3, 0x0A000002, "b.weave.local.", 1, int(NOW))],
)


@settings(max_examples=800, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.binary(max_size=400))
def test_gossip_random_bytes(data: bytes) -> None:
    _decode(data)


@settings(max_examples=1200, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.lists(st.tuples(st.integers(0, len(GOSSIP_SEED) + 4), st.integers(0, 255)), min_size=1, max_size=5))
def test_gossip_mutated(flips: list[tuple[int, int]]) -> None:
    data = bytearray(GOSSIP_SEED)
    for pos, val in flips:
        if pos < len(data):
            data[pos] = val
        else:
            data.append(val)
    _decode(bytes(data))


class _NoFastPath(QueryEngine):
    def _fast_a(self, data: bytes, tcp: bool) -> Reply | None:
        return None


FAST = QueryEngine(_ns.index, "weave.local.", 1, random.Random(11))
SLOW = _NoFastPath(_ns.index, "weave.local.", 1, random.Random(11))
A_SEEDS = [
    dns.message.make_query(n, "A", **kw).to_wire()  # type: ignore[arg-type]
    for n, kw in [
        ("a1.weave.local.", {}),
        ("A1.WEAVE.local.", {"use_edns": 0, "payload": 1232}),
        ("a1", {}),
        ("many.weave.local.", {"use_edns": 0, "payload": 4096}),
        ("many", {}),
    ]
]


@settings(max_examples=800, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    st.sampled_from(A_SEEDS), st.lists(st.tuples(st.integers(0, 80), st.integers(0, 255)), max_size=3), st.booleans()
)
def test_fast_path_answers_exactly_as_the_general_path(seed: bytes, flips: list[tuple[int, int]], tcp: bool) -> None:
    data = bytearray(seed)
    for pos, val in flips:
        if pos < len(data):
            data[pos] = val
    fast, slow = FAST.handle(bytes(data), tcp), SLOW.handle(bytes(data), tcp)
    assert type(fast) is type(slow)
    if isinstance(fast, Reply):
        assert isinstance(slow, Reply) and fast.data == slow.data
