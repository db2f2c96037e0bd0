"""Userspace's two windows onto the kernel's VXLAN traffic: a sniffer and a sender of hand-made packets.

The kernel's VXLAN devices carry the data; the router still needs to see and send a few frames of its own:

* **Heartbeats** (all-zero Ethernet header) prove a path and must reach the router, but no bridge forwards a
  frame with a zero source MAC. A raw ``IPPROTO_UDP`` socket gets a copy of every UDP packet the host receives,
  before the VXLAN socket takes it; a classic BPF filter attached to it lets through only packets to our VXLAN
  port whose inner frame is *special* or *broadcast/multicast* -- everything else (the bulk traffic) is
  rejected in the kernel without being queued.
* **Broadcasts** that arrived over VXLAN are delivered to local containers by the kernel; the sniffer's copy lets
  the data plane pass them on along the broadcast routes (through the sleeve) when this peer is an inner node of
  the sender's spanning tree, and deliver those the kernel could not (no device for their VNI, e.g. relayed by
  a Go peer).
* Heartbeats are *sent* from an ordinary UDP socket with don't-fragment set: the VXLAN header is 8 bytes anyone
  can write, and the receiver (kernel or Go's ODP) does not care about the source port.
"""

from __future__ import annotations

import ctypes
import errno
import socket
import struct

from weavenet.core.fastdp_codec import UNDERLAY_OVERHEAD, encode_vxlan
from weavenet.dataplane import udp

SO_ATTACH_FILTER = 26
SNIFF_RCVBUF = 1 << 20

# classic BPF opcodes
_LDX_MSH = 0xB1  # X = 4 * (packet[k] & 0xf): the IPv4 header length
_LDH_IND = 0x48  # A = u16 at X + k
_LDB_IND = 0x50  # A = u8 at X + k
_LDW_IND = 0x40  # A = u32 at X + k
_JEQ = 0x15
_JSET = 0x45
_RET = 0x06
_ACCEPT = 0x40000  # bytes to keep: all of it


def sniff_program(port: int) -> list[tuple[int, int, int, int]]:
    """BPF over an IPv4 packet: accept if UDP dport == ``port`` and the inner frame's destination MAC has the
    group bit set or the inner Ethernet header starts with a zero MAC (offsets past the IP header: UDP 8, VXLAN
    8, then the frame)."""
    return [
        (_LDX_MSH, 0, 0, 0),
        (_LDH_IND, 0, 0, 2),  # UDP destination port
        (_JEQ, 0, 6, port),  # -> reject
        (_LDB_IND, 0, 0, 16),  # inner destination MAC, first byte
        (_JSET, 5, 0, 1),  # group bit -> accept
        (_LDW_IND, 0, 0, 16),  # inner destination MAC, bytes 0-3
        (_JEQ, 0, 2, 0),  # -> reject
        (_LDH_IND, 0, 0, 20),  # bytes 4-5
        (_JEQ, 1, 0, 0),  # -> accept
        (_RET, 0, 0, 0),
        (_RET, 0, 0, _ACCEPT),
    ]


def run_program(prog: list[tuple[int, int, int, int]], packet: bytes) -> int:
    """Interpret the (tiny) subset of classic BPF ``sniff_program`` uses: lets tests check the filter's logic."""
    a = x = 0
    pc = 0
    while True:
        code, jt, jf, k = prog[pc]
        pc += 1
        if code == _LDX_MSH:
            x = 4 * (packet[k] & 0x0F) if k < len(packet) else 0
        elif code in (_LDH_IND, _LDB_IND, _LDW_IND):
            size = {_LDH_IND: 2, _LDB_IND: 1, _LDW_IND: 4}[code]
            if x + k + size > len(packet):
                return 0  # out of bounds: the kernel rejects the packet
            a = int.from_bytes(packet[x + k : x + k + size], "big")
        elif code == _JEQ:
            pc += jt if a == k else jf
        elif code == _JSET:
            pc += jt if a & k else jf
        elif code == _RET:
            return k
        else:
            raise ValueError(f"opcode {code:#x}")


def open_sniffer(port: int) -> socket.socket:
    """A raw socket that receives the special and broadcast VXLAN packets arriving for ``port``."""
    sock = socket.socket(socket.AF_INET, socket.SOCK_RAW, socket.IPPROTO_UDP)
    prog = sniff_program(port)
    code = b"".join(struct.pack("HBBI", *ins) for ins in prog)
    buf = ctypes.create_string_buffer(code, len(code))
    fprog = struct.pack("HL", len(prog), ctypes.addressof(buf))
    sock.setsockopt(socket.SOL_SOCKET, SO_ATTACH_FILTER, fprog)  # the kernel copies the program
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, SNIFF_RCVBUF)
    sock.setblocking(False)
    return sock


def open_sender(host: str = "") -> socket.socket:
    """The UDP socket heartbeats leave from: don't-fragment, so a path too narrow for them fails visibly."""
    sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    sock.setsockopt(socket.IPPROTO_IP, udp.IP_MTU_DISCOVER, udp.IP_PMTUDISC_DO)
    if host:
        sock.bind((host, 0))
    sock.setblocking(False)
    return sock


def send(sock: socket.socket, addr: tuple[str, int], vni: int, frame: bytes) -> str | None:
    """Send one VXLAN packet; returns why it could not leave, if it could not."""
    try:
        sock.sendto(encode_vxlan(vni, frame), addr)
    except BlockingIOError:
        return None  # a full socket buffer loses one heartbeat, which heartbeats tolerate
    except OSError as e:
        if e.errno == errno.EMSGSIZE:
            need = len(frame) - 14 + UNDERLAY_OVERHEAD
            mtu = udp.path_mtu(addr[0], addr[1])
            have = f"path MTU {mtu}" if mtu else "the path MTU"
            return f"{have} is below the {need} bytes a full-size VXLAN packet needs"
        if e.errno in (errno.ECONNREFUSED, errno.EHOSTUNREACH, errno.ENETUNREACH):
            return None  # the heartbeat timeout reports an unreachable peer
        return f"sending a VXLAN heartbeat: {e.strerror or e}"
    return None
