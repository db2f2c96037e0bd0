"""Attaching containers to the weave bridge (Weave's net/veth.go AttachContainer and weaveutil attach).

A container gets ``ethwe``, the inner end of a veth pair whose outer end ``vethwepl<id>`` is a port of the bridge
(hairpin on). Each address is added with a gratuitous ARP (so peers forget a previous owner's MAC at once) and an
iptables rule that accepts multicast only from the container's own subnets, the application isolation Weave
gives containers in different subnets; a last rule drops all other multicast. A ``224.0.0.0/4`` route makes
multicast leave through ``ethwe``. Any failure undoes what this call created, so nothing is left half-configured.
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import os
import time
from collections.abc import Callable
from dataclasses import dataclass
from ipaddress import IPv4Interface

from weavenet.errors import HostError
from weavenet.host.bridge import BRIDGE, arp_sysctls, bridge_mtu
from weavenet.host.run import ok, run, sysctl

IFNAME = "ethwe"
# A container's TCP builds super-frames no larger than its interface's gso_max_size. Capped so that one (with the
# fast sleeve's 22 bytes of headers and a MAC) fits the 44 chunks a single UDP GSO send carries on a 1500-byte
# underlay (65487 // 1472 datagrams with 1452 bytes of room each): one sendmsg and one GRO receive per
# super-frame instead of two. The kernel's own VXLAN path is indifferent to the cap.
CONTAINER_GSO_MAX_SIZE = 63488
NS_GET_NSTYPE = 0xB703  # ioctl on a namespace file: which kind of namespace it is
CLONE_NEWNET = 0x40000000
MULTICAST = "224.0.0.0/4"
HOST_NETNS_MESSAGE = (
    "Container is running in the host network namespace, and therefore cannot be connected to weave - perhaps "
    "the container was started with --net=host"
)


@dataclass(frozen=True, slots=True)
class ContainerRef:
    id: str  # what the user named: container id, PID or namespace path
    netns: str  # path to its network namespace
    short: str  # ≤ 7 characters naming its veth pair


def parse_cidr(text: str) -> IPv4Interface:
    """``[ip:]a.b.c.d/n`` as an interface address; one clear error otherwise."""
    raw = text.removeprefix("ip:")
    if "/" not in raw:
        raise HostError(f"invalid address {text!r}: expected <ip>/<prefix length>")
    try:
        return IPv4Interface(raw)
    except ValueError as e:
        raise HostError(f"invalid address {text!r}: {e}") from e


def _ns_inode(path: str) -> int:
    """The namespace's inode, checking that ``path`` really is a network namespace."""
    try:
        fd = os.open(path, os.O_RDONLY)
    except FileNotFoundError as e:
        raise HostError(f"{path}: no such file") from e
    except PermissionError as e:
        raise HostError(f"{path}: permission denied") from e
    try:
        try:
            kind = fcntl.ioctl(fd, NS_GET_NSTYPE)
        except OSError:
            kind = 0
        st = os.fstat(fd)
    finally:
        os.close(fd)
    if kind != CLONE_NEWNET:
        raise HostError(f"{path} is not a network namespace")
    return st.st_ino


def resolve_container(spec: str, docker_lookup: Callable[[str], tuple[str, int]] | None = None) -> ContainerRef:
    """A PID, a network-namespace path, or (with ``docker_lookup``) a Docker container id or name."""
    if spec.isdigit():
        pid = int(spec)
        if not os.path.exists(f"/proc/{pid}"):
            raise HostError(f"no process with PID {pid}")
        path = f"/proc/{pid}/ns/net"
        short = spec[:7]
    elif spec.startswith("/"):
        path = spec
        short = f"{_ns_inode(spec):x}"[-7:]
    elif docker_lookup is not None:
        cid, pid = docker_lookup(spec)
        if not pid:
            raise HostError(f"container {spec} is not running")
        path = f"/proc/{pid}/ns/net"
        short = str(pid)[:7]
        spec = cid
    else:
        raise HostError(f"{spec}: not a PID or a network namespace path (and no Docker engine to look it up)")
    if _ns_inode(path) == os.stat("/proc/self/ns/net").st_ino:
        raise HostError(HOST_NETNS_MESSAGE)
    return ContainerRef(spec, path, short)


def _inside(ref: ContainerRef, *argv: str, check: bool = True) -> str:
    return run(list(argv), netns=ref.netns, check=check)


def container_addrs(ref: ContainerRef, ifname: str = IFNAME) -> tuple[str, list[str]] | None:
    """(MAC, CIDRs) of the container's weave interface, or None if it has none."""
    if not ok(["ip", "link", "show", ifname], ref.netns):
        return None
    info = json.loads(_inside(ref, "ip", "-j", "-4", "addr", "show", ifname) or "[]")
    link = json.loads(_inside(ref, "ip", "-j", "link", "show", ifname) or "[]")
    mac = link[0]["address"] if link else ""
    cidrs = [f"{a['local']}/{a['prefixlen']}" for entry in info for a in entry.get("addr_info", [])]
    return mac, cidrs


