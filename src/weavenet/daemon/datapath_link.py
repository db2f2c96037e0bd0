"""The sleeve's data plane as the router runs it: its worker processes, and the tables they forward by.

:class:`DatapathLink` owns the :class:`~weavenet.dataplane.supervisor.Datapath` (TAP, UDP socket, workers) and
pushes it the tables built from the mesh router's state after every input, only when they change; it carries the
router's special frames (heartbeats, PMTU probes) out through the workers and what they receive back in.


Every connection with a working sleeve forwarder gets a sleeve link, also when the connection itself is on the
fast datapath: relayed traffic and broadcasts for peers the kernel does not reach still travel through it.
Which peers the kernel floods to (``fastdp``) and which VNIs it receives (``vxlan_rx``) are set by the fast
datapath's host side once it has programmed them, so the sleeve never assumes more than the kernel does.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable

from weavenet.core.connection import ConnState, LocalConnection
from weavenet.core.names import PeerName
from weavenet.core.router import MeshRouter, SendSpecial
from weavenet.core.sleeve import FAST_SLEEVE_FEATURE
from weavenet.core.sleeve_codec import NACL_OVERHEAD, PLAIN_OVERHEAD
from weavenet.dataplane import udp
from weavenet.dataplane.supervisor import Datapath
from weavenet.dataplane.tables import DEFAULT_MAX_PAYLOAD, Link, Tables
from weavenet.status.overlay import SleeveDiagnostics
from weavenet.status.router import RouterStatus

log = logging.getLogger("weavenet.daemon")
Run = Callable[[Callable[[float], object]], object]  # MachineDriver.run: one input to the router, then flush

ETH_AND_FRAME_HEADERS = 14 + 14


class TableBuilder:
    """Keeps the last tables sent; ``build`` returns new tables only when something the data plane uses changed.

    ``build`` runs after every router input, and most inputs are heartbeats (about one a second per
    connection), which change nothing the tables hold. So it first looks only at what the input touched: the
    connections the router reports changed (:meth:`MeshRouter.watch_connections`), whose links it re-derives,
    and a few counters (routes, short IDs, what the fast datapath set). Only if one of them differs does it
    derive the whole tables, O(N): deriving them after every input cost an idle router O(N^2) a second.
    """

    def __init__(self, router: MeshRouter) -> None:
        self.router = router
        self.pmtu: dict[int, int] = {}  # peer -> max UDP payload reported by the workers (set_pmtu)
        self._path_payload: dict[str, int] = {}  # remote IP -> PMTU - 28 from the kernel's routes
        self._last: tuple[object, ...] | None = None
        self.routes_only = False  # the last tables built differ from the ones before only in their routes
        self._routes: tuple[dict[int, int], dict[int, list[int]]] | None = None
        self._routes_generation = -1
        self.generation = 0
        self.derivations = 0  # whole derivations (tests: not one per heartbeat)
        self._fastdp: frozenset[int] = frozenset()
        self._vxlan_rx: frozenset[int] = frozenset()
        self._stale = True  # something the whole tables read changed outside the router's connections
        self._touched = router.watch_connections()
        self._links: dict[LocalConnection, Link | None] = {}  # each ready connection's link, as last derived
        self._me_short: int | None = None
        self._short_ids: dict[int, int] | None = None  # short ID -> peer, rebuilt when routes or short IDs change
        self._short_ids_gen = 0
        self._short_ids_last: dict[int, int] = {}
        router.on_short_ids_changed.append(self._forget_short_ids)

    @property
    def fastdp(self) -> frozenset[int]:
        """Peers the kernel floods broadcasts to (set by FastdpLink)."""
        return self._fastdp

    @fastdp.setter
    def fastdp(self, peers: frozenset[int]) -> None:
        self._fastdp = peers
        self._stale = True

    @property
    def vxlan_rx(self) -> frozenset[int]:
        """Short IDs with a kernel VXLAN device (set by FastdpLink)."""
        return self._vxlan_rx

    @vxlan_rx.setter
    def vxlan_rx(self, shorts: frozenset[int]) -> None:
        self._vxlan_rx = shorts
        self._stale = True

    def set_pmtu(self, peer: int, max_payload: int) -> None:
        self.pmtu[peer] = max_payload
        self._stale = True

    def _forget_short_ids(self) -> None:
        self._short_ids = None

    def max_payload(self, peer: int, ip: str) -> int:
        if peer in self.pmtu:
            return self.pmtu[peer]
        cached = self._path_payload.get(ip)
        if cached is None:
            mtu = udp.path_mtu(ip, 6783)
            cached = self._path_payload[ip] = (mtu - 28) if mtu else DEFAULT_MAX_PAYLOAD
        return cached

    def _link(self, conn: LocalConnection) -> Link | None:
        """The sleeve link of a ready connection with a working sleeve forwarder, else None."""
        router = self.router
        if conn.state is not ConnState.READY:
            return None
        fwd = conn.sleeve_forwarder()
        if fwd is None or conn.remote is None:
            return None
        key = conn.session_key if (router.config.password is not None and conn.untrusted) else None
        fast = router.config.fast_sleeve and router.remote_feature(conn, FAST_SLEEVE_FEATURE) == "1"
        cipher = router.fast_sleeve_cipher(conn)
        addr = fwd.remote_addr
        overhead = (NACL_OVERHEAD if key else PLAIN_OVERHEAD) + ETH_AND_FRAME_HEADERS
        route_payload = self.max_payload(conn.remote.name, addr[0]) if addr else DEFAULT_MAX_PAYLOAD
        if fwd.pmtu_ceiling is None and addr is not None:
            fwd.pmtu_ceiling = route_payload - overhead  # what probing starts from, once established
        if fwd.pmtu_verified:
            max_payload = min(route_payload, fwd.mtu + overhead)  # probes found the path narrower
        else:
            max_payload = route_payload
            fwd.mtu = max_payload - overhead  # `weave status connections` shows it (Go: after verification)
        return Link(
            peer=int(conn.remote.name),
            conn_uid=conn.uid,
            outbound=conn.outbound,
            addr=addr,
            key=key,
            fast=fast,
            max_payload=max_payload,
            cipher=cipher,
        )

    def _me_short_now(self) -> int | None:
        me = self.router.ourself
        return me.short_id if me.has_short_id and self.router.fastdp is not None else None

    def _changed(self) -> bool:
        """Whether anything the tables hold may have changed since the last derivation (cheap: see the class)."""
        routes = self.router.routes
        changed = (
            self._stale
            or self._short_ids is None
            or routes.dirty
            or routes.generation != self._routes_generation
            or self._me_short_now() != self._me_short
        )
        touched = self._touched
        while touched and not changed:
            conn = touched.pop()
            changed = self._link(conn) != self._links.get(conn)
        touched.clear()
        return changed

    def build(self) -> Tables | None:
        if not self._changed():
            return None
        self._stale = False
        self.derivations += 1
        router = self.router
        links: dict[int, Link] = {}
        per_conn: dict[LocalConnection, Link | None] = {}
        for conn in router.ready_connections():
            link = per_conn[conn] = self._link(conn)
            if link is not None:
                links[link.peer] = link
        self._links = per_conn
        routes = router.routes
        table = routes.unicast_table()
        if routes.generation != self._routes_generation or self._routes is None:
            self._routes_generation = routes.generation
            self._short_ids = None
            unicast = {int(d): int(h) for d, h in table.items() if h}
            broadcast = {int(s): [int(h) for h in hops] for s, hops in routes.broadcast_table().items()}
            self._routes = (unicast, broadcast)
        unicast, broadcast = self._routes
        me_short = self._me_short = self._me_short_now()
        if self._short_ids is None:
            fresh = (
                {p.short_id: int(p.name) for p in router.topology.by_name.values() if p.has_short_id}
                if me_short is not None
                else {}
            )
            if fresh != self._short_ids_last:
                self._short_ids_gen += 1
                self._short_ids_last = fresh
            self._short_ids = fresh
        short_ids = self._short_ids
        signature = (
            tuple(
                sorted(
                    (p, lk.conn_uid, lk.addr, lk.key, lk.fast, lk.max_payload, lk.outbound, lk.cipher)
                    for p, lk in links.items()
                )
            ),
            self.fastdp,
            self.vxlan_rx,
            me_short,
            self._short_ids_gen,
            tuple(sorted(unicast.items())),
            tuple(sorted((s, tuple(h)) for s, h in broadcast.items())),
        )
        if signature == self._last:
            return None
        self.routes_only = self._last is not None and signature[:5] == self._last[:5]
        self._last = signature
        self.generation += 1
        return Tables(
            me=int(router.name),
            generation=self.generation,
            links=links,
            unicast=unicast,
            broadcast=broadcast,
            fastdp=self.fastdp,
            vxlan_rx=self.vxlan_rx,
            me_short=me_short,
            short_ids=short_ids,
        )


ROUTES_GAP = 0.2  # tables that differ only in their routes go to the workers at most this often


class PushGate:
    """When new tables go to the workers: at once when a link or a fast-datapath fact changed (a new link must
    be there before the heartbeat that proves it), at most every ``ROUTES_GAP`` when only routes did.

    While a mesh forms, every topology update moves routes, and each push pickles the whole tables to both
    workers: at 30 routers that was hundreds a second. Routes a fraction of a second late cost nothing the
    sleeve cannot carry meanwhile (it relays along the older routes, which still reach the peer)."""

    def __init__(self) -> None:
        self.pending: Tables | None = None
        self._sent_at = float("-inf")

    def offer(self, tables: Tables, routes_only: bool, now: float) -> Tables | None:
        """The tables to send now, or None: they wait (``due``) and the newest waiting tables go then."""
        if routes_only and now - self._sent_at < ROUTES_GAP:
            self.pending = tables
            return None
        self.pending = None
        self._sent_at = now
        return tables

    def due(self) -> float | None:
        return None if self.pending is None else self._sent_at + ROUTES_GAP

    def take(self, now: float) -> Tables | None:
        tables, self.pending = self.pending, None
        if tables is not None:
            self._sent_at = now
        return tables


class DatapathLink:
    """The data plane's workers and the router, joined: tables out after every input, specials both ways."""

    def __init__(
        self,
        router: MeshRouter,
        run: Run,
        bridge: str,
        host: str,
        port: int,
        *,
        steering: bool = True,
        warm_tick: bool = True,
        rehearsal: bool = True,
    ) -> None:
        self.router = router
        self._run = run
        self.tables = TableBuilder(router)
        self.gate = PushGate()
        self._gate_timer: asyncio.TimerHandle | None = None
        self.datapath = Datapath(
            bridge,
            host,
            port,
            on_special=self._on_special,
            steering=steering,
            warm_tick=warm_tick,
            rehearsal=rehearsal,
        )
        self.datapath.on_pmtu = self._on_pmtu
        self.datapath.on_stranger = self._on_stranger

    @property
    def bridge(self) -> str:
        return self.datapath.bridge

    async def start(self) -> None:
        await self.datapath.start()

    async def stop(self) -> None:
        if self._gate_timer is not None:
            self._gate_timer.cancel()
            self._gate_timer = None
        await self.datapath.stop()

    def push(self) -> None:
        """After every input: new tables to the workers, if anything they use changed."""
        tables = self.tables.build()
        if tables is None:
            return
        loop = asyncio.get_running_loop()
        now = loop.time()
        send = self.gate.offer(tables, self.tables.routes_only, now)
        if send is not None:
            if self._gate_timer is not None:
                self._gate_timer.cancel()
                self._gate_timer = None
            self.datapath.update(send)
            return
        due = self.gate.due()
        if due is not None and self._gate_timer is None:
            self._gate_timer = loop.call_at(due, self._push_waiting)

    def _push_waiting(self) -> None:
        self._gate_timer = None
        tables = self.gate.take(asyncio.get_running_loop().time())
        if tables is not None:
            self.datapath.update(tables)

    def send_special(self, action: SendSpecial) -> None:
        self.datapath.send_special(int(action.peer), action.conn_uid, action.frame, action.df, action.more)

    def _on_special(self, peer: int, conn_uid: int, frame: bytes, addr: tuple[str, int]) -> None:
        self._run(lambda now: self.router.special_received(peer, conn_uid, frame, addr, now))

    def _on_stranger(self, ip: str) -> None:
        """A datagram from an address we have no link with (a lost peer's beacon): a sign of life to redial."""
        self._run(lambda now: self.router.heard_from(ip, now))

    def _on_pmtu(self, peer: int, max_payload: int) -> None:
        log.info("path MTU to %s: UDP payload limited to %d bytes", PeerName(peer), max_payload)
        self.tables.set_pmtu(peer, max_payload)
        self.push()

    def add_to_report(self, router: RouterStatus) -> None:
        """The sleeve's bytes by peer (``OverlayDiagnostics.sleeve.Peers``), for the web view and ``/metrics``."""
        sleeve = (router.overlay_diagnostics or {}).get("sleeve")
        if isinstance(sleeve, SleeveDiagnostics):
            sleeve.peers = {
                str(PeerName(peer)): {"RxBytes": rx, "TxBytes": tx}
                for peer, (rx, tx) in sorted(self.datapath.peer_bytes().items())
            }
