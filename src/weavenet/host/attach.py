"""Attaching containers to the weave bridge (Weave's net/veth.go AttachContainer and weaveutil attach).

A container gets ``ethwe``, the inner end of a veth pair whose outer end ``vethwepl<id>`` is a port of the bridge
(hairpin on). Each address is added with a gratuitous ARP (so peers forget a previous owner's MAC at once) and an
iptables rule that accepts multicast only from the container's own subnets, the application isolation Weave
gives containers in different subnets; a last rule drops all other multicast. A ``224.0.0.0/4`` route makes
multicast leave through ``ethwe``. Any failure undoes what this call created, so nothing is left half-configured.

This is the one implementation, used by ``weave attach`` (in the CLI process, as Weave's weaveutil runs on the
host) and by the Docker proxy and event watcher (in the router, for every ``docker run``, which waits for it).
It works over netlink (pyroute2) in one pass, because the dozen ``nsenter ip ...`` processes (and an ``arping``
that lingers a second) it once ran cost over a second per container on a loaded 2-core machine. The veth pair is
created with its inner end directly in the container's namespace; the steps inside that namespace run in a
fresh thread that joined it with ``setns(2)`` (:func:`in_netns`), so its sysctl writes, netlink and packet
sockets are the container's, and its one child process (``iptables-restore``) starts inside it too. The thread
exits afterwards: no other code ever runs in the wrong namespace.

pyroute2 costs about 0.3 s to import, so only :func:`attach` imports it (the router does so at start): the
commands that merely read a container's addresses (:func:`container_addrs`: ``weave ps``, DNS, Docker lookups)
and :func:`detach` keep using ``ip`` and ``iptables`` and start fast. The namespace primitives (the ``setns``
thread, the gratuitous ARP, the isolation rules) are :mod:`weavenet.host.netns`, shared with the CNI plugin.
"""

from __future__ import annotations

import contextlib
import json
import os
import socket
from collections.abc import Callable
from dataclasses import dataclass
from ipaddress import IPv4Interface
from typing import TYPE_CHECKING

from weavenet.errors import HostError
from weavenet.host.bridge import BRIDGE, DEFAULT_MTU, arp_sysctls
from weavenet.host.netns import CONTAINER_GSO_MAX_SIZE, Completed, in_netns, ns_inode, own_netns_inode, run_tool
from weavenet.host.netns import accept_rule as _accept_rule
from weavenet.host.netns import drop_rule as _drop_rule
from weavenet.host.netns import gratuitous_arp as _gratuitous_arp
from weavenet.host.netns import isolation_rules as _iptables_rules
from weavenet.host.run import ok, run, sysctl

if TYPE_CHECKING:
    from pyroute2 import IPRoute

IFNAME = "ethwe"
RT_SCOPE_LINK = 253
RTPROT_BOOT = 3  # what ``ip route add`` marks its routes with (pyroute2 would say "static")
BRPORT_HAIRPIN = 1  # IFLA_BRPORT_MODE value: frames may leave by the port they came in (container to itself)
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


_ns_inode = ns_inode


def _refuse_own_netns(path: str) -> None:
    """A container sharing our namespace (``--net=host``) would get the bridge's own veth end: Weave refuses it.
    (The calling thread's namespace, which is the host's: the process's may differ when a caller runs us in a
    thread of its own, as the tests do.)"""
    if _ns_inode(path) == own_netns_inode():
        raise HostError(HOST_NETNS_MESSAGE)


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
    _refuse_own_netns(path)
    return ContainerRef(spec, path, short)


def pid_ref(ident: str, pid: int) -> ContainerRef:
    """The reference for a container known by its main process (the Docker integration's case)."""
    return ContainerRef(ident, f"/proc/{pid}/ns/net", str(pid)[:7])


def container_addrs(ref: ContainerRef, ifname: str = IFNAME) -> tuple[str, list[str]] | None:
    """(MAC, CIDRs) of the container's weave interface, or None if it has none (read with ``ip``: see above)."""
    if not ok(["ip", "link", "show", ifname], ref.netns):
        return None
    info = json.loads(run(["ip", "-j", "-4", "addr", "show", ifname], netns=ref.netns) or "[]")
    link = json.loads(run(["ip", "-j", "link", "show", ifname], netns=ref.netns) or "[]")
    mac = link[0]["address"] if link else ""
    cidrs = [f"{a['local']}/{a['prefixlen']}" for entry in info for a in entry.get("addr_info", [])]
    return mac, cidrs


# -- netlink and friends (run in the thread that is in the right namespace) ----------------------------------------


def _nl_message(e: Exception) -> str:
    code = getattr(e, "code", 0)
    return os.strerror(code) if isinstance(code, int) and code > 0 else str(e)


