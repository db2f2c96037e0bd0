"""Does an address range collide with the host's routes? (Weave's ``weaveutil netcheck``, ``net/route.go``.)

A network is free if no route of the host overlaps it (the default route does not count, nor routes through the
weave bridge itself); for a single address only a route *containing* it matters, since traffic between weave
containers never reaches IP routing. Read with ``ip -j route``, like the rest of ``weavenet.host``.
"""

from __future__ import annotations

import json
from ipaddress import IPv4Interface, IPv4Network

from weavenet.errors import HostError
from weavenet.host.bridge import BRIDGE
from weavenet.host.run import run


def _routes(ignore: tuple[str, ...]) -> list[IPv4Network]:
    try:
        data = json.loads(run(["ip", "-j", "-4", "route", "show"], check=False) or "[]")
    except (HostError, ValueError):
        return []
    out = []
    for r in data:
        dst = r.get("dst", "")
        if not dst or dst == "default" or r.get("dev") in ignore:
            continue
        try:
            out.append(IPv4Network(dst if "/" in dst else f"{dst}/32", strict=False))
        except ValueError:
            continue
    return out


def network_overlap(cidr: str, ignore: tuple[str, ...] = (BRIDGE,)) -> str | None:
    """Weave's message if ``cidr`` (a network) overlaps a host route, else None."""
    net = IPv4Network(cidr, strict=False)
    for route in _routes(ignore):
        if route.overlaps(net):
            return f"Network {net} overlaps with existing route {route} on host"
    return None


def address_overlap(cidr: str, ignore: tuple[str, ...] = (BRIDGE,)) -> str | None:
    """Weave's message if the address of ``cidr`` lies inside a host route, else None."""
    ip = IPv4Interface(cidr).ip
    for route in _routes(ignore):
        if ip in route:
            return f"Address {ip} overlaps with existing route {route} on host"
    return None


def host_addresses(ignore: tuple[str, ...] = (BRIDGE,)) -> list[tuple[IPv4Interface, str]]:
    """The host's IPv4 addresses with a network (not /32), and their devices, except on ``ignore``."""
    try:
        data = json.loads(run(["ip", "-j", "-4", "addr", "show"], check=False) or "[]")
    except (HostError, ValueError):
        return []
    out = []
    for link in data:
        dev = link.get("ifname", "")
        if dev in ignore:
            continue
        for a in link.get("addr_info", []):
            try:
                addr = IPv4Interface(f"{a['local']}/{a['prefixlen']}")
            except (KeyError, ValueError):
                continue
            if addr.network.prefixlen < 32:
                out.append((addr, dev))
    return out
