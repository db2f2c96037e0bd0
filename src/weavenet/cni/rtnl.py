"""The few rtnetlink requests a pod's link needs, over a plain ``AF_NETLINK`` socket: no ``ip`` process per step.

Each ``ip`` execution costs a plugin about 2-3 ms (more on a loaded machine), and pyroute2 costs 300-500 ms to
import, so these messages are built here with ``struct``: create a veth pair with one end in another namespace
(``ip link add H ... master B type veth peer name P ... netns N``), set a bridge port's hairpin mode and bring a
link up (``ip link set H type bridge_slave hairpin on|off up``), add an address and routes (``ip addr add``, ``ip
route add``, with the same protocol and scopes), delete a link, and list an interface's IPv4 addresses. Requests
are acknowledged; an error comes back as ``OSError`` with the kernel's errno. A socket works in the namespace of
the thread that opened it.
"""

from __future__ import annotations

import _socket
import os
import struct

NETLINK_ROUTE = 0
NLMSG_ERROR, NLMSG_DONE = 2, 3
NLM_F_REQUEST, NLM_F_ACK, NLM_F_EXCL, NLM_F_CREATE, NLM_F_DUMP = 0x1, 0x4, 0x200, 0x400, 0x300
NLA_F_NESTED = 0x8000
RTM_NEWLINK, RTM_DELLINK, RTM_NEWADDR, RTM_GETADDR, RTM_NEWROUTE = 16, 17, 20, 22, 24
IFLA_IFNAME, IFLA_MTU, IFLA_MASTER, IFLA_LINKINFO, IFLA_NET_NS_FD, IFLA_GSO_MAX_SIZE = 3, 4, 10, 18, 28, 41
IFLA_INFO_KIND, IFLA_INFO_DATA, IFLA_INFO_SLAVE_KIND, IFLA_INFO_SLAVE_DATA = 1, 2, 4, 5
VETH_INFO_PEER = 1
IFLA_BRPORT_MODE = 4  # hairpin
IFA_ADDRESS, IFA_LOCAL = 1, 2
RTA_DST, RTA_OIF, RTA_GATEWAY = 1, 4, 5
IFF_UP = 0x1
RT_TABLE_MAIN, RTPROT_BOOT, RTN_UNICAST = 254, 3, 1  # what ``ip route add`` uses
RT_SCOPE_UNIVERSE, RT_SCOPE_LINK = 0, 253


def attr(kind: int, data: bytes) -> bytes:
    """One netlink attribute, padded to 4 bytes."""
    raw = struct.pack("=HH", 4 + len(data), kind) + data
    return raw + b"\0" * (-len(raw) % 4)


def nested(kind: int, *attrs: bytes) -> bytes:
    return attr(kind | NLA_F_NESTED, b"".join(attrs))


def u32(kind: int, value: int) -> bytes:
    return attr(kind, struct.pack("=I", value))


def name(kind: int, text: str) -> bytes:
    return attr(kind, text.encode() + b"\0")


def ifinfo(index: int = 0, flags: int = 0, change: int = 0) -> bytes:
    return struct.pack("=BxHiII", 0, 0, index, flags, change)


