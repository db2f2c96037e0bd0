"""Limits shared by the router's HTTP listeners (API, status, metrics, Docker plugin and proxy).

Any local process can reach the API on 127.0.0.1:6784, so a client must not be able to make the router fill its
log or run out of file descriptors. aiohttp alone does neither well: it logs every malformed request as an ERROR
with a full traceback (431 of them made 4 MB of log in one run), and it waits for the rest of a half-sent
request for as long as an idle keep-alive connection (an hour), so 1,000 half-sent requests held 1,000 file
descriptors. :class:`GuardedRunner` is an ``AppRunner`` that

* finishes the headers of a request within ``header_timeout`` of the connection opening (or of the previous
  answer on a kept-alive connection), else closes the connection; aiohttp's keep-alive timer does this, since
  it fires only while no request is being handled;
* reads a request body within ``body_timeout`` (a middleware reads it before the route sees it; a route then
  gets it from aiohttp's cache) and answers 408 otherwise; ``None`` for listeners that stream bodies;
* serves at most ``max_connections`` connections, answering any further one with a 503 at once;
* logs a bad request, a slow one or a refused connection as one short line (no traceback), and a failing route
  with its traceback, each at most once a minute per listener and kind; the others are counted, and the next
  line says how many were not logged.

The log file itself is bounded by rotation (``weavenet.daemon.__main__``).
"""

from __future__ import annotations

import asyncio
import logging
import sys
from collections import Counter
from collections.abc import Awaitable, Callable, MutableMapping
from dataclasses import dataclass, field
from typing import Any

from aiohttp import web
from aiohttp.http_exceptions import HttpProcessingError

log = logging.getLogger("weavenet.http")

LOG_INTERVAL = 60.0


@dataclass(frozen=True, slots=True)
class Limits:
    header_timeout: float
    body_timeout: float | None
    max_connections: int


# The API and the listeners like it: local clients sending small requests. 128 connections per listener keep the
# API, status, metrics and the two plugin sockets together below the usual limit of 1,024 file descriptors.
API_LIMITS = Limits(header_timeout=10.0, body_timeout=10.0, max_connections=128)
# The Docker proxy streams bodies (images, build contexts, attach) and Docker clients keep connections alive
# between requests: 75 s is how long aiohttp kept idle connections before 3.14.
PROXY_LIMITS = Limits(header_timeout=75.0, body_timeout=None, max_connections=512)


@dataclass
class _Limiter:
    """At most one line per kind every ``interval`` seconds; the rest counted for the next line."""

    interval: float = LOG_INTERVAL
    last: dict[str, float] = field(default_factory=dict)
    suppressed: Counter[str] = field(default_factory=Counter)

    def allow(self, kind: str, now: float) -> tuple[bool, int]:
        """(log this one?, how many of this kind were not logged since the last line)."""
        last = self.last.get(kind)
        if last is not None and now - last < self.interval:
            self.suppressed[kind] += 1
            return False, 0
        self.last[kind] = now
        return True, self.suppressed.pop(kind, 0)


class QuietServerLog(logging.LoggerAdapter[logging.Logger]):
    """The logger aiohttp's request handler gets: errors become short, rate-limited lines with the listener's
    name; counts per kind are in :attr:`counts`."""

    def __init__(self, label: str, clock: Callable[[], float] | None = None) -> None:
        super().__init__(log, {})
        self.label = label
        self.counts: Counter[str] = Counter()
        self._limiter = _Limiter()
        self._clock = clock

    def _now(self) -> float:
        if self._clock is not None:
            return self._clock()
        try:
            return asyncio.get_running_loop().time()
        except RuntimeError:
            return 0.0

    def note(self, kind: str, line: str, level: int = logging.WARNING, exc: BaseException | None = None) -> None:
        """Count one event of ``kind``; log ``line`` if this kind was not logged within the interval."""
        self.counts[kind] += 1
        allowed, skipped = self._limiter.allow(kind, self._now())
        if not allowed:
            return
        more = f" ({skipped} more since the last such line, not logged)" if skipped else ""
        later = "" if skipped else f"; further ones within {LOG_INTERVAL:.0f} s are only counted"
        log.log(level, "%s: %s%s%s", self.label, line, more, later, exc_info=exc)

    def log(self, level: int, msg: object, *args: object, **kwargs: Any) -> None:
        exc = _exception(kwargs.get("exc_info"))
        text = _format(msg, args)
        if isinstance(exc, HttpProcessingError):
            self.note("bad request", f"{text}: {_short(exc)}")
        elif exc is not None:
            self.note("internal error", f"{text}: {type(exc).__name__}: {_short(exc)}", logging.ERROR, exc)
        elif level >= logging.WARNING:
            self.note("other", text, level)
        elif self.isEnabledFor(level):
            log.log(level, "%s: %s", self.label, text)

    def process(self, msg: Any, kwargs: MutableMapping[str, Any]) -> tuple[Any, MutableMapping[str, Any]]:
        return msg, kwargs


