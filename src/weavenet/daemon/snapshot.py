"""A plain-data snapshot of the router in the shape of Weave's ``WeaveStatus`` JSON.

``weave report`` prints this as JSON, ``weave report -f`` evaluates templates over it, ``weave status`` renders
text from it and ``/metrics`` counts from it: one source of truth, taken at one instant.
"""

from __future__ import annotations

from typing import Any

from weavenet import WEAVE_COMPAT_VERSION, __version__
from weavenet.core.router import PROTOCOL, PROTOCOL_MAX_VERSION, MeshRouter

VERSION = f"{WEAVE_COMPAT_VERSION}+weavenet.{__version__}"


def _peer_connections(router: MeshRouter, peer_name: int) -> list[dict[str, Any]] | None:
    topo = router.topology
    peer = topo.get(peer_name)  # type: ignore[arg-type]
    if peer is None:
        return None
    out = []
    for remote_name, conn in sorted(peer.connections.items()):
        remote = topo.get(remote_name)
        out.append(
            {
                "Name": str(remote_name),
                "NickName": remote.nickname if remote is not None else "",
                "Address": conn.tcp_addr,
                "Outbound": conn.outbound,
                "Established": conn.established,
            }
        )
    return out or None


def router_status(
    router: MeshRouter,
    interface: str = "",
    capture_stats: dict[str, int] | None = None,
    dataplane: dict[str, int] | None = None,
    macs: list[tuple[str, int]] | None = None,
) -> dict[str, Any]:
    """Weave's ``NetworkRouterStatus``: mesh ``Status`` plus the data plane's interface, stats and MACs."""
    cfg = router.config
    topo = router.topology
    routes = router.routes
    peers = [
        {
            "Name": str(p.name),
            "NickName": p.nickname,
            "UID": p.uid,
            "ShortID": p.short_id,
            "Version": p.version,
            "Connections": _peer_connections(router, p.name),
        }
        for p in sorted(topo.by_name.values(), key=lambda p: p.name)
    ]
    unicast = [{"Dest": str(d), "Via": str(v)} for d, v in sorted(routes.unicast_table().items())]
    broadcast = [
        {"Source": str(s), "Via": [str(h) for h in hops] or None} for s, hops in routes.broadcast_table().items()
    ]
    return {
        "Protocol": PROTOCOL,
        "ProtocolMinVersion": cfg.min_protocol_version,
        "ProtocolMaxVersion": PROTOCOL_MAX_VERSION,
        "Encryption": cfg.password is not None,
        "PeerDiscovery": cfg.discovery,
        "Name": str(router.name),
        "NickName": router.ourself.nickname,
        "Port": cfg.port,
        "Peers": peers or None,
        "UnicastRoutes": unicast or None,
        "BroadcastRoutes": broadcast or None,
        "Connections": router.connection_status() or None,
        "TerminationCount": router.maker.termination_count,
        "Targets": router.maker.direct_targets() or None,
        "OverlayDiagnostics": {
            "sleeve": {"Counters": router.sleeve.counters.as_dict(), "Dataplane": dict(dataplane or {})}
        },
        "TrustedSubnets": [str(n) for n in cfg.trusted_subnets],
        "Interface": interface,
        "CaptureStats": capture_stats,
        "MACs": _macs(router, macs) or None,
    }


def _macs(router: MeshRouter, macs: list[tuple[str, int]] | None) -> list[dict[str, Any]]:
    """Weave's ``MACStatus`` list: each learned MAC with the peer it lives behind (ourselves for local ones)."""
    out = []
    for mac_hex, peer in sorted(macs or []):
        name = router.name if peer == 0 else peer
        p = router.topology.get(name)  # type: ignore[arg-type]
        mac = ":".join(mac_hex[i : i + 2] for i in range(0, 12, 2))
        out.append({"Mac": mac, "Name": str(p.name) if p else "", "NickName": p.nickname if p else "", "LastSeen": ""})
    return out


def weave_status(
    router: MeshRouter,
    ready: bool,
    interface: str = "",
    dataplane: dict[str, int] | None = None,
    macs: list[tuple[str, int]] | None = None,
) -> dict[str, Any]:
    """The whole report (``GET /report``)."""
    return {
        "Ready": ready,
        "Version": VERSION,
        "VersionCheck": {"Enabled": False, "Success": False, "NewVersion": "", "NextCheckAt": "0001-01-01T00:00:00Z"},
        "Router": router_status(router, interface=interface, dataplane=dataplane, macs=macs),
    }
