"""The mesh router: the pure core of ``weave launch`` (port of mesh ``router.go``/``local_peer.go``).

Everything that decides anything in the control plane happens here, without sockets or clocks:

* inputs: TCP connections accepted/dialled/closed, bytes received on them, UDP datagrams, commands
  (``connect``, ``forget``), timers; every input carries ``now`` (monotonic seconds);
* outputs: :class:`Action` values drained with :meth:`MeshRouter.actions` (dial, write, close, send datagram)
  and one deadline from :meth:`MeshRouter.get_timer`.

The asyncio adapter (``weavenet.aio.mesh``) and the deterministic simulation (``tests/sim``) drive the same
object, which is how a 100-peer mesh can be tested in one process.

Theory of operation, briefly: connections run the intro (handshake); on success the remote peer is registered
(collisions and connections to ourselves refused), duplicate connections are resolved by the lower connection
UID, and the connection is added to our own peer entry. It becomes *established* when its overlay (the sleeve's
UDP heartbeats) works both ways. Every change to our entry is batched for 1 s and gossiped on the ``topology``
channel; received topology is merged (``topology.py``), routes are recomputed lazily (``routes.py``), and the
connection maker dials what is missing (``connection_maker.py``).

The router owns its parts and connects them: the gossip channels (``gossip_channels.py``), the topology's gossiper
(``topology_gossiper.py``), the overlays and the choice among them (``overlay_switch.py``), the connection maker,
the beacons; here is what happens to a connection, from its first byte to its teardown, and in what order the
parts are told.
"""

from __future__ import annotations

import dataclasses
import logging
import random
from collections.abc import Callable, Iterable

from weavenet.core import beacons as bc
from weavenet.core import contact, intro, liveness, sleeve_cipher
from weavenet.core import gossip as g
from weavenet.core import topology_gossip as tg
from weavenet.core.connection import (
    HANDSHAKE_TIMEOUT,
    READ_TIMEOUT,
    TCP_HEARTBEAT,
    ConnState,
    LocalConnection,
    trusted,
)
from weavenet.core.connection_maker import (
    DIAL_TIMEOUT,
    ConnectionMaker,
    LiveConnection,
    PeerAddr,
    host_of,
    split_host_port,
)
from weavenet.core.contact import Contact
from weavenet.core.fastdp import FastdpForwarder, FastdpOverlay, SendVxlan
from weavenet.core.fastdp_keep import CONTROL_GOODBYE, KEEP_FEATURE, FastdpKeeps, why_not_keep
from weavenet.core.features import LIVENESS_FEATURE
from weavenet.core.framing import TAG_HEARTBEAT
from weavenet.core.gossip_channels import TOPOLOGY_CHANNEL, DigestGossiper, GossipChannels
from weavenet.core.handshake import HandshakeCompleted, HandshakeFailed
from weavenet.core.liveness import Silence
from weavenet.core.mesh_types import (
    PROTOCOL,
    PROTOCOL_MAX_VERSION,
    PROTOCOL_MIN_VERSION,
    Action,
    Close,
    Dial,
    InboundFailure,
    MeshConfig,
    SendDatagram,
    SendSpecial,
    Write,
)
from weavenet.core.names import PeerName
from weavenet.core.overlay_switch import OverlaySwitch
from weavenet.core.router_status import INBOUND_FAILURE_TTL, connection_status
from weavenet.core.routes import Routes
from weavenet.core.sleeve import FAST_SLEEVE_FEATURE, SleeveForwarder, SleeveOverlay
from weavenet.core.timers import Timers
from weavenet.core.topology import ConnSummary, Peer, Topology, TopologyEffects
from weavenet.core.topology_gossiper import TopologyGossiper
from weavenet.errors import ConnectToSelf, HandshakeError, RemoteProtocolError
from weavenet.status.router import LocalConnectionStatus

__all__ = [
    "PROTOCOL",
    "PROTOCOL_MAX_VERSION",
    "PROTOCOL_MIN_VERSION",
    "Action",
    "Close",
    "ConnState",
    "Dial",
    "MeshConfig",
    "MeshRouter",
    "SendDatagram",
    "SendSpecial",
    "SendVxlan",
    "Write",
]

log = logging.getLogger("weavenet.mesh")

INBOUND_FAILURES_KEPT = 16
RESYNC_WITHIN = 300.0  # a connection replacing one lost this recently gets our whole gossip state
PASSWORD_HINT = " (do both peers use the same --password?)"


