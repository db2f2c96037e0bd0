"""weaveDNS on the network: UDP and TCP listeners around the pure query engine, and the upstream forwarder.

The engine (:mod:`weavenet.dns.query`) decides every query; this module only moves bytes. Forwarded queries go
to the upstream servers in order (``--dns-upstream``, else the ``nameserver`` lines of resolv.conf, re-read when
the file changes, our own listen addresses left out), each with a fresh random query ID from a small pool of
connected UDP sockets, so a refused port (ICMP) fails that upstream at once and the next one is tried; a
timeout moves on after ``timeout`` seconds; when all fail the client gets SERVFAIL. An upstream reply must
match the ID and the question we sent, or it is ignored (and counted): that is the spoofing defence a forwarder
owes its clients. Clients on TCP are forwarded over UDP first and retried over TCP when the reply is truncated;
UDP clients get the upstream's truncated reply as it is and retry over TCP themselves.

Nothing raised by one query can stop the listeners: every failure is logged and counted.
"""

from __future__ import annotations

import asyncio
import contextlib
import errno
import ipaddress
import logging
import os
import random
import socket
import struct
from collections.abc import Callable

from weavenet.dns.query import Forward, QueryEngine, Question, Reply, reply_matches

log = logging.getLogger("weavenet.dns")

RESOLV_RECHECK = 5.0  # Weave re-reads resolv.conf at most every 5 s, when its mtime changed
DEFAULT_TIMEOUT = 5.0
SOCKETS_PER_UPSTREAM = 4
MAX_INFLIGHT = 2048
TCP_IDLE = 10.0
MAX_TCP_CLIENTS = 256
PORT_PAIR_TRIES = 20  # listen(host, 0): free UDP ports tried until the same TCP port is free too
UDP_RECV_BUFFER = 4 * 1024 * 1024
UDP_BATCH = 64

Address = tuple[str, int]


def parse_resolv_conf(text: str) -> list[str]:
    """The ``nameserver`` addresses, in order (IPv6 zone suffixes kept, invalid lines skipped)."""
    out = []
    for line in text.splitlines():
        parts = line.split()
        if len(parts) >= 2 and parts[0] == "nameserver":
            addr = parts[1]
            try:
                ipaddress.ip_address(addr.split("%", 1)[0])
            except ValueError:
                continue
            out.append(addr)
    return out


class Upstreams:
    """Where forwarded queries go. ``clock`` is monotonic seconds (for the re-check interval)."""

    def __init__(
        self,
        resolv_conf: str | None,
        static: list[Address] | None = None,
        exclude: Callable[[], set[str]] | None = None,
        clock: Callable[[], float] | None = None,
    ) -> None:
        self.resolv_conf = resolv_conf
        self.static = list(static or [])
        self.exclude = exclude or (lambda: set())
        self.clock = clock or (lambda: 0.0)
        self._cached: list[str] = []
        self._checked = -1e18
        self._mtime: float | None = None
        self.error = ""

    def servers(self) -> list[Address]:
        if self.static:
            return list(self.static)
        self._reload()
        skip = self.exclude()
        return [(a, 53) for a in self._cached if a not in skip]

    def names(self) -> list[str]:
        """For status: the addresses as Weave prints them."""
        return [a if p == 53 else f"{a}:{p}" for a, p in self.servers()]

    def _reload(self) -> None:
        if self.resolv_conf is None:
            return
        now = self.clock()
        if now - self._checked < RESOLV_RECHECK:
            return
        self._checked = now
        try:
            mtime = os.stat(self.resolv_conf).st_mtime
            if mtime == self._mtime:
                return
            with open(self.resolv_conf) as f:
                servers = parse_resolv_conf(f.read())
        except OSError as e:
            if self.error != str(e):
                log.warning("unable to read upstream config %s: %s", self.resolv_conf, e)
            self.error = str(e)
            return
        self._mtime = mtime
        self.error = ""
        if servers != self._cached:
            log.info("upstream DNS servers from %s: %s", self.resolv_conf, ", ".join(servers) or "none")
        self._cached = servers


class UpstreamFailure(Exception):
    """One upstream did not give a usable answer; ``reason`` is the metrics label."""

    def __init__(self, reason: str, detail: str = "") -> None:
        super().__init__(detail or reason)
        self.reason = reason


class _Exchange:
    """One forwarded query in flight: which upstream it is at, and who gets the answer."""

    __slots__ = ("done", "fwd", "index", "qid", "sent", "servers", "sock", "timer")

    def __init__(self, fwd: Forward, servers: list[Address], done: Callable[[bytes | None], None]) -> None:
        self.fwd = fwd
        self.servers = servers
        self.done = done
        self.index = -1
        self.qid = 0
        self.sent: Question | None = None
        self.sock: _UpstreamSocket | None = None
        self.timer: asyncio.TimerHandle | None = None


