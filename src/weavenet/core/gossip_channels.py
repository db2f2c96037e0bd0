"""The router's gossip channels: delivering, relaying and coalescing gossip over our connections.

Port of mesh ``gossip_channel.go`` and of the gossip half of ``router.go`` (``handleGossip``, ``sendAllGossip``,
``relay*``), plus weavenet's cheaper topology gossip (``topology_gossip.py``): topology entries a neighbour holds
are left out, and weavenet neighbours run anti-entropy on digests instead of whole topologies.

A :class:`GossipChannels` is owned by the router and told explicitly what it uses of it: the routes (which
neighbour a message goes to), the ready connections by peer (``by_peer``, the router's own dict), the timers (a
connection's coalescing deadline) and how to send a message on a connection. What goes out is per (connection,
channel) :class:`~weavenet.core.gossip.GossipSender` state, merged while it waits and sent by :meth:`flush`.
"""

from __future__ import annotations

import logging
import random
from collections.abc import Callable, Iterator, Mapping

from weavenet.core import gossip as g
from weavenet.core import topology_gossip as tg
from weavenet.core.connection import ConnState, LocalConnection
from weavenet.core.mesh_types import MeshConfig
from weavenet.core.names import PeerName
from weavenet.core.routes import Routes
from weavenet.core.timers import Timers
from weavenet.core.topology import Topology
from weavenet.core.topology_gossip import TopologyGossipData

log = logging.getLogger("weavenet.mesh")

TOPOLOGY_CHANNEL = "topology"


class _Channel:
    """A gossip channel: its gossiper plus the sink handed to it (port of mesh ``gossipChannel``)."""

    def __init__(self, channels: GossipChannels, name: str, gossiper: g.Gossiper) -> None:
        self.channels = channels
        self.name = name
        self.gossiper = gossiper

    # GossipSink
    def gossip_unicast(self, dst: PeerName, msg: bytes) -> None:
        c = self.channels
        c.relay_unicast(dst, g.encode_envelope(g.TAG_GOSSIP_UNICAST, self.name, c.name, msg, dst))

    def gossip_broadcast(self, data: g.GossipData) -> None:
        self.channels.relay_broadcast(self.name, self.channels.name, data)

    def gossip_neighbour_subset(self, data: g.GossipData) -> None:
        self.channels.relay(self.name, self.channels.name, data)


class DigestGossiper:
    """Receives topology digests (weavenet's anti-entropy, see ``topology_gossip``) on their own channel."""

    def __init__(self, channels: GossipChannels) -> None:
        self.channels = channels

    def on_gossip_unicast(self, src: PeerName, msg: bytes, now: float) -> None:
        self.channels.on_digest(src, msg)

    def on_gossip_broadcast(self, src: PeerName, update: bytes, now: float) -> g.GossipData | None:
        return None

    def gossip(self, now: float) -> g.GossipData | None:
        return None

    def on_gossip(self, update: bytes, now: float) -> g.GossipData | None:
        return None