def _iptables(*args: str, input: str | None = None) -> Completed:
    """``iptables``/``iptables-restore`` (forked from the calling thread, so in its namespace)."""
    return run_tool(list(args), input=input)


def _index(ipr: IPRoute, ifname: str) -> int | None:
    found = ipr.link_lookup(ifname=ifname)
    return int(found[0]) if found else None


def _cidrs(ipr: IPRoute, index: int) -> list[str]:
    return [f"{m.get_attr('IFA_ADDRESS')}/{m['prefixlen']}" for m in ipr.get_addr(index=index, family=socket.AF_INET)]


def _current(ifname: str) -> list[str] | None:
    """The interface's addresses, or None if there is no such interface."""
    from pyroute2 import IPRoute

    with IPRoute() as ipr:
        index = _index(ipr, ifname)
        return None if index is None else _cidrs(ipr, index)


def _create_pair(ref: ContainerRef, bridge: str, mtu: int | None, ifname: str) -> str:
    """The veth pair, its inner end made straight in the container as ``ifname`` (no rename, no move; the
    caller is in the host's namespace). Returns the outer end's name; on failure nothing is left."""
    from pyroute2 import IPRoute
    from pyroute2.netlink.exceptions import NetlinkError

    host_end = f"vethwepl{ref.short}"
    with IPRoute() as ipr:
        br = _index(ipr, bridge)
        if br is None:
            raise HostError(f"bridge {bridge} does not exist: is weave launched?")
        size = mtu or ipr.get_links(br)[0].get_attr("IFLA_MTU") or DEFAULT_MTU
        with contextlib.suppress(NetlinkError):  # a leftover of an earlier attach of this id
            ipr.link("del", ifname=host_end)
        fd = os.open(ref.netns, os.O_RDONLY)
        try:
            ipr.link(
                "add",
                ifname=host_end,
                kind="veth",
                mtu=size,
                peer={"ifname": ifname, "net_ns_fd": fd, "mtu": size, "gso_max_size": CONTAINER_GSO_MAX_SIZE},
            )
        except NetlinkError as e:
            raise HostError(f"creating {host_end}: {_nl_message(e)}") from e
        finally:
            os.close(fd)
        try:
            index = _index(ipr, host_end)
            if index is None:
                raise HostError(f"{host_end} vanished as it was created")
            sysctl(f"net/ipv6/conf/{host_end}/accept_ra", "0", must=False)
            ipr.link("set", index=index, master=br)
            with contextlib.suppress(NetlinkError):  # an old kernel without hairpin mode: still usable
                ipr.brport("set", index=index, mode=BRPORT_HAIRPIN)
            ipr.link("set", index=index, state="up")
        except NetlinkError as e:
            with contextlib.suppress(NetlinkError):
                ipr.link("del", ifname=host_end)
            raise HostError(f"putting {host_end} on {bridge}: {_nl_message(e)}") from e
        except BaseException:
            with contextlib.suppress(NetlinkError):
                ipr.link("del", ifname=host_end)
            raise
    return host_end


def _configure(
    addrs: list[IPv4Interface], have: list[str], new_link: bool, multicast_route: bool, ifname: str
) -> list[str]:
    """The steps inside the container (the calling thread is in its namespace); undone on failure."""
    from pyroute2 import IPRoute
    from pyroute2.netlink.exceptions import NetlinkError

    with IPRoute() as ipr:
        index = _index(ipr, ifname)
        if index is None:
            raise HostError(f"{ifname} did not appear in the container")
        if new_link:
            sysctl(f"net/ipv6/conf/{ifname}/accept_ra", "0", must=False)
            arp_sysctls(ifname)  # in this thread's namespace: the container's
        # An address it has is not added again, whatever prefix length it is asked with now (Weave compares
        # addresses without their masks too): a restarted container asks IPAM for its address back.
        have_ips = {c.split("/")[0] for c in have}
        wanted: list[IPv4Interface] = []
        for a in addrs:
            if str(a.ip) not in have_ips:
                have_ips.add(str(a.ip))
                wanted.append(a)
        present = {str(IPv4Interface(c).network) for c in have}
        subnets = sorted({str(a.network) for a in wanted} - present)  # one ACCEPT rule per subnet
        added: list[IPv4Interface] = []
        rules = False
        try:
            for a in wanted:
                try:
                    ipr.addr("add", index=index, address=str(a.ip), prefixlen=a.network.prefixlen)
                except NetlinkError as e:
                    raise HostError(f"adding {a} to {ifname}: {_nl_message(e)}") from e
                added.append(a)
            if subnets or new_link:
                res = _iptables("iptables-restore", "-w", "--noflush", input=_iptables_rules(subnets, new_link, ifname))
                if res.returncode != 0:
                    raise HostError(f"iptables-restore in the container: {res.stderr.strip()}")
                rules = True
            ipr.link("set", index=index, state="up")
            mac = bytes.fromhex(ipr.get_links(index)[0].get_attr("IFLA_ADDRESS").replace(":", ""))
            for a in added:
                with contextlib.suppress(OSError):
                    _gratuitous_arp(ifname, mac, a.ip.packed)
            if multicast_route and not ipr.route("dump", dst="224.0.0.0", dst_len=4, oif=index):
                with contextlib.suppress(NetlinkError):  # an equal route under other attributes: not worth failing
                    ipr.route("add", dst="224.0.0.0", dst_len=4, oif=index, scope=RT_SCOPE_LINK, proto=RTPROT_BOOT)
            return _cidrs(ipr, index)
        except BaseException:
            if rules:
                undo = _iptables_rules(subnets, new_link, ifname, undo=True)
                with contextlib.suppress(HostError):
                    _iptables("iptables-restore", "-w", "--noflush", input=undo)
            for a in added:
                with contextlib.suppress(NetlinkError):
                    ipr.addr("del", index=index, address=str(a.ip), prefixlen=a.network.prefixlen)
            raise


