"""Fuzz weaveDNS: any bytes into the query engine (what UDP and TCP clients send), and whole TCP streams into
the real server on loopback. Never a crash, never an oversized UDP answer, never an answer to a response, errors
never larger than the query; over TCP the server answers in order or closes, and keeps answering afterwards.

The nameserver's gossip channel is fuzzed with the other channels in ``test_gossip.py``."""

from __future__ import annotations

import asyncio
import random
import struct

import dns.message
from hypothesis import given
from hypothesis import strategies as st

from tests.fuzz.budget import fuzz
from weavenet.core.names import PeerName
from weavenet.dns.entries import parse_addr
from weavenet.dns.nameserver import Nameserver
from weavenet.dns.query import QR, UDP_MAX, UDP_MIN, Drop, Forward, QueryEngine, Reply
from weavenet.dns.server import DNSServer, Forwarder, Upstreams

NOW = 1_700_000_000.0
_ns = Nameserver(PeerName(1), "weave.local.", lambda p: True)
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


@fuzz(400)
@given(st.binary(max_size=600))
def test_random_bytes(data: bytes) -> None:
    check(data)


@fuzz(400)
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
@fuzz(100)
def test_compression_pointer_chains(at: int, target: int) -> None:
    head = struct.pack("!HHHHHH", 1, 0x0100, 1, 0, 0, 0)
    body = bytearray(b"\x01a" * 40)
    pos = at - 12
    body[pos : pos + 2] = bytes((0xC0 | target >> 8, target & 0xFF))
    check(head + bytes(body) + b"\x00\x01\x00\x01")
    check(head + b"\xc0\x0c\x00\x01\x00\x01")  # points at itself
    check(head + b"\x01a\xc0\x0c\x00\x01\x00\x01")  # a loop through a label


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


@fuzz(300)
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


# -- TCP: whole streams into the real server on loopback ---------------------------------------------------------


def _framed(query: bytes) -> bytes:
    return len(query).to_bytes(2, "big") + query


async def _tcp_session(stream: bytes) -> tuple[list[bytes], DNSServer]:
    """Send ``stream`` on one TCP connection (then half-close), collect the framed answers until the server
    closes; then check a fresh connection is still answered."""
    ns = Nameserver(PeerName(1), "weave.local.", lambda p: True)
    ns.add("a1.weave.local", "c1", parse_addr("10.2.1.1"), NOW)
    engine = QueryEngine(ns.index, "weave.local.", 1, random.Random(3))
    server = DNSServer(engine, Forwarder(engine, Upstreams(None), timeout=0.5))  # no upstream: nothing leaves
    _, port = await server.listen("127.0.0.1", 0)
    try:
        reader, writer = await asyncio.open_connection("127.0.0.1", port)
        writer.write(stream)
        writer.write_eof()
        answers = []
        async with asyncio.timeout(10):
            while True:
                try:
                    n = int.from_bytes(await reader.readexactly(2), "big")
                    answers.append(await reader.readexactly(n))
                except asyncio.IncompleteReadError as e:
                    assert e.partial == b"", "the server sent half a frame"
                    break
        writer.close()
        reader, writer = await asyncio.open_connection("127.0.0.1", port)
        writer.write(_framed(SEEDS[0]))
        async with asyncio.timeout(10):
            n = int.from_bytes(await reader.readexactly(2), "big")
            assert (await reader.readexactly(n))[:2] == SEEDS[0][:2]
        writer.close()
    finally:
        await server.close()
    return answers, server


chunk = st.one_of(
    st.sampled_from(SEEDS).map(_framed),
    st.tuples(st.sampled_from(SEEDS), st.lists(st.tuples(st.integers(0, 80), st.integers(0, 255)), max_size=3)).map(
        lambda t: _framed(bytes(dict(t[1]).get(i, b) for i, b in enumerate(t[0])))
    ),
    st.binary(max_size=40),
    st.binary(max_size=300).map(_framed),
)


@given(st.lists(chunk, min_size=1, max_size=5))
@fuzz(60)
def test_tcp_streams(chunks: list[bytes]) -> None:
    answers, server = asyncio.run(_tcp_session(b"".join(chunks)))
    assert server.engine.stats.dropped["internal error"] == 0
    for a in answers:
        assert len(a) >= 12 and struct.unpack("!H", a[2:4])[0] & QR