class MeshRouter:
    """The control plane of one peer. See the module docstring."""

    def __init__(
        self,
        config: MeshConfig,
        rng: random.Random,
        now: float,
        uid: int | None = None,
        short_id: int | None = None,
        secret_bytes: Callable[[int], bytes] | None = None,
        wall_offset: float = 0.0,
    ) -> None:
        self.config = config
        self.rng = rng
        self.name = config.name
        self._secret_bytes = secret_bytes
        self.wall_offset = wall_offset  # wall clock = now + wall_offset (for status timestamps only)
        ourself = Peer(
            name=config.name,
            nickname=config.nickname,
            uid=uid if uid is not None else _nonzero_u64(rng),
            version=0,
            short_id=short_id if short_id is not None else rng.randrange(4096),
            has_short_id=True,
        )
        self.topology = Topology(ourself, rng)
        self.ourself = ourself
        self.routes = Routes(self.topology)
        self.maker = ConnectionMaker(config.port, config.discovery, rng)
        self.beacons = bc.Beacons()
        self.fastdp_keeps = FastdpKeeps()  # peers' fast-datapath paths kept across their restarts (fastdp_keep)
        self._lost_at: dict[PeerName, float] = {}  # when our connection to a peer last went (see _add_connection)
        self.overlay_switch = OverlaySwitch(config, ourself, self.topology.by_short_id)
        self.timers = Timers()
        self.connections: dict[int, LocalConnection] = {}  # by connection id (all states)
        self.by_peer: dict[PeerName, LocalConnection] = {}  # READY connections, by remote peer
        self.inbound_failures: list[InboundFailure] = []
        self.internal_errors = 0  # exceptions other than RemoteProtocolError while handling a peer's bytes (bugs)
        self._actions: list[Action] = []
        self._next_id = 1
        self._maker_dirty = True
        # Sets the data plane's adapters registered (watch_connections): each gets every connection whose state or
        # forwarders changed, so they re-derive what they keep per connection for those alone.
        self._watchers: list[set[LocalConnection]] = []
        self.channels = GossipChannels(
            config, rng, self.topology, self.routes, self.by_peer, self.timers, self.send_message, self.remote_feature
        )
        self.topology_gossip = TopologyGossiper(
            config.name, self.topology, self.routes, self.timers, self.channels, self._topology_improved
        )
        # what others are told of (the daemon's services register here)
        self.on_peer_removed: list[Callable[[Peer], None]] = self.topology_gossip.on_peer_removed
        self.on_short_ids_changed: list[Callable[[], None]] = self.topology_gossip.on_short_ids_changed
        self.on_routes_changed: list[Callable[[], None]] = self.topology_gossip.on_routes_changed
        self.channels.register(TOPOLOGY_CHANNEL, self.topology_gossip)
        self.channels.register(tg.DIGEST_CHANNEL, DigestGossiper(self.channels))
        self.timers.set("gossip", now + config.gossip_interval)
        self.timers.set("digest", now + tg.DIGEST_INTERVAL * (0.5 + rng.random()))

    # ===================================================================================== public API: I/O side

    def actions(self, now: float) -> list[Action]:
        """Drain pending outputs. Call after every input, with the time of that input (or a later one): pending
        gossip goes out now unless its connection's coalescing gap asks to wait (the pattern of aioquic's
        ``datagrams_to_send(now)``)."""
        self.channels.flush(now)
        self._actions.extend(self.overlay_switch.take_actions())
        out, self._actions = self._actions, []
        return out

    def get_timer(self) -> float | None:
        return self.timers.next_deadline()

    def handle_timer(self, now: float) -> None:
        for key in self.timers.pop_due(now):
            self._fire(key, now)
        self._after_input(now)

    def accepted(self, remote_addr: str, local_addr: str, now: float) -> int:
        """A peer connected to us. Returns the connection id to use for this TCP connection."""
        conn = self._new_connection(False, remote_addr, accept_new_peer=True, now=now)
        conn.local_addr = local_addr
        self._start_handshake(conn, now)
        self._after_input(now)
        return conn.id

    def dial_succeeded(self, conn_id: int, local_addr: str, now: float) -> None:
        conn = self.connections.get(conn_id)
        if conn is None or conn.state is not ConnState.DIALLING:
            return
        conn.local_addr = local_addr
        self._start_handshake(conn, now)
        self._after_input(now)

    def dial_failed(self, conn_id: int, error: str, now: float) -> None:
        conn = self.connections.pop(conn_id, None)
        if conn is None:
            return
        conn.state = ConnState.CLOSED
        self._conn_changed(conn)
        log.info("->[%s] error during connection attempt: %s", conn.remote_tcp_addr, error)
        self.maker.connection_aborted(conn.remote_tcp_addr, error, now, now + self.wall_offset)
        self._maker_dirty = True
        self._after_input(now)

    def data_received(self, conn_id: int, data: bytes, now: float) -> None:
        conn = self.connections.get(conn_id)
        if conn is None or conn.state in (ConnState.CLOSED, ConnState.DIALLING):
            return
        conn.bytes_in += len(data)
        try:
            if conn.state is ConnState.HANDSHAKE:
                assert conn.handshake is not None
                conn.handshake.receive_data(data)
                self._drain_handshake(conn, now)
            else:
                if conn.silence is not None:
                    conn.silence.heard(now)
                self._receive_messages(conn, data, now)
        except RemoteProtocolError as e:
            if conn.state is ConnState.HANDSHAKE and "decrypt" in str(e):
                e = HandshakeError(f"{e}{PASSWORD_HINT}")
            self._shutdown(conn, e, now)
        except Exception as e:  # a bug of ours on wire input: the connection goes, the router stays
            self.internal_errors += 1
            log.exception("%s: internal error handling the peer's input", conn.describe())
            self._shutdown(conn, RemoteProtocolError(f"internal error handling the peer's input: {e!r}"), now)
        self._after_input(now)

    def connection_lost(self, conn_id: int, error: str | None, now: float) -> None:
        """The TCP connection ended (``error`` None: EOF). A fast datapath it carried may be kept (``fastdp_keep``)."""
        conn = self.connections.get(conn_id)
        if conn is not None and conn.state is not ConnState.CLOSED:
            reason = error or "EOF"
            if conn.state is ConnState.HANDSHAKE and self.config.password is not None and conn.bytes_in >= 40:
                # the keys were exchanged, so the peer most likely failed to decrypt our features
                reason += " during the encrypted handshake" + PASSWORD_HINT
            keep = self._path_to_keep(conn, error)
            self._shutdown(conn, RemoteProtocolError(reason), now, emit_close=False)
            if keep is not None and conn.remote is not None and conn.remote.name not in self.by_peer:
                fwd, vnis, remote = keep
                why = f"its router went without a goodbye ({reason})"
                self.fastdp_keeps.keep(fwd.remote.name, fwd.remote.short_id, vnis, remote, why, now)
                self._keeps_timer()
        self._after_input(now)

    def _path_to_keep(
        self, conn: LocalConnection, error: str | None
    ) -> tuple[FastdpForwarder, tuple[int, int], tuple[str, int]] | None:
        """The connection's fast datapath, if it carries the traffic to a peer that keeps paths and the connection
        ended by the peer's process going (no goodbye); None otherwise (said in the log when it was a candidate)."""
        if conn.state is not ConnState.READY or conn.remote is None or self.by_peer.get(conn.remote.name) is not conn:
            return None
        fwd = conn.fastdp_forwarder()
        if fwd is None or fwd.stopped:
            return None
        vnis, remote = fwd.vnis, fwd.remote_addr
        carrying = fwd.healthy and conn.best_forwarder() is fwd and vnis is not None and remote is not None
        why = why_not_keep(
            carrying=carrying,
            peer_keeps=self.remote_feature(conn, KEEP_FEATURE) == "1",
            goodbye=fwd.goodbye,
            error=error,
        )
        if why is not None:
            if carrying:
                log.info("%s: fast datapath not kept: %s", conn.describe(), why)
            return None
        assert vnis is not None and remote is not None
        return fwd, vnis, remote

    def adopt_fastdp(
        self, peer: int, short_id: int, vnis: tuple[int, int], remote: tuple[str, int], now: float
    ) -> None:
        """A device our previous process left forwarding to a peer that keeps paths: kept until a connection to
        the peer takes it over, as a path kept from a lost connection (the daemon's adoption at start)."""
        self.fastdp_keeps.adopt(PeerName(peer), short_id, vnis, remote, now)
        self._keeps_timer()
        self._after_input(now)

    def say_goodbye(self, now: float) -> None:
        """We are stopping on purpose (``weave stop``): tell every peer that keeps paths not to keep ours. The
        caller then closes the connections."""
        for conn in list(self.by_peer.values()):
            self._goodbye(conn)

    def _goodbye(self, conn: LocalConnection) -> None:
        """Before we close a ready connection ourselves: the goodbye, to a peer that would otherwise keep the
        path (``fastdp_keep``; never to a Go peer)."""
        if conn.compat or conn.framer is None or self.remote_feature(conn, KEEP_FEATURE) != "1":
            return
        index = next((i for i, f in enumerate(conn.forwarders) if isinstance(f, FastdpForwarder)), None)
        if index is not None:
            self.send_message(conn, conn.control_message(index, CONTROL_GOODBYE, b""))

    def _keeps_timer(self) -> None:
        deadline = self.fastdp_keeps.next_deadline()
        if deadline is None:
            self.timers.cancel("keeps")
        else:
            self.timers.set("keeps", deadline)

    def _keeps_taken_over(self, now: float) -> None:
        """A kept path whose peer's new connection now carries its traffic over its own fast datapath is its. A
        peer that is back but reachable only through others (its link to us cut, say) has ``TAKEOVER`` seconds to
        connect to us too, as a new connection has: the kept path must not hold its traffic from the relays."""
        for peer in list(self.fastdp_keeps.paths):
            conn = self.by_peer.get(peer)
            fwd = conn.fastdp_forwarder() if conn is not None else None
            carrying = fwd is not None and fwd.healthy and conn is not None and conn.best_forwarder() is fwd
            via = self.routes.unicast(peer)
            if carrying and via == peer:  # as the device's forwarding wants it
                self.fastdp_keeps.take_over(peer, now)
            elif conn is None and via is not None:
                self.fastdp_keeps.connection_added(peer, now)
        self._keeps_timer()

    def set_writable(self, conn_id: int, writable: bool, now: float) -> None:
        """Backpressure from the transport: while not writable, gossip merges instead of being sent."""
        conn = self.connections.get(conn_id)
        if conn is not None:
            conn.writable = writable
            if writable:
                self.channels.writable(conn)
        self._after_input(now)

    def overlay_input(self, feed: Callable[[float], object], now: float) -> None:
        """An input for an overlay from its data plane: ``feed(now)`` hands it over, then the router carries out
        what follows (control messages, a connection established or lost). The inputs below are such, spelled
        out for the overlays the data plane has today."""
        feed(now)
        self._after_input(now)

    def special_received(self, peer: int, conn_uid: int, frame: bytes, addr: tuple[str, int], now: float) -> None:
        """A sleeve special frame decoded by the external data plane."""
        self.overlay_input(lambda t: self.sleeve.receive_special(PeerName(peer), conn_uid, frame, addr, t), now)

    def datagram_received(self, data: bytes, addr: tuple[str, int], now: float) -> None:
        """A UDP packet on the sleeve's port (heartbeats, beacons; frames too without an external data plane)."""
        self.overlay_input(lambda t: self.sleeve.receive_datagram(data, addr, t), now)

    def vxlan_special_received(self, src_ip: str, vni: int, head: bytes, length: int, now: float) -> None:
        """A special frame (heartbeat, probe) that came through the VXLAN tunnel, as the data plane saw it."""
        self._fastdp_input(lambda f, t: f.receive_special(src_ip, vni, head, length, t), now)

    def fastdp_send_failed(self, peer: int, conn_uid: int, error: str, now: float) -> None:
        """Sending a heartbeat failed locally (e.g. EMSGSIZE: the route's MTU is below a full-size packet)."""
        self._fastdp_input(lambda f, t: f.send_failed(PeerName(peer), conn_uid, error, t), now)

    def fastdp_device_ready(self, peer: int, conn_uid: int, error: str | None, now: float) -> None:
        """The host side created (``error`` None) or failed to create the VXLAN device for this connection."""
        self._fastdp_input(lambda f, t: f.device_ready(PeerName(peer), conn_uid, error, t), now)

    def _fastdp_input(self, feed: Callable[[FastdpOverlay, float], object], now: float) -> None:
        fastdp = self.fastdp
        self.overlay_input(lambda t: None if fastdp is None else feed(fastdp, t), now)

    def heard_from(self, ip: str, now: float) -> None:
        """The data plane received a packet from ``ip`` under a peer name we have no connection to (a beacon, a
        peer that still thinks it is connected to us): a sign of life, so a redial there need not wait."""
        self._sign_of_life(ip, now)
        self._after_input(now)

    def disable_overlay(self, name: str, reason: str) -> None:
        """Offer ``name`` no more (the host cannot run it: VXLAN for ``fastdp``); call before any connection forms."""
        self.overlay_switch.disable(name, reason)

    @property
    def sleeve(self) -> SleeveOverlay:
        sleeve = self.overlay_switch.overlays["sleeve"]
        assert isinstance(sleeve, SleeveOverlay)
        return sleeve

    @property
    def fastdp(self) -> FastdpOverlay | None:
        """The fast datapath's overlay, None when not offered."""
        fastdp = self.overlay_switch.overlays.get("fastdp")
        return fastdp if isinstance(fastdp, FastdpOverlay) else None

    def fastdp_forwarders(self) -> list[tuple[LocalConnection, FastdpForwarder]]:
        """Live fast-datapath forwarders of ready connections (what the host side keeps devices for)."""
        out = []
        for conn in self.by_peer.values():
            fwd = conn.fastdp_forwarder()
            if fwd is not None and not fwd.stopped and fwd.confirmed:
                out.append((conn, fwd))
        return out

    # ===================================================================================== public API: commands

    def connect(self, addrs: Iterable[PeerAddr], replace: bool, now: float) -> None:
        """``weave connect [--replace]``: add direct peers (already resolved by the caller)."""
        self.maker.initiate(addrs, replace, now)
        self._maker_dirty = True
        self._after_input(now)

    def forget(self, specs: Iterable[str], now: float) -> None:
        self.maker.forget(specs)
        self._maker_dirty = True
        self._after_input(now)

    def new_gossip(self, channel: str, gossiper: g.Gossiper) -> g.GossipSink:
        """Register a gossiper (IPAM, DNS, …) on its channel; returns what it uses to send."""
        return self.channels.register(channel, gossiper)

    def connection_status(self, now: float) -> list[LocalConnectionStatus]:
        """Weave's ``LocalConnectionStatus`` list: our connections, then targets not connected."""
        return connection_status(self, now)

    def ready_connections(self) -> list[LocalConnection]:
        return [c for c in self.connections.values() if c.state is ConnState.READY]

    # ===================================================================================== connections

    def _new_connection(self, outbound: bool, address: str, accept_new_peer: bool, now: float) -> LocalConnection:
        conn = LocalConnection(
            id=self._next_id,
            outbound=outbound,
            remote_tcp_addr=address,
            accept_new_peer=accept_new_peer,
            trust_remote=trusted(address, self.config.trusted_subnets),
            local_conn_id=_u64(self.rng),
            created_at=now,
            state=ConnState.DIALLING if outbound else ConnState.HANDSHAKE,
        )
        self._next_id += 1
        self.connections[conn.id] = conn
        return conn

    def _start_handshake(self, conn: LocalConnection, now: float) -> None:
        conn.state = ConnState.HANDSHAKE
        self._conn_changed(conn)
        private_key = self._secret_bytes(32) if self._secret_bytes and self.config.password is not None else None
        conn.handshake = intro.handshake(conn, self.config, self.ourself, private_key, self._extra_features())
        conn.deadline = now + HANDSHAKE_TIMEOUT
        self.timers.set(("conn", conn.id), conn.deadline)
        self._drain_handshake(conn, now)

    def _drain_handshake(self, conn: LocalConnection, now: float) -> None:
        hs = conn.handshake
        assert hs is not None
        out = hs.data_to_send()
        if out:
            self._write(conn, out)
        while (event := hs.next_event()) is not None:
            if isinstance(event, HandshakeFailed):
                raise event.error
            if isinstance(event, HandshakeCompleted):
                conn.handshake = None
                conn.framer = event.framer
                conn.version = event.version
                conn.session_key = event.session_key
                conn.features = event.remote
                conn.uid = event.connection_uid
                self._conn_changed(conn)
                self._introduced(conn, now)
                return

    def _introduced(self, conn: LocalConnection, now: float) -> None:
        """Port of the part of mesh ``LocalConnection.run`` after ``doIntro``: register the remote, give the
        connection its forwarders, add it to our peer."""
        remote = conn.features
        assert remote is not None
        # Refuse over the limit before the remote enters the topology: mesh registers it first, so a refused
        # peer was kept (and gossiped, and could even take our short ID) until the next garbage collection.
        # A peer we are connected to already may still come in: it replaces a duplicate or loses to it; our own
        # name goes on to be refused as ourselves or as a collision.
        if remote.name not in self.by_peer and remote.name != self.name:
            self._check_conn_limit()
        effects = TopologyEffects()
        try:
            restarted = intro.register_remote(conn, self.topology, self.ourself, effects)
        finally:  # a peer that entered the topology stays there (until collected) even if refused
            self.topology_gossip.apply_effects(effects, now)
        log.info("%s: connection ready; using protocol version %d", conn.describe(), conn.version)
        self.overlay_switch.attach(conn, self._extra_features(), now)
        conn.watch = liveness.watches(conn, self.config.extensions)  # a Go peer's 10 s heartbeats
        theirs = conn.features.raw if conn.features is not None else {}
        conn.lean = self.config.extensions and contact.leans(self._extra_features(), theirs)
        self._add_connection(conn, restarted, now)
        self.maker.connection_created(conn.remote_tcp_addr, conn.outbound)
        self._maker_dirty = True
        for fwd in conn.forwarders:
            if fwd is not None:
                fwd.confirm(now)
        conn.deadline = now + READ_TIMEOUT
        conn.next_heartbeat = now + TCP_HEARTBEAT
        self._schedule_conn(conn)

    def _add_connection(self, conn: LocalConnection, restarted: bool, now: float) -> None:
        """Port of mesh ``localPeer.handleAddConnection``."""
        assert conn.remote is not None
        remote = conn.remote
        dup = self.by_peer.get(remote.name)
        if dup is not None and dup is not conn:
            dup_err = f"Multiple connections to {remote} added to {self.ourself}"
            if conn.uid < dup.uid:
                self._shutdown(dup, RemoteProtocolError(dup_err), now)
            elif dup.uid < conn.uid:
                raise RemoteProtocolError(dup_err)
            else:
                self._shutdown(dup, RemoteProtocolError(dup_err), now)
                raise RemoteProtocolError(dup_err)
        self._check_conn_limit()
        self.beacons.found(remote.name)
        # Reachable over any connection means it has been getting our gossip already (Go asks for established
        # routes, which in a forming mesh sends whole states down most new connections).
        connected_before = self.routes.unicast_all(remote.name) is not None
        conn.state = ConnState.READY
        self._conn_changed(conn)
        self.by_peer[remote.name] = conn
        self.ourself.connections[remote.name] = ConnSummary(remote.name, conn.remote_tcp_addr, conn.outbound, False)
        self.ourself.version += 1
        lost_at = self._lost_at.pop(remote.name, None)
        self.fastdp_keeps.connection_added(remote.name, now)
        self._keeps_timer()
        if restarted:
            log.info("%s: connection added (restarted peer)", conn.describe())
            self.channels.send_all_down(conn, now)
        elif connected_before and lost_at is not None and now - lost_at < RESYNC_WITHIN:
            # What was queued on the connection this one replaces died with it (a removal broadcast down a cut
            # link, say), and the peer, reachable through others meanwhile, is no new peer: resync.
            log.info("%s: connection added (replacing one lost %.1fs ago)", conn.describe(), now - lost_at)
            self.channels.send_all_down(conn, now)
        elif connected_before:
            log.info("%s: connection added", conn.describe())
        else:
            log.info("%s: connection added (new peer)", conn.describe())
            self.channels.send_all_down(conn, now)
        self.topology_gossip.routes_changed(now)
        self.topology_gossip.broadcast_update(now, remote.name)

    def _check_conn_limit(self) -> None:
        limit = self.config.conn_limit
        if limit and len(self.by_peer) >= limit:
            raise RemoteProtocolError(f"Connection limit reached ({limit})")

    def _connection_established(self, conn: LocalConnection, now: float) -> None:
        assert conn.remote is not None
        if self.by_peer.get(conn.remote.name) is not conn:
            self._shutdown(conn, RemoteProtocolError("Cannot set unknown connection active"), now)
            return
        conn.established = True
        self._conn_changed(conn)
        if conn.watch:
            conn.silence = Silence(now)
        if conn.lean:
            conn.contact = Contact(now)
            contact.sync(conn, conn.contact, now)
        summary = self.ourself.connections[conn.remote.name]
        self.ourself.connections[conn.remote.name] = dataclasses.replace(summary, established=True)
        self.ourself.version += 1
        log.info("%s: connection fully established", conn.describe())
        self.topology_gossip.routes_changed(now)
        self.topology_gossip.broadcast_update(now, urgent=True)

    def _shutdown(self, conn: LocalConnection, error: Exception, now: float, emit_close: bool = True) -> None:
        """Tear a connection down (port of ``LocalConnection.teardown``)."""
        if conn.state is ConnState.CLOSED:
            return
        was = conn.state
        conn.state = ConnState.CLOSED
        self._conn_changed(conn)
        conn.error = str(error)
        self.connections.pop(conn.id, None)
        self.timers.cancel(("conn", conn.id))
        if conn.remote is None:
            log.info(
                "->[%s] connection shutting down due to error during handshake: %s",
                conn.remote_tcp_addr,
                error,
            )
        else:
            log.info("%s: connection shutting down due to error: %s", conn.describe(), error)
        if emit_close:
            if was is ConnState.READY:
                self._goodbye(conn)  # before the close, so the peer does not keep our path
            self._actions.append(Close(conn.id, str(error)))
        for fwd in conn.forwarders:
            if fwd is not None:
                fwd.stop()
        if conn.remote is not None:
            self.topology.dereference(conn.remote)
            if self.by_peer.get(conn.remote.name) is conn:
                del self.by_peer[conn.remote.name]
                self.ourself.connections.pop(conn.remote.name, None)
                self.ourself.version += 1
                log.info("%s: connection deleted", conn.describe())
                self._beacon_lost(conn, now)
                self._lost_at[conn.remote.name] = now
                if len(self._lost_at) > 1024:
                    self._lost_at = {p: t for p, t in self._lost_at.items() if now - t < RESYNC_WITHIN}
                self.topology_gossip.garbage_collect(now)
                self.topology_gossip.routes_changed(now)
                self.topology_gossip.broadcast_update(now, urgent=True)
            elif conn.remote.local_refcount == 0 and conn.remote.name not in self.by_peer:
                # registered, then refused before it was added (no overlay in common, a duplicate that lost):
                # forget it now rather than gossip a peer we never connected to until the next collection
                self.topology_gossip.garbage_collect(now)
        if was is ConnState.DIALLING:
            return
        self._maker_dirty = True
        retry = not isinstance(error, HandshakeError) or error.retry
        self.maker.connection_terminated(
            conn.remote_tcp_addr,
            conn.outbound,
            str(error),
            retry=retry,
            counts=not isinstance(error, ConnectToSelf),
            now=now,
            wall=now + self.wall_offset,
        )
        if not conn.outbound and was is ConnState.HANDSHAKE:
            self._record_inbound_failure(conn.remote_tcp_addr, str(error), now)

    def _sign_of_life(self, ip: str, now: float) -> None:
        dialling = {c.remote_tcp_addr: c for c in self.connections.values() if c.state is ConnState.DIALLING}
        restart = self.maker.sign_of_life(ip, now, dialling)
        for address in restart:
            log.info("->[%s] sign of life from %s: dialling again", address, ip)
            self._shutdown(dialling[address], RemoteProtocolError("dial abandoned for a fresh one"), now)
        self._maker_dirty = True

    def _beacon_lost(self, conn: LocalConnection, now: float) -> None:
        """Our last connection to a weavenet peer went: beacon to it, so either side notices the path heal."""
        assert conn.remote is not None
        if not self.config.beacons or self.remote_feature(conn, bc.BEACON_FEATURE) != "1":
            return
        addr = next((f.remote_addr for f in conn.forwarders if isinstance(f, SleeveForwarder) and f.remote_addr), None)
        if addr is None:
            parts = split_host_port(conn.remote_tcp_addr)
            if parts is None:
                return
            host, port = parts
            addr = (host, int(port) if conn.outbound and port.isdigit() else self.config.port)
        self.beacons.lost(conn.remote.name, addr, now)
        self.timers.set("beacons", self.beacons.next_deadline() or now)

    def _record_inbound_failure(self, address: str, error: str, now: float) -> None:
        host = host_of(address)
        self.inbound_failures = [
            f for f in self.inbound_failures if host_of(f.address) != host and now - f.at < INBOUND_FAILURE_TTL
        ]
        self.inbound_failures.append(InboundFailure(address, error, now, now + self.wall_offset))
        del self.inbound_failures[:-INBOUND_FAILURES_KEPT]

    # ===================================================================================== messages

    def _write(self, conn: LocalConnection, data: bytes) -> None:
        if self._actions and isinstance(last := self._actions[-1], Write) and last.conn_id == conn.id:
            last.data += data
        else:
            self._actions.append(Write(conn.id, bytearray(data)))

    def send_message(self, conn: LocalConnection, msg: bytes) -> None:
        assert conn.framer is not None
        self._write(conn, conn.framer.encode(msg))

    def _receive_messages(self, conn: LocalConnection, data: bytes, now: float) -> None:
        messages = conn.receive(data, now)
        if messages:
            self._schedule_conn(conn)
        for msg in messages:
            if conn.state is not ConnState.READY:
                return
            if not msg:
                continue
            self._handle_message(conn, msg[0], msg[1:], now)

    def _handle_message(self, conn: LocalConnection, tag: int, payload: bytes, now: float) -> None:
        if tag == TAG_HEARTBEAT:
            if conn.silence is not None:
                conn.silence.beat("tcp", now, TCP_HEARTBEAT)
            return
        if tag in (g.TAG_GOSSIP, g.TAG_GOSSIP_BROADCAST, g.TAG_GOSSIP_UNICAST):
            self.channels.receive(conn, tag, payload, now)
        elif not conn.overlay_control(tag, payload, now):
            log.debug("%s: ignoring unknown protocol tag: %d", conn.describe(), tag)

    # ===================================================================================== timers

    def _schedule_conn(self, conn: LocalConnection) -> None:
        self.timers.set(("conn", conn.id), conn.next_deadline())

    def _fire(self, key: object, now: float) -> None:
        if key == "topology":
            self.topology_gossip.send_update()
        elif key == "gossip":
            self.channels.send_all(now)
            self.timers.set("gossip", now + self.config.gossip_interval)
        elif key == "digest":
            self.channels.digest_round()
            self.timers.set("digest", now + tg.DIGEST_INTERVAL)
        elif key == "gc":
            self.topology_gossip.garbage_collect(now)
        elif key == "routes":
            for ip in self.topology_gossip.recalculate_routes():
                self._sign_of_life(ip, now)
        elif key == "beacons":
            beacon = bc.beacon(self.name)
            for addr in self.beacons.due(now):
                self._actions.append(SendDatagram(addr, beacon))
            if (deadline := self.beacons.next_deadline()) is not None:
                self.timers.set("beacons", deadline)
        elif key == "maker":
            self._maker_dirty = True
        elif key == "keeps":
            self.fastdp_keeps.expire(now)
            self._keeps_timer()
        elif isinstance(key, tuple) and key[0] == "flush":
            pass  # the gossip channels flush when the actions are drained
        elif isinstance(key, tuple) and key[0] == "conn":
            conn = self.connections.get(key[1])
            if conn is not None:
                self._conn_timer(conn, now)

    def _conn_timer(self, conn: LocalConnection, now: float) -> None:
        if now >= conn.deadline:
            what = "handshake" if conn.state is ConnState.HANDSHAKE else "message"
            self._shutdown(conn, RemoteProtocolError(f"timed out waiting for {what} from peer"), now)
            return
        if conn.state is not ConnState.READY:
            self._schedule_conn(conn)
            return
        for msg in conn.due(now):
            self.send_message(conn, msg)
        silence = conn.silence
        if silence is not None and not liveness.check(conn, silence, now):
            self._shutdown(conn, RemoteProtocolError(silence.describe(now)), now)
            return
        if conn.contact is not None and not contact.check(conn, conn.contact, now):
            self._shutdown(conn, RemoteProtocolError(conn.contact.describe(now)), now)
            return
        for fwd in conn.forwarders:
            if fwd is not None:
                fwd.handle_timer(now)
        self._schedule_conn(conn)

    # ===================================================================================== after every input

    def watch_connections(self) -> set[LocalConnection]:
        """A set the router adds every connection to whose state changed or whose forwarders had news (a
        heartbeat, an address, health, path MTU, a stop): the caller empties it as it catches up.

        What the data plane keeps per connection is re-derived for these alone; re-deriving it for all N
        connections after every input (N heartbeats a second) made an idle router's CPU grow with N^2."""
        watched: set[LocalConnection] = set()
        self._watchers.append(watched)
        return watched

    def _conn_changed(self, conn: LocalConnection) -> None:
        for watched in self._watchers:
            watched.add(conn)

    def remote_feature(self, conn: LocalConnection, key: str) -> str | None:
        """One of the peer's weavenet feature keys, or None (always None with ``extensions`` off: Go reads none)."""
        if not self.config.extensions or conn.features is None:
            return None
        return conn.features.raw.get(key)

    def _extra_features(self) -> dict[str, str]:
        """Feature keys only weavenet peers read (Go ignores unknown ones)."""
        extra: dict[str, str] = {}
        if not self.config.extensions:
            return extra
        if self.config.gossip_filter:
            extra[tg.DIGEST_FEATURE] = "1"
        extra.update(self.overlay_switch.features())
        if self.config.beacons:
            extra[bc.BEACON_FEATURE] = "1"
        if self.config.lean_liveness:
            extra[LIVENESS_FEATURE] = "1"
        return extra

    def _topology_improved(self) -> None:
        self._maker_dirty = True  # gossip taught us of peers or addresses: the connection maker looks again

    def _after_input(self, now: float) -> None:
        """Run what any input may have made necessary: overlay events, then the connection maker."""
        for ip in self.overlay_switch.take_strangers():
            self._sign_of_life(ip, now)
        while changed := self.overlay_switch.take_changed():
            for conn in {f.owner for f in changed}:
                if isinstance(conn, LocalConnection):
                    self._conn_changed(conn)
                    if conn.state is not ConnState.CLOSED:
                        self._overlay_events(conn, now)
        if self.fastdp_keeps.paths:
            self._keeps_taken_over(now)
        if self._maker_dirty:
            self._maker_dirty = False
            self._make_connections(now)

    def _overlay_events(self, conn: LocalConnection, now: float) -> None:
        """A forwarder of the connection has news: send what it has for the peer, then see whether the connection
        became established, or has no working forwarder left."""
        for msg in conn.take_control(now):
            self.send_message(conn, msg)
        if conn.state is not ConnState.READY:
            return
        best = conn.best_forwarder()
        if best is None:
            reasons = "; ".join(f"{f.name}: {f.error}" for f in conn.forwarders if f is not None and f.error)
            detail = f" ({reasons})" if reasons else ""
            self._shutdown(conn, RemoteProtocolError(f"no working forwarders to {conn.remote}{detail}"), now)
            return
        if not conn.established and best.established:
            self._connection_established(conn, now)
        if conn.contact is not None:
            contact.sync(conn, conn.contact, now)  # a sleeve covered by a healthy fast datapath, or no longer
        self.overlay_switch.log_choice(conn, best, now)
        self._schedule_conn(conn)

    def fast_sleeve_cipher(self, conn: LocalConnection) -> str:
        """What seals this connection's fast sleeve super-frames (secretbox unless both peers offer better)."""
        if not self.config.fast_sleeve or self.remote_feature(conn, FAST_SLEEVE_FEATURE) != "1":
            return sleeve_cipher.SECRETBOX
        assert conn.features is not None
        return sleeve_cipher.negotiate(self.config.fast_sleeve_ciphers, conn.features.raw)

    def fallback_reason(self, conn: LocalConnection, now: float) -> str | None:
        """Why a connection is not on the fast datapath (None if it is, or while fastdp is still being tried)."""
        return self.overlay_switch.fallback_reason(conn, now)

    def _make_connections(self, now: float) -> None:
        live = [
            LiveConnection(c.remote.name, c.remote_tcp_addr, c.outbound)
            for c in self.by_peer.values()
            if c.remote is not None
        ]
        for address, direct in self.maker.check(now, self.topology, live):
            limit = self.config.conn_limit
            if limit and len(self.by_peer) >= limit:
                self.maker.connection_aborted(
                    address, f"Connection limit reached ({limit})", now, now + self.wall_offset
                )
                continue
            log.info("->[%s] attempting connection", address)
            conn = self._new_connection(True, address, accept_new_peer=direct, now=now)
            self._actions.append(Dial(conn.id, address, DIAL_TIMEOUT))
        deadline = self.maker.next_deadline()
        if deadline is None:
            self.timers.cancel("maker")
        else:
            self.timers.set("maker", deadline)


def _u64(rng: random.Random) -> int:
    return rng.getrandbits(64)


def _nonzero_u64(rng: random.Random) -> int:
    while True:
        value = rng.getrandbits(64)
        if value:
            return value
