"""A deterministic network for many mesh routers in one process.

Each simulated peer runs the real :class:`~weavenet.core.router.MeshRouter` (handshake, gob, gossip, routes,
connection maker, sleeve heartbeats). The network moves its TCP bytes in order with a latency, its UDP datagrams
with a latency and optional loss, and can partition peers: a cut link delivers nothing (TCP bytes wait, as
retransmissions would, UDP datagrams are lost; new dials fail). Time is a :class:`~weavenet.clock.SimClock`;
everything is seeded, so a failing run replays exactly from its seed.
"""

from __future__ import annotations

import functools
import heapq
import random
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field

from weavenet.clock import SimClock
from weavenet.core.connection_maker import PeerAddr
from weavenet.core.fastdp_codec import UNDERLAY_OVERHEAD
from weavenet.core.fastdp_keep import KEEP_FEATURE
from weavenet.core.names import PeerName
from weavenet.core.router import Close, Dial, MeshConfig, MeshRouter, SendDatagram, SendVxlan, Write

PORT = 6783


@dataclass
class Stats:
    tcp_bytes: int = 0
    udp_bytes: int = 0
    tcp_writes: int = 0
    datagrams: int = 0


@dataclass
class SimPeer:
    index: int
    ip: str
    router: MeshRouter
    stats: Stats = field(default_factory=Stats)
    up: bool = True
    timer_at: float | None = None

    @property
    def name(self) -> PeerName:
        return self.router.name


@dataclass
class _Stream:
    """One direction of a simulated TCP connection."""

    src: SimPeer
    src_conn: int
    dst: SimPeer
    dst_conn: int | None = None
    closed: bool = False
    pending: list[bytes] = field(default_factory=list)  # held while the link is cut
    last_delivery: float = 0.0