def _exception(exc_info: object) -> BaseException | None:
    if exc_info is True:
        return sys.exc_info()[1]
    if isinstance(exc_info, BaseException):
        return exc_info
    if isinstance(exc_info, tuple) and len(exc_info) == 3 and isinstance(exc_info[1], BaseException):
        return exc_info[1]
    return None


def _format(msg: object, args: tuple[object, ...]) -> str:
    try:
        return str(msg) % args if args else str(msg)
    except (TypeError, ValueError):
        return f"{msg} {args}"


def _short(exc: BaseException, limit: int = 120) -> str:
    """The first line of what went wrong, cut to ``limit`` characters (the rest may be the client's bytes)."""
    text = getattr(exc, "message", None) or str(exc) or type(exc).__name__
    first = str(text).strip().splitlines()[0].rstrip(":") if str(text).strip() else type(exc).__name__
    return first if len(first) <= limit else first[: limit - 3] + "..."


_Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]


def body_timeout_middleware(timeout: float, quiet: QuietServerLog) -> Callable[..., Awaitable[web.StreamResponse]]:
    """Read the whole body within ``timeout`` before the route runs (aiohttp keeps it for ``post()``/``read()``)."""

    @web.middleware
    async def read_body_in_time(request: web.Request, handler: _Handler) -> web.StreamResponse:
        if request.body_exists:
            try:
                async with asyncio.timeout(timeout):
                    await request.read()
            except TimeoutError:
                quiet.note("slow request", f"request body from {request.remote} not complete within {timeout:g} s")
                reply = web.Response(status=408, text=f"request body not complete within {timeout:g} s\n")
                reply.force_close()  # the rest of the body is not waited for
                return reply
        return await handler(request)

    return read_body_in_time


class _Overloaded(asyncio.Protocol):
    """A connection beyond the limit: answered 503 at once and closed."""

    BODY = b"too many connections to the router; try again later\n"
    REPLY = (
        b"HTTP/1.1 503 Service Unavailable\r\nContent-Type: text/plain\r\nConnection: close\r\n"
        + f"Content-Length: {len(BODY)}\r\n\r\n".encode()
        + BODY
    )

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        assert isinstance(transport, asyncio.WriteTransport)
        transport.write(self.REPLY)
        transport.close()


class _LimitedFactory:
    """The protocol factory the sites listen with: aiohttp's, until ``limit`` connections are open.

    aiohttp counts a connection once its handler's ``connection_made`` ran, which asyncio does a loop iteration
    or more after calling the factory (after the TLS handshake, with TLS), and it accepts up to a backlog of
    connections at once: so handlers handed out but not yet connected are counted here too (one whose TLS
    handshake never completes is forgotten after ``PENDING_MAX`` seconds).
    """

    PENDING_MAX = 90.0  # beyond asyncio's TLS handshake timeout (60 s)

    def __init__(self, server: web.Server, limit: int, quiet: QuietServerLog) -> None:
        self.server = server
        self.limit = limit
        self.quiet = quiet
        self.pending: dict[object, float] = {}
        made = server.connection_made

        def connection_made(handler: Any, transport: asyncio.Transport) -> None:
            self.pending.pop(handler, None)
            made(handler, transport)

        server.connection_made = connection_made  # type: ignore[method-assign]

    def __call__(self) -> asyncio.Protocol:
        now = asyncio.get_running_loop().time()
        for handler, since in list(self.pending.items()):
            if now - since > self.PENDING_MAX:
                del self.pending[handler]
        if len(self.server.connections) + len(self.pending) >= self.limit:
            self.quiet.note("too many connections", f"{self.limit} connections open; answering new ones 503")
            return _Overloaded()
        handler = self.server()
        self.pending[handler] = now
        return handler


class GuardedRunner(web.AppRunner):
    """An ``AppRunner`` with :class:`Limits`; ``label`` names the listener in log lines."""

    def __init__(self, app: web.Application, label: str, limits: Limits, **kwargs: Any) -> None:
        self.quiet = QuietServerLog(label)
        self.limits = limits
        self._factory: _LimitedFactory | None = None
        if limits.body_timeout is not None:
            app.middlewares.append(body_timeout_middleware(limits.body_timeout, self.quiet))
            # Bodies are read whole before a route runs; one that was not (a timeout, too large) is not waited
            # for after the answer either (aiohttp would read it for up to 10 s more).
            kwargs.setdefault("lingering_time", 0)
        kwargs.setdefault("access_log", None)
        kwargs.setdefault("handle_signals", False)
        super().__init__(app, logger=self.quiet, keepalive_timeout=limits.header_timeout, **kwargs)

    @property
    def server(self) -> Any:  # what web.TCPSite/UnixSite listen with: one factory for all of this runner's sites
        real = super().server
        if real is None:
            return None
        if self._factory is None or self._factory.server is not real:
            self._factory = _LimitedFactory(real, self.limits.max_connections, self.quiet)
        return self._factory
