"""The asyncio server on loopback: local answers over UDP and TCP, forwarding to a tiny upstream started by
the test (never a real resolver), failover, SERVFAIL, TCP retry, resolv.conf reloading."""

from __future__ import annotations

import asyncio
import errno
import random
import socket
import time
from pathlib import Path
from typing import Any

import dns.asyncquery
import dns.flags
import dns.message
import dns.rcode
import pytest

from tests.integration.dns_upstream import Upstream, serve
from weavenet.core.names import PeerName
from weavenet.dns.entries import parse_addr
from weavenet.dns.nameserver import Nameserver
from weavenet.dns.query import QueryEngine
from weavenet.dns.server import DNSServer, Forwarder, Upstreams, parse_resolv_conf

NOW = 1_700_000_000.0


def free_udp_port() -> int:
    """A loopback port where nobody listens (queries there are refused by ICMP)."""
    s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    s.bind(("127.0.0.1", 0))
    port = s.getsockname()[1]
    s.close()
    return port


async def start(upstreams: Upstreams, timeout: float = 1.0) -> tuple[DNSServer, int]:
    ns = Nameserver(PeerName(1), "weave.local.", lambda p: True)
    ns.add("a1.weave.local", "c1", parse_addr("10.2.1.1"), NOW)
    engine = QueryEngine(ns.index, "weave.local.", 1, random.Random(1))
    server = DNSServer(engine, Forwarder(engine, upstreams, timeout=timeout))
    _, port = await server.listen("127.0.0.1", 0)
    return server, port


async def test_local_answers_over_udp_and_tcp() -> None:
    server, port = await start(Upstreams(None))
    try:
        q = dns.message.make_query("a1.weave.local.", "A")
        r = await dns.asyncquery.udp(q, "127.0.0.1", port=port, timeout=2)
        assert [rr.address for rr in r.answer[0]] == ["10.2.1.1"]
        r = await dns.asyncquery.tcp(q, "127.0.0.1", port=port, timeout=2)
        assert [rr.address for rr in r.answer[0]] == ["10.2.1.1"]
        assert server.engine.stats.queries == {"udp": 1, "tcp": 1}
    finally:
        await server.close()


async def test_forwarding_failover_truncation_and_servfail() -> None:
    up = Upstream({"external.test.": "198.51.100.7"})
    udp, tcp, up_port = await serve(up, "127.0.0.1", 0)
    dead = free_udp_port()
    server, port = await start(Upstreams(None, static=[("127.0.0.1", dead), ("127.0.0.1", up_port)]))
    try:
        q = dns.message.make_query("External.Test.", "A")
        r = await dns.asyncquery.udp(q, "127.0.0.1", port=port, timeout=3)
        assert r.id == q.id and [rr.address for rr in r.answer[0]] == ["198.51.100.7"]
        assert server.engine.stats.upstream_failures["refused"] >= 1  # the dead one first, at once
        r = await dns.asyncquery.udp(dns.message.make_query("nx.test.", "A"), "127.0.0.1", port=port, timeout=3)
        assert r.rcode() == dns.rcode.NXDOMAIN
        big = dns.message.make_query("big.test.", "TXT")
        r = await dns.asyncquery.udp(big, "127.0.0.1", port=port, timeout=3)
        assert r.flags & dns.flags.TC  # passed on to the UDP client, which retries over TCP:
        r = await dns.asyncquery.tcp(big, "127.0.0.1", port=port, timeout=3)
        assert len(r.answer[0]) == 40  # upstream asked over UDP, truncated, retried over TCP
    finally:
        await server.close()
        udp.close()
        tcp.close()
    # every upstream down: SERVFAIL, quickly (ICMP refused, no timeout)
    server, port = await start(Upstreams(None, static=[("127.0.0.1", dead)]), timeout=5)
    try:
        t = time.monotonic()
        r = await dns.asyncquery.udp(dns.message.make_query("x.test.", "A"), "127.0.0.1", port=port, timeout=3)
        assert r.rcode() == dns.rcode.SERVFAIL and time.monotonic() - t < 2
    finally:
        await server.close()


async def test_timeouts_move_on(tmp_path: Path) -> None:
    # an upstream that never answers: a bound socket that reads nothing
    silent = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    silent.bind(("127.0.0.1", 0))
    server, port = await start(Upstreams(None, static=[silent.getsockname()]), timeout=0.3)
    try:
        r = await dns.asyncquery.udp(dns.message.make_query("x.test.", "A"), "127.0.0.1", port=port, timeout=3)
        assert r.rcode() == dns.rcode.SERVFAIL
        assert server.engine.stats.upstream_failures["timeout"] == 1
    finally:
        await server.close()
        silent.close()


def test_resolv_conf_parsing_and_reload(tmp_path: Path) -> None:
    assert parse_resolv_conf("# c\nnameserver 10.0.0.1\nnameserver bogus\nsearch x\nnameserver fe80::1%eth0\n") == [
        "10.0.0.1",
        "fe80::1%eth0",
    ]
    conf = tmp_path / "resolv.conf"
    conf.write_text("nameserver 10.0.0.1\nnameserver 10.0.0.2\n")
    t = [0.0]
    ups = Upstreams(str(conf), exclude=lambda: {"10.0.0.2"}, clock=lambda: t[0])
    assert ups.servers() == [("10.0.0.1", 53)]
    conf.write_text("nameserver 10.0.0.3\n")
    import os

    os.utime(conf, (1, 1))
    assert ups.servers() == [("10.0.0.1", 53)]  # not re-read within 5 s
    t[0] = 6.0
    assert ups.servers() == [("10.0.0.3", 53)]
    conf.unlink()
    t[0] = 12.0
    assert ups.servers() == [("10.0.0.3", 53)] and ups.error  # keeps the last good list
    assert Upstreams(None, static=[("10.9.9.9", 5353)]).names() == ["10.9.9.9:5353"]


@pytest.mark.parametrize("junk", [b"", b"\x00" * 5, b"\x12\x34\x81\x80" + b"\x00" * 8])
async def test_junk_never_stops_the_listener(junk: bytes) -> None:
    server, port = await start(Upstreams(None))
    try:
        loop = asyncio.get_running_loop()
        s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        s.setblocking(False)
        await loop.sock_sendto(s, junk, ("127.0.0.1", port))
        s.close()
        r = await dns.asyncquery.udp(dns.message.make_query("a1", "A"), "127.0.0.1", port=port, timeout=2)
        assert r.answer
    finally:
        await server.close()


async def test_port_zero_tries_another_pair_when_the_tcp_twin_is_taken(monkeypatch: pytest.MonkeyPatch) -> None:
    """The kernel picks a free UDP port; its TCP twin may belong to someone else (seen once in a long fuzz run
    on a busy machine). The race cannot be arranged, so the first TCP bind is made to fail as it would."""
    real = asyncio.start_server
    failures = [OSError(errno.EADDRINUSE, "address already in use")]

    async def start_server(*args: Any, **kw: Any) -> asyncio.Server:
        if failures:
            raise failures.pop()
        return await real(*args, **kw)

    monkeypatch.setattr(asyncio, "start_server", start_server)
    server, port = await start(Upstreams(None))
    try:
        q = dns.message.make_query("a1.weave.local.", "A")
        r = await dns.asyncquery.tcp(q, "127.0.0.1", port=port, timeout=2)
        assert [rr.address for rr in r.answer[0]] == ["10.2.1.1"] and not failures
    finally:
        await server.close()
