"""The CNI protocol, spec versions 0.1.0 to 1.1.0: requests, errors and result formats. Pure (no I/O).

What a runtime sends (``CNI_COMMAND``, ``CNI_CONTAINERID``, ``CNI_NETNS``, ``CNI_IFNAME``, ``CNI_ARGS``,
``CNI_PATH``; the configuration on stdin) is checked here, each bad input getting the spec's error code and a
message that names the variable or key at fault. Results are written in the format of the configuration's
``cniVersion``: 0.1.0 and 0.2.0 have ``ip4``, 0.3.x and 0.4.0 ``ips`` with a ``version`` field and
``interfaces``, 1.0.0 drops ``version``, 1.1.0 adds the interfaces' ``mtu``. Weave 2.8 spoke 0.1.0 to 0.3.0 (its
conflist says 0.3.0, and a configuration without ``cniVersion`` is 0.1.0, as in libcni); CHECK needs 0.4.0,
STATUS and GC 1.1.0, as libcni's skeleton enforces.

IPv4 addresses are handled as integers with ``inet_pton``, which accepts only dotted quads. Like every module
the plugin imports, this one avoids what costs start-up time per pod: ``ipaddress``, ``dataclasses`` and
``typing`` (together some 15 ms), ``re`` and ``socket`` (their enums).
"""

from __future__ import annotations

import _socket
import struct

from weavenet.cni import jsonc

TYPE_CHECKING = False
if TYPE_CHECKING:
    from collections.abc import Mapping
    from typing import Any

SUPPORTED_VERSIONS = ("0.1.0", "0.2.0", "0.3.0", "0.3.1", "0.4.0", "1.0.0", "1.1.0")
LATEST = "1.1.0"
DEFAULT_VERSION = "0.1.0"  # a configuration without cniVersion (libcni's reading)

# Error codes (spec, section 5 "Error"; 999 is libcni's for any other failure).
INCOMPATIBLE_VERSION = 1
UNSUPPORTED_FIELD = 2
UNKNOWN_CONTAINER = 3
INVALID_ENVIRONMENT = 4
IO_FAILURE = 5
DECODING_FAILURE = 6
INVALID_CONFIG = 7
TRY_AGAIN_LATER = 11
NOT_AVAILABLE = 50
LIMITED_CONNECTIVITY = 51
INTERNAL = 999

COMMANDS = ("ADD", "DEL", "CHECK", "STATUS", "VERSION", "GC")
# The variables each command needs (the spec's "required environment parameters").
REQUIRED = {
    "ADD": ("CNI_CONTAINERID", "CNI_NETNS", "CNI_IFNAME"),
    "CHECK": ("CNI_CONTAINERID", "CNI_NETNS", "CNI_IFNAME"),
    "DEL": ("CNI_CONTAINERID", "CNI_IFNAME"),
    "GC": ("CNI_PATH",),
    "STATUS": (),
    "VERSION": (),
}
# The commands that act on a namespace: the others ignore CNI_NETNS (libcni validates a configuration with VERSION
# and CNI_NETNS=dummy).
NETNS_COMMANDS = ("ADD", "CHECK", "DEL")
# The first version that has each command.
SINCE = {"CHECK": "0.4.0", "STATUS": "1.1.0", "GC": "1.1.0"}

_ALNUM = frozenset("abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789")
_NAME_CHARS = _ALNUM | frozenset("_.-")
IFNAMSIZ = 16


def valid_name(text: str) -> bool:
    """The spec's rule for container IDs and network names: ``[a-zA-Z0-9][a-zA-Z0-9_.-]*``."""
    return bool(text) and text[0] in _ALNUM and all(c in _NAME_CHARS for c in text)


class CniError(Exception):
    """A failure reported to the runtime as the spec's error object: ``code``, ``msg`` and ``details``."""

    def __init__(self, code: int, msg: str, details: str = "") -> None:
        super().__init__(msg + (f"; {details}" if details else ""))
        self.code = code
        self.msg = msg
        self.details = details

    def to_json(self, version: str) -> dict[str, Any]:
        out: dict[str, Any] = {"cniVersion": version, "code": self.code, "msg": self.msg}
        if self.details:
            out["details"] = self.details
        return out


