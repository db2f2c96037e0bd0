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
"""

from __future__ import annotations

import dataclasses
import logging
import random
from collections.abc import Callable, Iterable, Mapping
from ipaddress import ip_address

from weavenet.core import beacons as bc
from weavenet.core import gossip as g
from weavenet.core import sleeve_cipher
from weavenet.core import topology_gossip as tg
from weavenet.core.connection import (
    HANDSHAKE_TIMEOUT,
    READ_TIMEOUT,
    TAG_OVERLAY_CONTROL,
    TCP_HEARTBEAT,
    ConnState,
    LocalConnection,
)
from weavenet.core.connection_maker import (
    DIAL_TIMEOUT,
    ConnectionMaker,
    LiveConnection,
    PeerAddr,
    host_of,
    split_host_port,
)
from weavenet.core.fastdp import CONTROL_HEARTBEAT_ACK, FastdpForwarder, FastdpOverlay
from weavenet.core.framing import TAG_HEARTBEAT
from weavenet.core.handshake import Handshake, HandshakeCompleted, HandshakeFailed
from weavenet.core.liveness import CHALLENGE_LEN, Silence, ack_time
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
    SendVxlan,
    Write,
)
from weavenet.core.names import PeerName
from weavenet.core.router_gossip import TOPOLOGY_CHANNEL, GossipMixin, _Channel, _DigestGossiper
from weavenet.core.router_status import INBOUND_FAILURE_TTL, connection_status
from weavenet.core.routes import Routes
from weavenet.core.sleeve import CONTROL_CONNECTION_ESTABLISHED, SLOW_HEARTBEAT, SleeveForwarder, SleeveOverlay
from weavenet.core.timers import Timers
from weavenet.core.topology import ConnSummary, Peer, Topology, TopologyEffects
from weavenet.core.topology_gossip import TopologyGossipData
from weavenet.errors import ConnectToSelf, HandshakeError, PeerNameCollision, RemoteProtocolError
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
    "SendVxlan",
    "Write",
]

log = logging.getLogger("weavenet.mesh")

INBOUND_FAILURES_KEPT = 16
RESYNC_WITHIN = 300.0  # a connection replacing one lost this recently gets our whole gossip state
FAST_SLEEVE_FEATURE = "WeavenetSleeve"
FASTDP_FEATURE = "WeavenetFastdp"  # speaks weavenet's fast-datapath heartbeat extension (flags, probes)
PASSWORD_HINT = " (do both peers use the same --password?)"


class MeshRouter(GossipMixin):
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
        self._reachable: set[PeerName] = set()  # peers routable over any connection, at the last route change
        self._lost_at: dict[PeerName, float] = {}  # when our connection to a peer last went (see _add_connection)
        self.sleeve = SleeveOverlay(config.name, external=config.external_datapath)
        self.fastdp: FastdpOverlay | None = None
        self.fastdp_off_reason = "fast datapath disabled on this peer"
        if "fastdp" in config.overlays:
            self.fastdp = FastdpOverlay(ourself, config.fastdp_mtu, config.port + 1, self.topology.by_short_id)
        self.timers = Timers()
        self.channels: dict[str, _Channel] = {}
        self.connections: dict[int, LocalConnection] = {}  # by connection id (all states)
        self.by_peer: dict[PeerName, LocalConnection] = {}  # READY connections, by remote peer
        self.inbound_failures: list[InboundFailure] = []
        self.internal_errors = 0  # exceptions other than RemoteProtocolError while handling a peer's bytes (bugs)
        self.on_peer_removed: list[Callable[[Peer], None]] = []
        self.on_short_ids_changed: list[Callable[[], None]] = []
        self.on_routes_changed: list[Callable[[], None]] = []
        self._actions: list[Action] = []
        self._next_id = 1
        self._pending_update: set[PeerName] = set()
        self._maker_dirty = True
        self._gossip_pending: set[LocalConnection] = set()
        self._gossip_from: LocalConnection | None = None  # the connection whose gossip is being handled
        self.new_gossip(TOPOLOGY_CHANNEL, self)  # the router is the topology gossiper
        self.new_gossip(tg.DIGEST_CHANNEL, _DigestGossiper(self))
        self.timers.set("gossip", now + config.gossip_interval)
        self.timers.set("digest", now + tg.DIGEST_INTERVAL * (0.5 + rng.random()))

    # ===================================================================================== public API: I/O side

    def actions(self, now: float) -> list[Action]:
        """Drain pending outputs. Call after every input, with the time of that input (or a later one): pending
        gossip goes out now unless its connection's coalescing gap asks to wait (the pattern of aioquic's
        ``datagrams_to_send(now)``)."""
        self._flush_gossip(now)
        self._flush_overlay_output()
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
        conn = self.connections.get(conn_id)
        if conn is not None and conn.state is not ConnState.CLOSED:
            reason = error or "EOF"
            if conn.state is ConnState.HANDSHAKE and self.config.password is not None and conn.bytes_in >= 40:
                # the keys were exchanged, so the peer most likely failed to decrypt our features
                reason += " during the encrypted handshake" + PASSWORD_HINT
            self._shutdown(conn, RemoteProtocolError(reason), now, emit_close=False)
        self._after_input(now)

    def set_writable(self, conn_id: int, writable: bool, now: float) -> None:
        """Backpressure from the transport: while not writable, gossip merges instead of being sent."""
        conn = self.connections.get(conn_id)
        if conn is not None:
            conn.writable = writable
            if writable and any(not snd.empty() for snd in conn.senders.values()):
                self._gossip_pending.add(conn)
        self._after_input(now)

    def special_received(self, peer: int, conn_uid: int, frame: bytes, addr: tuple[str, int], now: float) -> None:
        """A sleeve special frame decoded by the external data plane."""
        self.sleeve.receive_special(PeerName(peer), conn_uid, frame, addr, now)
        self._after_input(now)

    def datagram_received(self, data: bytes, addr: tuple[str, int], now: float) -> None:
        self.sleeve.receive_datagram(data, addr, now)
        self._after_input(now)

    def heard_from(self, ip: str, now: float) -> None:
        """The data plane received a packet from ``ip`` under a peer name we have no connection to (a beacon, a
        peer that still thinks it is connected to us): a sign of life, so a redial there need not wait."""
        self._sign_of_life(ip, now)
        self._after_input(now)

    def vxlan_special_received(self, src_ip: str, vni: int, head: bytes, length: int, now: float) -> None:
        """A special frame (heartbeat, probe) that came through the VXLAN tunnel, as the data plane saw it."""
        if self.fastdp is not None:
            self.fastdp.receive_special(src_ip, vni, head, length, now)
        self._after_input(now)

    def fastdp_send_failed(self, peer: int, conn_uid: int, error: str, now: float) -> None:
        """Sending a heartbeat failed locally (e.g. EMSGSIZE: the route's MTU is below a full-size packet)."""
        fwd = self._fastdp_forwarder(peer, conn_uid)
        if fwd is not None:
            fwd.send_failed(error, now)
        self._after_input(now)

    def fastdp_device_ready(self, peer: int, conn_uid: int, error: str | None, now: float) -> None:
        """The host side created (``error`` None) or failed to create the VXLAN device for this connection."""
        fwd = self._fastdp_forwarder(peer, conn_uid)
        if fwd is not None:
            fwd.set_device(error, now)
        self._after_input(now)

    def disable_fastdp(self, reason: str = "fast datapath disabled on this peer") -> None:
        """Offer only the sleeve from now on (the host cannot run VXLAN); call before any connection forms."""
        self.fastdp = None
        self.fastdp_off_reason = reason
        self.config.overlays = tuple(o for o in self.config.overlays if o != "fastdp")

    def _fastdp_forwarder(self, peer: int, conn_uid: int) -> FastdpForwarder | None:
        conn = self.by_peer.get(PeerName(peer))
        fwd = conn.fastdp_forwarder() if conn is not None else None
        return fwd if fwd is not None and fwd.conn_uid == conn_uid and not fwd.stopped else None

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
        existing = self.channels.get(channel)
        if existing is not None and not isinstance(existing.gossiper, g.SurrogateGossiper):
            raise ValueError(f"[gossip] duplicate channel {channel}")
        ch = self.channels[channel] = _Channel(self, channel, gossiper)
        return ch

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
            trust_remote=self._trusts(address),
            local_conn_id=_u64(self.rng),
            created_at=now,
            state=ConnState.DIALLING if outbound else ConnState.HANDSHAKE,
        )
        self._next_id += 1
        self.connections[conn.id] = conn
        return conn

    def _trusts(self, address: str) -> bool:
        host = host_of(address)
        try:
            ip = ip_address(host) if host else None
        except ValueError:
            return False
        return ip is not None and any(ip in net for net in self.config.trusted_subnets)

    def _start_handshake(self, conn: LocalConnection, now: float) -> None:
        conn.state = ConnState.HANDSHAKE
        private_key = self._secret_bytes(32) if self._secret_bytes and self.config.password is not None else None
        conn.handshake = Handshake(
            outbound=conn.outbound,
            name=self.name,
            nickname=self.ourself.nickname,
            uid=self.ourself.uid,
            conn_id=conn.local_conn_id,
            short_id=self.ourself.short_id if self.ourself.has_short_id else None,
            trusted=conn.trust_remote,
            overlays=" ".join(self.config.overlays),
            password=self.config.password,
            private_key=private_key,
            min_version=self.config.min_protocol_version,
            max_version=PROTOCOL_MAX_VERSION,
            extra_features=self._extra_features(),
        )
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
                self._introduced(conn, now)
                return

    def _introduced(self, conn: LocalConnection, now: float) -> None:
        """Port of the part of mesh ``LocalConnection.run`` after ``doIntro``."""
        remote = conn.features
        assert remote is not None
        # Refuse over the limit before the remote enters the topology: mesh registers it first, so a refused
        # peer was kept (and gossiped, and could even take our short ID) until the next garbage collection.
        # A peer we are connected to already may still come in: it replaces a duplicate or loses to it; our own
        # name goes on to be refused as ourselves or as a collision.
        if remote.name not in self.by_peer and remote.name != self.name:
            self._check_conn_limit()
        # register the remote peer
        if conn.accept_new_peer:
            effects = TopologyEffects()
            candidate = Peer(
                name=remote.name,
                nickname=remote.nickname,
                uid=remote.uid,
                short_id=remote.short_id or 0,
                has_short_id=remote.short_id is not None,
            )
            conn.remote = self.topology.fetch_with_default(candidate, effects)
            self._apply_effects(effects, now)
        else:
            conn.remote = self.topology.fetch_and_add_ref(remote.name)
            if conn.remote is None:
                raise HandshakeError(f"Found unknown remote name: {remote.name} at {conn.remote_tcp_addr}")
        if remote.name == self.name and remote.uid != self.ourself.uid:
            them = f"{remote.name}({remote.nickname})"
            raise PeerNameCollision(f'local "{self.ourself}" and remote "{them}" peer names collision')
        if conn.remote is self.ourself:
            raise ConnectToSelf("cannot connect to ourself")
        restarted = conn.remote.uid != remote.uid
        log.info("%s: connection ready; using protocol version %d", conn.describe(), conn.version)
        self._prepare_overlay(conn, now)
        self._add_connection(conn, restarted, now)
        self.maker.connection_created(conn.remote_tcp_addr, conn.outbound)
        self._maker_dirty = True
        for fwd in conn.forwarders:
            if fwd is not None:
                fwd.confirm(now)
        conn.deadline = now + READ_TIMEOUT
        conn.next_heartbeat = now + TCP_HEARTBEAT
        self._schedule_conn(conn)

    def _prepare_overlay(self, conn: LocalConnection, now: float) -> None:
        """The overlay switch: the overlays both sides offer, in the connecting side's preference order."""
        features = conn.features
        assert features is not None and conn.remote is not None
        key = conn.session_key if conn.untrusted else None
        host, port = split_host_port(conn.remote_tcp_addr) or ("", "0")
        remote_addr = (host, int(port)) if port.isdigit() else None
        if features.overlays is None:
            conn.compat = True  # pre-overlay-switch peer: sleeve only, raw control tags
            common = ["sleeve"]
            conn.fastdp_refusal = "the peer predates the overlay switch (sleeve only)"
        else:
            order = self.config.overlays if conn.outbound else features.overlays
            common = list(dict.fromkeys(n for n in order if n in self.config.overlays and n in features.overlays))
            if not common:
                raise HandshakeError("no overlays in common with peer")
            if "fastdp" not in common and ("fastdp" in self.config.overlays or "fastdp" in features.overlays):
                conn.fastdp_refusal = (  # only worth a word if one side offers it
                    self.fastdp_off_reason
                    if "fastdp" not in self.config.overlays
                    else "the peer does not offer the fast datapath"
                )
        for name in common:
            if name == "fastdp" and self.fastdp is not None:
                conn.fastdp_refusal = self._fastdp_refusal(conn, host)
                if conn.fastdp_refusal is not None:
                    log.info(
                        "Unable to use fastdp for connection to %s(%s): %s",
                        conn.remote.name,
                        conn.remote.nickname,
                        conn.fastdp_refusal,
                    )
                    conn.forwarders.append(None)
                    continue
                vx_port = int(port) + 1 if conn.outbound and port.isdigit() else self.fastdp.port
                weavenet = self.remote_feature(conn, FASTDP_FEATURE) == "1"
                fwd_dp = FastdpForwarder(
                    self.fastdp, conn.remote, conn.uid, conn.outbound, (host, vx_port), weavenet, now
                )
                fwd_dp.owner = conn
                conn.forwarders.append(fwd_dp)
            elif name == "sleeve":
                fwd = SleeveForwarder(
                    self.sleeve,
                    conn.remote.name,
                    conn.remote.nickname,
                    conn.uid,
                    conn.outbound,
                    remote_addr,
                    key,
                )
                fwd.owner = conn
                if self._quick_sleeve(features.raw):
                    fwd.quick()
                else:
                    conn.watch = self.config.extensions  # a Go peer's 10 s heartbeats: see ``liveness``
                conn.forwarders.append(fwd)
            else:
                conn.forwarders.append(None)

    def _quick_sleeve(self, theirs: Mapping[str, str]) -> bool:
        """Quick sleeve heartbeats, only if both sides advertise a weavenet feature that turns them on: each side
        decides from the other's features, so a one-sided decision would time out on the 10 s heartbeats of a
        peer that heartbeats as Weave does."""
        ours = self._extra_features()

        def quick(features: Mapping[str, str]) -> bool:
            return bool(features.get(tg.DIGEST_FEATURE) or features.get(FAST_SLEEVE_FEATURE))

        return quick(ours) and quick(theirs)

    def _fastdp_refusal(self, conn: LocalConnection, host: str) -> str | None:
        """Why this connection cannot try the fast datapath at all (Weave refuses the same cases)."""
        assert conn.remote is not None
        if self.config.password is not None and conn.untrusted:
            if not self.config.esp:
                return "encrypted link and no IPsec ESP in the kernel to encrypt VXLAN"
            return "encrypted link: IPsec for VXLAN is not implemented"
        if not (self.ourself.has_short_id and conn.remote.has_short_id):
            return "no short ID to build a VXLAN network identifier"
        try:
            if ip_address(host).version != 4:
                return "the peer's address is not IPv4"
        except ValueError:
            return "the peer's address is not an IP address"
        return None

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
        self.by_peer[remote.name] = conn
        self.ourself.connections[remote.name] = ConnSummary(remote.name, conn.remote_tcp_addr, conn.outbound, False)
        self.ourself.version += 1
        lost_at = self._lost_at.pop(remote.name, None)
        if restarted:
            log.info("%s: connection added (restarted peer)", conn.describe())
            self._send_all_gossip_down(conn, now)
        elif connected_before and lost_at is not None and now - lost_at < RESYNC_WITHIN:
            # What was queued on the connection this one replaces died with it (a removal broadcast down a cut
            # link, say), and the peer, reachable through others meanwhile, is no new peer: resync.
            log.info("%s: connection added (replacing one lost %.1fs ago)", conn.describe(), now - lost_at)
            self._send_all_gossip_down(conn, now)
        elif connected_before:
            log.info("%s: connection added", conn.describe())
        else:
            log.info("%s: connection added (new peer)", conn.describe())
            self._send_all_gossip_down(conn, now)
        self._routes_changed(now)
        self._broadcast_peer_update(now, remote.name)

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
        if conn.watch:
            conn.silence = Silence(now)
        summary = self.ourself.connections[conn.remote.name]
        self.ourself.connections[conn.remote.name] = dataclasses.replace(summary, established=True)
        self.ourself.version += 1
        log.info("%s: connection fully established", conn.describe())
        self._routes_changed(now)
        self._broadcast_peer_update(now, urgent=True)

    def _shutdown(self, conn: LocalConnection, error: Exception, now: float, emit_close: bool = True) -> None:
        """Tear a connection down (port of ``LocalConnection.teardown``)."""
        if conn.state is ConnState.CLOSED:
            return
        was = conn.state
        conn.state = ConnState.CLOSED
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
                self._garbage_collect(now)
                self._routes_changed(now)
                self._broadcast_peer_update(now, urgent=True)
            elif conn.remote.local_refcount == 0 and conn.remote.name not in self.by_peer:
                # registered, then refused before it was added (no overlay in common, a duplicate that lost):
                # forget it now rather than gossip a peer we never connected to until the next collection
                self._garbage_collect(now)
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
        assert conn.framer is not None
        messages = conn.framer.feed(data)
        if messages:
            conn.deadline = now + READ_TIMEOUT
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
            self._gossip_from = conn
            try:
                self._handle_gossip(tag, payload, now)
            finally:
                self._gossip_from = None
        elif tag == TAG_OVERLAY_CONTROL and not conn.compat:
            if len(payload) < 2:
                log.info("%s: Received truncated overlay control message", conn.describe())
                return
            index = payload[0]
            fwd = conn.forwarders[index] if index < len(conn.forwarders) else None
            if fwd is not None:
                fwd.control_message(payload[1], payload[2:], now)
        elif tag in (1, 2, 3) and conn.compat:
            fwd = conn.forwarders[0]
            if fwd is not None:
                fwd.control_message(tag, payload, now)
        else:
            log.debug("%s: ignoring unknown protocol tag: %d", conn.describe(), tag)

    # ===================================================================================== timers

    def _schedule_conn(self, conn: LocalConnection) -> None:
        times = [conn.deadline]
        if conn.next_heartbeat is not None:
            times.append(conn.next_heartbeat)
        if conn.silence is not None:
            times.append(conn.silence.timer())
        times.extend(at for at, _, _, _ in conn.held)
        for fwd in conn.forwarders:
            if fwd is not None and (t := fwd.get_timer()) is not None:
                times.append(t)
        self.timers.set(("conn", conn.id), min(times))

    def _fire(self, key: object, now: float) -> None:
        if key == "topology":
            names = self._pending_update | {self.name}
            self._pending_update = set()
            self.relay(TOPOLOGY_CHANNEL, self.name, TopologyGossipData(self.topology, names))
        elif key == "gossip":
            self._send_all_gossip(now)
            self.timers.set("gossip", now + self.config.gossip_interval)
        elif key == "digest":
            self._digest_round()
            self.timers.set("digest", now + tg.DIGEST_INTERVAL)
        elif key == "gc":
            self._garbage_collect(now)
        elif key == "routes":
            if self.routes.recalculate():
                for cb in self.on_routes_changed:
                    cb()
            self._newly_reachable(now)
        elif key == "beacons":
            beacon = bc.beacon(self.name)
            for addr in self.beacons.due(now):
                self._actions.append(SendDatagram(addr, beacon))
            if (deadline := self.beacons.next_deadline()) is not None:
                self.timers.set("beacons", deadline)
        elif key == "maker":
            self._maker_dirty = True
        elif isinstance(key, tuple) and key[0] == "flush":
            pass  # _flush_gossip runs when the actions are drained
        elif isinstance(key, tuple) and key[0] == "conn":
            conn = self.connections.get(key[1])
            if conn is not None:
                self._conn_timer(conn, now)

    def _newly_reachable(self, now: float) -> None:
        """A peer that became reachable (over anyone's connections) is alive, and its path may have healed: a sign
        of life for its addresses, as others' topology entries give them."""
        reachable = set(self.routes.unicast_table(all_connections=True)) - {self.name}
        new, self._reachable = reachable - self._reachable, reachable
        if not new:
            return
        ips = {
            ip
            for peer in self.topology.by_name.values()
            for other, conn in peer.connections.items()
            if other in new and (ip := host_of(conn.tcp_addr)) is not None
        }
        for ip in ips:
            self._sign_of_life(ip, now)

    def _conn_timer(self, conn: LocalConnection, now: float) -> None:
        if now >= conn.deadline:
            what = "handshake" if conn.state is ConnState.HANDSHAKE else "message"
            self._shutdown(conn, RemoteProtocolError(f"timed out waiting for {what} from peer"), now)
            return
        if conn.state is not ConnState.READY:
            self._schedule_conn(conn)
            return
        if conn.next_heartbeat is not None and now >= conn.next_heartbeat:
            self.send_message(conn, bytes((TAG_HEARTBEAT,)))
            conn.next_heartbeat = now + TCP_HEARTBEAT
        if conn.held and not self._send_held(conn, now):
            return
        if conn.silence is not None and not self._watch_silence(conn, conn.silence, now):
            return
        for fwd in conn.forwarders:
            if fwd is not None:
                fwd.handle_timer(now)
        self._schedule_conn(conn)

    def _watch_silence(self, conn: LocalConnection, silence: Silence, now: float) -> bool:
        """Challenge a quiet Go peer, or give up on a silent one (``liveness``); False if the connection ended."""
        self._heard_through_overlays(conn, silence)
        sleeve = conn.sleeve_forwarder()
        # a challenge goes through the sleeve: only while the peer's sleeve heartbeats still come that way
        can = sleeve is not None and sleeve.remote_addr is not None and silence.live("sleeve", now)
        step = silence.step(now, can)
        if step == "probe":
            assert sleeve is not None
            sleeve.challenge(CHALLENGE_LEN)
            log.debug("%s: heartbeat overdue, challenge %d sent", conn.describe(), silence.probes)
        elif step == "dead":
            self._shutdown(conn, RemoteProtocolError(silence.describe(now)), now)
            return False
        return True

    @staticmethod
    def _heard_through_overlays(conn: LocalConnection, silence: Silence) -> None:
        """The overlays' heartbeats (each a stream with Go's slow period) and other specials are signs of life."""
        for fwd in conn.forwarders:
            if isinstance(fwd, SleeveForwarder):
                if fwd.last_heartbeat is not None:
                    silence.beat("sleeve", fwd.last_heartbeat, SLOW_HEARTBEAT)
                if fwd.last_heard is not None:
                    silence.heard(fwd.last_heard)
            elif isinstance(fwd, FastdpForwarder) and fwd.last_rx is not None:
                silence.beat("fastdp", fwd.last_rx, SLOW_HEARTBEAT)

    def _first_ack(self, conn: LocalConnection, fwd: SleeveForwarder | FastdpForwarder, subtag: int) -> str | None:
        """Which overlay's first acknowledgement this control message is (each overlay sends one), if any."""
        if isinstance(fwd, SleeveForwarder) and subtag == CONTROL_CONNECTION_ESTABLISHED and not conn.compat:
            return "sleeve"
        if isinstance(fwd, FastdpForwarder) and subtag == CONTROL_HEARTBEAT_ACK:
            return "fastdp"
        return None

    def _ack_hold(self, conn: LocalConnection, kind: str, now: float) -> float | None:
        """When a Go peer's second first-ack may go so that its two heartbeat streams interleave (``liveness``),
        or None for now."""
        other = "fastdp" if kind == "sleeve" else "sleeve"
        sent = conn.first_acks.get(other)
        if sent is None:
            return None
        fwd = conn.fastdp_forwarder() if other == "fastdp" else conn.sleeve_forwarder()
        last = None if fwd is None else (fwd.last_rx if isinstance(fwd, FastdpForwarder) else fwd.last_heartbeat)
        # a heartbeat that came well after the ack is on the slow phase, more exactly than the ack's send time
        ref = last if last is not None and last > sent + SLOW_HEARTBEAT / 2 else sent
        at = ack_time(now, ref)
        return at if at > now else None

    def _send_control(self, conn: LocalConnection, index: int, subtag: int, body: bytes) -> None:
        if conn.compat:
            self.send_message(conn, bytes((subtag,)) + body)
        else:
            self.send_message(conn, bytes((TAG_OVERLAY_CONTROL, index, subtag)) + body)

    def _send_held(self, conn: LocalConnection, now: float) -> bool:
        """Send the held acknowledgements that are due; False if the connection ended meanwhile."""
        due = [h for h in conn.held if h[0] <= now]
        conn.held = [h for h in conn.held if h[0] > now]
        for _, index, subtag, body in due:
            fwd = conn.forwarders[index]
            if fwd is None or fwd.stopped:
                continue
            kind = self._first_ack(conn, fwd, subtag)
            if kind is not None:
                conn.first_acks.setdefault(kind, now)
            self._send_control(conn, index, subtag, body)
        return conn.state is ConnState.READY

    # ===================================================================================== after every input

    def _flush_overlay_output(self) -> None:
        self._actions.extend(SendDatagram(addr, data) for addr, data in self.sleeve.outbox)
        self.sleeve.outbox.clear()
        self._actions.extend(SendSpecial(p, uid, frame, df) for p, uid, frame, df in self.sleeve.specials)
        self.sleeve.specials.clear()
        if self.fastdp is not None and self.fastdp.outbox:
            self._actions.extend(self.fastdp.outbox)
            self.fastdp.outbox.clear()

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
        if self.config.fast_sleeve:
            extra[FAST_SLEEVE_FEATURE] = "1"
            if self.config.fast_sleeve_ciphers:
                extra[sleeve_cipher.CIPHERS_FEATURE] = ",".join(self.config.fast_sleeve_ciphers)
        if self.fastdp is not None:
            extra[FASTDP_FEATURE] = "1"
        if self.config.beacons:
            extra[bc.BEACON_FEATURE] = "1"
        return extra

    def _after_input(self, now: float) -> None:
        """Run what any input may have made necessary: overlay events, then the connection maker."""
        if self.sleeve.strangers:
            strangers, self.sleeve.strangers = set(self.sleeve.strangers), []
            for ip in strangers:
                self._sign_of_life(ip, now)
        changed: set[SleeveForwarder | FastdpForwarder] = set()
        while self.sleeve.changed or (self.fastdp is not None and self.fastdp.changed):
            changed |= self.sleeve.changed
            self.sleeve.changed = set()
            if self.fastdp is not None:
                changed |= self.fastdp.changed
                self.fastdp.changed = set()
            for conn in {f.owner for f in changed}:
                if isinstance(conn, LocalConnection) and conn.state is not ConnState.CLOSED:
                    self._overlay_events(conn, now)
            changed.clear()
        if self._maker_dirty:
            self._maker_dirty = False
            self._make_connections(now)

    def _overlay_events(self, conn: LocalConnection, now: float) -> None:
        for index, fwd in enumerate(conn.forwarders):
            if fwd is None:
                continue
            for subtag, body in fwd.control_out:
                kind = self._first_ack(conn, fwd, subtag) if conn.watch else None
                if kind is not None:
                    hold = self._ack_hold(conn, kind, now)
                    if hold is not None:
                        conn.held.append((hold, index, subtag, body))
                        continue
                    conn.first_acks.setdefault(kind, now)
                self._send_control(conn, index, subtag, body)
            fwd.control_out.clear()
            if fwd.stopped and fwd.error and not fwd.error_logged:
                fwd.error_logged = True
                log.info("overlay_switch %s: %s %s", conn.describe(), fwd.name, fwd.error)
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
        self._log_overlay_choice(conn, best, now)
        self._schedule_conn(conn)

    def fast_sleeve_cipher(self, conn: LocalConnection) -> str:
        """What seals this connection's fast sleeve super-frames (secretbox unless both peers offer better)."""
        if not self.config.fast_sleeve or self.remote_feature(conn, FAST_SLEEVE_FEATURE) != "1":
            return sleeve_cipher.SECRETBOX
        assert conn.features is not None
        return sleeve_cipher.negotiate(self.config.fast_sleeve_ciphers, conn.features.raw)

    def fallback_reason(self, conn: LocalConnection, now: float) -> str | None:
        """Why a connection is not on the fast datapath (None if it is, or while fastdp is still being tried)."""
        best = conn.best_forwarder()
        if isinstance(best, FastdpForwarder) and best.healthy:
            return None
        fwd = conn.fastdp_forwarder()
        if fwd is None:
            return conn.fastdp_refusal
        return fwd.reason(now)

    def _log_overlay_choice(self, conn: LocalConnection, best: SleeveForwarder | FastdpForwarder, now: float) -> None:
        """Log each change of the overlay a connection uses, and why it is not the fast datapath, once."""
        if not conn.established:
            return
        reason = None if best.name == "fastdp" else self.fallback_reason(conn, now)
        shown = (best.name, reason)
        before = conn.overlay_shown
        if shown == before:
            return
        conn.overlay_shown = shown
        if before is not None and before[0] == best.name and before[1] is not None:
            # same overlay, a new explanation: the state evolved within one fallback (status shows it)
            log.debug("overlay_switch ->[%s] still using %s (fastdp: %s)", conn.remote, best.name, reason)
        elif reason is None:
            log.info("overlay_switch ->[%s] using %s", conn.remote, best.name)
        else:
            log.info("overlay_switch ->[%s] using %s (fastdp: %s)", conn.remote, best.name, reason)

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
