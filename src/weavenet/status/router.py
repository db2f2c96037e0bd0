"""The ``Router`` section: Weave's ``router.NetworkRouterStatus`` (mesh's ``Status`` plus the data plane's).

Field order is Go's declaration order, which is the JSON key order. Go fills ``Peers``, peer ``Connections``,
``Connections``, ``UnicastRoutes``, ``BroadcastRoutes``, ``MACs`` and ``Targets`` by ranging over maps, i.e. in
random order; the builder (``weavenet.core.router_status``) passes a stable one so the output is reproducible.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from weavenet.gocompat import GoTime, go_sprintf
from weavenet.status.overlay import OverlayDiagnostics, decode_overlays
from weavenet.status.schema import GoRecord, go

__all__ = [
    "BroadcastRouteStatus",
    "LocalConnectionStatus",
    "MACStatus",
    "PeerConnectionStatus",
    "PeerStatus",
    "RouterStatus",
    "UnicastRouteStatus",
    "mac_text",
]


@dataclass
class PeerConnectionStatus(GoRecord):
    """mesh ``connectionStatus``: one connection of a peer as gossiped in the topology."""

    GO_TYPE = "mesh.connectionStatus"

    name: str = field(default="", metadata=go("Name", "string"))  # remote peer name (MAC form)
    nick_name: str = field(default="", metadata=go("NickName", "string"))
    address: str = field(default="", metadata=go("Address", "string"))  # remote TCP address as seen by this peer
    outbound: bool = field(default=False, metadata=go("Outbound", "bool"))
    established: bool = field(default=False, metadata=go("Established", "bool"))


@dataclass
class PeerStatus(GoRecord):
    """mesh ``PeerStatus``: a peer known to this router (ourself included)."""

    GO_TYPE = "mesh.PeerStatus"

    name: str = field(default="", metadata=go("Name", "string"))
    nick_name: str = field(default="", metadata=go("NickName", "string"))
    uid: int = field(default=0, metadata=go("UID", "mesh.PeerUID"))  # uint64
    short_id: int = field(default=0, metadata=go("ShortID", "mesh.PeerShortID"))  # uint16
    version: int = field(default=0, metadata=go("Version", "uint64"))
    connections: list[PeerConnectionStatus] | None = field(
        default=None,
        metadata=go("Connections", "[]mesh.connectionStatus", "slice", elem=PeerConnectionStatus, nil_empty=True),
    )


@dataclass
class UnicastRouteStatus(GoRecord):
    """mesh ``unicastRouteStatus``."""

    GO_TYPE = "mesh.unicastRouteStatus"

    dest: str = field(default="", metadata=go("Dest", "string"))
    via: str = field(default="", metadata=go("Via", "string"))


@dataclass
class BroadcastRouteStatus(GoRecord):
    """mesh ``broadcastRouteStatus``."""

    GO_TYPE = "mesh.broadcastRouteStatus"

    source: str = field(default="", metadata=go("Source", "string"))
    via: list[str] | None = field(default=None, metadata=go("Via", "[]string", "slice", nil_empty=True))


@dataclass
class LocalConnectionStatus(GoRecord):
    """mesh ``LocalConnectionStatus``: one row of ``weave status connections``.

    ``Info`` is pre-rendered by mesh, so build rows with :meth:`live` and :meth:`target`, which apply mesh's
    rules; ``Attrs`` is the overlay forwarder's attribute map (``name``, ``mtu``, ``encrypted``; weavenet adds
    ``fallback`` and ``cipher``), ``None`` for targets.
    """

    GO_TYPE = "mesh.LocalConnectionStatus"

    address: str = field(default="", metadata=go("Address", "string"))
    outbound: bool = field(default=False, metadata=go("Outbound", "bool"))
    state: str = field(default="", metadata=go("State", "string"))
    info: str = field(default="", metadata=go("Info", "string"))
    attrs: dict[str, Any] | None = field(default=None, metadata=go("Attrs", "map[string]interface {}", "map"))

    @classmethod
    def live(
        cls,
        address: str,
        *,
        outbound: bool,
        established: bool,
        remote_name: str,
        remote_nickname: str,
        attrs: Mapping[str, Any] | None,
        encryption: bool,
        untrusted: bool = True,
    ) -> LocalConnectionStatus:
        """A connection in the router's connection set (state ``established`` or ``pending``).

        mesh's rules: INFO is ``%-6v`` of ``attrs["name"]`` (``none`` when there are no attrs or no name)
        then ``name(nick)``; when the router has a password it is prefixed by ``%-11v`` of ``encrypted``
        (the link is untrusted; ``encrypted: true`` is then added to the attrs) or ``unencrypted`` (the peer
        is in a trusted subnet).
        """
        a = dict(attrs) if attrs is not None else None
        name = a.get("name", "none") if a is not None else "none"
        info = go_sprintf("%-6v %v", name, f"{remote_name}({remote_nickname})")
        if encryption:
            if untrusted:
                info = go_sprintf("%-11v %v", "encrypted", info)
                if a is not None:
                    a["encrypted"] = True
            else:
                info = go_sprintf("%-11v %v", "unencrypted", info)
        return cls(address, outbound, "established" if established else "pending", info, a)

    @classmethod
    def target(
        cls,
        address: str,
        *,
        attempting: bool,
        last_error: str | None = None,
        try_after: GoTime | None = None,
    ) -> LocalConnectionStatus:
        """A connection-maker target with no live connection (mesh ``targetAttempting``/``targetWaiting``).

        attempting: ``connecting`` (no error yet) or ``retrying`` (INFO = last error). waiting: ``failed``
        with INFO ``<err>, retry: <time.String()>``, or (no error, "shouldn't happen" in mesh) ``waiting``
        with ``until: <time>``; a zero/absent retry time reads ``never``. Targets are always outbound.
        """
        if attempting:
            if last_error is None:
                return cls(address, True, "connecting", "", None)
            return cls(address, True, "retrying", last_error, None)
        until = "never" if try_after is None or try_after.is_zero() else try_after.string()
        if last_error is None:
            return cls(address, True, "waiting", "until: " + until, None)
        return cls(address, True, "failed", f"{last_error}, retry: {until}", None)


def mac_text(mac_hex: str) -> str:
    """``aabbccddeeff`` -> ``aa:bb:cc:dd:ee:ff``."""
    return ":".join(mac_hex[i : i + 2] for i in range(0, 12, 2))


@dataclass
class MACStatus(GoRecord):
    """router ``MACStatus``: one learned MAC address (weavenet does not time them: ``LastSeen`` is zero)."""

    GO_TYPE = "router.MACStatus"

    mac: str = field(default="", metadata=go("Mac", "string"))
    name: str = field(default="", metadata=go("Name", "string"))
    nick_name: str = field(default="", metadata=go("NickName", "string"))
    last_seen: GoTime = field(default_factory=GoTime.zero, metadata=go("LastSeen", "time.Time", "time"))


@dataclass
class RouterStatus(GoRecord):
    """router ``NetworkRouterStatus``: mesh ``Status`` (embedded, so its fields are promoted in JSON) followed
    by ``Interface``, ``CaptureStats`` and ``MACs``."""

    GO_TYPE = "router.NetworkRouterStatus"

    protocol: str = field(default="weave", metadata=go("Protocol", "string"))
    protocol_min_version: int = field(default=1, metadata=go("ProtocolMinVersion", "int"))
    protocol_max_version: int = field(default=2, metadata=go("ProtocolMaxVersion", "int"))
    encryption: bool = field(default=False, metadata=go("Encryption", "bool"))  # a password is set
    peer_discovery: bool = field(default=True, metadata=go("PeerDiscovery", "bool"))
    name: str = field(default="", metadata=go("Name", "string"))
    nick_name: str = field(default="", metadata=go("NickName", "string"))
    port: int = field(default=6783, metadata=go("Port", "int"))
    peers: list[PeerStatus] | None = field(
        default=None, metadata=go("Peers", "[]mesh.PeerStatus", "slice", elem=PeerStatus, nil_empty=True)
    )
    unicast_routes: list[UnicastRouteStatus] | None = field(
        default=None,
        metadata=go("UnicastRoutes", "[]mesh.unicastRouteStatus", "slice", elem=UnicastRouteStatus, nil_empty=True),
    )
    broadcast_routes: list[BroadcastRouteStatus] | None = field(
        default=None,
        metadata=go(
            "BroadcastRoutes", "[]mesh.broadcastRouteStatus", "slice", elem=BroadcastRouteStatus, nil_empty=True
        ),
    )
    connections: list[LocalConnectionStatus] | None = field(
        default=None,
        metadata=go("Connections", "[]mesh.LocalConnectionStatus", "slice", elem=LocalConnectionStatus, nil_empty=True),
    )
    termination_count: int = field(default=0, metadata=go("TerminationCount", "int"))
    targets: list[str] | None = field(default=None, metadata=go("Targets", "[]string", "slice", nil_empty=True))
    # the overlay switch's diagnostics by overlay name (weavenet: "sleeve" and "fastdp"); None without overlays
    overlay_diagnostics: OverlayDiagnostics | None = field(
        default=None, metadata=go("OverlayDiagnostics", "interface {}", "iface", decode=decode_overlays)
    )
    trusted_subnets: list[str] = field(default_factory=list, metadata=go("TrustedSubnets", "[]string", "slice"))
    interface: str = field(default="", metadata=go("Interface", "string"))  # e.g. "datapath (via ODP)"
    capture_stats: dict[str, int] | None = field(default=None, metadata=go("CaptureStats", "map[string]int", "map"))
    macs: list[MACStatus] | None = field(
        default=None, metadata=go("MACs", "[]router.MACStatus", "slice", elem=MACStatus, nil_empty=True)
    )
