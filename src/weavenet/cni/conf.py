"""The plugins' network configuration (Weave's ``NetConf`` and ``ipamConf``), parsed and checked. Pure.

``weave-net`` reads ``bridge`` (default ``weave``), ``mtu`` (0: the bridge's), ``hairpinMode`` (default true),
``isGateway`` and ``ipMasq`` (Weave supports neither: true is refused), ``dns`` (passed to the result) and
``ipam``: with no ``type`` the router's ring allocates, optionally in ``subnet``, and ``gateway`` and ``routes``
say how the pod routes; with a ``type`` that IPAM plugin is executed instead. ``weave-ipam`` reads ``ipam``.

A value of the wrong JSON type is a decoding failure (error 6, as Go's ``json.Unmarshal`` would fail), a value of
the right type that cannot be used is an invalid configuration (7), naming the key; both before anything is
changed on the host or asked of the router.
"""

from __future__ import annotations

from weavenet.cni.spec import (
    DECODING_FAILURE,
    INVALID_CONFIG,
    UNSUPPORTED_FIELD,
    CniError,
    Route,
    check_ifname,
    parse_cidr,
    parse_ip,
    parse_routes,
)

TYPE_CHECKING = False
if TYPE_CHECKING:
    from collections.abc import Mapping
    from typing import Any

DEFAULT_BRIDGE = "weave"
MIN_MTU, MAX_MTU = 68, 65535
DNS_LISTS = ("nameservers", "search", "options")


class IpamConf:
    """``type`` "": the router's ring, else the IPAM plugin to execute; ``routes`` None: none given, so the pod
    gets a default route through the bridge."""

    __slots__ = ("gateway", "routes", "subnet", "type")

    def __init__(
        self,
        type: str = "",
        subnet: tuple[int, int] | None = None,
        gateway: int | None = None,
        routes: list[Route] | None = None,
    ) -> None:
        self.type, self.subnet, self.gateway, self.routes = type, subnet, gateway, routes


class NetConf:
    __slots__ = ("bridge", "dns", "hairpin", "ipam", "mtu", "name", "prev_result", "version")

    def __init__(
        self,
        version: str,
        name: str,
        bridge: str = DEFAULT_BRIDGE,
        mtu: int = 0,
        hairpin: bool = True,
        ipam: IpamConf | None = None,
        dns: dict[str, Any] | None = None,
        prev_result: dict[str, Any] | None = None,
    ) -> None:
        self.version, self.name, self.bridge, self.mtu, self.hairpin = version, name, bridge, mtu, hairpin
        self.ipam, self.dns, self.prev_result = ipam or IpamConf(), dns or {}, prev_result


def _typed(conf: Mapping[str, Any], key: str, kind: type | tuple[type, ...], where: str = "") -> Any:
    """``conf[key]`` if present and not null, checked to be of ``kind`` (bool is not an int here)."""
    value = conf.get(key)
    if value is None:
        return None
    kinds = kind if isinstance(kind, tuple) else (kind,)
    if not isinstance(value, kinds) or (isinstance(value, bool) and bool not in kinds):
        names = " or ".join("a boolean" if k is bool else f"a JSON {_json_name(k)}" for k in kinds)
        raise CniError(DECODING_FAILURE, f"{where}{key} must be {names}", repr(value)[:80])
    return value


def _json_name(kind: type) -> str:
    return {str: "string", int: "integer", dict: "object", list: "list"}.get(kind, kind.__name__)


def parse_ipam(conf: Mapping[str, Any]) -> IpamConf:
    """The ``ipam`` section (absent or null: all defaults)."""
    ipam = _typed(conf, "ipam", dict)
    if ipam is None:
        return IpamConf()
    kind = _typed(ipam, "type", str, "ipam.") or ""
    if kind and ("/" in kind or kind in (".", "..")):
        raise CniError(INVALID_CONFIG, "ipam.type must be a plugin name, not a path", repr(kind))
    subnet = _typed(ipam, "subnet", str, "ipam.")
    gateway = _typed(ipam, "gateway", str, "ipam.")
    routes = None
    if ipam.get("routes") is not None:
        routes = parse_routes(_typed(ipam, "routes", list, "ipam."), "ipam.routes", network=True)
    return IpamConf(
        kind,
        parse_cidr(subnet, "ipam.subnet", network=True) if subnet else None,
        parse_ip(gateway, "ipam.gateway") if gateway else None,
        routes,
    )


def parse_dns(conf: Mapping[str, Any]) -> dict[str, Any]:
    """``dns`` as the result carries it: ``nameservers``, ``domain``, ``search``, ``options``."""
    dns = _typed(conf, "dns", dict)
    if not dns:
        return {}
    out: dict[str, Any] = {}
    for key in DNS_LISTS:
        values = _typed(dns, key, list, "dns.")
        if values is None:
            continue
        if not all(isinstance(v, str) for v in values):
            raise CniError(DECODING_FAILURE, f"dns.{key} must be a list of strings", repr(values)[:80])
        if values:
            out[key] = list(values)
    domain = _typed(dns, "domain", str, "dns.")
    if domain:
        out["domain"] = domain
    return out


def parse_net_conf(conf: Mapping[str, Any], version: str, name: str) -> NetConf:
    """``weave-net``'s configuration."""
    for key in ("isGateway", "ipMasq"):
        if _typed(conf, key, bool):
            what = "Gateway" if key == "isGateway" else "IP Masquerading"
            raise CniError(UNSUPPORTED_FIELD, f"unsupported field {key}: true", f"{what} functionality not supported")
    bridge = _typed(conf, "bridge", str)
    if bridge is None or bridge == "":
        bridge = DEFAULT_BRIDGE
    else:
        try:
            check_ifname(bridge, "bridge")
        except CniError as e:
            raise CniError(INVALID_CONFIG, e.msg, e.details) from e
    mtu = _typed(conf, "mtu", int) or 0
    if mtu and not MIN_MTU <= mtu <= MAX_MTU:
        raise CniError(INVALID_CONFIG, f"mtu must be 0 (the bridge's) or between {MIN_MTU} and {MAX_MTU}", str(mtu))
    hairpin = _typed(conf, "hairpinMode", bool)
    prev = conf.get("prevResult")
    if prev is not None and not isinstance(prev, dict):
        raise CniError(DECODING_FAILURE, "prevResult must be a JSON object", repr(prev)[:80])
    return NetConf(
        version,
        name,
        bridge,
        mtu,
        True if hairpin is None else hairpin,
        parse_ipam(conf),
        parse_dns(conf),
        prev,
    )