def vtuple(version: str) -> tuple[int, ...]:
    return tuple(int(p) for p in version.split("."))


def at_least(version: str, minimum: str) -> bool:
    return vtuple(version) >= vtuple(minimum)


# -- the request ---------------------------------------------------------------------------------------------------


class Request:
    """One execution: the command and its attachment parameters."""

    __slots__ = ("args", "command", "container_id", "ifname", "netns", "path")

    def __init__(
        self,
        command: str,
        container_id: str = "",
        netns: str = "",
        ifname: str = "",
        args: tuple[tuple[str, str], ...] = (),
        path: tuple[str, ...] = (),
    ) -> None:
        self.command, self.container_id, self.netns, self.ifname = command, container_id, netns, ifname
        self.args, self.path = args, path

    def arg(self, key: str) -> str | None:
        for k, v in self.args:
            if k == key:
                return v
        return None

    def pod(self) -> str:
        """``namespace/name`` of a Kubernetes pod (``K8S_POD_*`` in ``CNI_ARGS``), else the container ID; for
        messages."""
        ns, name = self.arg("K8S_POD_NAMESPACE"), self.arg("K8S_POD_NAME")
        return f"{ns}/{name}" if ns and name else (name or self.container_id)


def check_container_id(cid: str, also: tuple[str, ...] = ()) -> None:
    if not valid_name(cid) and cid not in also:
        raise CniError(INVALID_ENVIRONMENT, "invalid characters in CNI_CONTAINERID", repr(cid))


def check_ifname(name: str, what: str = "CNI_IFNAME") -> None:
    """Linux's rules for an interface name (``dev_valid_name``)."""
    if not name:
        raise CniError(INVALID_ENVIRONMENT, f"{what} is empty")
    if len(name.encode()) >= IFNAMSIZ:
        raise CniError(INVALID_ENVIRONMENT, f"{what} is too long", f"{name!r}: at most {IFNAMSIZ - 1} bytes")
    if name in (".", "..") or any(c in "/:" or c.isspace() for c in name):
        raise CniError(INVALID_ENVIRONMENT, f"{what} is not a valid interface name", repr(name))


def parse_args(text: str) -> tuple[tuple[str, str], ...]:
    """``CNI_ARGS``: ``K=V`` pairs separated by ``;`` (empty pairs skipped)."""
    out = []
    for pair in text.split(";"):
        if not pair:
            continue
        key, sep, value = pair.partition("=")
        if not sep or not key:
            raise CniError(INVALID_ENVIRONMENT, "invalid CNI_ARGS pair", repr(pair))
        out.append((key, value))
    return tuple(out)


def parse_env(env: Mapping[str, str], also_ids: tuple[str, ...] = ()) -> Request:
    """The request from the environment; error 4 naming every variable missing or invalid. ``also_ids``: container
    IDs accepted beyond the spec's characters (``weave:expose``, which weave-net asks weave-ipam for, as Weave's)."""
    command = env.get("CNI_COMMAND", "")
    if not command:
        raise CniError(INVALID_ENVIRONMENT, "required env variables [CNI_COMMAND] missing")
    if command not in COMMANDS:
        raise CniError(INVALID_ENVIRONMENT, f"unknown CNI_COMMAND: {command}", f"one of {', '.join(COMMANDS)}")
    missing = [v for v in REQUIRED[command] if not env.get(v)]
    if missing:
        raise CniError(INVALID_ENVIRONMENT, f"required env variables [{','.join(missing)}] missing")
    cid, ifname = env.get("CNI_CONTAINERID", ""), env.get("CNI_IFNAME", "")
    if "CNI_CONTAINERID" in REQUIRED[command]:
        check_container_id(cid, also_ids)
    if "CNI_IFNAME" in REQUIRED[command]:
        check_ifname(ifname)
    netns = env.get("CNI_NETNS", "") if command in NETNS_COMMANDS else ""
    if netns and not netns.startswith("/"):
        raise CniError(INVALID_ENVIRONMENT, "CNI_NETNS must be an absolute path", repr(netns))
    path = tuple(p for p in env.get("CNI_PATH", "").split(":") if p)
    args = parse_args(env.get("CNI_ARGS", "")) if command in NETNS_COMMANDS else ()
    return Request(command, cid, netns, ifname, args, path)


