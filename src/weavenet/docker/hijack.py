"""Hijacked connections (``docker attach``, ``docker exec``, ``docker run -i``) through an aiohttp server.

Docker answers these requests with ``101 UPGRADED`` and then the connection carries raw bytes both ways. The
proxy answers the client with its own 101, installs a :class:`RawFeeder` as the connection's payload parser so
every byte the client sends is written upstream, and pumps upstream bytes back.

The docker CLI half-closes its side as soon as stdin ends (at once when there is none), and still expects the
output. aiohttp's request handler lets asyncio close the whole transport on EOF, so :func:`install` teaches it
to keep the write half open for hijacked connections only (everything else is unchanged). This uses aiohttp
internals (``set_parser``, ``eof_received``), hence the pinned aiohttp and the regression test
``echo x | docker run -i IMAGE cat``.
"""

from __future__ import annotations

import asyncio
import contextlib
from typing import Any

from aiohttp import web_protocol


class RawFeeder:
    """Payload "parser" that forwards client bytes to the upstream writer; EOF becomes an upstream half-close."""

    def __init__(self, upstream: asyncio.StreamWriter) -> None:
        self.upstream = upstream
        self.eof = False

    def feed_data(self, data: bytes) -> tuple[bool, bytes]:
        if not self.upstream.is_closing():
            self.upstream.write(data)
        return False, b""

    def feed_eof(self) -> None:
        if self.eof:
            return
        self.eof = True
        if not self.upstream.is_closing() and self.upstream.can_write_eof():
            with contextlib.suppress(OSError, RuntimeError):
                self.upstream.write_eof()


_installed = False


def install() -> None:
    """Patch ``RequestHandler.eof_received`` once: half-closed hijacked connections stay open for output."""
    global _installed
    if _installed:
        return
    original = web_protocol.RequestHandler.eof_received

    def eof_received(self: Any) -> bool | None:
        parser = getattr(self, "_payload_parser", None)
        if isinstance(parser, RawFeeder):
            parser.feed_eof()
            return True  # keep the transport: our write half still carries the container's output
        return original(self)  # type: ignore[func-returns-value]

    web_protocol.RequestHandler.eof_received = eof_received  # type: ignore[method-assign,assignment]
    _installed = True


def parse_head(raw: bytes) -> tuple[int, str, list[tuple[str, str]]]:
    """Status, reason and headers of an HTTP/1.x response head (without the blank line)."""
    lines = raw.decode("latin-1").split("\r\n")
    parts = lines[0].split(" ", 2)
    if len(parts) < 2 or not parts[0].startswith("HTTP/") or not parts[1].isdigit():
        raise ValueError(f"malformed response line {lines[0]!r}")
    headers = []
    for line in lines[1:]:
        if not line:
            continue
        name, sep, value = line.partition(":")
        if not sep:
            raise ValueError(f"malformed header line {line!r}")
        headers.append((name.strip(), value.strip()))
    return int(parts[1]), parts[2] if len(parts) > 2 else "", headers
