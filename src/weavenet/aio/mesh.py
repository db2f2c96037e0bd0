"""asyncio adapter for the mesh router core: the TCP listener and dialer, and the sleeve's UDP socket.

It makes no protocol decisions. The router is a machine of the shared :class:`~weavenet.aio.machine.MachineDriver`
(inputs with ``now``, one timer); this module feeds it what arrives on its sockets and carries out its actions
(dial, write, close, datagram; specials and VXLAN heartbeats go to the data plane's callbacks when it owns the
UDP ports).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import socket
import struct
from collections.abc import Callable, Coroutine

from weavenet.aio.machine import MachineDriver
from weavenet.core.connection_maker import PeerAddr, join_host_port, parse_peer_spec
from weavenet.core.router import Close, Dial, MeshRouter, SendDatagram, SendSpecial, SendVxlan, Write

log = logging.getLogger("weavenet.mesh")

ACCEPT_MAX_TOKENS = 20  # accept throttle, as mesh's token bucket: 20 at once, then one per 50 ms
ACCEPT_TOKEN_DELAY = 0.05
WRITE_HIGH_WATER = 256 * 1024
WRITE_LOW_WATER = 64 * 1024
IP_MTU_DISCOVER = 10
IP_PMTUDISC_DONT = 0


class TokenBucket:
    """Pure token bucket: ``take(now)`` returns how long to wait before the token is available."""

    def __init__(self, capacity: int, refill: float, now: float) -> None:
        self.capacity = capacity
        self.refill = refill
        self.earliest = now - capacity * refill  # time at which the bucket was empty

    def take(self, now: float) -> float:
        self.earliest = max(self.earliest, now - self.capacity * self.refill) + self.refill
        return max(0.0, self.earliest - now)


class _MeshTCP(asyncio.Protocol):
    def __init__(self, mesh: MeshTransport, conn_id: int | None) -> None:
        self.mesh = mesh
        self.conn_id = conn_id
        self.transport: asyncio.Transport | None = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        assert isinstance(transport, asyncio.Transport)
        self.transport = transport
        transport.set_write_buffer_limits(WRITE_HIGH_WATER, WRITE_LOW_WATER)
        sock = transport.get_extra_info("socket")
        if sock is not None:
            # Go sets SO_LINGER 0: a closed connection is reset at once rather than lingering.
            with contextlib.suppress(OSError):
                sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
                sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        self.mesh.tcp_made(self)

    def data_received(self, data: bytes) -> None:
        conn_id = self.conn_id
        if conn_id is not None:
            self.mesh.run(lambda now: self.mesh.router.data_received(conn_id, data, now))

    def eof_received(self) -> bool:
        return False

    def connection_lost(self, exc: Exception | None) -> None:
        self.mesh.tcp_lost(self, exc)

    def pause_writing(self) -> None:
        conn_id = self.conn_id
        if conn_id is not None:
            self.mesh.run(lambda now: self.mesh.router.set_writable(conn_id, False, now))

    def resume_writing(self) -> None:
        conn_id = self.conn_id
        if conn_id is not None:
            self.mesh.run(lambda now: self.mesh.router.set_writable(conn_id, True, now))


class _SleeveUDP(asyncio.DatagramProtocol):
    def __init__(self, mesh: MeshTransport) -> None:
        self.mesh = mesh

    def datagram_received(self, data: bytes, addr: tuple[str | object, int]) -> None:
        host, port = addr[0], addr[1]
        self.mesh.run(lambda now: self.mesh.router.datagram_received(data, (str(host), port), now))

    def error_received(self, exc: Exception) -> None:
        log.debug("sleeve UDP error: %s", exc)


class MeshTransport:
    """Runs a :class:`MeshRouter` on the real network, as a machine of ``driver``."""

    def __init__(
        self,
        router: MeshRouter,
        driver: MachineDriver,
        host: str,
        port: int,
        send_special: Callable[[SendSpecial], None] | None = None,
        send_vxlan: Callable[[SendVxlan], None] | None = None,
        send_datagram: Callable[[tuple[str, int], bytes], None] | None = None,
    ) -> None:
        """``send_special`` given: an external data plane owns the UDP port; specials are handed to it, and so are
        the core's own datagrams (liveness beacons) through ``send_datagram``. ``send_vxlan``: the fast
        datapath's heartbeats (None: it is off)."""
        self.router = router
        self.driver = driver
        self.send_special = send_special
        self.send_vxlan = send_vxlan
        self.host = host
        self.port = port
        self.loop = driver.loop
        self._conns: dict[int, _MeshTCP] = {}
        self._udp: asyncio.DatagramTransport | None = None
        self._listener: socket.socket | None = None
        self._tasks: set[asyncio.Task[None]] = set()
        self._bucket = TokenBucket(ACCEPT_MAX_TOKENS, ACCEPT_TOKEN_DELAY, self.loop.time())
        self.closed = False
        self.send_datagram = send_datagram
        self._dials: dict[int, asyncio.Task[None]] = {}  # pending dials, cancelled when the core abandons them
        driver.add("mesh router", router, self._drain)

    # -- lifecycle ----------------------------------------------------------------------------------------------

    async def start(self) -> None:
        bind = self.host or "0.0.0.0"
        lsock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        lsock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        lsock.bind((bind, self.port))
        lsock.listen(128)
        lsock.setblocking(False)
        self._listener = lsock
        if self.send_special is not None:
            self._spawn(self._accept_loop())
            self.driver.flush()
            return
        udp_sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        udp_sock.setsockopt(socket.IPPROTO_IP, IP_MTU_DISCOVER, IP_PMTUDISC_DONT)
        udp_sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4 * 1024 * 1024)
        udp_sock.bind((bind, self.port))
        transport, _ = await self.loop.create_datagram_endpoint(lambda: _SleeveUDP(self), sock=udp_sock)
        self._udp = transport
        self._spawn(self._accept_loop())
        self.driver.flush()

    async def close(self) -> None:
        if not self.closed:
            # we stop on purpose: peers that would keep our fast datapath for a relaunch are told not to
            now = self.loop.time()
            self.router.say_goodbye(now)
            self._drain(now)
        self.closed = True
        if self._listener is not None:
            self._listener.close()
        for task in list(self._tasks):
            task.cancel()
        for proto in list(self._conns.values()):
            if proto.transport is not None:
                proto.transport.abort()
        if self._udp is not None:
            self._udp.close()

    def _spawn(self, coro: Coroutine[object, object, None]) -> None:
        task = self.loop.create_task(coro)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def _accept_loop(self) -> None:
        assert self._listener is not None
        while not self.closed:
            try:
                sock, _ = await self.loop.sock_accept(self._listener)
            except OSError as e:
                log.info("accept: %s", e)
                await asyncio.sleep(0.1)
                continue
            proto = _MeshTCP(self, None)
            try:
                await self.loop.connect_accepted_socket(lambda p=proto: p, sock)
            except OSError as e:
                log.info("accept: %s", e)
                continue
            wait = self._bucket.take(self.loop.time())
            if wait:
                await asyncio.sleep(wait)

    # -- inputs -------------------------------------------------------------------------------------------------

    def run(self, fn: Callable[[float], object]) -> None:
        """Feed one input to the router (see :meth:`MachineDriver.run`), unless this transport is closed."""
        if not self.closed:
            self.driver.run(fn)

    def tcp_made(self, proto: _MeshTCP) -> None:
        assert proto.transport is not None
        if proto.conn_id is None:  # inbound
            peer = proto.transport.get_extra_info("peername")
            local = proto.transport.get_extra_info("sockname")
            if peer is None or local is None:  # the peer hung up before we got to it (seen on a loaded machine)
                log.info("inbound connection closed before it was accepted")
                proto.transport.abort()
                return
            remote_addr = join_host_port(peer[0], peer[1])
            local_addr = join_host_port(local[0], local[1])
            log.info("->[%s] connection accepted", remote_addr)
            if self.closed or self.driver.closed:
                proto.transport.abort()
                return
            # registered before the flush: the router writes its handshake header at once
            now = self.loop.time()
            conn_id = self.router.accepted(remote_addr, local_addr, now)
            proto.conn_id = conn_id
            self._conns[conn_id] = proto
            self.driver.flush(now)
            return
        # Outbound: tell the core here, not when the dial's await returns: the peer's first bytes can be delivered
        # before that (the await resumes a loop iteration later), and would reach a core still dialling.
        conn_id = proto.conn_id
        if self._conns.get(conn_id) is not proto:  # abandoned by the core meanwhile
            proto.transport.abort()
            return
        local = proto.transport.get_extra_info("sockname")
        self.run(lambda now: self.router.dial_succeeded(conn_id, join_host_port(local[0], local[1]), now))

    def tcp_lost(self, proto: _MeshTCP, exc: Exception | None) -> None:
        if proto.conn_id is not None and self._conns.get(proto.conn_id) is proto:
            del self._conns[proto.conn_id]
            conn_id = proto.conn_id
            self.run(lambda now: self.router.connection_lost(conn_id, str(exc) if exc else None, now))

    def _start_dial(self, conn_id: int, address: str, timeout: float | None) -> None:
        task = self.loop.create_task(self._dial(conn_id, address, timeout))
        self._dials[conn_id] = task
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)
        task.add_done_callback(lambda _t: self._dials.pop(conn_id, None))

    async def _dial(self, conn_id: int, address: str, timeout: float | None = None) -> None:
        host, port = address.rsplit(":", 1)
        host = host.strip("[]")
        proto = _MeshTCP(self, conn_id)
        self._conns[conn_id] = proto
        try:
            await asyncio.wait_for(
                self.loop.create_connection(
                    lambda: proto, host, int(port), local_addr=(self.host, 0) if self.host else None
                ),
                timeout,
            )
        except OSError as e:  # TimeoutError included
            if proto.transport is not None:
                return  # connected just as the timeout struck: the connection's own end reports it
            self._conns.pop(conn_id, None)
            if isinstance(e, TimeoutError):
                err = f"dial tcp4 {address}: i/o timeout"
            else:
                err = f"dial tcp4 {address}: {e.strerror or e}"
            self.run(lambda now: self.router.dial_failed(conn_id, err, now))
        # connected: tcp_made has told the core

    # -- outputs ------------------------------------------------------------------------------------------------

    def _drain(self, now: float) -> None:
        """Carry out what the router asked for (called by the driver after every input, after the hooks that
        keep the data plane's tables: a new link must be known there before a heartbeat for it is handed over)."""
        for action in self.router.actions(now):
            if isinstance(action, Write):
                proto = self._conns.get(action.conn_id)
                if proto is not None and proto.transport is not None and not proto.transport.is_closing():
                    proto.transport.write(action.data)
            elif isinstance(action, SendDatagram):
                if self._udp is not None:
                    self._udp.sendto(action.data, action.addr)
                elif self.send_datagram is not None:
                    self.send_datagram(action.addr, action.data)
            elif isinstance(action, Close):
                proto = self._conns.pop(action.conn_id, None)
                if proto is not None and proto.transport is not None:
                    proto.transport.abort()
                elif (dial := self._dials.pop(action.conn_id, None)) is not None:
                    dial.cancel()  # a pending dial the core gave up on (its TCP not connected yet)
            elif isinstance(action, Dial):
                self._start_dial(action.conn_id, action.address, action.timeout)
            elif isinstance(action, SendSpecial) and self.send_special is not None:
                self.send_special(action)
            elif isinstance(action, SendVxlan) and self.send_vxlan is not None:
                self.send_vxlan(action)

    # -- commands -----------------------------------------------------------------------------------------------

    async def resolve(self, specs: list[str]) -> tuple[list[PeerAddr], list[str]]:
        """Resolve ``host[:port]`` peer specs; returns (resolved, error messages)."""
        addrs: list[PeerAddr] = []
        errors: list[str] = []
        for spec in specs:
            try:
                host, port = parse_peer_spec(spec)
            except ValueError as e:
                errors.append(str(e))
                continue
            try:
                infos = await self.loop.getaddrinfo(host, None, family=socket.AF_INET, type=socket.SOCK_STREAM)
            except OSError as e:
                errors.append(f"lookup {host}: {e.strerror or e}")
                continue
            except UnicodeError as e:  # the IDNA codec; parse_peer_spec should have refused such a name already
                errors.append(f'invalid peer address "{spec}": {e}')
                continue
            addrs.append(PeerAddr(spec, str(infos[0][4][0]), port))
        return addrs, errors

    async def connect(self, specs: list[str], replace: bool) -> list[str]:
        addrs, errors = await self.resolve(specs)
        self.run(lambda now: self.router.connect(addrs, replace, now))
        return errors

    def forget(self, specs: list[str]) -> None:
        self.run(lambda now: self.router.forget(specs, now))