class _UpstreamSocket:
    """A connected, non-blocking UDP socket to one upstream, read from the event loop; replies are matched to
    exchanges by ID and question. On a connected socket the kernel reports ICMP errors (port unreachable:
    nobody listens there) on the next receive, which fails everything waiting on it at once."""

    def __init__(self, owner: Forwarder, server: Address) -> None:
        family = socket.AF_INET6 if ":" in server[0] else socket.AF_INET
        self.owner = owner
        self.sock = socket.socket(family, socket.SOCK_DGRAM)
        self.sock.setblocking(False)
        self.pending: dict[int, _Exchange] = {}
        self.closed = False
        try:
            self.sock.connect(server)
        except OSError:
            self.sock.close()
            raise
        asyncio.get_running_loop().add_reader(self.sock.fileno(), self._ready)

    def _ready(self) -> None:
        for _ in range(UDP_BATCH):
            try:
                data = self.sock.recv(65535)
            except (BlockingIOError, InterruptedError):
                return
            except OSError as e:
                self.fail_all("refused" if isinstance(e, ConnectionRefusedError) else "error")
                continue
            if len(data) < 12:
                self.owner.stats_fail("short reply")
                continue
            ex = self.pending.get(int.from_bytes(data[:2], "big"))
            if ex is None or ex.sent is None or not reply_matches(ex.sent, data):
                self.owner.stats_fail("unmatched reply")  # late, spoofed or for another question: ignored
                continue
            self.owner.answered(ex, data)

    def fail_all(self, reason: str) -> None:
        for ex in list(self.pending.values()):
            self.owner.failed(ex, reason)

    def close(self) -> None:
        if not self.closed:
            self.closed = True
            asyncio.get_running_loop().remove_reader(self.sock.fileno())
            self.sock.close()
            self.fail_all("closed")


