"""Attaching a Docker container in tens of milliseconds: the proxy's version of ``weavenet.host.attach.attach``.

The result is the same as ``weave attach`` gives (``ethwe`` on the bridge via ``vethwepl<pid>``, hairpin on, the
addresses, ARP settings, multicast isolation rules, a gratuitous ARP per address, the multicast route last), but
``weave attach`` runs a dozen ``nsenter ip ...`` processes, which costs a second per container on a loaded
2-core machine, and ``docker run`` through the proxy waits for it. Here the links and addresses are made over
netlink (pyroute2), and the steps inside the container's network namespace run in a fresh thread that joined
it with ``setns(2)``: its sysctl writes and sockets are the container's, and the only child process is one
``iptables-restore`` (forked from that thread, so it starts inside the namespace too). The thread exits
afterwards, so no other code ever runs in the wrong namespace.
"""

from __future__ import annotations

import contextlib
import ctypes
import os
import socket
import struct
import subprocess
import threading
from collections.abc import Callable
from ipaddress import IPv4Interface
from typing import Any, TypeVar

from weavenet.errors import HostError
from weavenet.host.attach import HOST_NETNS_MESSAGE

IFNAME = "ethwe"
BRIDGE = "weave"
MULTICAST = "224.0.0.0/4"
CLONE_NEWNET = 0x40000000
GSO_MAX_SIZE = 63488  # as weavenet.host.attach: one UDP GSO send per super-frame on the fast sleeve
ARP_SYSCTLS = (("base_reachable_time", "5"), ("delay_first_probe_time", "2"), ("ucast_solicit", "1"))
T = TypeVar("T")

_libc = ctypes.CDLL(None, use_errno=True)


def in_netns(netns_path: str, fn: Callable[[], T]) -> T:
    """Run ``fn`` in a new thread that has joined the network namespace at ``netns_path``."""
    result: list[Any] = []
    error: list[BaseException] = []

    def body() -> None:
        try:
            fd = os.open(netns_path, os.O_RDONLY)
        except OSError as e:
            error.append(HostError(f"{netns_path}: {e.strerror}"))
            return
        try:
            if _libc.setns(fd, CLONE_NEWNET) != 0:
                err = ctypes.get_errno()
                error.append(HostError(f"setns {netns_path}: {os.strerror(err)}"))
                return
            result.append(fn())
        except BaseException as e:
            error.append(e)
        finally:
            os.close(fd)

    t = threading.Thread(target=body, name="weave-netns", daemon=True)
    t.start()
    t.join()
    if error:
        raise error[0]
    return result[0]  # type: ignore[no-any-return]


def _gratuitous_arp(ifname: str, mac: bytes, ip: bytes) -> None:
    frame = b"\xff" * 6 + mac + b"\x08\x06" + struct.pack("!HHBBH", 1, 0x0800, 6, 4, 1) + mac + ip + b"\x00" * 6 + ip
    with contextlib.closing(socket.socket(socket.AF_PACKET, socket.SOCK_RAW)) as s:
        s.bind((ifname, 0))
        s.send(frame)


def _sysctl(key: str, value: str) -> None:
    with contextlib.suppress(OSError), open(f"/proc/sys/{key}", "w") as f:
        f.write(value)


def _iptables_rules(subnets: list[str], new_link: bool) -> str:
    """The container's multicast isolation: accept from its own subnets, drop the rest (``iptables-restore``)."""
    lines = ["*filter"]
    lines += [f"-I INPUT 1 -i {IFNAME} -s {s} -d {MULTICAST} -j ACCEPT" for s in subnets]
    if new_link:
        lines.append(f"-A INPUT -i {IFNAME} -d {MULTICAST} -j DROP")
    lines.append("COMMIT")
    return "\n".join(lines) + "\n"


