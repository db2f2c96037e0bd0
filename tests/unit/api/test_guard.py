"""The HTTP listeners' limits, with real sockets on loopback: bad requests cost one short line, half-sent requests
are closed, slow bodies answered 408, connections beyond the limit 503."""

from __future__ import annotations

import asyncio
import logging
import socket
import time

import pytest
from aiohttp import web

from weavenet.api.guard import LOG_INTERVAL, GuardedRunner, Limits, QuietServerLog

SMALL = Limits(header_timeout=0.5, body_timeout=0.5, max_connections=8)


async def _echo(request: web.Request) -> web.Response:
    return web.Response(text=f"{len(await request.read())}\n")


async def _boom(request: web.Request) -> web.Response:
    raise RuntimeError("a bug in a route")


async def serve(limits: Limits = SMALL) -> tuple[GuardedRunner, int]:
    app = web.Application()
    app.router.add_route("*", "/echo", _echo)
    app.router.add_get("/boom", _boom)
    runner = GuardedRunner(app, "test listener", limits)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    return runner, site._server.sockets[0].getsockname()[1]  # type: ignore[union-attr]


async def exchange(port: int, data: bytes, timeout: float = 5.0) -> bytes:
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    writer.write(data)
    try:
        async with asyncio.timeout(timeout):
            return await reader.read()
    finally:
        writer.close()


def http_lines(caplog: pytest.LogCaptureFixture) -> list[logging.LogRecord]:
    return [r for r in caplog.records if r.name == "weavenet.http"]


async def test_bad_requests_cost_one_short_line(caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.DEBUG)
    runner, port = await serve()
    try:
        for raw in (b"GET /\xff HTTP/1.1\r\nHost: x\r\n\r\n", b"\x16\x03\x01\x02\x00garbage\r\n\r\n") * 50:
            assert (await exchange(port, raw)).startswith(b"HTTP/1.0 400")
        assert (await exchange(port, b"GET /echo HTTP/1.1\r\nHost: x\r\n\r\n")).startswith(b"HTTP/1.1 200")
    finally:
        await runner.cleanup()
    lines = http_lines(caplog)
    assert len(lines) == 1, [r.getMessage() for r in lines]
    msg = lines[0].getMessage()
    assert msg.startswith("test listener: Error handling request from 127.0.0.1:") and "\n" not in msg
    assert lines[0].exc_info is None and lines[0].levelno == logging.WARNING
    assert runner.quiet.counts["bad request"] == 100
    assert "Traceback" not in caplog.text


async def test_a_failing_route_keeps_its_traceback_but_not_for_every_request(caplog: pytest.LogCaptureFixture) -> None:
    runner, port = await serve()
    try:
        for _ in range(5):
            assert (await exchange(port, b"GET /boom HTTP/1.1\r\nHost: x\r\n\r\n")).startswith(b"HTTP/1.1 500")
    finally:
        await runner.cleanup()
    lines = http_lines(caplog)
    assert len(lines) == 1 and lines[0].levelno == logging.ERROR and lines[0].exc_info is not None
    assert "RuntimeError: a bug in a route" in lines[0].getMessage()
    assert runner.quiet.counts["internal error"] == 5


def test_the_next_line_says_how_many_were_not_logged(caplog: pytest.LogCaptureFixture) -> None:
    now = [0.0]
    quiet = QuietServerLog("x", clock=lambda: now[0])
    for _ in range(4):
        quiet.note("bad request", "bad")
    now[0] += LOG_INTERVAL
    quiet.note("bad request", "bad")
    quiet.note("slow request", "slow")
    msgs = [r.getMessage() for r in http_lines(caplog)]
    assert msgs == [
        f"x: bad; further ones within {LOG_INTERVAL:.0f} s are only counted",
        "x: bad (3 more since the last such line, not logged)",
        f"x: slow; further ones within {LOG_INTERVAL:.0f} s are only counted",
    ]


