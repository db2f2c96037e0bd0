"""The one status report of the router daemon, in the exact JSON shape of Weave's ``WeaveStatus``.

Why one value: ``weave status`` (and its sub-commands), ``weave report`` and ``weave report -f FORMAT`` are
all pure functions of this report in Weave (``prog/weaver/http.go``). Building it once, as a JSON-compatible
dict with Weave's key names, lets the HTTP layer serve ``GET /report`` (:meth:`WeaveStatus.to_json`), the
status texts (``weavenet.daemon.status_text``) and user templates (:func:`format_report`) from the same data,
and lets the CLI re-render anything from a JSON copy.

The dataclasses below name every field of the Go structs, in Go's declaration order (which is the JSON key
order). Each field carries its Go JSON name and kind as metadata; :meth:`WeaveStatus.to_dict` turns a tree of
them into the plain dict, :func:`template_view` turns such a dict (for instance one read back from JSON) into
the typed values :mod:`weavenet.gocompat` needs to behave exactly like Go (nil pointer vs nil slice,
map vs struct, ``time.Time`` printing, ``VersionCheck``'s ``String()``).

Nil versus empty: Go builds most of these slices with ``append`` on a nil slice, so an empty one marshals as
``null``; the builders normalise empty lists of those fields to ``None`` (``nil_empty``). ``TrustedSubnets``,
DNS ``Upstream`` and proxy ``Addresses`` are made with ``[]string{}``/``make`` in Go and stay ``[]``.

Ordering: Go fills ``Peers``, peer ``Connections``, ``Connections``, ``UnicastRoutes``, ``BroadcastRoutes``,
``MACs``, ``Targets`` and DNS ``Entries`` by ranging over maps, i.e. in random order. The builders keep the
order they are given; the daemon should pass a stable one (sorted by name/address) so output is reproducible.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field, fields
from typing import Any, ClassVar

from weavenet.gocompat import GoMap, GoNil, GoSlice, GoStruct, GoText, GoTime, Template, go_json, go_sprintf

__all__ = [
    "BroadcastRouteStatus",
    "DNSEntryStatus",
    "DNSStatus",
    "IPAMClaimStatus",
    "IPAMEntryStatus",
    "IPAMStatus",
    "LocalConnectionStatus",
    "MACStatus",
    "PaxosStatus",
    "PeerConnectionStatus",
    "PeerStatus",
    "PluginConfig",
    "PluginStatus",
    "ProxyStatus",
    "RouterStatus",
    "UnicastRouteStatus",
    "VersionCheck",
    "WeaveStatus",
    "format_report",
    "report_json",
    "sample_report",
    "template_view",
    "version_check_text",
]


def _as_gotime(v: GoTime | str | None) -> GoTime:
    if isinstance(v, GoTime):
        return v
    if not v:
        return GoTime.zero()
    return GoTime.parse(v)


# ------------------------------------------------------------------------------------------------- schema


def _go(
    name: str,
    go_type: str,
    kind: str = "scalar",
    *,
    elem: type | None = None,
    omitempty: bool = False,
    nil_empty: bool = False,
) -> dict[str, Any]:
    """Field metadata: the Go JSON name, Go type and kind of a dataclass field.

    kinds: ``scalar`` (string/number/bool), ``time`` (:class:`GoTime`), ``ptr`` (optional nested struct),
    ``struct`` (nested struct by value), ``slice`` (list of scalars, or of ``elem`` structs), ``map``
    (``dict``), ``iface`` (any JSON-compatible value, Go ``interface{}``). ``omitempty`` mirrors the JSON tag;
    ``nil_empty`` says Go produces a nil (``null``) slice rather than an empty one when there is nothing.
    """
    return {
        "go": name,
        "go_type": go_type,
        "kind": kind,
        "elem": elem,
        "omitempty": omitempty,
        "nil_empty": nil_empty,
    }


_ZERO = {
    "string": "",
    "bool": False,
    "int": 0,
    "int64": 0,
    "uint": 0,
    "uint16": 0,
    "uint32": 0,
    "uint64": 0,
    "mesh.PeerUID": 0,
    "mesh.PeerShortID": 0,
    "address.Address": "0.0.0.0",
}


def _encode(obj: Any) -> dict[str, Any]:
    """A dataclass tree -> the plain JSON-compatible dict (Go's JSON keys and order, omitempty applied)."""
    out: dict[str, Any] = {}
    for f in fields(obj):
        m = f.metadata
        kind = m["kind"]
        v = getattr(obj, f.name)
        if kind == "time":
            val: Any = _as_gotime(v).rfc3339nano()
        elif kind == "ptr":
            val = None if v is None else _encode(v)
        elif kind == "struct":
            val = _encode(v)
        elif kind == "slice":
            if v is None or (not v and m["nil_empty"]):
                val = None
            else:
                val = [_encode(x) if m["elem"] is not None else x for x in v]
        elif kind == "map":
            val = None if v is None else {k: v[k] for k in sorted(v)}
        else:  # scalar, iface
            val = v
        if m["omitempty"] and (val is None or val == "" or val is False or val == 0 or val == [] or val == {}):
            continue
        out[m["go"]] = val
    return out


def _view_any(v: Any, top: bool) -> Any:
    if isinstance(v, Mapping):
        items = {k: _view_any(x, False) for k, x in v.items()}
        return GoMap(items) if top else GoStruct(items)
    if isinstance(v, list | tuple):
        return [_view_any(x, False) for x in v]
    return v


def _view_struct(cls: type, d: Mapping[str, Any], pointer: bool) -> GoStruct:
    out = GoStruct(go_type=cls.GO_TYPE, pointer=pointer, stringer=getattr(cls, "go_stringer", None))  # type: ignore[attr-defined]
    omit: set[str] = set()
    for f in fields(cls):
        m = f.metadata
        go, kind, go_type, elem = m["go"], m["kind"], m["go_type"], m["elem"]
        if m["omitempty"]:
            omit.add(go)
        v = d.get(go) if isinstance(d, Mapping) else None
        if isinstance(v, GoNil):  # already a view
            v = None
        if kind == "scalar":
            val: Any = _ZERO.get(go_type) if v is None else v
        elif kind == "time":
            t = _as_gotime(v if isinstance(v, str | GoTime) else None)
            val = GoText(t.rfc3339nano(), t.string(), "time.Time")
        elif kind == "ptr":
            val = GoNil("ptr", go_type) if v is None else _view_struct(elem, v, True)
        elif kind == "struct":
            val = _view_struct(elem, v if isinstance(v, Mapping) else {}, False)
        elif kind == "slice":
            if v is None:
                val = GoNil("slice", go_type)
            else:
                items = [_view_struct(elem, x, False) if elem is not None else x for x in v]
                val = GoSlice(items, go_type=go_type)
        elif kind == "map":
            zero = 0 if go_type == "map[string]int" else None
            val = GoNil("map", go_type) if v is None else GoMap(v, go_type=go_type, elem_zero=zero)
        else:  # iface
            val = GoNil("iface", go_type) if v is None else _view_any(v, True)
        out[go] = val
    out.omitempty = frozenset(omit)
    return out


def template_view(report: Mapping[str, Any] | WeaveStatus) -> GoStruct:
    """The report as Go-typed values for :mod:`weavenet.gocompat` (works on a dict read back from
    JSON too: absent keys become Go zero values / typed nils)."""
    if isinstance(report, GoStruct) and report.go_type == WeaveStatus.GO_TYPE:
        return report
    d = report.to_dict() if isinstance(report, WeaveStatus) else report
    return _view_struct(WeaveStatus, d, False)


def format_report(report: Mapping[str, Any] | WeaveStatus, fmt: str) -> str:
    """``weave report -f FMT``: raises ``TemplateParseError`` (weave: HTTP 400, message as body) or
    ``TemplateExecError`` (weave: HTTP 500 ``error during template execution``, after any partial output)."""
    return Template(fmt, "format").execute(template_view(report))


def report_json(report: Mapping[str, Any] | WeaveStatus) -> str:
    """``weave report``: ``json.MarshalIndent(status, "", "    ")`` -- no trailing newline."""
    return go_json(template_view(report), "    ")


# ------------------------------------------------------------------------------------------------- structs


@dataclass
class VersionCheck:
    """``main.VersionCheck``: the checkpoint (new-version) check. A Python port never phones home, so the
    daemon reports it disabled (``Enabled`` false), as Weave does when ``CHECKPOINT_DISABLE`` is set."""

    GO_TYPE: ClassVar[str] = "main.VersionCheck"

    enabled: bool = field(default=False, metadata=_go("Enabled", "bool"))
    success: bool = field(default=False, metadata=_go("Success", "bool"))
    new_version: str = field(default="", metadata=_go("NewVersion", "string"))
    next_check_at: GoTime = field(default_factory=GoTime.zero, metadata=_go("NextCheckAt", "time.Time", "time"))

    @staticmethod
    def go_stringer(d: Mapping[str, Any]) -> str:
        return version_check_text(d)


def version_check_text(vc: Mapping[str, Any] | None) -> str:
    """``VersionCheck.String()``, the text in parentheses on the ``Version:`` line."""
    if vc is None:
        return "<nil>"  # fmt's rendering of a nil *VersionCheck whose String() panics
    if not vc.get("Enabled"):
        return "version check update disabled"
    next_at = _as_gotime(vc.get("NextCheckAt")).format_check()
    if not vc.get("Success"):
        return f"failed to check latest version - see logs; next check at {next_at}"
    if vc.get("NewVersion"):
        return f"version {vc['NewVersion']} available - please upgrade!"
    return f"up to date; next check at {next_at}"


@dataclass
class PeerConnectionStatus:
    """mesh ``connectionStatus``: one connection of a peer as gossiped in the topology."""

    GO_TYPE: ClassVar[str] = "mesh.connectionStatus"

    name: str = field(default="", metadata=_go("Name", "string"))  # remote peer name (MAC form)
    nick_name: str = field(default="", metadata=_go("NickName", "string"))
    address: str = field(default="", metadata=_go("Address", "string"))  # remote TCP address as seen by this peer
    outbound: bool = field(default=False, metadata=_go("Outbound", "bool"))
    established: bool = field(default=False, metadata=_go("Established", "bool"))


@dataclass
class PeerStatus:
    """mesh ``PeerStatus``: a peer known to this router (ourself included)."""

    GO_TYPE: ClassVar[str] = "mesh.PeerStatus"

    name: str = field(default="", metadata=_go("Name", "string"))
    nick_name: str = field(default="", metadata=_go("NickName", "string"))
    uid: int = field(default=0, metadata=_go("UID", "mesh.PeerUID"))  # uint64
    short_id: int = field(default=0, metadata=_go("ShortID", "mesh.PeerShortID"))  # uint16
    version: int = field(default=0, metadata=_go("Version", "uint64"))
    connections: list[PeerConnectionStatus] | None = field(
        default=None,
        metadata=_go("Connections", "[]mesh.connectionStatus", "slice", elem=PeerConnectionStatus, nil_empty=True),
    )


@dataclass
class UnicastRouteStatus:
    """mesh ``unicastRouteStatus``."""

    GO_TYPE: ClassVar[str] = "mesh.unicastRouteStatus"

    dest: str = field(default="", metadata=_go("Dest", "string"))
    via: str = field(default="", metadata=_go("Via", "string"))


@dataclass
class BroadcastRouteStatus:
    """mesh ``broadcastRouteStatus``."""

    GO_TYPE: ClassVar[str] = "mesh.broadcastRouteStatus"

    source: str = field(default="", metadata=_go("Source", "string"))
    via: list[str] | None = field(default=None, metadata=_go("Via", "[]string", "slice", nil_empty=True))


@dataclass
class LocalConnectionStatus:
    """mesh ``LocalConnectionStatus``: one row of ``weave status connections``.

    ``Info`` is pre-rendered by mesh, so build rows with :meth:`live` and :meth:`target`, which apply mesh's
    rules; ``Attrs`` is the overlay forwarder's attribute map (``name``, ``mtu``, ``encrypted``), ``None`` for
    targets.
    """

    GO_TYPE: ClassVar[str] = "mesh.LocalConnectionStatus"

    address: str = field(default="", metadata=_go("Address", "string"))
    outbound: bool = field(default=False, metadata=_go("Outbound", "bool"))
    state: str = field(default="", metadata=_go("State", "string"))
    info: str = field(default="", metadata=_go("Info", "string"))
    attrs: dict[str, Any] | None = field(default=None, metadata=_go("Attrs", "map[string]interface {}", "map"))

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


@dataclass
class MACStatus:
    """router ``MACStatus``: one learned MAC address."""

    GO_TYPE: ClassVar[str] = "router.MACStatus"

    mac: str = field(default="", metadata=_go("Mac", "string"))
    name: str = field(default="", metadata=_go("Name", "string"))
    nick_name: str = field(default="", metadata=_go("NickName", "string"))
    last_seen: GoTime = field(default_factory=GoTime.zero, metadata=_go("LastSeen", "time.Time", "time"))


@dataclass
class RouterStatus:
    """router ``NetworkRouterStatus``: mesh ``Status`` (embedded, so its fields are promoted in JSON) followed
    by ``Interface``, ``CaptureStats`` and ``MACs``."""

    GO_TYPE: ClassVar[str] = "router.NetworkRouterStatus"

    protocol: str = field(default="weave", metadata=_go("Protocol", "string"))
    protocol_min_version: int = field(default=1, metadata=_go("ProtocolMinVersion", "int"))
    protocol_max_version: int = field(default=2, metadata=_go("ProtocolMaxVersion", "int"))
    encryption: bool = field(default=False, metadata=_go("Encryption", "bool"))  # a password is set
    peer_discovery: bool = field(default=True, metadata=_go("PeerDiscovery", "bool"))
    name: str = field(default="", metadata=_go("Name", "string"))
    nick_name: str = field(default="", metadata=_go("NickName", "string"))
    port: int = field(default=6783, metadata=_go("Port", "int"))
    peers: list[PeerStatus] | None = field(
        default=None, metadata=_go("Peers", "[]mesh.PeerStatus", "slice", elem=PeerStatus, nil_empty=True)
    )
    unicast_routes: list[UnicastRouteStatus] | None = field(
        default=None,
        metadata=_go("UnicastRoutes", "[]mesh.unicastRouteStatus", "slice", elem=UnicastRouteStatus, nil_empty=True),
    )
    broadcast_routes: list[BroadcastRouteStatus] | None = field(
        default=None,
        metadata=_go(
            "BroadcastRoutes",
            "[]mesh.broadcastRouteStatus",
            "slice",
            elem=BroadcastRouteStatus,
            nil_empty=True,
        ),
    )
    connections: list[LocalConnectionStatus] | None = field(
        default=None,
        metadata=_go(
            "Connections", "[]mesh.LocalConnectionStatus", "slice", elem=LocalConnectionStatus, nil_empty=True
        ),
    )
    termination_count: int = field(default=0, metadata=_go("TerminationCount", "int"))
    targets: list[str] | None = field(default=None, metadata=_go("Targets", "[]string", "slice", nil_empty=True))
    # overlay switch: {"fastdp": {"Vports": [...], "Flows": [...]}, "sleeve": null}; None without an overlay
    overlay_diagnostics: Any = field(default=None, metadata=_go("OverlayDiagnostics", "interface {}", "iface"))
    trusted_subnets: list[str] = field(default_factory=list, metadata=_go("TrustedSubnets", "[]string", "slice"))
    interface: str = field(
        default="", metadata=_go("Interface", "string")
    )  # e.g. "datapath (via ODP)", "weave (via pcap)"
    capture_stats: dict[str, int] | None = field(default=None, metadata=_go("CaptureStats", "map[string]int", "map"))
    macs: list[MACStatus] | None = field(
        default=None, metadata=_go("MACs", "[]router.MACStatus", "slice", elem=MACStatus, nil_empty=True)
    )


@dataclass
class PaxosStatus:
    """paxos ``Status``: present only while IPAM awaits consensus (``Elector`` false for observers)."""

    GO_TYPE: ClassVar[str] = "paxos.Status"

    elector: bool = field(default=False, metadata=_go("Elector", "bool"))
    known_nodes: int = field(default=0, metadata=_go("KnownNodes", "int"))
    quorum: int = field(default=0, metadata=_go("Quorum", "uint"))


@dataclass
class IPAMEntryStatus:
    """ipam ``EntryStatus``: one ring entry (a range starting at ``Token``)."""

    GO_TYPE: ClassVar[str] = "ipam.EntryStatus"

    token: str = field(default="", metadata=_go("Token", "string"))
    size: int = field(default=0, metadata=_go("Size", "uint32"))
    peer: str = field(default="", metadata=_go("Peer", "string"))
    nickname: str = field(default="", metadata=_go("Nickname", "string"))
    is_known_peer: bool = field(default=False, metadata=_go("IsKnownPeer", "bool"))
    version: int = field(default=0, metadata=_go("Version", "uint32"))


@dataclass
class CIDRValue:
    """address ``CIDR``; JSON ``{"Addr": "10.2.0.0", "PrefixLen": 24}``, printed ``10.2.0.0/24``."""

    GO_TYPE: ClassVar[str] = "address.CIDR"

    addr: str = field(default="0.0.0.0", metadata=_go("Addr", "address.Address"))
    prefix_len: int = field(default=0, metadata=_go("PrefixLen", "int"))

    @staticmethod
    def go_stringer(d: Mapping[str, Any]) -> str:
        return f"{d.get('Addr')}/{d.get('PrefixLen')}"

    @classmethod
    def parse(cls, cidr: str) -> CIDRValue:
        addr, _, plen = cidr.partition("/")
        return cls(addr, int(plen))


@dataclass
class IPAMClaimStatus:
    """ipam ``ClaimStatus``: a pending claim of a specific address."""

    GO_TYPE: ClassVar[str] = "ipam.ClaimStatus"

    ident: str = field(default="", metadata=_go("Ident", "string"))
    cidr: CIDRValue = field(default_factory=CIDRValue, metadata=_go("CIDR", "address.CIDR", "struct", elem=CIDRValue))


@dataclass
class IPAMStatus:
    """ipam ``Status``. ``Range`` is the universe as a CIDR string; ``RangeNumIPs`` its size; ``ActiveIPs``
    the addresses we own that are in use; ``PendingAllocates`` are ``"<ident> <range>"`` strings."""

    GO_TYPE: ClassVar[str] = "ipam.Status"

    paxos: PaxosStatus | None = field(default=None, metadata=_go("Paxos", "*paxos.Status", "ptr", elem=PaxosStatus))
    range: str = field(default="", metadata=_go("Range", "string"))
    range_num_ips: int = field(default=0, metadata=_go("RangeNumIPs", "int"))
    active_ips: int = field(default=0, metadata=_go("ActiveIPs", "int"))
    default_subnet: str = field(default="", metadata=_go("DefaultSubnet", "string"))
    entries: list[IPAMEntryStatus] | None = field(
        default=None,
        metadata=_go("Entries", "[]ipam.EntryStatus", "slice", elem=IPAMEntryStatus, nil_empty=True),
    )
    pending_claims: list[IPAMClaimStatus] | None = field(
        default=None,
        metadata=_go("PendingClaims", "[]ipam.ClaimStatus", "slice", elem=IPAMClaimStatus, nil_empty=True),
    )
    pending_allocates: list[str] | None = field(
        default=None, metadata=_go("PendingAllocates", "[]string", "slice", nil_empty=True)
    )


@dataclass
class DNSEntryStatus:
    """nameserver ``EntryStatus``: one DNS record; ``Tombstone`` is 0 for a live entry, else the deletion
    time in Unix seconds."""

    GO_TYPE: ClassVar[str] = "nameserver.EntryStatus"

    hostname: str = field(default="", metadata=_go("Hostname", "string"))  # fully qualified, with trailing dot
    origin: str = field(default="", metadata=_go("Origin", "string"))  # peer name
    container_id: str = field(default="", metadata=_go("ContainerID", "string"))
    address: str = field(default="", metadata=_go("Address", "string"))
    version: int = field(default=0, metadata=_go("Version", "int"))
    tombstone: int = field(default=0, metadata=_go("Tombstone", "int64"))


@dataclass
class DNSStatus:
    """nameserver ``Status``. ``Upstream`` comes from resolv.conf (never nil); ``Entries`` from gossip."""

    GO_TYPE: ClassVar[str] = "nameserver.Status"

    domain: str = field(default="weave.local.", metadata=_go("Domain", "string"))
    upstream: list[str] = field(default_factory=list, metadata=_go("Upstream", "[]string", "slice"))
    address: str = field(default="", metadata=_go("Address", "string"))  # listen address, e.g. 172.17.0.1:53
    ttl: int = field(default=1, metadata=_go("TTL", "uint32"))
    entries: list[DNSEntryStatus] | None = field(
        default=None,
        metadata=_go("Entries", "[]nameserver.EntryStatus", "slice", elem=DNSEntryStatus, nil_empty=True),
    )
    # weavenet's own: query/refusal/upstream counters (absent from Go's report, hence omitempty)
    diagnostics: Any = field(default=None, metadata=_go("Diagnostics", "interface {}", "iface", omitempty=True))


@dataclass
class ProxyStatus:
    """proxy ``Status``: normalised listen addresses (``unix:///var/run/weave/weave.sock``, ``tcp://...``)."""

    GO_TYPE: ClassVar[str] = "proxy.Status"

    addresses: list[str] = field(default_factory=list, metadata=_go("Addresses", "[]string", "slice"))


@dataclass
class PluginConfig:
    """plugin ``Config``."""

    GO_TYPE: ClassVar[str] = "plugin.Config"

    socket: str = field(default="/run/docker/plugins/weave.sock", metadata=_go("Socket", "string"))
    mesh_socket: str = field(default="/run/docker/plugins/weavemesh.sock", metadata=_go("MeshSocket", "string"))
    enable: bool = field(default=True, metadata=_go("Enable", "bool"))
    enable_v2: bool = field(default=False, metadata=_go("EnableV2", "bool"))
    enable_v2_multicast: bool = field(default=False, metadata=_go("EnableV2Multicast", "bool"))
    dns: bool = field(default=True, metadata=_go("DNS", "bool"))
    default_subnet: str = field(default="", metadata=_go("DefaultSubnet", "string"))
    proc_path: str = field(default="/proc", metadata=_go("ProcPath", "string"))


@dataclass
class PluginStatus:
    """plugin ``Status``; driver names are the socket basenames without ``.sock``."""

    GO_TYPE: ClassVar[str] = "plugin.Status"

    config: PluginConfig = field(
        default_factory=PluginConfig, metadata=_go("Config", "plugin.Config", "struct", elem=PluginConfig)
    )
    driver_name: str = field(default="weave", metadata=_go("DriverName", "string"))
    mesh_driver_name: str = field(default="weavemesh", metadata=_go("MeshDriverName", "string", omitempty=True))


@dataclass
class WeaveStatus:
    """``main.WeaveStatus``, the whole report. ``None`` sub-reports mean "service disabled" and are omitted
    from JSON (``omitempty``); ``weave status`` then skips their sections."""

    GO_TYPE: ClassVar[str] = "main.WeaveStatus"

    ready: bool = field(default=False, metadata=_go("Ready", "bool"))
    version: str = field(default="", metadata=_go("Version", "string"))
    version_check: VersionCheck | None = field(
        default_factory=VersionCheck,
        metadata=_go("VersionCheck", "*main.VersionCheck", "ptr", elem=VersionCheck, omitempty=True),
    )
    router: RouterStatus | None = field(
        default=None,
        metadata=_go("Router", "*router.NetworkRouterStatus", "ptr", elem=RouterStatus, omitempty=True),
    )
    ipam: IPAMStatus | None = field(
        default=None, metadata=_go("IPAM", "*ipam.Status", "ptr", elem=IPAMStatus, omitempty=True)
    )
    dns: DNSStatus | None = field(
        default=None, metadata=_go("DNS", "*nameserver.Status", "ptr", elem=DNSStatus, omitempty=True)
    )
    proxy: ProxyStatus | None = field(
        default=None, metadata=_go("Proxy", "*proxy.Status", "ptr", elem=ProxyStatus, omitempty=True)
    )
    plugin: PluginStatus | None = field(
        default=None, metadata=_go("Plugin", "*plugin.Status", "ptr", elem=PluginStatus, omitempty=True)
    )
    # weavenet's own: saved state found unreadable at launch, changes not saved (``weave launch`` prints them)
    state: Any = field(default=None, metadata=_go("State", "interface {}", "iface", omitempty=True))

    def to_dict(self) -> dict[str, Any]:
        """The report as a plain JSON-compatible dict with Weave's keys, order, nils and omissions."""
        return _encode(self)

    def to_json(self) -> str:
        """Exactly what ``GET /report`` (``Accept: application/json``) returns: 4-space MarshalIndent, Go's
        HTML-safe escaping, ``null`` for nil slices/maps, no trailing newline."""
        return report_json(self.to_dict())

    def template_data(self) -> GoStruct:
        return template_view(self.to_dict())


# ------------------------------------------------------------------------------------------------- sample


def sample_report(*, encryption: bool = False) -> WeaveStatus:
    """The troubleshooting-guide cluster as a report (for tests and docs).

    host1 (us) has one connection in each state (established from host2 over fastdp, pending from host3,
    retrying/failed/connecting targets), 3 peers with 5 established + 1 pending connections between them,
    IPAM ready over 10.32.0.0/12, 9 live DNS entries plus one tombstone, the proxy and the legacy plugin.
    With ``encryption`` the router has a password and host2's address is a trusted subnet, reproducing the
    docs' ``unencrypted``/``encrypted`` INFO columns.
    """
    us, host2, host3 = "4a:0f:f6:ec:1c:93", "7e:21:4a:70:2f:45", "7e:ae:cd:d5:23:8d"
    failed_at = GoTime(1438887338_246910357)  # 2015-08-06 18:55:38.246910357 UTC, as in the docs
    connections = [
        LocalConnectionStatus.live(
            "192.168.48.12:33866",
            outbound=False,
            established=True,
            remote_name=host2,
            remote_nickname="host2",
            attrs={"name": "fastdp", "mtu": 1410},
            encryption=encryption,
            untrusted=False,
        ),
        LocalConnectionStatus.live(
            "192.168.48.13:60773",
            outbound=False,
            established=False,
            remote_name=host3,
            remote_nickname="host3",
            attrs={"name": "fastdp", "mtu": 1376},
            encryption=encryption,
            untrusted=True,
        ),
        LocalConnectionStatus.target(
            "192.168.48.14:6783", attempting=True, last_error="dial tcp4 192.168.48.14:6783: no route to host"
        ),
        LocalConnectionStatus.target(
            "192.168.48.15:6783",
            attempting=False,
            last_error="dial tcp4 192.168.48.15:6783: no route to host",
            try_after=failed_at,
        ),
        LocalConnectionStatus.target("192.168.48.16:6783", attempting=True),
    ]
    peers = [
        PeerStatus(
            us,
            "host1",
            uid=12103327843924405264,
            short_id=1,
            version=12,
            connections=[
                PeerConnectionStatus(host2, "host2", "192.168.48.12:33866", False, True),
                PeerConnectionStatus(host3, "host3", "192.168.48.13:60773", False, False),
            ],
        ),
        PeerStatus(
            host2,
            "host2",
            uid=5573125393049452392,
            short_id=2,
            version=7,
            connections=[
                PeerConnectionStatus(us, "host1", "192.168.48.11:6783", True, True),
                PeerConnectionStatus(host3, "host3", "192.168.48.13:58181", False, True),
            ],
        ),
        PeerStatus(
            host3,
            "host3",
            uid=889213381431373838,
            short_id=3,
            version=5,
            connections=[
                PeerConnectionStatus(host2, "host2", "192.168.48.12:6783", True, True),
                PeerConnectionStatus(us, "host1", "192.168.48.11:6783", True, True),
            ],
        ),
    ]
    router = RouterStatus(
        encryption=encryption,
        peer_discovery=True,
        name=us,
        nick_name="host1",
        peers=peers,
        unicast_routes=[UnicastRouteStatus(host2, host2), UnicastRouteStatus(host3, host2)],
        broadcast_routes=[BroadcastRouteStatus(us, [host2])],
        connections=connections,
        termination_count=3,
        targets=["192.168.48.14", "192.168.48.15"],
        overlay_diagnostics={"fastdp": {"Vports": [], "Flows": []}, "sleeve": None},
        trusted_subnets=["192.168.48.12/32"] if encryption else [],
        interface="datapath (via ODP)",
        capture_stats={"FlowMisses": 42},
        macs=[MACStatus("ce:15:34:a9:b5:6d", host2, "host2", GoTime.from_unix(1438887300))],
    )
    ipam = IPAMStatus(
        range="10.32.0.0/12",
        range_num_ips=1 << 20,
        active_ips=3,
        default_subnet="10.32.0.0/12",
        entries=[
            IPAMEntryStatus("10.32.0.0", 1 << 18, us, "host1", True, 3),
            IPAMEntryStatus("10.36.0.0", 1 << 18, host2, "host2", True, 1),
            IPAMEntryStatus("10.40.0.0", 1 << 18, us, "host1", True, 2),
            IPAMEntryStatus("10.44.0.0", 1 << 18, host3, "host3", True, 1),
        ],
    )
    # the docs' `weave status dns` example; container IDs extended to full length to exercise %12.12v
    origin_a, origin_b, origin_c = us, "66:c4:47:c6:65:bf", "ba:98:d0:37:4f:1c"
    dns_rows = [
        ("one", "10.32.0.1", "eebd81120ee4", origin_a),
        ("one", "10.43.255.255", "4fcec78d2a9b", origin_b),
        ("one", "10.40.0.0", "bab69d305cba", origin_c),
        ("three", "10.32.0.3", "7615b6537f74", origin_a),
        ("three", "10.44.0.1", "c0b39dc52f8d", origin_b),
        ("three", "10.40.0.2", "8a9c2e2ef00f", origin_c),
        ("two", "10.32.0.2", "83689b8f34e0", origin_a),
        ("two", "10.44.0.0", "7edc306cb668", origin_b),
        ("two", "10.40.0.1", "68a5e9c2641b", origin_c),
    ]
    entries = [
        DNSEntryStatus(f"{host}.weave.local.", origin, cid + "0123456789abcdef" * 3 + "0" * 4, ip, 1, 0)
        for host, ip, cid, origin in dns_rows
    ]
    entries.append(DNSEntryStatus("gone.weave.local.", us, "f" * 64, "10.32.0.9", 2, 1438887000))
    return WeaveStatus(
        ready=True,
        version="2.8.1",
        version_check=VersionCheck(True, True, "", GoTime.from_unix(1459945800)),
        router=router,
        ipam=ipam,
        dns=DNSStatus("weave.local.", ["8.8.8.8", "8.8.4.4"], "172.17.0.1:53", 1, entries),
        proxy=ProxyStatus(["unix:///var/run/weave/weave.sock"]),
        plugin=PluginStatus(PluginConfig(default_subnet="10.32.0.0/12"), "weave", "weavemesh"),
    )
