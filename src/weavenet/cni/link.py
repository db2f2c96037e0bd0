"""A pod's link to the weave bridge: what Weave's ``AttachContainer`` gives a CNI pod, and its removal.

The pod gets the runtime's interface name (``eth0`` under Kubernetes), the inner end of a veth pair whose outer end
``vethwepl<id>`` is a port of the bridge (hairpin mode as configured), Weave's interface settings and multicast
isolation (:mod:`weavenet.host.netns`, shared with ``weave attach``), its address announced with gratuitous ARPs,
and its routes. Unlike ``weave attach`` there is no multicast route and the runtime's name is used, as in Weave.

The links, addresses and routes are rtnetlink requests made here (:mod:`.rtnl`): pyroute2 costs a plugin execution
300-500 ms to import, an ``ip`` process 2-3 ms per step. The one process left, ``iptables-restore`` for the
isolation rules, runs while the address and routes are set. Any failure removes the pair (which takes the pod's
end with it) and the pod's rules, so nothing is left half-made.
"""

from __future__ import annotations

import _socket
import fcntl
import os
import struct
import time

from weavenet.cni import jsonc
from weavenet.cni.rtnl import Netlink
from weavenet.errors import HostError
from weavenet.host.netns import (
    CONTAINER_GSO_MAX_SIZE,
    _setns,
    gratuitous_arp,
    hw_address,
    interface_sysctls,
    isolation_rules,
    run_tool,
    start_tool,
    write_sysctl,
)

TYPE_CHECKING = False
if TYPE_CHECKING:
    from collections.abc import Callable
    from typing import TypeVar

    from weavenet.cni.spec import Route

    T = TypeVar("T")

VETH_PREFIX = "vethwepl"  # the host's end; Weave's prefix, which `weave reset` removes
ID_CHARS = 15 - len(VETH_PREFIX)  # IFNAMSIZ - 1
SIOCGIFMTU = 0x8921


def host_end(container_id: str) -> str:
    """``vethwepl`` and the container ID's first 7 characters; 10 random hex digits (cut to 7) for an ID shorter
    than 5, as Weave's plugin."""
    ident = container_id if len(container_id) >= 5 else os.urandom(5).hex()
    return VETH_PREFIX + ident[:ID_CHARS]


def mac_text(raw: bytes) -> str:
    return ":".join(f"{b:02x}" for b in raw)


def _index(ifname: str) -> int | None:
    """The interface's index in the calling thread's namespace, or None."""
    try:
        return int(_socket.if_nametoindex(ifname))
    except OSError:
        return None


def in_netns(netns: str, fn: Callable[[], T]) -> T:
    """Run ``fn`` on the calling thread joined to the namespace at ``netns``, then back in the thread's own.

    As Go's ``netns.Do`` does, not in a thread of its own (:func:`weavenet.host.netns.in_netns`): a plugin has
    nothing else running, and starting a thread and joining it each wait for the scheduler, which on a loaded
    host cost an ADD 10-30 ms (measured in the CNI service's workers). Only this thread moves (``setns`` of a
    network namespace is per thread): what it creates meanwhile (sockets, the sysctl files it opens, the
    processes it starts) belongs to the pod. A way back that fails (we hold our namespace open: it cannot
    without a bug) leaves nothing to go on with: the process ends with exit status 70 after saying so."""
    try:
        own = os.open("/proc/thread-self/ns/net", os.O_RDONLY | os.O_CLOEXEC)
    except OSError as e:
        raise HostError(f"our own network namespace: {e.strerror}") from e
    try:
        try:
            fd = os.open(netns, os.O_RDONLY | os.O_CLOEXEC)
        except OSError as e:
            raise HostError(f"{netns}: {e.strerror}") from e
        try:
            err = _setns(fd)
        finally:
            os.close(fd)
        if err:
            raise HostError(f"setns {netns}: {os.strerror(err)}")
        try:
            return fn()
        finally:
            err = _setns(own)
            if err:
                os.write(2, f"weave-cni: cannot return to our network namespace: {os.strerror(err)}\n".encode())
                os._exit(70)
    finally:
        os.close(own)


def _ip(ip: int) -> str:
    return _socket.inet_ntop(_socket.AF_INET, struct.pack("!I", ip))


def _cidr(ip: int, plen: int) -> str:
    return f"{_ip(ip)}/{plen}"


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
    """The interface's IPv4 addresses, in the order the kernel lists them."""
    index = _index(ifname)
    if index is None:
        raise HostError(f'bridge "{ifname}" not present; did you launch weave?')
    try:
        with Netlink() as nl:
            return nl.ipv4_addresses(index)
    except OSError as e:
        raise HostError(f"listing the addresses of {ifname}: {e.strerror}") from e


def exists_in(netns: str, ifname: str) -> bool:
    """Whether the namespace has an interface of that name."""
    return in_netns(netns, lambda: _index(ifname) is not None)


# -- making and removing the pod's link ----------------------------------------------------------------------------


class PodLink:
    __slots__ = ("bridge", "hairpin", "host_end", "ifname", "mtu", "netns")

    def __init__(self, netns: str, ifname: str, host_end: str, bridge: str, mtu: int, hairpin: bool) -> None:
        self.netns, self.ifname, self.host_end, self.bridge, self.mtu, self.hairpin = (
            netns, ifname, host_end, bridge, mtu, hairpin
        )  # fmt: skip


def _del_host_end(name: str) -> None:
    index = _index(name)
    if index is None:
        return
    try:
        with Netlink() as nl:
            nl.delete_link(index)
    except OSError:
        pass