class SimNetwork:
    def __init__(
        self,
        n: int,
        seed: int = 0,
        latency: tuple[float, float] = (0.0005, 0.002),
        udp_loss: float = 0.0,
        config: Callable[[int], MeshConfig] | None = None,
        password: bytes | None = None,
        discovery: bool = True,
    ) -> None:
        self.rng = random.Random(seed)
        self.clock = SimClock()
        self.latency = latency
        self.udp_loss = udp_loss
        self._queue: list[tuple[float, int, Callable[[], None]]] = []
        self._seq = 0
        self._cut: set[frozenset[int]] = set()
        self._vxlan_blocked: set[frozenset[int]] = set()  # UDP port+1 dropped between these peers
        self._sleeve_blocked: set[frozenset[int]] = set()  # UDP port (the sleeve) dropped between these peers
        self._vxlan_mtu: dict[frozenset[int], int] = {}  # underlay MTU for VXLAN between these peers
        self._devices: set[tuple[int, int]] = set()  # (peer index, connection UID) with a VXLAN device
        self._streams: dict[tuple[int, int], _Stream] = {}  # (peer index, conn id) -> outgoing stream
        # the devices a killed router left forwarding: (peer, its short ID, VNIs, its VXLAN address)
        self.left: dict[int, list[tuple[int, int, tuple[int, int], tuple[str, int]]]] = {}
        self.peers: list[SimPeer] = []
        self._by_ip: dict[str, SimPeer] = {}
        for i in range(n):
            ip = f"10.{(i + 1) // 250}.{(i + 1) % 250}.1"
            name = PeerName(0x0A0000000000 + i + 1)
            cfg = (
                config(i)
                if config
                else MeshConfig(name=name, nickname=f"p{i + 1}", password=password, discovery=discovery)
            )
            prng = random.Random(self.rng.getrandbits(64))
            router = MeshRouter(cfg, rng=prng, now=0.0, secret_bytes=prng.randbytes)
            peer = SimPeer(i, ip, router)
            self.peers.append(peer)
            self._by_ip[ip] = peer
            self._after(peer)

    # -- scheduling -----------------------------------------------------------------------------------------------

    def _at(self, when: float, fn: Callable[[], None]) -> None:
        self._seq += 1
        heapq.heappush(self._queue, (when, self._seq, fn))

    def _delay(self) -> float:
        lo, hi = self.latency
        return lo + (hi - lo) * self.rng.random()

    def now(self) -> float:
        return self.clock.now()

    def run_until(self, t: float) -> None:
        while self._queue and self._queue[0][0] <= t:
            when, _, fn = heapq.heappop(self._queue)
            self.clock.set(max(when, self.clock.now()))
            fn()
        self.clock.set(max(t, self.clock.now()))

    def run_for(self, seconds: float) -> None:
        self.run_until(self.clock.now() + seconds)

    def run_until_true(self, pred: Callable[[], bool], limit: float, step: float = 0.5) -> float | None:
        """Advance in steps until ``pred()``; return the elapsed time, or None if ``limit`` passed."""
        start = self.clock.now()
        while self.clock.now() - start <= limit:
            if pred():
                return self.clock.now() - start
            self.run_for(step)
        return None

    # -- driving routers ------------------------------------------------------------------------------------------

    def _input(self, peer: SimPeer, fn: Callable[[MeshRouter, float], object]) -> None:
        if not peer.up:
            return
        fn(peer.router, self.clock.now())
        self._after(peer)

    def _after(self, peer: SimPeer) -> None:
        for action in peer.router.actions(self.now()):
            if isinstance(action, Write):
                self._write(peer, action.conn_id, bytes(action.data))
            elif isinstance(action, SendDatagram):
                self._send_udp(peer, action.addr, action.data)
            elif isinstance(action, Close):
                self._close(peer, action.conn_id)
            elif isinstance(action, Dial):
                self._dial(peer, action.conn_id, action.address)
            elif isinstance(action, SendVxlan):
                self._send_vxlan(peer, action)
        for _conn, fwd in peer.router.fastdp_forwarders():
            if not fwd.device_ready and (peer.index, fwd.conn_uid) not in self._devices:
                self._devices.add((peer.index, fwd.conn_uid))  # the host side's VXLAN device: instant here
                self._at(self.now(), self._device_ready(peer, int(fwd.remote.name), fwd.conn_uid))
        deadline = peer.router.get_timer()
        if deadline is not None and (peer.timer_at is None or deadline < peer.timer_at or peer.timer_at <= self.now()):
            self._arm(peer, deadline)

    def _arm(self, peer: SimPeer, when: float) -> None:
        peer.timer_at = when
        self._at(when, lambda: self._timer(peer, when))

    def _timer(self, peer: SimPeer, when: float) -> None:
        if peer.timer_at != when:
            return  # superseded by an earlier wake-up armed since (one live timer event per peer, not one per input)
        peer.timer_at = None
        deadline = peer.router.get_timer()
        if deadline is not None and deadline <= self.now():
            self._input(peer, lambda r, now: r.handle_timer(now))
        elif deadline is not None:
            self._arm(peer, deadline)

    def connected(self, a: SimPeer, b: SimPeer) -> bool:
        return a.up and b.up and frozenset((a.index, b.index)) not in self._cut

    def _dial(self, peer: SimPeer, conn_id: int, address: str) -> None:
        ip, _, port = address.rpartition(":")
        target = self._by_ip.get(ip)
        if target is None or int(port) != PORT or not self.connected(peer, target):
            err = f"dial tcp4 {address}: connect: no route to host"
            self._at(self.now() + 1.0, lambda: self._input(peer, lambda r, now: r.dial_failed(conn_id, err, now)))
            return
        out = _Stream(peer, conn_id, target)
        back = _Stream(target, -1, peer, dst_conn=conn_id)
        self._streams[(peer.index, conn_id)] = out
        local = f"{peer.ip}:{40000 + conn_id}"

        def arrive() -> None:
            if not self.connected(peer, target):
                self._input(peer, lambda r, now: r.dial_failed(conn_id, f"dial tcp4 {address}: i/o timeout", now))
                return
            if not target.up:
                return
            accepted = target.router.accepted(local, address, self.now())
            out.dst_conn = accepted
            back.src_conn = accepted
            self._streams[(target.index, accepted)] = back  # before its first writes are drained
            self._after(target)
            self._input(peer, lambda r, now: r.dial_succeeded(conn_id, local, now))

        self._at(self.now() + self._delay(), arrive)

    def _write(self, peer: SimPeer, conn_id: int, data: bytes) -> None:
        stream = self._streams.get((peer.index, conn_id))
        if stream is None or stream.closed:
            return
        peer.stats.tcp_bytes += len(data)
        peer.stats.tcp_writes += 1
        stream.pending.append(data)
        self._pump(stream)

    def _pump(self, stream: _Stream) -> None:
        if not stream.pending or not self.connected(stream.src, stream.dst):
            return
        data = b"".join(stream.pending)
        stream.pending.clear()
        when = max(self.now() + self._delay(), stream.last_delivery)  # TCP keeps order
        stream.last_delivery = when

        def deliver() -> None:
            # bytes already on their way arrive even if the sender closed since (a reset comes after them): only
            # the receiver's own close drops them, and the router ignores a closed connection's bytes anyway
            if stream.dst_conn is None:
                return
            dst_conn = stream.dst_conn
            self._input(stream.dst, lambda r, now: r.data_received(dst_conn, data, now))

        self._at(when, deliver)

    def _close(self, peer: SimPeer, conn_id: int) -> None:
        stream = self._streams.pop((peer.index, conn_id), None)
        if stream is None:
            return
        stream.closed = True
        back = self._streams.pop((stream.dst.index, stream.dst_conn), None) if stream.dst_conn is not None else None
        if back is None:
            return
        back.closed = True
        dst_conn = back.src_conn

        def lost() -> None:
            self._input(stream.dst, lambda r, now: r.connection_lost(dst_conn, "connection reset by peer", now))

        if self.connected(peer, stream.dst):
            self._at(max(self.now() + self._delay(), stream.last_delivery), lost)
        # across a cut link the reset is lost; the far end notices by its own timeouts

    def _send_udp(self, peer: SimPeer, addr: tuple[str, int], data: bytes) -> None:
        peer.stats.udp_bytes += len(data)
        peer.stats.datagrams += 1
        target = self._by_ip.get(addr[0])
        if target is None or addr[1] != PORT or not self.connected(peer, target):
            return
        if frozenset((peer.index, target.index)) in self._sleeve_blocked:
            return
        if self.udp_loss and self.rng.random() < self.udp_loss:
            return
        src = (peer.ip, PORT)
        self._at(
            self.now() + self._delay(),
            lambda: self._input(target, lambda r, now: r.datagram_received(data, src, now)),
        )

    def _device_ready(self, peer: SimPeer, name: int, uid: int) -> Callable[[], None]:
        return lambda: self._input(peer, lambda r, now: r.fastdp_device_ready(name, uid, None, now))

    def _send_vxlan(self, peer: SimPeer, action: SendVxlan) -> None:
        peer.stats.udp_bytes += len(action.frame) + UNDERLAY_OVERHEAD - 14
        peer.stats.datagrams += 1
        target = self._by_ip.get(action.addr[0])
        if target is None or action.addr[1] != PORT + 1 or not self.connected(peer, target):
            return
        pair = frozenset((peer.index, target.index))
        if pair in self._vxlan_blocked or len(action.frame) + UNDERLAY_OVERHEAD - 14 > self._vxlan_mtu.get(pair, 1500):
            return
        if self.udp_loss and self.rng.random() < self.udp_loss:
            return
        head, length, vni, src = bytes(action.frame[:64]), len(action.frame), action.vni, peer.ip
        self._at(
            self.now() + self._delay(),
            lambda: self._input(target, lambda r, now: r.vxlan_special_received(src, vni, head, length, now)),
        )

    # -- scenario controls ----------------------------------------------------------------------------------------

    def block_vxlan(self, a: int, b: int, blocked: bool = True) -> None:
        """Drop (or, with ``blocked=False``, pass again) VXLAN packets between peers a and b."""
        pair = frozenset((a, b))
        if blocked:
            self._vxlan_blocked.add(pair)
        else:
            self._vxlan_blocked.discard(pair)

    def block_sleeve(self, a: int, b: int, blocked: bool = True) -> None:
        """Drop (or pass again) the sleeve's UDP datagrams between peers a and b; TCP and VXLAN still pass."""
        pair = frozenset((a, b))
        if blocked:
            self._sleeve_blocked.add(pair)
        else:
            self._sleeve_blocked.discard(pair)

    def set_vxlan_mtu(self, a: int, b: int, mtu: int) -> None:
        """The underlay MTU VXLAN packets between a and b must fit (1500 unless set)."""
        self._vxlan_mtu[frozenset((a, b))] = mtu

    def connect(self, a: int, targets: Iterable[int]) -> None:
        peer = self.peers[a]
        addrs = [PeerAddr(self.peers[t].ip, self.peers[t].ip, 0) for t in targets]
        self._input(peer, lambda r, now: r.connect(addrs, False, now))

    def cut(self, a: int, b: int) -> None:
        self._cut.add(frozenset((a, b)))

    # -- a router's process going and coming back -------------------------------------------------------------------

    def kill(self, i: int) -> None:
        """SIGKILL of peer i's router: its host's kernel resets its TCP connections (the peers see the reset) and
        keeps its VXLAN devices, which :meth:`relaunch` can adopt (``left``)."""
        peer = self.peers[i]
        self.left[i] = [
            (int(fwd.remote.name), fwd.remote.short_id, fwd.vnis, fwd.remote_addr)
            for conn, fwd in peer.router.fastdp_forwarders()
            if fwd.healthy
            and conn.best_forwarder() is fwd
            and fwd.vnis is not None
            and fwd.remote_addr is not None
            and peer.router.remote_feature(conn, KEEP_FEATURE) == "1"
        ]
        for _, conn_id in [k for k in self._streams if k[0] == i]:
            self._close(peer, conn_id)
        peer.up = False

    def stop(self, i: int) -> None:
        """``weave stop`` of peer i: its router says goodbye, then closes its connections, and deletes its devices."""
        peer = self.peers[i]
        self._input(peer, lambda r, now: r.say_goodbye(now))
        self.kill(i)
        self.left[i] = []

    def host_death(self, i: int) -> None:
        """Peer i's host goes dark: nothing more from it, not even a reset (the peers notice by their timeouts)."""
        self.left[i] = []
        self.peers[i].up = False

    def relaunch(self, i: int, adopt: bool = True, targets: Iterable[int] = ()) -> None:
        """A new router process for peer i (same name, new UID), connecting to ``targets``; with ``adopt`` it takes
        back the short ID and the devices its previous process left (as the daemon does from the kernel's)."""
        old = self.peers[i]
        for key, stream in list(self._streams.items()):
            if old in (stream.src, stream.dst):
                stream.closed = True
                del self._streams[key]
        self._devices = {d for d in self._devices if d[0] != i}
        left = self.left.pop(i, []) if adopt else []
        prng = random.Random(self.rng.getrandbits(64))
        short_id = old.router.ourself.short_id if left else None
        router = MeshRouter(old.router.config, rng=prng, now=self.now(), short_id=short_id, secret_bytes=prng.randbytes)
        peer = SimPeer(i, old.ip, router)
        self.peers[i] = peer
        self._by_ip[old.ip] = peer
        for name, sid, vnis, remote in left:
            self._input(peer, functools.partial(_adopt, name, sid, vnis, remote))
        self._after(peer)
        if targets:
            self.connect(i, targets)

    def heal(self, a: int, b: int) -> None:
        self._cut.discard(frozenset((a, b)))
        for stream in list(self._streams.values()):
            if {stream.src.index, stream.dst.index} == {a, b}:
                self._pump(stream)

    def partition(self, group_a: Iterable[int], group_b: Iterable[int]) -> None:
        for a in group_a:
            for b in group_b:
                self.cut(a, b)

    def heal_all(self) -> None:
        cut, self._cut = self._cut, set()
        for pair in cut:
            a, b = tuple(pair)
            self.heal(a, b)

    # -- observations ---------------------------------------------------------------------------------------------

    def total_bytes(self) -> int:
        return sum(p.stats.tcp_bytes + p.stats.udp_bytes for p in self.peers)

    def tcp_bytes(self) -> int:
        return sum(p.stats.tcp_bytes for p in self.peers)

    def converged(self, peers: Iterable[int] | None = None) -> bool:
        """Every (listed, live) peer knows exactly the peers of its partition and routes to all of them."""
        idx = list(range(len(self.peers))) if peers is None else list(peers)
        names = {self.peers[i].name for i in idx}
        for i in idx:
            r = self.peers[i].router
            if set(r.topology.by_name) != names:
                return False
            if set(r.routes.unicast_table()) != names:
                return False
        return True


def _adopt(peer: int, short_id: int, vnis: tuple[int, int], remote: tuple[str, int], r: MeshRouter, now: float) -> None:
    r.adopt_fastdp(peer, short_id, vnis, remote, now)