# -- the configuration ---------------------------------------------------------------------------------------------


def load_config(data: bytes) -> dict[str, Any]:
    """The configuration object from stdin; error 6 if it is not JSON, 7 if it is not an object."""
    try:
        conf = jsonc.loads(data.decode("utf-8"))
    except UnicodeDecodeError as e:
        raise CniError(DECODING_FAILURE, "network configuration is not UTF-8", str(e)) from e
    except (ValueError, RecursionError) as e:  # JSONDecodeError, huge integers, absurd nesting
        raise CniError(DECODING_FAILURE, "error parsing network configuration", str(e)) from e
    if not isinstance(conf, dict):
        raise CniError(INVALID_CONFIG, "network configuration must be a JSON object", type(conf).__name__)
    return conf


def config_version(conf: Mapping[str, Any]) -> str:
    """The configuration's ``cniVersion`` (0.1.0 if absent); error 6 if not a string, 1 if not supported."""
    version = conf.get("cniVersion", "")
    if not isinstance(version, str):
        raise CniError(DECODING_FAILURE, "cniVersion must be a string", repr(version))
    version = version or DEFAULT_VERSION
    if version not in SUPPORTED_VERSIONS:
        raise CniError(
            INCOMPATIBLE_VERSION,
            "incompatible CNI versions",
            f'config is "{version}", plugin supports {jsonc.dumps(list(SUPPORTED_VERSIONS))}',
        )
    return version


def check_command_version(command: str, version: str) -> None:
    """CHECK needs a 0.4.0 configuration, STATUS and GC 1.1.0 (error 1 otherwise, as libcni's skeleton)."""
    since = SINCE.get(command)
    if since is not None and not at_least(version, since):
        raise CniError(INCOMPATIBLE_VERSION, f"config version does not allow {command}", f"{version} < {since}")


def network_name(conf: Mapping[str, Any]) -> str:
    name = conf.get("name")
    if name is None or name == "":
        raise CniError(INVALID_CONFIG, "missing network name")
    if not isinstance(name, str):
        raise CniError(DECODING_FAILURE, "name must be a string", repr(name))
    if not valid_name(name):
        raise CniError(INVALID_CONFIG, "invalid characters found in network name", repr(name))
    return name


# -- IPv4 ----------------------------------------------------------------------------------------------------------


def parse_ip(text: Any, key: str) -> int:
    """A dotted-quad IPv4 address as an integer; error 7 naming the key otherwise (6 for a non-string)."""
    if not isinstance(text, str):
        raise CniError(DECODING_FAILURE, f"{key} must be a string", repr(text))
    try:
        return int.from_bytes(_socket.inet_pton(_socket.AF_INET, text), "big")
    except OSError:
        pass
    if ":" in text:
        raise CniError(INVALID_CONFIG, f"{key}: IPv6 is not supported (weave is IPv4 only)", text)
    raise CniError(INVALID_CONFIG, f"{key}: invalid IP address", repr(text))


def parse_cidr(text: Any, key: str, network: bool = False) -> tuple[int, int]:
    """``a.b.c.d/n`` as (address, prefix length); with ``network``, host bits must be zero."""
    if not isinstance(text, str):
        raise CniError(DECODING_FAILURE, f"{key} must be a string", repr(text))
    addr, sep, plen = text.partition("/")
    if not sep or not plen.isascii() or not plen.isdigit() or len(plen) > 2 or int(plen) > 32:
        if ":" in addr:
            raise CniError(INVALID_CONFIG, f"{key}: IPv6 is not supported (weave is IPv4 only)", text)
        raise CniError(INVALID_CONFIG, f"{key}: invalid CIDR address", repr(text))
    ip, n = parse_ip(addr, key), int(plen)
    if network and ip & ~mask(n) & 0xFFFFFFFF:
        raise CniError(
            INVALID_CONFIG, f"{key}: invalid subnet - bits after network prefix are not all zero", repr(text)
        )
    return ip, n