class Forwarder:
    """Sends queries upstream and hands the client's reply to a callback.

    Callbacks and one timer per exchange rather than a task per query: a forwarded query costs two system
    calls and a few dictionary operations here, which is what keeps forwarding within reach of dnsmasq.
    """

    def __init__(
        self,
        engine: QueryEngine,
        upstreams: Upstreams,
        timeout: float = DEFAULT_TIMEOUT,
        rng: random.Random | None = None,
    ) -> None:
        self.engine = engine
        self.upstreams = upstreams
        self.timeout = timeout
        self.rng = rng or random.SystemRandom()
        self._sockets: dict[Address, list[_UpstreamSocket]] = {}
        self.inflight = 0
        self.closing = False
        self._tasks: set[asyncio.Task[None]] = set()

    def stats_fail(self, reason: str) -> None:
        failures = self.engine.stats.upstream_failures
        if not failures[reason]:
            log.info("weaveDNS upstream: %s; trying the next one (further failures only counted)", reason)
        failures[reason] += 1

    def start(self, fwd: Forward, done: Callable[[bytes | None], None]) -> None:
        """Forward; ``done`` gets the answer for the client (the upstream's, or SERVFAIL), or None when
        overloaded (dropped, counted)."""
        if self.inflight >= MAX_INFLIGHT:
            self.engine.stats.dropped["forwarding overloaded"] += 1
            done(None)
            return
        self.inflight += 1
        self._next(_Exchange(fwd, self.upstreams.servers(), done))

    async def forward(self, fwd: Forward) -> bytes | None:
        fut: asyncio.Future[bytes | None] = asyncio.get_running_loop().create_future()
        self.start(fwd, lambda out: fut.done() or fut.set_result(out))
        return await fut

    def _finish(self, ex: _Exchange, out: bytes | None) -> None:
        self.inflight -= 1
        ex.done(out)

    def _next(self, ex: _Exchange) -> None:
        if self.closing:
            self._finish(ex, None)
            return
        ex.index += 1
        if ex.index >= len(ex.servers):
            self._finish(ex, self.engine.servfail(ex.fwd.question))
            return
        server = ex.servers[ex.index]
        try:
            sock = self._socket(server)
        except OSError as e:
            log.debug("upstream %s:%d: %s", server[0], server[1], e)
            self.stats_fail("unreachable")
            self._next(ex)
            return
        q = ex.fwd.question
        qid = self.rng.getrandbits(16)
        while qid in sock.pending:
            qid = self.rng.getrandbits(16)
        ex.qid, ex.sock = qid, sock
        ex.sent = Question(qid, q.flags, q.qname, q.qtype, q.qclass, q.edns, q.tcp)
        sock.pending[qid] = ex
        ex.timer = asyncio.get_running_loop().call_later(self.timeout, self.failed, ex, "timeout")
        try:
            sock.sock.send(qid.to_bytes(2, "big") + ex.fwd.message[2:])
        except (BlockingIOError, InterruptedError):
            self.failed(ex, "send buffer full")
        except OSError as e:
            self.failed(ex, "refused" if isinstance(e, ConnectionRefusedError) else "error")

    def _detach(self, ex: _Exchange) -> None:
        if ex.timer is not None:
            ex.timer.cancel()
            ex.timer = None
        if ex.sock is not None and ex.sock.pending.get(ex.qid) is ex:
            del ex.sock.pending[ex.qid]
        ex.sock = None

    def failed(self, ex: _Exchange, reason: str) -> None:
        if ex.sock is None:
            return  # already settled
        self._detach(ex)
        self.stats_fail(reason)
        self._next(ex)

    def answered(self, ex: _Exchange, reply: bytes) -> None:
        server = ex.servers[ex.index]
        self._detach(ex)
        q = ex.fwd.question
        if q.tcp and struct.unpack_from("!H", reply, 2)[0] & 0x0200:
            task = asyncio.get_running_loop().create_task(self._tcp_retry(ex, server))
            self._tasks.add(task)
            task.add_done_callback(self._tasks.discard)
            return
        self._finish(ex, self.engine.upstream_reply(q, reply))

    async def _tcp_retry(self, ex: _Exchange, server: Address) -> None:
        try:
            reply = await self._tcp(server, ex.fwd.message, ex.fwd.question)
        except UpstreamFailure as e:
            self.stats_fail(e.reason)
            self._next(ex)
            return
        self._finish(ex, self.engine.upstream_reply(ex.fwd.question, reply))

    def _socket(self, server: Address) -> _UpstreamSocket:
        pool = self._sockets.setdefault(server, [])
        pool[:] = [s for s in pool if not s.closed]
        if len(pool) < SOCKETS_PER_UPSTREAM:
            sock = _UpstreamSocket(self, server)
            pool.append(sock)
            return sock
        return pool[self.rng.randrange(len(pool))]

    async def _tcp(self, server: Address, message: bytes, q: Question) -> bytes:
        qid = self.rng.getrandbits(16)
        writer = None
        try:
            async with asyncio.timeout(self.timeout):
                reader, writer = await asyncio.open_connection(server[0], server[1])
                body = qid.to_bytes(2, "big") + message[2:]
                writer.write(len(body).to_bytes(2, "big") + body)
                await writer.drain()
                n = int.from_bytes(await reader.readexactly(2), "big")
                reply = await reader.readexactly(n)
        except TimeoutError as e:
            raise UpstreamFailure("timeout", "tcp") from e
        except (OSError, asyncio.IncompleteReadError) as e:
            raise UpstreamFailure("tcp error", str(e)) from e
        finally:
            if writer is not None:
                writer.close()
        sent = Question(qid, q.flags, q.qname, q.qtype, q.qclass, q.edns, True)
        if not reply_matches(sent, reply):
            raise UpstreamFailure("unmatched reply", "tcp")
        return reply

    def close(self) -> None:
        self.closing = True
        for pool in self._sockets.values():
            for s in pool:
                s.close()
        self._sockets.clear()
        for task in list(self._tasks):
            task.cancel()


class _UDPListener:
    """One UDP socket, read straight from the event loop: every readiness callback drains up to ``UDP_BATCH``
    datagrams with plain ``recvfrom`` and answers each with ``sendto``. That is one wake-up per burst instead
    of one per packet through a transport, which is most of the cost of a small DNS answer in Python."""

    def __init__(self, server: DNSServer, sock: socket.socket) -> None:
        self.server = server
        self.sock = sock
        self.closed = False
        sock.setblocking(False)
        asyncio.get_running_loop().add_reader(sock.fileno(), self._ready)

    def _ready(self) -> None:
        sock = self.sock
        engine = self.server.engine
        for _ in range(UDP_BATCH):
            try:
                data, addr = sock.recvfrom(65535)
            except (BlockingIOError, InterruptedError):
                return
            except OSError as e:  # ICMP errors queued on the socket, e.g. a client that went away
                log.debug("DNS UDP error: %s", e)
                continue
            try:
                d = engine.handle(data, False)
            except Exception:  # a bug must cost one query, not the listener
                log.exception("DNS query handling failed")
                engine.stats.dropped["internal error"] += 1
                continue
            if type(d) is Reply:
                self.send(d.data, addr)
            elif type(d) is Forward:
                self.server.forwarder.start(d, self._reply_to(addr))

    def send(self, data: bytes, addr: Address) -> None:
        try:
            self.sock.sendto(data, addr)
        except (BlockingIOError, InterruptedError):
            self.server.engine.stats.dropped["send buffer full"] += 1
        except OSError as e:
            log.debug("DNS UDP send to %s: %s", addr, e)

    def _reply_to(self, addr: Address) -> Callable[[bytes | None], None]:
        def done(out: bytes | None) -> None:
            if out is not None and not self.closed:
                self.send(out, addr)

        return done

    def close(self) -> None:
        if not self.closed:
            self.closed = True
            asyncio.get_running_loop().remove_reader(self.sock.fileno())
            self.sock.close()


