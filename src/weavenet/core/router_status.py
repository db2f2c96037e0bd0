"""The router's part of the report (``weave status``, ``weave report``), computed from the router core.

Weave's mesh builds ``LocalConnectionStatus`` rows and the ``Status`` around them in the router itself; here
too, the core reads its own state into :mod:`weavenet.status` values. Go fills the lists by ranging over maps
(random order); they are sorted here so the output is reproducible.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING

from weavenet.core.mesh_types import PROTOCOL, PROTOCOL_MAX_VERSION
from weavenet.core.names import PeerName
from weavenet.core.sleeve_cipher import SECRETBOX
from weavenet.gocompat import GoTime
from weavenet.status.overlay import SleeveDiagnostics
from weavenet.status.router import (
    BroadcastRouteStatus,
    LocalConnectionStatus,
    MACStatus,
    PeerConnectionStatus,
    PeerStatus,
    RouterStatus,
    UnicastRouteStatus,
    mac_text,
)

if TYPE_CHECKING:
    from weavenet.core.router import MeshRouter

INBOUND_FAILURE_TTL = 300.0


def connection_status(self: MeshRouter, now: float) -> list[LocalConnectionStatus]:
    """Weave's ``LocalConnectionStatus`` list: our connections, then targets not connected, then inbound
    connections refused lately (weavenet's, so a refusal shows on the refusing side too)."""
    out: list[LocalConnectionStatus] = []
    for peer_name, conn in self.by_peer.items():
        best = conn.best_forwarder()
        attrs: dict[str, object] | None = dict(best.attrs()) if best is not None else None
        if attrs is not None and conn.established:
            fallback = self.fallback_reason(conn, now)
            if fallback is not None:
                attrs["fallback"] = fallback  # rendered after the other attributes: "(fallback: ...)"
        row = LocalConnectionStatus.live(
            conn.remote_tcp_addr,
            outbound=conn.outbound,
            established=conn.established,
            remote_name=str(peer_name),
            remote_nickname=conn.remote.nickname if conn.remote is not None else "",
            attrs=attrs,
            encryption=self.config.password is not None,
            untrusted=conn.untrusted,
        )
        if row.attrs is not None and row.attrs.get("encrypted") and row.attrs.get("name") == "sleeve":
            cipher = self.fast_sleeve_cipher(conn)
            if cipher != SECRETBOX:
                row.attrs["cipher"] = cipher  # weavenet's fast sleeve seals with a faster AEAD than Weave's
        out.append(row)
    for address, target in self.maker.targets.items():
        st = target.state.value
        if st in ("waiting", "attempting"):
            try_after = None if target.try_after is None else GoTime.from_unix(target.try_after + self.wall_offset)
            out.append(
                LocalConnectionStatus.target(
                    address, attempting=st == "attempting", last_error=target.last_error, try_after=try_after
                )
            )
    for failure in self.inbound_failures:
        if now - failure.at < INBOUND_FAILURE_TTL:
            out.append(LocalConnectionStatus(failure.address, False, "failed", failure.error, None))
    return out


def _peer_connections(router: MeshRouter, peer_name: PeerName) -> list[PeerConnectionStatus] | None:
    topo = router.topology
    peer = topo.get(peer_name)
    if peer is None:
        return None
    out = []
    for remote_name, conn in sorted(peer.connections.items()):
        remote = topo.get(remote_name)
        out.append(
            PeerConnectionStatus(
                str(remote_name),
                remote.nickname if remote is not None else "",
                conn.tcp_addr,
                conn.outbound,
                conn.established,
            )
        )
    return out or None


def _macs(router: MeshRouter, macs: Sequence[tuple[str, int]]) -> list[MACStatus]:
    """Weave's ``MACStatus`` list: each learned MAC with the peer it lives behind (0: ourselves)."""
    out = []
    for mac_hex, peer in sorted(macs):
        p = router.topology.get(router.name if peer == 0 else PeerName(peer))
        out.append(MACStatus(mac_text(mac_hex), str(p.name) if p else "", p.nickname if p else ""))
    return out


def router_status(
    router: MeshRouter,
    now: float,
    interface: str = "",
    capture_stats: dict[str, int] | None = None,
    dataplane: Mapping[str, int] | None = None,
    macs: Sequence[tuple[str, int]] = (),
) -> RouterStatus:
    """Weave's ``NetworkRouterStatus``: mesh's ``Status`` plus the data plane's interface, capture statistics
    and learned MACs (``(mac hex, peer)``); ``dataplane`` is the sleeve data plane's statistics, shown in
    ``OverlayDiagnostics.sleeve`` beside the core's drop counters."""
    cfg = router.config
    routes = router.routes
    peers = [
        PeerStatus(str(p.name), p.nickname, p.uid, p.short_id, p.version, _peer_connections(router, p.name))
        for p in sorted(router.topology.by_name.values(), key=lambda p: p.name)
    ]
    unicast = [UnicastRouteStatus(str(d), str(v)) for d, v in sorted(routes.unicast_table().items())]
    broadcast = [
        BroadcastRouteStatus(str(s), [str(h) for h in hops] or None) for s, hops in routes.broadcast_table().items()
    ]
    sleeve = SleeveDiagnostics(router.sleeve.counters.as_dict(), dict(dataplane or {}))
    return RouterStatus(
        protocol=PROTOCOL,
        protocol_min_version=cfg.min_protocol_version,
        protocol_max_version=PROTOCOL_MAX_VERSION,
        encryption=cfg.password is not None,
        peer_discovery=cfg.discovery,
        name=str(router.name),
        nick_name=router.ourself.nickname,
        port=cfg.port,
        peers=peers or None,
        unicast_routes=unicast or None,
        broadcast_routes=broadcast or None,
        connections=router.connection_status(now) or None,
        termination_count=router.maker.termination_count,
        targets=router.maker.direct_targets() or None,
        overlay_diagnostics={"sleeve": sleeve},
        trusted_subnets=[str(n) for n in cfg.trusted_subnets],
        interface=interface,
        capture_stats=capture_stats,
        macs=_macs(router, macs) or None,
    )
