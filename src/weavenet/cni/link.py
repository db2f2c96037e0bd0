"""A pod's link to the weave bridge: what Weave's ``AttachContainer`` gives a CNI pod, and its removal.

The pod gets the runtime's interface name (``eth0`` under Kubernetes), the inner end of a veth pair whose outer end
``vethwepl<id>`` is a port of the bridge (hairpin mode as configured), Weave's interface settings and multicast
isolation (:mod:`weavenet.host.netns`, shared with ``weave attach``), its address with a gratuitous ARP, and its
routes. Unlike ``weave attach`` there is no multicast route and the runtime's name is used, as in Weave.

Every step is an ``ip -batch`` (one process for the host's side, one inside the pod) rather than pyroute2, whose
import alone costs a plugin execution 0.3-0.5 s on this kind of machine against about 10 ms per ``ip``; the
bridge's MTU and addresses are read with an ioctl and one netlink dump. Any failure removes the pair (which takes
the pod's end with it) and the pod's rules, so nothing is left half-made.
"""

from __future__ import annotations

import _socket
import fcntl
import os
import struct
import time

from weavenet.cni import jsonc
from weavenet.cni.spec import fmt_cidr, fmt_ip
from weavenet.errors import HostError
from weavenet.host.netns import (
    gratuitous_arp,
    hw_address,
    in_netns,
    interface_sysctls,
    isolation_rules,
    run_tool,
    write_sysctl,
)

TYPE_CHECKING = False
if TYPE_CHECKING:
    from weavenet.cni.spec import Route

VETH_PREFIX = "vethwepl"  # the host's end; Weave's prefix, which `weave reset` removes
ID_CHARS = 15 - len(VETH_PREFIX)  # IFNAMSIZ - 1
GSO_MAX_SIZE = 63488  # as weave attach: one super-frame fits one UDP GSO send of the fast sleeve
SIOCGIFMTU = 0x8921
RTM_NEWADDR, RTM_GETADDR, NLMSG_ERROR, NLMSG_DONE = 20, 22, 2, 3
NLM_F_REQUEST, NLM_F_DUMP = 0x1, 0x300
IFA_ADDRESS, IFA_LOCAL = 1, 2
FAILED = "Command failed -:"  # how ``ip -batch`` names the line that failed


def host_end(container_id: str) -> str:
    """``vethwepl`` and the container ID's first 7 characters; 10 random hex digits (cut to 7) for an ID shorter
    than 5, as Weave's plugin."""
    ident = container_id if len(container_id) >= 5 else os.urandom(5).hex()
    return VETH_PREFIX + ident[:ID_CHARS]


def mac_text(raw: bytes) -> str:
    return ":".join(f"{b:02x}" for b in raw)


# -- reading the bridge (in the calling thread's namespace: the host's) ---------------------------------------------


def bridge_mtu(bridge: str) -> int:
    """The bridge's MTU; HostError if there is no such interface."""
    s = _socket.socket(_socket.AF_INET, _socket.SOCK_DGRAM)
    try:
        res = fcntl.ioctl(s.fileno(), SIOCGIFMTU, struct.pack("16si", bridge.encode(), 0))
    except OSError as e:
        raise HostError(f'bridge "{bridge}" not present; did you launch weave?') from e
    finally:
        s.close()
    return int(struct.unpack_from("i", res, 16)[0])


def ipv4_addresses(ifname: str) -> list[int]:
    """The interface's IPv4 addresses (an ``RTM_GETADDR`` dump), in the order the kernel lists them."""
    try:
        index = _socket.if_nametoindex(ifname)
    except OSError as e:
        raise HostError(f'bridge "{ifname}" not present; did you launch weave?') from e
    s = _socket.socket(_socket.AF_NETLINK, _socket.SOCK_RAW, 0)
    try:
        return _dump_addresses(s, index)
    finally:
        s.close()


def _dump_addresses(s: _socket.socket, index: int) -> list[int]:
    """The IPv4 addresses of interface ``index`` from an ``RTM_GETADDR`` dump on netlink socket ``s``."""
    out: list[int] = []
    s.settimeout(5)
    header = struct.pack("=IHHII", 24, RTM_GETADDR, NLM_F_REQUEST | NLM_F_DUMP, 1, 0)
    s.send(header + struct.pack("=BBBBI", _socket.AF_INET, 0, 0, 0, 0))
    while True:
        data = s.recv(65536)
        off = 0
        while off + 16 <= len(data):
            length, kind = struct.unpack_from("=IH", data, off)
            if kind == NLMSG_DONE:
                return out
            if kind == NLMSG_ERROR:
                err = -struct.unpack_from("=i", data, off + 16)[0]
                raise HostError(f"listing addresses: {os.strerror(err)}")
            if kind == RTM_NEWADDR and struct.unpack_from("=I", data, off + 20)[0] == index:
                found = _address(data, off + 24, off + length)
                if found is not None:
                    out.append(found)
            if length < 16:
                break
            off += (length + 3) & ~3


