"""What the proxy changes in a ``POST /containers/create`` body, and in ``inspect`` answers (pure).

A container is put on the weave network unless its network mode is the host's, another container's or a
plugin network, or ``WEAVE_CIDR`` says ``none`` (or is unset under ``--no-default-ipalloc``). Such a container:

* gets the wait program mounted read-only at ``/w`` and prepended to its entrypoint, so its own process starts
  only once ``ethwe`` is up (the image's entrypoint and command are filled in first, as Docker would);
* unless ``--without-dns``: weaveDNS as its first resolver, a hostname from its name (``NAME.weave.local``) when
  none was given, and a search domain when none was given.
"""

from __future__ import annotations

import copy
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from weavenet.docker.hostname import derive_hostname, hostname_and_domain
from weavenet.docker.weave_cidr import AddrSpec, specs_from_env
from weavenet.errors import ConfigError

WAIT_MOUNT = "/w"
WAIT_ENTRY = "/w/w"
WAIT_ENTRY_NOMCAST = "/w/w-nomcast"
ATTACHABLE_MODES = ("", "default", "bridge", "none")


class NoCommand(ConfigError):
    """Neither the request nor the image names a command: Docker's own refusal, given before anything is made."""


@dataclass(frozen=True)
class ProxySettings:
    no_default_ipalloc: bool = False
    without_dns: bool = False
    no_multicast_route: bool = False
    dns_ip: str = ""  # weaveDNS' address; "" when weaveDNS is not running
    dns_domain: str = "weave.local."
    hostname_from_label: str = ""
    hostname_match: str = "(.*)"
    hostname_replacement: str = "$1"
    wait_dir: str = ""  # host directory with the wait program; "" when none could be installed
    rewrite_inspect: bool = False
    no_rewrite_hosts: bool = False
    plugin_networks: Sequence[str] = field(default_factory=tuple)


def _strslice(value: Any) -> list[str] | None:
    """Docker's ``strslice``: null, a string or a list of strings."""
    if value is None:
        return None
    if isinstance(value, str):
        return [value]
    if isinstance(value, list):
        return [str(v) for v in value]
    raise ConfigError(f"invalid command {value!r}: expected a string or a list of strings")


def _typed(value: Any, kind: type, what: str) -> Any:
    """``value`` if it is null or a ``kind``; else Docker's own refusal of such a body, before we touch it."""
    if value is not None and not isinstance(value, kind):
        expected = "an object" if kind is dict else "a list"
        raise ConfigError(f"invalid create request: {what} must be {expected}, not {type(value).__name__}")
    return value


def _check_body(body: Mapping[str, Any]) -> dict[str, Any]:
    """The parts of a create body we read must have Docker's types (the engine would refuse it anyway)."""
    host = _typed(body.get("HostConfig"), dict, "HostConfig") or {}
    _typed(body.get("Env"), list, "Env")
    _typed(body.get("Labels"), dict, "Labels")
    for key in ("Binds", "Dns", "DnsSearch"):
        _typed(host.get(key), list, f"HostConfig.{key}")
    return host


def network_mode_attaches(mode: str) -> bool:
    return mode in ATTACHABLE_MODES


def should_attach(body: Mapping[str, Any], settings: ProxySettings) -> list[AddrSpec] | None:
    """The addresses to give a container created with ``body``, or None to leave it alone."""
    host = _check_body(body)
    if not network_mode_attaches(str(host.get("NetworkMode") or "")):
        return None
    return specs_from_env(body.get("Env"), settings.no_default_ipalloc)


def needs_image(body: Mapping[str, Any]) -> bool:
    """Whether the image's entrypoint/command must be looked up before the body can be rewritten."""
    return not _strslice(body.get("Entrypoint"))


def has_wait_entry(entrypoint: Sequence[str] | None) -> bool:
    return bool(entrypoint) and str(entrypoint[0]).startswith(WAIT_ENTRY)  # type: ignore[index]


def rewrite_create(
    body: Mapping[str, Any],
    name: str,
    settings: ProxySettings,
    image_config: Mapping[str, Any] | None = None,
) -> tuple[dict[str, Any], list[AddrSpec] | None]:
    """The body to send on, and the addresses (None: not a weave container; the body is then unchanged)."""
    specs = should_attach(body, settings)
    if specs is None:
        return dict(body), None
    out: dict[str, Any] = copy.deepcopy(dict(body))
    host: dict[str, Any] = dict(out.get("HostConfig") or {})
    out["HostConfig"] = host
    if settings.wait_dir:
        entry = _strslice(out.get("Entrypoint"))
        cmd = _strslice(out.get("Cmd"))
        if not entry:
            img = image_config or {}
            if not cmd:
                cmd = _strslice(img.get("Cmd"))
            if entry is None:
                entry = _strslice(img.get("Entrypoint"))
        entry = entry or []
        if not entry and not cmd:
            raise NoCommand("No command specified")
        if not has_wait_entry(entry):
            entry = [WAIT_ENTRY_NOMCAST if settings.no_multicast_route else WAIT_ENTRY, *entry]
        out["Entrypoint"] = entry
        out["Cmd"] = cmd
        binds = list(host.get("Binds") or [])
        bind = f"{settings.wait_dir}:{WAIT_MOUNT}:ro"
        if bind not in binds:
            binds.append(bind)
        host["Binds"] = binds
    if not settings.without_dns and settings.dns_ip:
        dns = list(host.get("Dns") or [])
        if settings.dns_ip not in dns:
            dns.append(settings.dns_ip)
        host["Dns"] = dns
        if not out.get("Hostname") and name:
            derived = derive_hostname(
                name,
                out.get("Labels") or {},
                settings.hostname_from_label,
                settings.hostname_match,
                settings.hostname_replacement,
            )
            pair = hostname_and_domain(derived, settings.dns_domain)
            if pair is not None:
                out["Hostname"], out["Domainname"] = pair
        if not host.get("DnsSearch"):
            host["DnsSearch"] = [settings.dns_domain] if not out.get("Hostname") else ["."]
    return out, specs


def is_weave_container(info: Mapping[str, Any]) -> bool:
    """From ``inspect``: was it created through the proxy for the weave network (wait program mounted at /w)?"""
    for m in info.get("Mounts") or []:
        if m.get("Destination") == WAIT_MOUNT:
            return True
    host = info.get("HostConfig") or {}
    return any(str(b).split(":")[1:2] == [WAIT_MOUNT] for b in host.get("Binds") or [])


def rewrite_inspect(info: dict[str, Any], mac: str, cidr: str) -> dict[str, Any]:
    """``--rewrite-inspect``: ``NetworkSettings`` shows the weave address instead of Docker's."""
    ip, _, plen = cidr.partition("/")
    ns = dict(info.get("NetworkSettings") or {})
    ns["IPAddress"], ns["IPPrefixLen"], ns["MacAddress"] = ip, int(plen or 0), mac
    out = dict(info)
    out["NetworkSettings"] = ns
    return out