class Netlink:
    """A route netlink socket in the calling thread's namespace."""

    def __init__(self) -> None:
        self.sock = _socket.socket(_socket.AF_NETLINK, _socket.SOCK_RAW, NETLINK_ROUTE)
        self.sock.settimeout(10)
        self.seq = 0

    def close(self) -> None:
        self.sock.close()

    def __enter__(self) -> Netlink:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def request(self, kind: int, flags: int, body: bytes) -> None:
        """Send one request and wait for its acknowledgement; OSError(errno) if the kernel refused it."""
        self.seq += 1
        header = struct.pack("=IHHII", 16 + len(body), kind, NLM_F_REQUEST | NLM_F_ACK | flags, self.seq, 0)
        self.sock.send(header + body)
        while True:
            data = self.sock.recv(65536)
            off = 0
            while off + 16 <= len(data):
                length, mtype, _, seq = struct.unpack_from("=IHHI", data, off)
                if mtype == NLMSG_ERROR and seq == self.seq:
                    err = -struct.unpack_from("=i", data, off + 16)[0]
                    if err:
                        raise OSError(err, os.strerror(err))
                    return
                if length < 16:
                    break
                off += (length + 3) & ~3

    # -- links ------------------------------------------------------------------------------------------------

    def add_veth(self, host: str, peer: str, mtu: int, gso_max_size: int, netns_fd: int, master: int) -> None:
        """A veth pair: ``host`` here, a port of bridge ``master``; ``peer`` made directly in the namespace of
        ``netns_fd``, its GSO size capped at ``gso_max_size`` (the bridge's end keeps the default, see
        ``host.netns.CONTAINER_GSO_MAX_SIZE``)."""
        peer_info = ifinfo() + name(IFLA_IFNAME, peer) + u32(IFLA_MTU, mtu) + u32(IFLA_GSO_MAX_SIZE, gso_max_size)
        peer_info += u32(IFLA_NET_NS_FD, netns_fd)
        info = nested(IFLA_LINKINFO, attr(IFLA_INFO_KIND, b"veth"),
                      nested(IFLA_INFO_DATA, nested(VETH_INFO_PEER, peer_info)))  # fmt: skip
        body = ifinfo() + name(IFLA_IFNAME, host) + u32(IFLA_MTU, mtu) + u32(IFLA_MASTER, master) + info
        self.request(RTM_NEWLINK, NLM_F_CREATE | NLM_F_EXCL, body)

    def set_port_up(self, index: int, hairpin: bool) -> None:
        """A bridge port's hairpin mode, and the link up."""
        slave = nested(IFLA_LINKINFO, attr(IFLA_INFO_SLAVE_KIND, b"bridge"),
                       nested(IFLA_INFO_SLAVE_DATA, attr(IFLA_BRPORT_MODE, bytes([int(hairpin)]))))  # fmt: skip
        self.request(RTM_NEWLINK, 0, ifinfo(index, IFF_UP, IFF_UP) + slave)

    def set_up(self, index: int) -> None:
        self.request(RTM_NEWLINK, 0, ifinfo(index, IFF_UP, IFF_UP))

    def delete_link(self, index: int) -> None:
        self.request(RTM_DELLINK, 0, ifinfo(index))

    # -- addresses and routes ---------------------------------------------------------------------------------

    def add_address(self, index: int, ip: int, plen: int) -> None:
        raw = struct.pack("!I", ip)
        body = struct.pack("=BBBBI", _socket.AF_INET, plen, 0, RT_SCOPE_UNIVERSE, index)
        self.request(RTM_NEWADDR, NLM_F_CREATE | NLM_F_EXCL, body + attr(IFA_LOCAL, raw) + attr(IFA_ADDRESS, raw))

    def add_route(self, index: int, dst: tuple[int, int], gateway: int | None) -> None:
        """A route through the interface, via ``gateway`` if any (scope link without one, as ``ip``)."""
        scope = RT_SCOPE_UNIVERSE if gateway is not None else RT_SCOPE_LINK
        family, table, proto = _socket.AF_INET, RT_TABLE_MAIN, RTPROT_BOOT
        body = struct.pack("=BBBBBBBBI", family, dst[1], 0, 0, table, proto, scope, RTN_UNICAST, 0)
        if dst[1]:
            body += attr(RTA_DST, struct.pack("!I", dst[0]))
        if gateway is not None:
            body += attr(RTA_GATEWAY, struct.pack("!I", gateway))
        self.request(RTM_NEWROUTE, NLM_F_CREATE | NLM_F_EXCL, body + u32(RTA_OIF, index))

    def ipv4_addresses(self, index: int) -> list[int]:
        """The interface's IPv4 addresses (an ``RTM_GETADDR`` dump), in the order the kernel lists them."""
        self.seq += 1
        header = struct.pack("=IHHII", 24, RTM_GETADDR, NLM_F_REQUEST | NLM_F_DUMP, self.seq, 0)
        self.sock.send(header + struct.pack("=BBBBI", _socket.AF_INET, 0, 0, 0, 0))
        out: list[int] = []
        while True:
            data = self.sock.recv(65536)
            off = 0
            while off + 16 <= len(data):
                length, kind = struct.unpack_from("=IH", data, off)
                if kind == NLMSG_DONE:
                    return out
                if kind == NLMSG_ERROR:
                    err = -struct.unpack_from("=i", data, off + 16)[0]
                    raise OSError(err, os.strerror(err))
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