def _address(data: bytes, start: int, end: int) -> int | None:
    """``IFA_LOCAL`` (else ``IFA_ADDRESS``) among the attributes of one ``RTM_NEWADDR`` message."""
    local = address = None
    while start + 4 <= end:
        alen, atype = struct.unpack_from("=HH", data, start)
        if alen < 4:
            break
        if atype in (IFA_LOCAL, IFA_ADDRESS) and alen == 8:
            value = struct.unpack_from("!I", data, start + 4)[0]
            if atype == IFA_LOCAL:
                local = value
            else:
                address = value
        start += (alen + 3) & ~3
    return local if local is not None else address


def exists_in(netns: str, ifname: str) -> bool:
    """Whether the namespace has an interface of that name."""

    return in_netns(netns, lambda: exists_on_host(ifname))


# -- making and removing the pod's link ----------------------------------------------------------------------------


class PodLink:
    __slots__ = ("bridge", "hairpin", "host_end", "ifname", "mtu", "netns")

    def __init__(self, netns: str, ifname: str, host_end: str, bridge: str, mtu: int, hairpin: bool) -> None:
        self.netns, self.ifname, self.host_end, self.bridge, self.mtu, self.hairpin = (
            netns, ifname, host_end, bridge, mtu, hairpin
        )  # fmt: skip


def _batch(commands: list[str]) -> tuple[int, str]:
    """``ip -batch`` in the calling thread's namespace: (0, "") or (the failed line, its error)."""
    res = run_tool(["ip", "-b", "-"], input="\n".join(commands) + "\n")
    if res.returncode == 0:
        return 0, ""
    line, lines = len(commands), []
    for text in res.stderr.strip().splitlines():
        if text.startswith(FAILED) and text[len(FAILED) :].isdigit():
            line = int(text[len(FAILED) :])
        elif text.strip():
            lines.append(text.strip().removeprefix("RTNETLINK answers: "))
    return line, "; ".join(lines) or f"exit status {res.returncode}"


def _del_host_end(name: str) -> None:
    try:
        run_tool(["ip", "link", "del", name])
    except HostError:
        pass


def create(link: PodLink) -> str:
    """The veth pair, its pod end made straight in the pod's namespace as ``ifname``, its host end on the bridge
    and up. Returns the host end's MAC. A host end of that name already there (another pod whose ID begins with
    the same 7 characters) is an error, never deleted."""
    h = link.host_end
    commands = [
        f"link add {h} mtu {link.mtu} gso_max_size {GSO_MAX_SIZE} type veth peer name {link.ifname} mtu {link.mtu} "
        f"gso_max_size {GSO_MAX_SIZE} netns {link.netns}",
        f"link set {h} master {link.bridge}",
        f"link set {h} type bridge_slave hairpin {'on' if link.hairpin else 'off'}",
        f"link set {h} up",
    ]
    line, reason = _batch(commands)
    if line == 1:
        raise HostError(f"could not create veth pair {h}-{link.ifname}: {reason}")
    if line:
        _del_host_end(h)
        raise HostError(f"attaching {h} to {link.bridge}: {reason}")
    write_sysctl(f"net/ipv6/conf/{h}/accept_ra", "0", must=False)
    try:
        return mac_text(hw_address(h))
    except HostError:
        _del_host_end(h)
        raise


ANNOUNCE_AT = (0.002, 0.1, 0.5)  # seconds after the link came up


def announce(ifname: str, mac: bytes, ip: int) -> None:
    """Gratuitous ARPs for the pod's new address, so that other hosts forget a previous owner's MAC at once, sent
    by a child process forked in the pod's namespace (the calling thread's) that the plugin does not wait for.

    The bridge forwards the pod's frames only once it has seen the link's carrier (the kernel tells it
    asynchronously), so the ARP has to wait a little (Weave waited 1 ms); and closing the packet socket costs
    5-15 ms (its ``synchronize_net()``). Neither is the runtime's to wait for: the child has no descriptor of the
    runtime's (it would wait for their end) and sends its ARPs at a few moments, in case the first is early."""
    pid = os.fork()
    if pid:
        return
    try:  # the child: only this thread exists here, in the pod's namespace
        null = os.open(os.devnull, os.O_RDWR)
        for fd in (0, 1, 2):
            os.dup2(null, fd)
        start = time.monotonic()
        for at in ANNOUNCE_AT:
            time.sleep(max(0.0, start + at - time.monotonic()))
            gratuitous_arp(ifname, mac, struct.pack("!I", ip))
    except BaseException:
        pass
    os._exit(0)