def _inside(addrs: list[IPv4Interface], have: set[str], new_link: bool, multicast: bool) -> list[str]:
    """Steps inside the container's namespace (the calling thread is in it)."""
    from pyroute2 import IPRoute

    with IPRoute() as ipr:
        idx = ipr.link_lookup(ifname=IFNAME)
        if not idx:
            raise HostError(f"{IFNAME} did not appear in the container")
        index = idx[0]
        if new_link:
            _sysctl(f"net/ipv6/conf/{IFNAME}/accept_ra", "0")
            for key, value in ARP_SYSCTLS:
                _sysctl(f"net/ipv4/neigh/{IFNAME}/{key}", value)
        have_ips = {c.split("/")[0] for c in have}
        added = []
        for a in addrs:  # one address once, whatever prefix lengths it was asked with (IPAM may hand it back)
            if str(a.ip) not in have_ips:
                have_ips.add(str(a.ip))
                added.append(a)
        for a in added:
            ipr.addr("add", index=index, address=str(a.ip), prefixlen=a.network.prefixlen)
        present = {str(IPv4Interface(c).network) for c in have}
        subnets = sorted({str(a.network) for a in added} - present)  # one ACCEPT rule per subnet
        if subnets or new_link:
            res = subprocess.run(
                ["iptables-restore", "-w", "--noflush"],
                input=_iptables_rules(subnets, new_link),
                capture_output=True,
                text=True,
                timeout=30,
                check=False,
            )
            if res.returncode != 0:
                raise HostError(f"iptables-restore in the container: {res.stderr.strip()}")
        ipr.link("set", index=index, state="up")
        mac = bytes.fromhex(ipr.get_links(index)[0].get_attr("IFLA_ADDRESS").replace(":", ""))
        for a in added:
            with contextlib.suppress(OSError):
                _gratuitous_arp(IFNAME, mac, a.ip.packed)
        if multicast and not ipr.route("dump", dst="224.0.0.0", dst_len=4, oif=index):
            with contextlib.suppress(Exception):
                ipr.route("add", dst="224.0.0.0", dst_len=4, oif=index, scope=253)
        out = []
        for msg in ipr.get_addr(index=index, family=socket.AF_INET):
            out.append(f"{msg.get_attr('IFA_ADDRESS')}/{msg['prefixlen']}")
        return out


def _existing(netns_path: str) -> set[str] | None:
    """The container's ethwe addresses, or None if it has no ethwe."""

    def look() -> set[str] | None:
        from pyroute2 import IPRoute

        with IPRoute() as ipr:
            idx = ipr.link_lookup(ifname=IFNAME)
            if not idx:
                return None
            return {f"{m.get_attr('IFA_ADDRESS')}/{m['prefixlen']}" for m in ipr.get_addr(index=idx[0], family=2)}

    return in_netns(netns_path, look)


def attach(pid: int, cidrs: list[str], multicast: bool = True, bridge: str = BRIDGE) -> list[str]:
    """Put the container whose process is ``pid`` on the bridge with these addresses; returns all it has."""
    from pyroute2 import IPRoute
    from pyroute2.netlink.exceptions import NetlinkError

    addrs = [IPv4Interface(c) for c in cidrs]
    netns_path = f"/proc/{pid}/ns/net"
    if os.stat(netns_path).st_ino == os.stat("/proc/self/ns/net").st_ino:
        raise HostError(HOST_NETNS_MESSAGE)
    have = _existing(netns_path)
    host_end = f"vethwepl{str(pid)[:7]}"
    created = False
    with IPRoute() as ipr:
        br = ipr.link_lookup(ifname=bridge)
        if not br:
            raise HostError(f"bridge {bridge} does not exist: is weave launched?")
        if have is None:
            mtu = ipr.get_links(br[0])[0].get_attr("IFLA_MTU") or 1376
            fd = os.open(netns_path, os.O_RDONLY)
            try:
                with contextlib.suppress(NetlinkError):  # a leftover of an earlier run of this pid
                    ipr.link("del", ifname=host_end)
                ipr.link(
                    "add",
                    ifname=host_end,
                    kind="veth",
                    mtu=mtu,
                    gso_max_size=GSO_MAX_SIZE,
                    peer={"ifname": IFNAME, "net_ns_fd": fd, "mtu": mtu, "gso_max_size": GSO_MAX_SIZE},
                )
            except NetlinkError as e:
                raise HostError(f"creating {host_end}: {e}") from e
            finally:
                os.close(fd)
            created = True
            try:
                (index,) = ipr.link_lookup(ifname=host_end)
                _sysctl(f"net/ipv6/conf/{host_end}/accept_ra", "0")
                ipr.link("set", index=index, master=br[0])
                with contextlib.suppress(NetlinkError):
                    ipr.brport("set", index=index, mode=1)  # hairpin
                ipr.link("set", index=index, state="up")
            except BaseException:
                with contextlib.suppress(NetlinkError):
                    ipr.link("del", ifname=host_end)
                raise
    try:
        return in_netns(netns_path, lambda: _inside(addrs, have or set(), created, multicast))
    except BaseException:
        if created:
            with IPRoute() as ipr, contextlib.suppress(NetlinkError):
                ipr.link("del", ifname=host_end)
        raise