def attach(
    ref: ContainerRef,
    cidrs: list[str],
    bridge: str = BRIDGE,
    mtu: int | None = None,
    multicast_route: bool = True,
    ifname: str = IFNAME,
) -> list[str]:
    """Give the container ``ethwe`` on the bridge with these addresses; returns all CIDRs it now has.

    An interface the container already has is kept (more addresses for it, as ``weave attach`` twice does); a
    new one takes the bridge's MTU unless ``mtu`` is given.
    """
    from pyroute2 import IPRoute
    from pyroute2.netlink.exceptions import NetlinkError

    addrs = [parse_cidr(c) for c in cidrs]
    _refuse_own_netns(ref.netns)
    have = in_netns(ref.netns, lambda: _current(ifname))
    host_end = None
    if have is None:
        host_end = _create_pair(ref, bridge, mtu, ifname)
    else:
        with IPRoute() as ipr:
            if _index(ipr, bridge) is None:
                raise HostError(f"bridge {bridge} does not exist: is weave launched?")
    try:
        return in_netns(ref.netns, lambda: _configure(addrs, have or [], host_end is not None, multicast_route, ifname))
    except BaseException:
        if host_end is not None:  # deleting the outer end deletes ethwe too, with its addresses
            with IPRoute() as ipr, contextlib.suppress(NetlinkError):
                ipr.link("del", ifname=host_end)
        raise


def _delete_all(rule: list[str], netns: str) -> None:
    """Every copy of ``rule`` (an older attach may have left duplicates)."""
    while ok(["iptables", "-w", "-D", *rule], netns):
        pass


def detach(ref: ContainerRef, cidrs: list[str] | None = None, ifname: str = IFNAME) -> list[str]:
    """Remove these (or all) addresses; with none left, remove ``ethwe``. Returns the CIDRs removed.

    With ``ip`` and ``iptables`` processes, not netlink: only ``weave detach`` (the CLI) calls it, and its few
    commands (about 0.1 s) cost less than importing pyroute2 there (about 0.3 s).
    """
    current = container_addrs(ref, ifname)
    if current is None:
        return []
    have = current[1]
    wanted = have if cidrs is None else [str(parse_cidr(c)) for c in cidrs]
    removed = [c for c in wanted if c in have]
    for cidr in removed:
        run(["ip", "addr", "del", cidr, "dev", ifname], netns=ref.netns, check=False)
    left = [c for c in have if c not in removed]
    left_subnets = {str(IPv4Interface(c).network) for c in left}
    for subnet in dict.fromkeys(str(IPv4Interface(c).network) for c in removed):
        if subnet not in left_subnets:
            _delete_all(_accept_rule(subnet, ifname), ref.netns)
    if not left:
        _delete_all(_drop_rule(ifname), ref.netns)
        run(["ip", "link", "del", ifname], netns=ref.netns, check=False)  # the bridge's port goes with it
    return removed


def announce(ref: ContainerRef, ifname: str = IFNAME) -> int:
    """Gratuitous ARPs for the container's addresses on its weave interface, sent from inside it, as at attach.

    Containers elsewhere that kept sending to this one while the path was down hold its address as unresolved
    and retry ARP only once a second; the announcement resolves it at once. Returns how many were sent.
    """
    got = container_addrs(ref, ifname)
    if got is None or not got[0]:
        return 0
    mac = bytes.fromhex(got[0].replace(":", ""))
    ips = [IPv4Interface(c).ip.packed for c in got[1]]

    def send() -> int:
        for ip in ips:
            _gratuitous_arp(ifname, mac, ip)
        return len(ips)

    return in_netns(ref.netns, send)