def route_commands(ifname: str, link_routes: list[int], routes: list[Route]) -> list[str]:
    cmds = [f"route add {fmt_ip(gw)}/32 dev {ifname} scope link" for gw in link_routes]
    for r in routes:
        via = f" via {fmt_ip(r.gw)}" if r.gw is not None else ""
        cmds.append(f"route add {fmt_cidr(*r.dst)}{via} dev {ifname}")
    return cmds


def configure(link: PodLink, address: tuple[int, int], link_routes: list[int], routes: list[Route]) -> str:
    """Inside the pod: Weave's interface settings and multicast isolation, the address, the link up, the routes,
    and the address announced (:func:`announce`). Returns the pod end's MAC; on failure the pair is removed."""
    ifname = link.ifname
    subnet = fmt_cidr(address[0] & ((0xFFFFFFFF << (32 - address[1])) & 0xFFFFFFFF), address[1])

    def inside() -> str:
        interface_sysctls(ifname)
        rules = isolation_rules([subnet], new_link=True, ifname=ifname)
        res = run_tool(["iptables-restore", "-w", "--noflush"], input=rules)
        if res.returncode != 0:
            raise HostError(f"iptables-restore in the pod: {res.stderr.strip()}")
        try:
            commands = [f"addr add {fmt_cidr(*address)} dev {ifname}", f"link set {ifname} up"]
            line, reason = _batch([*commands, *route_commands(ifname, link_routes, routes)])
            if line:
                raise HostError(f"setting up {ifname}: {reason}")
            mac = hw_address(ifname)
            announce(ifname, mac, address[0])
            return mac_text(mac)
        except BaseException:
            try:
                run_tool(["iptables-restore", "-w", "--noflush"], input=isolation_rules([subnet], True, ifname, True))
            except HostError:
                pass
            raise

    try:
        return in_netns(link.netns, inside)
    except BaseException:
        _del_host_end(link.host_end)
        raise


def delete(netns: str, ifname: str) -> bool:
    """Remove the pod's interface (the pair goes with it); False if it has none."""

    def inside() -> bool:
        if not exists_on_host(ifname):
            return False
        res = run_tool(["ip", "link", "del", ifname])
        if res.returncode != 0 and "Cannot find device" not in res.stderr:
            raise HostError(f"removing {ifname}: {res.stderr.strip()}")
        return True

    return in_netns(netns, inside)


def exists_on_host(name: str) -> bool:
    """Whether the calling thread's namespace (the host's) has an interface of that name."""
    try:
        _socket.if_nametoindex(name)
    except OSError:
        return False
    return True


def remove_host_end(name: str) -> bool:
    """Remove a host end left by a pod whose namespace is gone (GC); False if there was none."""
    if not exists_on_host(name):
        return False
    _del_host_end(name)
    return True


class PodState:
    """What the pod's interface has now (for CHECK): routes as (destination as ``ip`` prints it, gateway)."""

    __slots__ = ("addresses", "routes", "up")

    def __init__(self, up: bool, addresses: list[tuple[int, int]], routes: list[tuple[str, str | None]]) -> None:
        self.up, self.addresses, self.routes = up, addresses, routes


def inspect(netns: str, ifname: str) -> PodState | None:
    """The pod interface's state, or None if there is none."""

    def inside() -> PodState | None:
        res = run_tool(["ip", "-j", "-4", "addr", "show", "dev", ifname])
        if res.returncode != 0:
            return None
        info = jsonc.loads(res.stdout or "[]")
        if not info:
            return None
        flags = info[0].get("flags", [])
        addrs = []
        for a in info[0].get("addr_info", []):
            try:
                addrs.append((struct.unpack("!I", _socket.inet_aton(a["local"]))[0], int(a["prefixlen"])))
            except (OSError, KeyError, ValueError):
                continue
        res = run_tool(["ip", "-j", "-4", "route", "show", "dev", ifname])
        listed = jsonc.loads(res.stdout or "[]") if res.returncode == 0 else []
        routes = [(r.get("dst", ""), r.get("gateway")) for r in listed]
        return PodState("UP" in flags, addrs, routes)

    return in_netns(netns, inside)
