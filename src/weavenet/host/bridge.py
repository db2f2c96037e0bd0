"""The ``weave`` bridge: every container's veth and the router's TAP are ports of it (Weave's net/bridge.go).

Its MAC is the peer name (set after creation, as Weave does), its MTU the overlay MTU. IPv6 router adverts are
off, and the ARP cache settings are short so an address re-used by a new container is re-learned quickly.
"""

from __future__ import annotations

import json

from weavenet.config.model import DEFAULT_MTU
from weavenet.host.netns import ARP_SYSCTLS
from weavenet.host.run import ok, run, sysctl

BRIDGE = "weave"


def arp_sysctls(ifname: str, netns: str | None = None) -> None:
    for key, value in ARP_SYSCTLS:
        sysctl(f"net/ipv4/neigh/{ifname}/{key}", value, netns=netns, must=False)


def link_info(name: str, netns: str | None = None) -> dict | None:  # type: ignore[type-arg]
    """``ip -j -d link show`` of one link, or None if it does not exist."""
    if not ok(["ip", "link", "show", name], netns):
        return None
    data = json.loads(run(["ip", "-j", "-d", "addr", "show", name], netns) or "[]")
    return data[0] if data else None


def ensure_bridge(mac: str, mtu: int = DEFAULT_MTU, name: str = BRIDGE) -> bool:
    """Create (or fix up) the bridge: MAC, MTU, sysctls, up. Idempotent; True if it created the bridge (a launch
    that fails deletes it again, and only then: containers may hang on a bridge that was there)."""
    info = link_info(name)
    created = info is None
    if info is None:
        run(["ip", "link", "add", name, "type", "bridge"])
        info = link_info(name)
    elif info.get("linkinfo", {}).get("info_kind") != "bridge":
        from weavenet.errors import HostError

        raise HostError(f"{name} exists but is not a bridge; do 'weave reset' and try again")
    assert info is not None
    if info.get("address") != mac:
        run(["ip", "link", "set", name, "address", mac])
    if info.get("mtu") != mtu:
        run(["ip", "link", "set", name, "mtu", str(mtu)])
    # Multicast goes everywhere, as on Weave's own switch: with snooping, a group joined over the sleeve and one
    # joined over VXLAN would each be forwarded to one path only.
    run(["ip", "link", "set", name, "type", "bridge", "mcast_snooping", "0"])
    sysctl(f"net/ipv6/conf/{name}/accept_ra", "0", must=False)
    arp_sysctls(name)
    run(["ip", "link", "set", name, "up"])
    return created


def bridge_mtu(name: str = BRIDGE) -> int | None:
    info = link_info(name)
    return None if info is None else int(info["mtu"])


def weave_links() -> list[str]:
    """Links this host has for weave: the bridge, the router's TAP and container veths (``vethwe*``)."""
    names = [link["ifname"] for link in json.loads(run(["ip", "-j", "link", "show"]) or "[]")]
    return [n for n in names if n == BRIDGE or n.startswith("vethwe")]


def destroy_bridge(name: str = BRIDGE) -> None:
    """Delete the bridge and every ``vethwe*`` link (what ``weave reset`` removes from the host)."""
    for link in weave_links():
        if link != name:
            run(["ip", "link", "del", link], check=False)
    if ok(["ip", "link", "show", name]):
        run(["ip", "link", "del", name], check=False)