def _accept_rule(subnet: str, ifname: str) -> list[str]:
    return ["INPUT", "-i", ifname, "-s", subnet, "-d", MULTICAST, "-j", "ACCEPT"]


def attach(
    ref: ContainerRef,
    cidrs: list[str],
    bridge: str = BRIDGE,
    mtu: int | None = None,
    multicast_route: bool = True,
    ifname: str = IFNAME,
) -> list[str]:
    """Give the container ``ethwe`` on the bridge with these addresses; returns all CIDRs it now has."""
    addrs = [parse_cidr(c) for c in cidrs]
    if not ok(["ip", "link", "show", bridge]):
        raise HostError(f"bridge {bridge} does not exist: is weave launched?")
    created_link = None
    added: list[IPv4Interface] = []
    try:
        if not ok(["ip", "link", "show", ifname], ref.netns):
            created_link = _create_interface(ref, bridge, mtu or bridge_mtu(bridge) or 1376, ifname)
        present = set((container_addrs(ref, ifname) or ("", []))[1])
        for addr in addrs:
            if str(addr) in present:
                continue
            _inside(ref, "ip", "addr", "add", str(addr), "dev", ifname)
            added.append(addr)
            rule = _accept_rule(str(addr.network), ifname)
            if not ok(["iptables", "-w", "-C", *rule], ref.netns):
                _inside(ref, "iptables", "-w", "-I", *rule[:1], "1", *rule[1:])
        _inside(ref, "ip", "link", "set", ifname, "up")
        for addr in added:
            time.sleep(0.001)
            _inside(ref, "arping", "-U", "-q", "-c", "1", "-I", ifname, str(addr.ip), check=False)
        if multicast_route and not _has_route(ref, MULTICAST, ifname):
            _inside(ref, "ip", "route", "add", MULTICAST, "dev", ifname, "scope", "link", check=False)
    except BaseException:
        for addr in added:
            _inside(ref, "ip", "addr", "del", str(addr), "dev", ifname, check=False)
        if created_link is not None:
            run(["ip", "link", "del", created_link], check=False)
        raise
    return (container_addrs(ref, ifname) or ("", []))[1]


def _create_interface(ref: ContainerRef, bridge: str, mtu: int, ifname: str) -> str:
    host_end, peer_end = f"vethwepl{ref.short}", f"vethwepg{ref.short}"
    size = ["mtu", str(mtu), "gso_max_size", str(CONTAINER_GSO_MAX_SIZE)]
    run(["ip", "link", "add", host_end, *size, "type", "veth", "peer", "name", peer_end, *size])
    try:
        run(["ip", "link", "set", host_end, "master", bridge])
        run(["ip", "link", "set", "dev", host_end, "type", "bridge_slave", "hairpin", "on"], check=False)
        for end in (host_end, peer_end):
            sysctl(f"net/ipv6/conf/{end}/accept_ra", "0", must=False)
        run(["ip", "link", "set", peer_end, "netns", ref.netns])
        _inside(ref, "ip", "link", "set", peer_end, "name", ifname)
        sysctl(f"net/ipv6/conf/{ifname}/accept_ra", "0", netns=ref.netns, must=False)
        arp_sysctls(ifname, netns=ref.netns)
        drop = ["INPUT", "-i", ifname, "-d", MULTICAST, "-j", "DROP"]
        if not ok(["iptables", "-w", "-C", *drop], ref.netns):
            _inside(ref, "iptables", "-w", "-A", *drop)
        run(["ip", "link", "set", host_end, "up"])
    except BaseException:
        run(["ip", "link", "del", host_end], check=False)
        with contextlib.suppress(HostError):
            _inside(ref, "ip", "link", "del", ifname, check=False)
        raise
    return host_end


def _has_route(ref: ContainerRef, dst: str, ifname: str) -> bool:
    return dst.split("/")[0] in _inside(ref, "ip", "route", "show", "dev", ifname, check=False)


def detach(ref: ContainerRef, cidrs: list[str] | None = None, ifname: str = IFNAME) -> list[str]:
    """Remove these (or all) addresses; with none left, remove ``ethwe``. Returns the CIDRs removed."""
    current = container_addrs(ref, ifname)
    if current is None:
        return []
    have = current[1]
    wanted = have if cidrs is None else [str(parse_cidr(c)) for c in cidrs]
    removed = [c for c in wanted if c in have]
    for cidr in removed:
        _inside(ref, "ip", "addr", "del", cidr, "dev", ifname, check=False)
    left = [c for c in have if c not in removed]
    left_subnets = {str(IPv4Interface(c).network) for c in left}
    for cidr in removed:
        subnet = str(IPv4Interface(cidr).network)
        if subnet not in left_subnets:
            rule = _accept_rule(subnet, ifname)
            while ok(["iptables", "-w", "-D", *rule], ref.netns):
                pass
    if not left:
        while ok(["iptables", "-w", "-D", "INPUT", "-i", ifname, "-d", MULTICAST, "-j", "DROP"], ref.netns):
            pass
        _inside(ref, "ip", "link", "del", ifname, check=False)
    return removed