class DNSServer:
    """Listeners (one UDP + one TCP socket per address) sharing one engine and one forwarder."""

    def __init__(self, engine: QueryEngine, forwarder: Forwarder) -> None:
        self.engine = engine
        self.forwarder = forwarder
        self._listeners: dict[Address, tuple[_UDPListener, asyncio.Server]] = {}
        self._tasks: set[asyncio.Task[None]] = set()
        self._tcp_clients = 0

    @property
    def addresses(self) -> list[Address]:
        return list(self._listeners)

    def spawn(self, coro: object) -> None:
        task = asyncio.get_running_loop().create_task(coro)  # type: ignore[arg-type]
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def listen(self, host: str, port: int) -> Address:
        """Start UDP and TCP on ``host:port`` (port 0: the same free port for both). Raises OSError.

        With port 0 the kernel picks a free UDP port, whose TCP twin may be taken: then another pair is tried.
        """
        for _ in range(PORT_PAIR_TRIES - 1 if port == 0 else 0):
            try:
                return await self._listen(host, port)
            except OSError as e:
                if e.errno != errno.EADDRINUSE:
                    raise
        return await self._listen(host, port)

    async def _listen(self, host: str, port: int) -> Address:
        family = socket.AF_INET6 if ":" in host else socket.AF_INET
        usock = socket.socket(family, socket.SOCK_DGRAM)
        try:
            usock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, UDP_RECV_BUFFER)
            # on loopback and local bridges an answer stays charged to our send buffer until the client reads
            # it; a slow client must not make us drop answers to everyone else
            usock.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, UDP_RECV_BUFFER)
            usock.bind((host, port))
        except OSError:
            usock.close()
            raise
        bound = usock.getsockname()[1]
        udp = _UDPListener(self, usock)
        try:
            tcp = await asyncio.start_server(self._tcp_client, host, bound, reuse_address=True)
        except OSError:
            udp.close()
            raise
        self._listeners[(host, bound)] = (udp, tcp)
        log.info("weaveDNS listening on %s:%d (udp and tcp), domain %s", host, bound, self.engine_domain())
        return (host, bound)

    def engine_domain(self) -> str:
        from weavenet.dns.index import wire_to_text

        return wire_to_text(self.engine.domain_wire)

    async def unlisten(self, addr: Address) -> None:
        pair = self._listeners.pop(addr, None)
        if pair is None:
            return
        udp, tcp = pair
        udp.close()
        tcp.close()
        with contextlib.suppress(Exception):
            await tcp.wait_closed()
        log.info("weaveDNS stopped listening on %s:%d", *addr)

    async def close(self) -> None:
        for addr in list(self._listeners):
            await self.unlisten(addr)
        for task in list(self._tasks):
            task.cancel()
        self.forwarder.close()

    async def _tcp_client(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        if self._tcp_clients >= MAX_TCP_CLIENTS:
            self.engine.stats.dropped["too many tcp clients"] += 1
            writer.close()
            return
        self._tcp_clients += 1
        try:
            while True:
                try:
                    async with asyncio.timeout(TCP_IDLE):
                        n = int.from_bytes(await reader.readexactly(2), "big")
                        data = await reader.readexactly(n)
                except (TimeoutError, asyncio.IncompleteReadError, OSError):
                    return
                try:
                    d = self.engine.handle(data, True)
                except Exception:
                    log.exception("DNS query handling failed")
                    self.engine.stats.dropped["internal error"] += 1
                    return
                if isinstance(d, Reply):
                    out: bytes | None = d.data
                elif isinstance(d, Forward):
                    out = await self.forwarder.forward(d)
                else:
                    return  # not a query: close, as a stream cannot resynchronise
                if out is None:
                    return
                writer.write(len(out).to_bytes(2, "big") + out)
                await writer.drain()
        except OSError:
            return
        finally:
            self._tcp_clients -= 1
            writer.close()
