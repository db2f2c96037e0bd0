"""Gossip channels of the mesh router: receiving, relaying, coalescing, and the topology gossiper.

Part of :class:`weavenet.core.router.MeshRouter` (a mixin, to keep modules small): port of mesh
``gossip_channel.go`` and of the topology half of ``router.go``, plus weavenet's cheaper topology gossip
(``topology_gossip.py``).
"""

from __future__ import annotations

import logging

from weavenet.core import gossip as g
from weavenet.core import topology_gossip as tg
from weavenet.core.connection import ConnState, LocalConnection
from weavenet.core.names import PeerName
from weavenet.core.routes import reachable
from weavenet.core.topology import TopologyEffects
from weavenet.core.topology_gossip import TopologyGossipData
from weavenet.errors import RemoteProtocolError

log = logging.getLogger("weavenet.mesh")

TOPOLOGY_CHANNEL = "topology"
GC_DELAY = 1.0
TOPOLOGY_UPDATE_DELAY = 1.0  # batch local topology changes (mesh deferTopologyUpdateDuration)


class _Channel:
    """A gossip channel: its gossiper plus the sink handed to it (port of mesh ``gossipChannel``)."""

    def __init__(self, router: GossipMixin, name: str, gossiper: g.Gossiper) -> None:
        self.router = router
        self.name = name
        self.gossiper = gossiper

    # GossipSink
    def gossip_unicast(self, dst: PeerName, msg: bytes) -> None:
        r = self.router
        r.relay_unicast(dst, g.encode_envelope(g.TAG_GOSSIP_UNICAST, self.name, r.name, msg, dst))

    def gossip_broadcast(self, data: g.GossipData) -> None:
        self.router.relay_broadcast(self.name, self.router.name, data)

    def gossip_neighbour_subset(self, data: g.GossipData) -> None:
        self.router.relay(self.name, self.router.name, data)


class _DigestGossiper:
    """Receives topology digests (weavenet's anti-entropy, see ``topology_gossip``)."""

    def __init__(self, router: GossipMixin) -> None:
        self.router = router

    def on_gossip_unicast(self, src: PeerName, msg: bytes, now: float) -> None:
        self.router._on_digest(src, msg)

    def on_gossip_broadcast(self, src: PeerName, update: bytes, now: float) -> g.GossipData | None:
        return None

    def gossip(self, now: float) -> g.GossipData | None:
        return None

    def on_gossip(self, update: bytes, now: float) -> g.GossipData | None:
        return None


class GossipMixin:
    """The gossip half of the router. Attributes used here are created by ``MeshRouter.__init__``."""

    def _channel(self, name: str) -> _Channel:
        ch = self.channels.get(name)
        if ch is None:
            log.info("[gossip %s]: created surrogate channel", name)
            ch = self.channels[name] = _Channel(self, name, g.SurrogateGossiper(self.config.gossip_interval))
        return ch

    def _handle_gossip(self, tag: int, payload: bytes, now: float) -> None:
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
                self._gossip_pending.add(conn)

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
                self._gossip_pending.add(conn)

    def _send_all_gossip_down(self, conn: LocalConnection, now: float) -> None:
        """A new neighbour gets our whole state; a weavenet neighbour gets a topology digest instead and asks."""
        for name, ch in self.channels.items():
            data = ch.gossiper.gossip(now)
            if isinstance(data, TopologyGossipData) and self._speaks_digest(conn):
                self._send_digest(conn, tg.encode_digest(self.topology, tg.FULL))
            elif data is not None:
                conn.sender(name).send(data)
                self._gossip_pending.add(conn)

    def _send_all_gossip(self, now: float) -> None:
        """The 30 s round: every channel's full state to random neighbours (topology: Go neighbours only)."""
        for name, ch in list(self.channels.items()):
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
                    self._gossip_pending.add(conn)

    def _digest_round(self) -> None:
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

    def _on_digest(self, src: PeerName, msg: bytes) -> None:
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
            self._gossip_pending.add(conn)
        if they_have_more and kind == tg.FULL:
            self._send_digest(conn, tg.encode_digest(self.topology, tg.REPLY))

    def _flush_gossip(self, now: float) -> None:
        """Send pending gossip, at most once per ``gossip_min_gap`` per connection.

        Between sends, new updates merge into what is pending (the data is a set of names, encoded when sent),
        so a burst of changes costs a few messages instead of one per change.
        """
        gap = self.config.gossip_min_gap
        for conn in list(self._gossip_pending):
            if conn.state is not ConnState.READY:
                self._gossip_pending.discard(conn)
                continue
            if not conn.writable:
                continue  # set_writable(True) brings us back here
            if now < conn.gossip_after:
                self.timers.set(("flush", conn.id), conn.gossip_after)
                continue
            self._gossip_pending.discard(conn)
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

    # -- the topology gossiper ------------------------------------------------------------------------------------

    def on_gossip_unicast(self, src: PeerName, msg: bytes, now: float) -> None:
        raise RemoteProtocolError(f"unexpected topology gossip unicast from {src}")

    def on_gossip_broadcast(self, src: PeerName, update: bytes, now: float) -> g.GossipData | None:
        received, _ = self._apply_topology_update(update, now)
        return TopologyGossipData(self.topology, received) if received else None

    def gossip(self, now: float) -> g.GossipData | None:
        return TopologyGossipData(self.topology, self.topology.names())

    def on_gossip(self, update: bytes, now: float) -> g.GossipData | None:
        _, improved = self._apply_topology_update(update, now)
        return TopologyGossipData(self.topology, improved) if improved else None

    def _apply_topology_update(self, update: bytes, now: float) -> tuple[set[PeerName], set[PeerName]]:
        result = self.topology.apply_update(update)
        if self._gossip_from is not None:
            self._gossip_from.peer_versions.update(result.versions)
        self._apply_effects(result.effects, now)
        if result.improved:
            self._routes_changed(now)
            self._maker_dirty = True
        if not self.timers.pending("gc"):
            self.timers.set("gc", now + GC_DELAY)
        return result.received, result.improved

    def _apply_effects(self, effects: TopologyEffects, now: float) -> None:
        for peer in effects.removed:
            log.info("Removed unreachable peer %s", peer)
            for cb in self.on_peer_removed:
                cb(peer)
        if effects.reassign_local_short_id:
            more = TopologyEffects()
            if self.topology.reassign_local_short_id(more):
                effects.local_modified = True
            effects.invalidate_short_ids |= more.invalidate_short_ids
        if effects.invalidate_short_ids:
            for cb0 in self.on_short_ids_changed:
                cb0()
        if effects.local_modified:
            self._broadcast_peer_update(now)

    def _garbage_collect(self, now: float) -> None:
        self._apply_effects(self.topology.garbage_collect(reachable(self.topology)), now)

    def _broadcast_peer_update(self, now: float, *names: PeerName, urgent: bool = False) -> None:
        """Gossip our changed entry within a second, batching changes (mesh's deferred topology update).

        ``urgent``: a connection became established or went away. That changes the data plane's routes, which
        use only connections both ends report established: a link that came back carried no traffic until the
        peers had heard of it, a second later. Those go at once; the per-connection gossip coalescing
        (``_flush_gossip``) still merges a burst of them into a few messages.
        """
        self._pending_update.update(names)
        if urgent:
            self.timers.set("topology", now)
        elif not self.timers.pending("topology"):
            self.timers.set("topology", now + TOPOLOGY_UPDATE_DELAY)

    def _routes_changed(self, now: float) -> None:
        self.routes.invalidate()
        self.timers.set("routes", now)