def mask(plen: int) -> int:
    return (0xFFFFFFFF << (32 - plen)) & 0xFFFFFFFF


def fmt_ip(ip: int) -> str:
    return _socket.inet_ntop(_socket.AF_INET, struct.pack("!I", ip))


def fmt_cidr(ip: int, plen: int) -> str:
    return f"{fmt_ip(ip)}/{plen}"


def in_subnet(ip: int, net: int, plen: int) -> bool:
    return (ip & mask(plen)) == (net & mask(plen))


# -- results -------------------------------------------------------------------------------------------------------


class Route:
    """A route: destination (address, prefix length) and gateway (None: through the interface)."""

    __slots__ = ("dst", "gw")

    def __init__(self, dst: tuple[int, int], gw: int | None = None) -> None:
        self.dst, self.gw = dst, gw

    def __eq__(self, other: object) -> bool:
        return isinstance(other, Route) and (self.dst, self.gw) == (other.dst, other.gw)

    def __hash__(self) -> int:
        return hash((self.dst, self.gw))

    def __repr__(self) -> str:
        return f"Route({self.to_json()})"

    def to_json(self) -> dict[str, str]:
        out = {"dst": fmt_cidr(*self.dst)}
        if self.gw is not None:
            out["gw"] = fmt_ip(self.gw)
        return out


class Interface:
    __slots__ = ("mac", "mtu", "name", "sandbox")

    def __init__(self, name: str, mac: str = "", sandbox: str = "", mtu: int = 0) -> None:
        self.name, self.mac, self.sandbox, self.mtu = name, mac, sandbox, mtu


class Result:
    """What an ADD made, in no particular version; :func:`render` writes it in one. ``routes`` None: none given
    (weave-net then routes everything through the bridge); ``interface``: the pod's, an index in ``interfaces``."""

    __slots__ = ("address", "dns", "gateway", "interface", "interfaces", "routes")

    def __init__(
        self,
        address: tuple[int, int],
        gateway: int | None = None,
        routes: list[Route] | None = None,
        interfaces: list[Interface] | None = None,
        interface: int | None = None,
        dns: dict[str, Any] | None = None,
    ) -> None:
        self.address, self.gateway, self.routes = address, gateway, routes
        self.interfaces, self.interface, self.dns = interfaces or [], interface, dns or {}


def render(result: Result, version: str) -> dict[str, Any]:
    """The result object of ``version`` (an IPAM plugin's result has no interfaces)."""
    out: dict[str, Any] = {"cniVersion": version}
    if not at_least(version, "0.3.0"):
        ip4: dict[str, Any] = {"ip": fmt_cidr(*result.address)}
        if result.gateway is not None:
            ip4["gateway"] = fmt_ip(result.gateway)
        if result.routes:
            ip4["routes"] = [r.to_json() for r in result.routes]
        out["ip4"] = ip4
    else:
        if result.interfaces:
            ifaces = []
            for i in result.interfaces:
                entry: dict[str, Any] = {"name": i.name}
                if i.mac:
                    entry["mac"] = i.mac
                if i.mtu and at_least(version, "1.1.0"):
                    entry["mtu"] = i.mtu
                if i.sandbox:
                    entry["sandbox"] = i.sandbox
                ifaces.append(entry)
            out["interfaces"] = ifaces
        ip: dict[str, Any] = {}
        if not at_least(version, "1.0.0"):
            ip["version"] = "4"
        if result.interface is not None:
            ip["interface"] = result.interface
        ip["address"] = fmt_cidr(*result.address)
        if result.gateway is not None:
            ip["gateway"] = fmt_ip(result.gateway)
        out["ips"] = [ip]
        if result.routes:
            out["routes"] = [r.to_json() for r in result.routes]
    if result.dns:
        out["dns"] = result.dns
    return out