async def test_half_sent_headers_are_closed_after_the_header_timeout() -> None:
    runner, port = await serve(Limits(header_timeout=0.5, body_timeout=0.5, max_connections=100))
    try:
        conns = [await asyncio.open_connection("127.0.0.1", port) for _ in range(20)]
        for _, w in conns:
            w.write(b"GET /echo HTTP/1.1\r\nHost: x\r\nX-Slow: ")  # never finished
        assert len(runner.server.server.connections) == 20
        start = time.monotonic()
        async with asyncio.timeout(10):
            for r, _ in conns:
                assert await r.read() == b""  # closed by the server, no answer
        assert time.monotonic() - start < 5
        for _, w in conns:
            w.close()
        await asyncio.sleep(0.1)
        assert runner.server.server.connections == []
        # a prompt request on a fresh connection still works
        assert (await exchange(port, b"GET /echo HTTP/1.1\r\nHost: x\r\n\r\n")).startswith(b"HTTP/1.1 200")
    finally:
        await runner.cleanup()


async def test_half_sent_body_is_answered_408(caplog: pytest.LogCaptureFixture) -> None:
    runner, port = await serve()
    try:
        reply = await exchange(port, b"POST /echo HTTP/1.1\r\nHost: x\r\nContent-Length: 100\r\n\r\nonly part")
        assert reply.startswith(b"HTTP/1.1 408") and b"not complete within" in reply
        full = b"POST /echo HTTP/1.1\r\nHost: x\r\nContent-Length: 4\r\nConnection: close\r\n\r\nabcd"
        assert (await exchange(port, full)).endswith(b"\r\n\r\n4\n")
    finally:
        await runner.cleanup()
    assert runner.quiet.counts["slow request"] == 1


async def test_a_burst_of_connections_is_held_to_the_limit() -> None:
    """asyncio accepts a whole backlog before aiohttp counts any of them: the limit must hold anyway."""
    runner, port = await serve(Limits(header_timeout=5, body_timeout=5, max_connections=8))
    try:
        conns = await asyncio.gather(*(asyncio.open_connection("127.0.0.1", port) for _ in range(40)))
        for _, w in conns:
            w.write(b"GET /echo HTTP/1.1\r\n")

        async def first_bytes(r: asyncio.StreamReader) -> bytes:
            try:
                return await asyncio.wait_for(r.read(100), 2)
            except TimeoutError:
                return b""  # held: a connection within the limit, waiting for the rest of its request

        replies = await asyncio.gather(*(first_bytes(r) for r, _ in conns))
        assert len(runner.server.server.connections) <= 8
        assert sum(reply.startswith(b"HTTP/1.1 503") for reply in replies) == 32, replies
        for _, w in conns:
            w.close()
    finally:
        await runner.cleanup()


async def test_connections_beyond_the_limit_are_answered_503() -> None:
    runner, port = await serve()
    held = []
    try:
        for _ in range(SMALL.max_connections):
            held.append(await asyncio.open_connection("127.0.0.1", port))
        await asyncio.sleep(0.1)
        reply = await exchange(port, b"GET /echo HTTP/1.1\r\nHost: x\r\n\r\n")
        assert reply.startswith(b"HTTP/1.1 503") and b"too many connections" in reply
        for _, w in held:
            w.close()
        await asyncio.sleep(0.2)
        assert (await exchange(port, b"GET /echo HTTP/1.1\r\nHost: x\r\n\r\n")).startswith(b"HTTP/1.1 200")
    finally:
        await runner.cleanup()
    assert runner.quiet.counts["too many connections"] == 1


def test_unix_socket_listener_is_guarded_too(tmp_path) -> None:
    """The plugin and the proxy listen on Unix sockets: the same factory is used there."""

    async def main() -> bytes:
        app = web.Application()
        app.router.add_get("/echo", _echo)
        runner = GuardedRunner(app, "unix", Limits(header_timeout=0.3, body_timeout=0.3, max_connections=4))
        await runner.setup()
        path = str(tmp_path / "s.sock")
        await web.UnixSite(runner, path).start()
        try:
            s = socket.socket(socket.AF_UNIX)
            s.setblocking(False)
            await asyncio.get_running_loop().sock_connect(s, path)
            await asyncio.get_running_loop().sock_sendall(s, b"GET /echo HTTP/1.1\r\n")
            async with asyncio.timeout(5):
                data = await asyncio.get_running_loop().sock_recv(s, 100)
            s.close()
            return data
        finally:
            await runner.cleanup()

    assert asyncio.run(main()) == b""
