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
import ipaddress
import logging
import os
import random
import socket
import struct
from collections.abc import Callable
from dataclasses import dataclass, field

from weavenet.dns.query import Forward, QueryEngine, Question, Reply, reply_matches

log = logging.getLogger("weavenet.dns")

RESOLV_RECHECK = 5.0  # Weave re-reads resolv.conf at most every 5 s, when its mtime changed
DEFAULT_TIMEOUT = 5.0
SOCKETS_PER_UPSTREAM = 4
MAX_INFLIGHT = 2048
TCP_IDLE = 10.0
MAX_TCP_CLIENTS = 256
UDP_RECV_BUFFER = 4 * 1024 * 1024

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


class _UpstreamSocket(asyncio.DatagramProtocol):
    """A connected UDP socket to one upstream; replies are matched to waiting queries by ID."""

    def __init__(self, owner: Forwarder) -> None:
        self.owner = owner
        self.transport: asyncio.DatagramTransport | None = None
        self.pending: dict[int, tuple[asyncio.Future[bytes], Question]] = {}

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]  # a DatagramTransport in all but class

    def datagram_received(self, data: bytes, addr: Address) -> None:
        if len(data) < 12:
            self.owner.stats_fail("short reply")
            return
        qid = int.from_bytes(data[:2], "big")
        waiting = self.pending.get(qid)
        if waiting is None or not reply_matches(waiting[1], data):
            self.owner.stats_fail("unmatched reply")  # late, spoofed or for another question: ignored
            return
        del self.pending[qid]
        if not waiting[0].done():
            waiting[0].set_result(data)

    def error_received(self, exc: Exception) -> None:
        # a connected socket reports ICMP errors (port unreachable: nobody listens there): fail what waits
        for fut, _ in self.pending.values():
            if not fut.done():
                fut.set_exception(UpstreamFailure("refused", str(exc)))
        self.pending.clear()

    def connection_lost(self, exc: Exception | None) -> None:
        self.error_received(exc or ConnectionError("socket closed"))


@dataclass
class Forwarder:
    """Sends queries upstream and returns the engine-made reply for the client."""

    engine: QueryEngine
    upstreams: Upstreams
    timeout: float = DEFAULT_TIMEOUT
    rng: random.Random = field(default_factory=random.SystemRandom)
    _sockets: dict[Address, list[_UpstreamSocket]] = field(default_factory=dict)
    inflight: int = 0

    def stats_fail(self, reason: str) -> None:
        self.engine.stats.upstream_failures[reason] += 1

    async def forward(self, fwd: Forward) -> bytes | None:
        """The answer for the client (the upstream's, or SERVFAIL); None when overloaded (dropped, counted)."""
        q = fwd.question
        if self.inflight >= MAX_INFLIGHT:
            self.engine.stats.dropped["forwarding overloaded"] += 1
            return None
        self.inflight += 1
        try:
            for server in self.upstreams.servers():
                try:
                    reply = await self._exchange(server, fwd.message, q)
                except UpstreamFailure as e:
                    self.stats_fail(e.reason)
                    log.debug("upstream %s:%d failed: %s", server[0], server[1], e)
                    continue
                return self.engine.upstream_reply(q, reply)
            return self.engine.servfail(q)
        finally:
            self.inflight -= 1

    async def _exchange(self, server: Address, message: bytes, q: Question) -> bytes:
        reply = await self._udp(server, message, q)
        if q.tcp and struct.unpack_from("!H", reply, 2)[0] & 0x0200:
            return await self._tcp(server, message, q)
        return reply

    async def _socket(self, server: Address) -> _UpstreamSocket:
        pool = self._sockets.setdefault(server, [])
        pool[:] = [s for s in pool if s.transport is not None and not s.transport.is_closing()]
        if len(pool) < SOCKETS_PER_UPSTREAM:
            loop = asyncio.get_running_loop()
            family = socket.AF_INET6 if ":" in server[0] else socket.AF_INET
            try:
                _, proto = await loop.create_datagram_endpoint(
                    lambda: _UpstreamSocket(self), remote_addr=server, family=family
                )
            except OSError as e:
                raise UpstreamFailure("unreachable", str(e)) from e
            pool.append(proto)
            return proto
        return pool[self.rng.randrange(len(pool))]

    async def _udp(self, server: Address, message: bytes, q: Question) -> bytes:
        sock = await self._socket(server)
        qid = self.rng.getrandbits(16)
        while qid in sock.pending:
            qid = self.rng.getrandbits(16)
        fut: asyncio.Future[bytes] = asyncio.get_running_loop().create_future()
        sock.pending[qid] = (fut, Question(qid, q.flags, q.qname, q.qtype, q.qclass, q.edns, q.tcp))
        assert sock.transport is not None
        try:
            sock.transport.sendto(qid.to_bytes(2, "big") + message[2:])
            return await asyncio.wait_for(fut, self.timeout)
        except TimeoutError as e:
            raise UpstreamFailure("timeout") from e
        except OSError as e:
            raise UpstreamFailure("refused" if isinstance(e, ConnectionRefusedError) else "error", str(e)) from e
        finally:
            if sock.pending.get(qid, (None,))[0] is fut:
                del sock.pending[qid]

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
        for pool in self._sockets.values():
            for s in pool:
                if s.transport is not None:
                    s.transport.close()
        self._sockets.clear()


class _UDPServer(asyncio.DatagramProtocol):
    def __init__(self, server: DNSServer) -> None:
        self.server = server
        self.transport: asyncio.DatagramTransport | None = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]  # a DatagramTransport in all but class

    def datagram_received(self, data: bytes, addr: Address) -> None:
        try:
            d = self.server.engine.handle(data, False)
        except Exception:  # a bug must cost one query, not the listener
            log.exception("DNS query handling failed")
            self.server.engine.stats.dropped["internal error"] += 1
            return
        if type(d) is Reply:
            assert self.transport is not None
            self.transport.sendto(d.data, addr)
        elif isinstance(d, Forward):
            self.server.spawn(self._forward(d, addr))

    async def _forward(self, d: Forward, addr: Address) -> None:
        out = await self.server.forwarder.forward(d)
        if out is not None and self.transport is not None and not self.transport.is_closing():
            self.transport.sendto(out, addr)

    def error_received(self, exc: Exception) -> None:
        log.debug("DNS UDP error: %s", exc)


class DNSServer:
    """Listeners (one UDP + one TCP socket per address) sharing one engine and one forwarder."""

    def __init__(self, engine: QueryEngine, forwarder: Forwarder) -> None:
        self.engine = engine
        self.forwarder = forwarder
        self._listeners: dict[Address, tuple[asyncio.DatagramTransport, asyncio.Server]] = {}
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
        """Start UDP and TCP on ``host:port`` (port 0: the same free port for both). Raises OSError."""
        loop = asyncio.get_running_loop()
        family = socket.AF_INET6 if ":" in host else socket.AF_INET
        usock = socket.socket(family, socket.SOCK_DGRAM)
        try:
            usock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, UDP_RECV_BUFFER)
            usock.bind((host, port))
        except OSError:
            usock.close()
            raise
        bound = usock.getsockname()[1]
        udp, _ = await loop.create_datagram_endpoint(lambda: _UDPServer(self), sock=usock)
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