def version_result(version: str) -> dict[str, Any]:
    return {"cniVersion": version, "supportedVersions": list(SUPPORTED_VERSIONS)}


def parse_routes(raw: Any, key: str, network: bool = False) -> list[Route]:
    """Routes (``dst``, optional ``gw``); with ``network`` a destination with host bits set is refused (the
    kernel would), else they are cleared (a result that another plugin wrote)."""
    if raw is None:
        return []
    if not isinstance(raw, list):
        raise CniError(DECODING_FAILURE, f"{key} must be a list", repr(raw)[:80])
    out = []
    for i, r in enumerate(raw):
        if not isinstance(r, dict):
            raise CniError(DECODING_FAILURE, f"{key}[{i}] must be an object", repr(r)[:80])
        gw = r.get("gw")
        ip, plen = parse_cidr(r.get("dst"), f"{key}[{i}].dst", network=network)
        out.append(Route((ip & mask(plen), plen), None if gw is None or gw == "" else parse_ip(gw, f"{key}[{i}].gw")))
    return out


def parse_result(raw: Any, what: str) -> Result:
    """An ADD result of any version (a delegated IPAM plugin's, or ``prevResult``): its first IPv4 address,
    gateway, routes and DNS. IPv6 entries are skipped; error 6 if there is no IPv4 address."""
    if not isinstance(raw, dict):
        raise CniError(DECODING_FAILURE, f"{what} is not a JSON object", repr(raw)[:80])
    routes: list[Route] | None = None
    address = gateway = None
    if "ip4" in raw and raw["ip4"] is not None:
        ip4 = raw["ip4"]
        if not isinstance(ip4, dict):
            raise CniError(DECODING_FAILURE, f"{what}: ip4 must be an object", repr(ip4)[:80])
        address = parse_cidr(ip4.get("ip"), f"{what}: ip4.ip")
        if ip4.get("gateway") not in (None, ""):
            gateway = parse_ip(ip4["gateway"], f"{what}: ip4.gateway")
        if ip4.get("routes") is not None:
            routes = parse_routes(ip4["routes"], f"{what}: ip4.routes")
    else:
        ips = raw.get("ips") or []
        if not isinstance(ips, list):
            raise CniError(DECODING_FAILURE, f"{what}: ips must be a list", repr(ips)[:80])
        for i, entry in enumerate(ips):
            if not isinstance(entry, dict):
                raise CniError(DECODING_FAILURE, f"{what}: ips[{i}] must be an object", repr(entry)[:80])
            text = entry.get("address")
            if entry.get("version") == "6" or (isinstance(text, str) and ":" in text):
                continue
            address = parse_cidr(text, f"{what}: ips[{i}].address")
            if entry.get("gateway") not in (None, ""):
                gateway = parse_ip(entry["gateway"], f"{what}: ips[{i}].gateway")
            break
        if raw.get("routes") is not None:
            routes = _v4_routes(raw["routes"], f"{what}: routes")
    if address is None:
        raise CniError(DECODING_FAILURE, f"{what} has no IPv4 address")
    dns = raw.get("dns")
    return Result(address, gateway, routes, dns=dns if isinstance(dns, dict) else {})


def _v4_routes(raw: Any, key: str) -> list[Route]:
    if isinstance(raw, list):
        raw = [r for r in raw if not (isinstance(r, dict) and isinstance(r.get("dst"), str) and ":" in r["dst"])]
    return parse_routes(raw, key)


def interfaces_of(raw: Mapping[str, Any]) -> list[dict[str, Any]]:
    """The ``interfaces`` of a result, each an object (others dropped)."""
    ifaces = raw.get("interfaces")
    return [i for i in ifaces if isinstance(i, dict)] if isinstance(ifaces, list) else []