def create(link: PodLink) -> str:
    """The veth pair, its pod end made straight in the pod's namespace as ``ifname``, its host end on the bridge
    (hairpin as configured) and up. Returns the host end's MAC. A host end of that name already there (another
    pod whose ID begins with the same 7 characters) is an error, never deleted."""
    h = link.host_end
    bridge = _index(link.bridge)
    if bridge is None:
        raise HostError(f'bridge "{link.bridge}" not present; did you launch weave?')
    fd = os.open(link.netns, os.O_RDONLY)
    try:
        with Netlink() as nl:
            try:
                nl.add_veth(h, link.ifname, link.mtu, CONTAINER_GSO_MAX_SIZE, fd, bridge)
            except OSError as e:
                raise HostError(f"could not create veth pair {h}-{link.ifname}: {e.strerror}") from e
            try:
                write_sysctl(f"net/ipv6/conf/{h}/accept_ra", "0", must=False)
                index = _index(h)
                if index is None:
                    raise HostError(f"{h} vanished as it was created")
                nl.set_port_up(index, link.hairpin)
                return mac_text(hw_address(h))
            except OSError as e:
                _del_host_end(h)
                raise HostError(f"attaching {h} to {link.bridge}: {e.strerror}") from e
            except BaseException:
                _del_host_end(h)
                raise
    finally:
        os.close(fd)


ANNOUNCE_AT = (0.002, 0.1, 0.5)  # seconds after the link came up
LATER: list[tuple[str, str, bytes, int, float]] | None = None
"""Set to a list by a process that outlives its answer (the CNI service's worker): announcements wait there,
(namespace, interface, MAC, address, when the link came up), for :func:`announce_later`, not for a child."""


def announce(netns: str, ifname: str, mac: bytes, ip: int) -> None:
    """Gratuitous ARPs for the pod's new address, so that other hosts forget a previous owner's MAC at once, sent
    by a child process forked in the pod's namespace (the calling thread's) that the plugin does not wait for.

    The bridge forwards the pod's frames only once it has seen the link's carrier (the kernel tells it
    asynchronously), so the ARP has to wait a little (Weave waited 1 ms); and closing the packet socket costs
    5-15 ms (its ``synchronize_net()``). Neither is the runtime's to wait for: the child has no descriptor of the
    runtime's (it would wait for their end) and sends its ARPs at a few moments, in case the first is early.
    A worker of the CNI service sends them itself once it has answered (:data:`LATER`): no fork on the way."""
    if LATER is not None:
        LATER.append((netns, ifname, mac, ip, time.monotonic()))
        return
    pid = os.fork()
    if pid:
        return
    try:  # the child: only this thread exists here, in the pod's namespace
        null = os.open(os.devnull, os.O_RDWR)
        for fd in (0, 1, 2):
            os.dup2(null, fd)
        _send_announcements(ifname, mac, ip, time.monotonic())
    except BaseException:
        pass
    os._exit(0)


def _send_announcements(ifname: str, mac: bytes, ip: int, start: float) -> None:
    for at in ANNOUNCE_AT:
        time.sleep(max(0.0, start + at - time.monotonic()))
        gratuitous_arp(ifname, mac, struct.pack("!I", ip))


def announce_later() -> None:
    """Send what :data:`LATER` holds, each in its pod's namespace; errors are no one's to hear any more."""
    for netns, ifname, mac, ip, start in LATER or ():
        try:
            in_netns(netns, lambda: _send_announcements(ifname, mac, ip, start))  # noqa: B023 (called at once)
        except Exception:
            pass


def configure(link: PodLink, address: tuple[int, int], link_routes: list[int], routes: list[Route]) -> str:
    """Inside the pod: Weave's interface settings and multicast isolation (``iptables-restore``, running
    meanwhile), the address, the link up, the routes, the address announced (:func:`announce`). Returns the pod
    end's MAC; on failure the pair is removed."""
    ifname = link.ifname
    subnet = _cidr(address[0] & ((0xFFFFFFFF << (32 - address[1])) & 0xFFFFFFFF), address[1])

    def inside() -> str:
        interface_sysctls(ifname)
        rules = start_tool(["iptables-restore", "-w", "--noflush"], isolation_rules([subnet], True, ifname))
        try:
            index = _index(ifname)
            if index is None:
                raise HostError(f"{ifname} did not appear in the pod")
            with Netlink() as nl:
                step = f"adding {_cidr(*address)} to {ifname}"
                try:
                    nl.add_address(index, *address)
                    step = f"setting {ifname} up"
                    nl.set_up(index)
                    for gw in link_routes:
                        step = f"adding the route to {_cidr(gw, 32)}"
                        nl.add_route(index, (gw, 32), None)
                    for r in routes:
                        step = f"adding the route to {_cidr(*r.dst)}" + (f" via {_ip(r.gw)}" if r.gw else "")
                        nl.add_route(index, r.dst, r.gw)
                except OSError as e:
                    raise HostError(f"setting up {ifname}: {step}: {e.strerror}") from e
            done = rules.wait()
            if done.returncode != 0:
                raise HostError(f"iptables-restore in the pod: {done.stderr.strip()}")
            mac = hw_address(ifname)
            announce(link.netns, ifname, mac, address[0])
            return mac_text(mac)
        except BaseException:
            try:
                rules.wait()
            except HostError:
                pass
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
        index = _index(ifname)
        if index is None:
            return False
        try:
            with Netlink() as nl:
                nl.delete_link(index)
        except OSError as e:
            if e.errno != 19:  # ENODEV: gone meanwhile
                raise HostError(f"removing {ifname}: {e.strerror}") from e
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
