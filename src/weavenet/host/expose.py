"""Exposing the weave network to the host (Weave's net/expose.go): an address on the bridge plus NAT.

With an address of a weave subnet on the ``weave`` bridge the host can reach containers in that subnet; the
MASQUERADE rules let containers reach the host's networks through it, and let other hosts' clients reach the
containers through this host. ``--without-masquerade`` leaves the NAT out.

Weave 2.8 put any IPv4 CIDR on the bridge: ``255.255.255.255/0`` added a rule forwarding everything into the
bridge, and loopback, multicast or the host's own network were taken as well. :func:`expose_refusal` says what
we refuse instead, and :func:`expose` is all or nothing: a step that fails undoes the steps before it.
"""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Iterable
from ipaddress import IPv4Interface, IPv4Network

from weavenet.errors import ConfigError, HostError
from weavenet.host.attach import parse_cidr
from weavenet.host.bridge import BRIDGE
from weavenet.host.iptables import Rule, append_unique, delete, exists, expose_rules
from weavenet.host.run import ok, run

# The shortest prefix that can be exposed: a /8 is the largest private network (10.0.0.0/8); anything shorter
# would route and masquerade a good part of the Internet through the bridge.
MIN_PREFIX = 8

# Addresses that never belong on a bridge, and why.
SPECIAL: tuple[tuple[IPv4Network, str], ...] = (
    (IPv4Network("0.0.0.0/8"), '"this network" addresses (0.0.0.0/8)'),
    (IPv4Network("127.0.0.0/8"), "loopback addresses (127.0.0.0/8)"),
    (IPv4Network("169.254.0.0/16"), "link-local addresses (169.254.0.0/16, where cloud metadata services live)"),
    (IPv4Network("224.0.0.0/4"), "multicast addresses (224.0.0.0/4)"),
    (IPv4Network("240.0.0.0/4"), "reserved addresses (240.0.0.0/4, with the broadcast address)"),
)


def expose_refusal(addr: IPv4Interface, host_addrs: Iterable[tuple[IPv4Interface, str]] = ()) -> str | None:
    """Why ``addr`` must not go on the bridge, in one line; None if it may.

    ``host_addrs`` are the host's addresses on its other interfaces: a subnet holding one of them would take over
    a network the host is on (its underlay, typically). A subnet that merely overlaps a host route is allowed
    (with Weave's warning, from the command): a range inside a larger host route may be deliberate.
    """
    net = addr.network
    if net.prefixlen < MIN_PREFIX:
        return f"cannot expose {addr}: prefix /{net.prefixlen} is too short (at most a /{MIN_PREFIX} can be exposed)"
    for special, what in SPECIAL:
        if net.overlaps(special):
            return f"cannot expose {addr}: {what} cannot be exposed"
    if net.prefixlen <= 30 and addr.ip in (net.network_address, net.broadcast_address):
        which = "network" if addr.ip == net.network_address else "broadcast"
        return f"cannot expose {addr}: {addr.ip} is the {which} address of {net}, not a host address"
    for own, dev in host_addrs:
        if own.ip in net:
            return (
                f"cannot expose {addr}: {net} holds the host's own address {own.ip} on {dev}; "
                f"exposing it would take over the host's network {own.network}"
            )
    return None


def check(cidr: str, bridge: str = BRIDGE) -> IPv4Interface:
    """Parse ``cidr`` and refuse it (ConfigError, one line) if it must not be exposed on this host."""
    from weavenet.host.netcheck import host_addresses

    try:
        addr = parse_cidr(cidr)
    except HostError as e:
        raise ConfigError(str(e)) from e
    reason = expose_refusal(addr, host_addresses(ignore=(bridge,)))
    if reason is not None:
        raise ConfigError(reason)
    return addr


def exposed(bridge: str = BRIDGE) -> list[str]:
    """The IPv4 CIDRs on the bridge."""
    data = json.loads(run(["ip", "-j", "-4", "addr", "show", bridge], check=False) or "[]")
    return [f"{a['local']}/{a['prefixlen']}" for entry in data for a in entry.get("addr_info", [])]


# The router runs exposes in threads, and two may want the same address at once (in Kubernetes mode the router's
# own expose at start and a CNI ADD exposing the pod's gateway): one at a time, or the second one's `ip addr add`
# fails with "Address already assigned" and its ADD with it.
_LOCK = threading.Lock()


def expose(cidr: str, bridge: str = BRIDGE, skip_nat: bool = False) -> IPv4Interface:
    """Check ``cidr`` (ConfigError), then put it on the bridge with its rules; a failure (HostError) undoes
    what this call added, so nothing is left half-exposed. Exposing an address already exposed is no error."""
    with _LOCK:
        return _expose(cidr, bridge, skip_nat)


def _expose(cidr: str, bridge: str, skip_nat: bool) -> IPv4Interface:
    addr = check(cidr, bridge)
    added_addr = False
    added: list[Rule] = []
    try:
        if str(addr) not in exposed(bridge):
            try:
                run(["ip", "addr", "add", str(addr), "dev", bridge])
                added_addr = True
            except HostError:
                if str(addr) not in exposed(bridge):  # not merely another process's add beating ours
                    raise
            time.sleep(0.001)
            ok(["arping", "-U", "-q", "-c", "1", "-I", bridge, str(addr.ip)])
        for rule in expose_rules(str(addr.network), skip_nat):
            if not exists(rule):
                append_unique(rule)
                added.append(rule)
    except HostError as e:
        for rule in reversed(added):
            delete(rule)
        if added_addr:
            run(["ip", "addr", "del", str(addr), "dev", bridge], check=False)
        raise HostError(f"cannot expose {addr}: {e}") from e
    return addr


def hide(cidr: str, bridge: str = BRIDGE) -> IPv4Interface:
    """Take ``cidr`` off the bridge, and its rules unless another address there still uses its subnet.

    Not checked: whatever an older version or a failed expose left must still be removable.
    """
    with _LOCK:
        return _hide(cidr, bridge)


def _hide(cidr: str, bridge: str) -> IPv4Interface:
    addr = parse_cidr(cidr)
    if str(addr) in exposed(bridge):
        run(["ip", "addr", "del", str(addr), "dev", bridge], check=False)
    if any(IPv4Interface(c).network == addr.network for c in exposed(bridge)):
        return addr
    for rule in expose_rules(str(addr.network)):
        delete(rule)
    return addr


def reexpose(bridge: str = BRIDGE) -> None:
    """Re-apply the rules of every address already on the bridge (after a restart or a firewall flush)."""
    for cidr in exposed(bridge):
        for rule in expose_rules(str(IPv4Interface(cidr).network)):
            append_unique(rule)
