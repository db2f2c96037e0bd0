"""The sleeve's UDP socket: shared by the data-plane workers and the control plane.

Don't-fragment is set on everything we send (Weave's "DF path"): path MTU problems show up as EMSGSIZE here instead
of as silently dropped fragments, and the kernel's cached path MTU for a destination can then be read back
(``path_mtu``). UDP GRO lets one ``recvmsg`` return a run of datagrams; UDP GSO lets one ``sendmsg`` send one.
"""

from __future__ import annotations

import errno
import socket
import struct

SOL_UDP = 17
UDP_SEGMENT = 103
UDP_GRO = 104
IP_MTU_DISCOVER = 10
IP_MTU = 14
IP_PMTUDISC_DO = 2
MAX_GSO_BYTES = 65507 - 20  # stay under the IPv4 datagram limit with room for one more header
MAX_GSO_SEGMENTS = 64
RCVBUF = 8 * 1024 * 1024


def open_socket(host: str, port: int) -> tuple[socket.socket, bool]:
    """Bound UDP socket with DF and GRO; returns (socket, GRO enabled)."""
    s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    s.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, RCVBUF)
    s.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, RCVBUF)
    s.setsockopt(socket.IPPROTO_IP, IP_MTU_DISCOVER, IP_PMTUDISC_DO)
    gro = True
    try:
        s.setsockopt(SOL_UDP, UDP_GRO, 1)
    except OSError:
        gro = False
    s.bind((host or "0.0.0.0", port))
    return s, gro


def path_mtu(ip: str, port: int) -> int | None:
    """The kernel's current path MTU towards ``ip`` (learned from ICMP "fragmentation needed")."""
    probe = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    try:
        probe.setsockopt(socket.IPPROTO_IP, IP_MTU_DISCOVER, IP_PMTUDISC_DO)
        probe.connect((ip, port))
        return int(probe.getsockopt(socket.IPPROTO_IP, IP_MTU))
    except OSError:
        return None
    finally:
        probe.close()


def send_gso(sock: socket.socket, addr: tuple[str, int], segment: int, iov: list) -> int:  # type: ignore[type-arg]
    """Send datagrams given as two buffers each, header and piece (all but the last exactly ``segment`` bytes)."""
    sent = 0
    per_send = max(1, min(MAX_GSO_SEGMENTS, MAX_GSO_BYTES // segment))
    count = len(iov) // 2
    for start in range(0, count, per_send):
        batch = iov[2 * start : 2 * min(count, start + per_send)]
        if len(batch) == 2:
            sent += sock.sendto(b"".join(batch), addr)  # one datagram: no GSO needed
            continue
        anc = [(SOL_UDP, UDP_SEGMENT, struct.pack("H", segment))]
        sent += sock.sendmsg(batch, anc, 0, addr)
    return sent


def gro_size(ancdata: list) -> int:  # type: ignore[type-arg]
    """The datagram size of a GRO ``recvmsg`` result (0: it is one datagram)."""
    for level, kind, value in ancdata:
        if level == SOL_UDP and kind == UDP_GRO:
            return struct.unpack("i", value[:4])[0] if len(value) >= 4 else struct.unpack("H", value[:2])[0]
    return 0


def split_gro(data: bytes, ancdata: list) -> list[memoryview]:  # type: ignore[type-arg]
    """The datagrams a GRO ``recvmsg`` returned (one, unless a UDP_GRO segment size came with it)."""
    size = gro_size(ancdata)
    mv = memoryview(data)
    if not size or size >= len(data):
        return [mv]
    return [mv[i : i + size] for i in range(0, len(data), size)]


def is_too_big(e: OSError) -> bool:
    return e.errno == errno.EMSGSIZE
