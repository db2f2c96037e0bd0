"""The topology channel's gossiper: what peers say about the mesh in, what changed of our own entry out.

Port of the topology half of mesh ``router.go`` (``OnGossip*``, ``applyTopologyUpdate``), of the deferred
update of ``local_peer.go`` (``broadcastPeerUpdate``) and of the garbage collection of ``peers.go``. Received
updates are merged into the :class:`~weavenet.core.topology.Topology`; what that merge implies is carried out
here: removed peers and short-ID changes are announced to whoever registered for them, routes are marked for
recalculation (one timer, so a burst of updates costs one), unreachable peers are collected a second later, and
changes of our own entry are batched for a second (at once when a connection became established or went) and
gossiped to random neighbours.
"""

from __future__ import annotations

import logging
from collections.abc import Callable

from weavenet.core import gossip as g
from weavenet.core.connection_maker import host_of
from weavenet.core.gossip_channels import TOPOLOGY_CHANNEL, GossipChannels
from weavenet.core.names import PeerName
from weavenet.core.routes import Routes, reachable
from weavenet.core.timers import Timers
from weavenet.core.topology import Peer, Topology, TopologyEffects
from weavenet.core.topology_gossip import TopologyGossipData
from weavenet.errors import RemoteProtocolError

log = logging.getLogger("weavenet.mesh")

GC_DELAY = 1.0
TOPOLOGY_UPDATE_DELAY = 1.0  # batch local topology changes (mesh deferTopologyUpdateDuration)


class TopologyGossiper:
    """The :class:`~weavenet.core.gossip.Gossiper` of the ``topology`` channel, and the upkeep of the topology.

    ``on_improved`` is called when an update taught us something (the connection maker has new addresses to try).
    """

    def __init__(
        self,
        name: PeerName,
        topology: Topology,
        routes: Routes,
        timers: Timers,
        channels: GossipChannels,
        on_improved: Callable[[], None],
    ) -> None:
        self.name = name
        self.topology = topology
        self.routes = routes
        self.timers = timers
        self.channels = channels
        self.on_improved = on_improved
        self.on_peer_removed: list[Callable[[Peer], None]] = []
        self.on_short_ids_changed: list[Callable[[], None]] = []
        self.on_routes_changed: list[Callable[[], None]] = []
        self._pending_update: set[PeerName] = set()  # entries to send with ours at the next "topology" timer
        self._reachable: set[PeerName] = set()  # peers routable over any connection, at the last route change

    # -- Gossiper ---------------------------------------------------------------------------------------------

    def on_gossip_unicast(self, src: PeerName, msg: bytes, now: float) -> None:
        raise RemoteProtocolError(f"unexpected topology gossip unicast from {src}")

    def on_gossip_broadcast(self, src: PeerName, update: bytes, now: float) -> g.GossipData | None:
        received, _ = self._apply_update(update, now)
        return TopologyGossipData(self.topology, received) if received else None

    def gossip(self, now: float) -> g.GossipData | None:
        return TopologyGossipData(self.topology, self.topology.names())

    def on_gossip(self, update: bytes, now: float) -> g.GossipData | None:
        _, improved = self._apply_update(update, now)
        return TopologyGossipData(self.topology, improved) if improved else None

    def _apply_update(self, update: bytes, now: float) -> tuple[set[PeerName], set[PeerName]]:
        result = self.topology.apply_update(update)
        if self.channels.source is not None:
            self.channels.source.peer_versions.update(result.versions)
        self.apply_effects(result.effects, now)
        if result.improved:
            self.routes_changed(now)
            self.on_improved()
        if not self.timers.pending("gc"):
            self.timers.set("gc", now + GC_DELAY)
        return result.received, result.improved

    # -- what a change of the topology implies ----------------------------------------------------------------

    def apply_effects(self, effects: TopologyEffects, now: float) -> None:
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
            self.broadcast_update(now)

    def garbage_collect(self, now: float) -> None:
        self.apply_effects(self.topology.garbage_collect(reachable(self.topology)), now)

    def broadcast_update(self, now: float, *names: PeerName, urgent: bool = False) -> None:
        """Gossip our changed entry within a second, batching changes (mesh's deferred topology update).

        ``urgent``: a connection became established or went away. That changes the data plane's routes, which
        use only connections both ends report established: a link that came back carried no traffic until the
        peers had heard of it, a second later. Those go at once; the per-connection gossip coalescing
        (``GossipChannels.flush``) still merges a burst of them into a few messages.
        """
        self._pending_update.update(names)
        if urgent:
            self.timers.set("topology", now)
        elif not self.timers.pending("topology"):
            self.timers.set("topology", now + TOPOLOGY_UPDATE_DELAY)

    def send_update(self) -> None:
        """The ``topology`` timer: our entry, and those batched with it, to random neighbours."""
        names = self._pending_update | {self.name}
        self._pending_update = set()
        self.channels.relay(TOPOLOGY_CHANNEL, self.name, TopologyGossipData(self.topology, names))

    def routes_changed(self, now: float) -> None:
        self.routes.invalidate()
        self.timers.set("routes", now)

    def recalculate_routes(self) -> set[str]:
        """The ``routes`` timer: recalculate, tell who asked; returns the addresses of peers that became reachable
        (over anyone's connections): they are alive, and their path may have healed (a sign of life for each)."""
        if self.routes.recalculate():
            for cb in self.on_routes_changed:
                cb()
        reachable_now = set(self.routes.unicast_table(all_connections=True)) - {self.name}
        new, self._reachable = reachable_now - self._reachable, reachable_now
        if not new:
            return set()
        return {
            ip
            for peer in self.topology.by_name.values()
            for other, conn in peer.connections.items()
            if other in new and (ip := host_of(conn.tcp_addr)) is not None
        }