class GossipChannels:
    """Every gossip channel of one router, and the gossip pending on each connection (see the module docstring)."""

    def __init__(
        self,
        config: MeshConfig,
        rng: random.Random,
        topology: Topology,
        routes: Routes,
        by_peer: Mapping[PeerName, LocalConnection],
        timers: Timers,
        send_message: Callable[[LocalConnection, bytes], None],
        remote_feature: Callable[[LocalConnection, str], str | None],
    ) -> None:
        self.config = config
        self.name = config.name
        self.rng = rng
        self.topology = topology
        self.routes = routes
        self.by_peer = by_peer
        self.timers = timers
        self.send_message = send_message
        self.remote_feature = remote_feature
        self._channels: dict[str, _Channel] = {}
        self.pending: set[LocalConnection] = set()  # connections with gossip waiting in their senders
        self.source: LocalConnection | None = None  # the connection whose gossip is being handled

    # -- the table of channels --------------------------------------------------------------------------------

    def register(self, channel: str, gossiper: g.Gossiper) -> g.GossipSink:
        """A gossiper for ``channel`` (replacing the surrogate that relayed it so far); returns its sink."""
        existing = self._channels.get(channel)
        if existing is not None and not isinstance(existing.gossiper, g.SurrogateGossiper):
            raise ValueError(f"[gossip] duplicate channel {channel}")
        ch = self._channels[channel] = _Channel(self, channel, gossiper)
        return ch

    def __contains__(self, channel: object) -> bool:
        return channel in self._channels

    def __iter__(self) -> Iterator[str]:
        return iter(self._channels)

    def gossiper(self, channel: str) -> g.Gossiper | None:
        ch = self._channels.get(channel)
        return ch.gossiper if ch is not None else None

    def _channel(self, name: str) -> _Channel:
        ch = self._channels.get(name)
        if ch is None:
            log.info("[gossip %s]: created surrogate channel", name)
            ch = self._channels[name] = _Channel(self, name, g.SurrogateGossiper(self.config.gossip_interval))
        return ch

    # -- receiving --------------------------------------------------------------------------------------------

    def receive(self, conn: LocalConnection, tag: int, payload: bytes, now: float) -> None:
        """A gossip message (tag 4, 5 or 6) from ``conn``: deliver it to its channel's gossiper, relay it on."""
        self.source = conn
        try:
            self._handle(tag, payload, now)
        finally:
            self.source = None

    def _handle(self, tag: int, payload: bytes, now: float) -> None:
        env = g.decode_envelope(tag, payload)
        ch = self._channel(env.channel)
        if tag == g.TAG_GOSSIP_UNICAST:
            assert env.dst is not None
            if env.dst == self.name:
                ch.gossiper.on_gossip_unicast(env.src, env.payload, now)
            else:
                self.relay_unicast(env.dst, bytes((tag,)) + payload)
        elif tag == g.TAG_GOSSIP_BROADCAST:
            data = ch.gossiper.on_gossip_broadcast(env.src, env.payload, now)
            if data is not None:
                self.relay_broadcast(env.channel, env.src, data)
        else:
            data = ch.gossiper.on_gossip(env.payload, now)
            if data is not None:
                self.relay(env.channel, env.src, data)

    # -- sending ----------------------------------------------------------------------------------------------

    def relay_unicast(self, dst: PeerName, message: bytes) -> None:
        hop = self.routes.unicast_all(dst)
        if hop is None:
            log.info("unknown relay destination: %s", dst)
            return
        conn = self.by_peer.get(hop)
        if conn is None:
            log.info("unable to find connection to relay peer %s", hop)
            return
        self.send_message(conn, message)

    def relay_broadcast(self, channel: str, src: PeerName, data: g.GossipData) -> None:
        for hop in self.routes.broadcast_all(src):
            conn = self.by_peer.get(hop)
            if conn is not None:
                conn.sender(channel).broadcast(src, data)
                self.pending.add(conn)

    def relay(self, channel: str, src: PeerName, data: g.GossipData) -> None:
        """Gossip to random neighbours (mesh ``relay``).

        For topology, when digests back it up, others' changes go on to only ``topology_relay_fanout``
        neighbours: a push epidemic's cost is its fan-out, and the digest rounds repair the rare peer it misses
        within seconds.
        """
        hops = self.routes.random_neighbours(self.rng, src)
        if channel == TOPOLOGY_CHANNEL and self.config.gossip_filter and src != self.name:
            hops = hops[: self.config.topology_relay_fanout]
        for hop in hops:
            conn = self.by_peer.get(hop)
            if conn is not None:
                conn.sender(channel).send(data)
                self.pending.add(conn)

    def send_all_down(self, conn: LocalConnection, now: float) -> None:
        """A new neighbour gets our whole state; a weavenet neighbour gets a topology digest instead and asks."""
        for name, ch in self._channels.items():
            data = ch.gossiper.gossip(now)
            if isinstance(data, TopologyGossipData) and self._speaks_digest(conn):
                self._send_digest(conn, tg.encode_digest(self.topology, tg.FULL))
            elif data is not None:
                conn.sender(name).send(data)
                self.pending.add(conn)

    def send_all(self, now: float) -> None:
        """The 30 s round: every channel's full state to random neighbours (topology: Go neighbours only)."""
        for name, ch in list(self._channels.items()):
            data = ch.gossiper.gossip(now)
            if data is None:
                continue
            if not isinstance(data, TopologyGossipData):
                self.relay(name, self.name, data)
                continue
            for hop in self.routes.random_neighbours(self.rng, self.name):
                conn = self.by_peer.get(hop)
                if conn is not None and not self._speaks_digest(conn):
                    conn.sender(name).send(TopologyGossipData(self.topology, set(data.names), full=True))
                    self.pending.add(conn)

    def writable(self, conn: LocalConnection) -> None:
        """The transport takes writes again: what merged meanwhile goes out at the next flush."""
        if any(not snd.empty() for snd in conn.senders.values()):
            self.pending.add(conn)

    def flush(self, now: float) -> None:
        """Send pending gossip, at most once per ``gossip_min_gap`` per connection.

        Between sends, new updates merge into what is pending (the data is a set of names, encoded when sent),
        so a burst of changes costs a few messages instead of one per change.
        """
        gap = self.config.gossip_min_gap
        for conn in list(self.pending):
            if conn.state is not ConnState.READY:
                self.pending.discard(conn)
                continue
            if not conn.writable:
                continue  # writable(conn) brings us back here
            if now < conn.gossip_after:
                self.timers.set(("flush", conn.id), conn.gossip_after)
                continue
            self.pending.discard(conn)
            # Adaptive coalescing: back-to-back sends double the gap (up to gossip_max_gap), a quiet spell halves
            # it, so a lone update goes out at once while a burst of changes collapses into a few messages.
            if now - conn.gossip_last < 2 * conn.gossip_gap:
                conn.gossip_gap = min(max(conn.gossip_gap * 2, gap), self.config.gossip_max_gap)
            else:
                conn.gossip_gap = max(conn.gossip_gap / 2, gap)
            conn.gossip_last = now
            conn.gossip_after = now + conn.gossip_gap
            for channel, sender in conn.senders.items():
                while (picked := sender.pick()) is not None:
                    tag, src, data = picked
                    if isinstance(data, TopologyGossipData) and self.config.gossip_filter:
                        filtered = data.for_neighbour(conn.peer_versions)
                        if filtered is None:
                            continue
                        data = filtered
                    for payload in data.encode():
                        self.send_message(conn, g.encode_envelope(tag, channel, src or self.name, payload))

    # -- topology digests (weavenet neighbours only) ------------------------------------------------------------

    def digest_round(self) -> None:
        """Anti-entropy with weavenet neighbours: a hash to random neighbours (see ``topology_gossip``)."""
        digest: bytes | None = None
        for hop in self.routes.random_neighbours(self.rng, self.name):
            conn = self.by_peer.get(hop)
            if conn is not None and self._speaks_digest(conn):
                digest = digest or tg.encode_digest(self.topology, tg.HASH)
                self._send_digest(conn, digest)

    def _speaks_digest(self, conn: LocalConnection) -> bool:
        return bool(self.config.gossip_filter and self.remote_feature(conn, tg.DIGEST_FEATURE))

    def _send_digest(self, conn: LocalConnection, digest: bytes) -> None:
        assert conn.remote is not None
        dst = conn.remote.name
        self.send_message(conn, g.encode_envelope(g.TAG_GOSSIP_UNICAST, tg.DIGEST_CHANNEL, self.name, digest, dst))

    def on_digest(self, src: PeerName, msg: bytes) -> None:
        """A neighbour's digest: on a hash mismatch answer with ours; on a full one send what it lacks."""
        kind, body = tg.decode_digest(msg)
        conn = self.by_peer.get(src)
        if conn is None:
            return
        if isinstance(body, bytes):
            if body == tg.digest_hash(self.topology):
                conn.peer_versions = tg.held_versions(self.topology)
            else:
                self._send_digest(conn, tg.encode_digest(self.topology, tg.FULL))
            return
        conn.peer_versions = dict(body)
        send, they_have_more = tg.compare(self.topology, body)
        if send:
            conn.sender(TOPOLOGY_CHANNEL).send(TopologyGossipData(self.topology, send))
            self.pending.add(conn)
        if they_have_more and kind == tg.FULL:
            self._send_digest(conn, tg.encode_digest(self.topology, tg.REPLY))
