"""Exposing the weave network to the host (Weave's net/expose.go): an address on the bridge plus NAT.

With an address of a weave subnet on the ``weave`` bridge the host can reach containers in that subnet; the
MASQUERADE rules let containers reach the host's networks through it, and let other hosts' clients reach the
containers through this host. ``--without-masquerade`` leaves the NAT out.
"""

from __future__ import annotations

import json
import time
from ipaddress import IPv4Interface

from weavenet.host.attach import parse_cidr
from weavenet.host.bridge import BRIDGE
from weavenet.host.iptables import append_unique, delete, expose_rules
from weavenet.host.run import ok, run


def exposed(bridge: str = BRIDGE) -> list[str]:
    """The IPv4 CIDRs on the bridge."""
    data = json.loads(run(["ip", "-j", "-4", "addr", "show", bridge], check=False) or "[]")
    return [f"{a['local']}/{a['prefixlen']}" for entry in data for a in entry.get("addr_info", [])]


def expose(cidr: str, bridge: str = BRIDGE, skip_nat: bool = False) -> IPv4Interface:
    addr = parse_cidr(cidr)
    if str(addr) not in exposed(bridge):
        run(["ip", "addr", "add", str(addr), "dev", bridge])
        time.sleep(0.001)
        ok(["arping", "-U", "-q", "-c", "1", "-I", bridge, str(addr.ip)])
    for rule in expose_rules(str(addr.network), skip_nat):
        append_unique(rule)
    return addr


def hide(cidr: str, bridge: str = BRIDGE) -> IPv4Interface:
    addr = parse_cidr(cidr)
    for rule in expose_rules(str(addr.network)):
        delete(rule)
    if str(addr) in exposed(bridge):
        run(["ip", "addr", "del", str(addr), "dev", bridge], check=False)
    return addr


def reexpose(bridge: str = BRIDGE) -> None:
    """Re-apply the rules of every address already on the bridge (after a restart or a firewall flush)."""
    for cidr in exposed(bridge):
        for rule in expose_rules(str(IPv4Interface(cidr).network)):
            append_unique(rule)
