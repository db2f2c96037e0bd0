"""Ethernet frames as the sleeve sees them: addresses, virtio-net headers, software segmentation.

The TAP hands the router frames prefixed with a 10-byte ``virtio_net_hdr``. With TSO and checksum offload on,
a TCP flow arrives as one 64 KB super-frame with only a pseudo-header checksum ("partial"); between weavenet
peers it travels that way and the receiving kernel finishes the job. A Go peer, though, expects ordinary frames
with correct checksums, so for it we do what a NIC would: cut the super-frame into MSS-sized segments and
complete every checksum (``segment``). Everything here is pure and allocation-light.
"""

from __future__ import annotations

import struct
from collections.abc import Callable

VNET_HDR = struct.Struct("<BBHHHH")  # flags, gso_type, hdr_len, gso_size, csum_start, csum_offset
VNET_LEN = VNET_HDR.size
VNET_F_NEEDS_CSUM = 1
GSO_NONE, GSO_TCPV4, GSO_UDP, GSO_TCPV6, GSO_UDP_L4 = 0, 1, 3, 4, 5
GSO_ECN = 0x80
ZERO_VNET = bytes(VNET_LEN)

ETH_HLEN = 14
ETHERTYPE_IPV4 = 0x0800
ETHERTYPE_IPV6 = 0x86DD
BROADCAST = b"\xff" * 6
STP_DST = bytes.fromhex("0180c2000000")


def is_group(mac: bytes) -> bool:
    """Broadcast or multicast destination (the I/G bit)."""
    return bool(mac[0] & 1)


def answered_in_kernel(frame: bytes | memoryview) -> bool:
    """Whether the receiving kernel may answer this frame at once, inside the ``writev`` that injects it.

    Only the kernel answers that fast: ARP requests, echo requests, neighbour solicitations, TCP segments with
    data or SYN/FIN (their ACK). Anything a process has to answer (a DNS query) comes later, through the poll
    loop; anything that asks for nothing (an echo reply, a bare ACK, most UDP) gets no answer at all, so looking
    for one would cost a failed read.
    """
    n = len(frame)
    if n < ETH_HLEN + 20:
        return False
    kind = frame[12] << 8 | frame[13]
    if kind == ETHERTYPE_IPV4:  # the common case first: one wake of a round trip runs this
        proto, l4 = frame[ETH_HLEN + 9], ETH_HLEN + (frame[ETH_HLEN] & 0x0F) * 4
        if proto == 1:
            return n > l4 and frame[l4] == 8  # echo request
        if proto != 6:
            return False
        return _tcp_answered(frame, l4, int.from_bytes(frame[ETH_HLEN + 2 : ETH_HLEN + 4], "big") + ETH_HLEN - l4)
    if kind == 0x0806:
        return frame[ETH_HLEN + 6] == 0 and frame[ETH_HLEN + 7] == 1  # ARP request
    if kind == ETHERTYPE_IPV6 and n >= ETH_HLEN + 41:
        nh, l4 = frame[ETH_HLEN + 6], ETH_HLEN + 40
        if nh == 58:
            return frame[l4] in (128, 135)  # echo request, neighbour solicitation
        return nh == 6 and _tcp_answered(frame, l4, int.from_bytes(frame[ETH_HLEN + 4 : ETH_HLEN + 6], "big"))
    return False


def _tcp_answered(frame: bytes | memoryview, l4: int, segment: int) -> bool:
    """A TCP segment (``segment`` bytes from ``l4``) that gets an ACK: it carries data, a SYN or a FIN."""
    if len(frame) < l4 + 14:
        return False
    return segment > (frame[l4 + 12] >> 4) * 4 or bool(frame[l4 + 13] & 0x03)


def checksum_fold(total: int) -> int:
    while total >> 16:
        total = (total & 0xFFFF) + (total >> 16)
    return total


def ones_sum(data: bytes | memoryview) -> int:
    """Unfolded one's-complement sum of 16-bit big-endian words (odd length padded with a zero byte)."""
    if len(data) & 1:
        data = bytes(data) + b"\x00"
    # Summing as one big integer, then folding modulo 0xffff, is the fastest pure-Python checksum.
    return int.from_bytes(data, "big") % 0xFFFF


def inet_checksum(data: bytes | memoryview, initial: int = 0) -> int:
    s = ones_sum(data) + initial
    s = checksum_fold(s)
    return (~s) & 0xFFFF


def complete_checksum(frame: bytearray, csum_start: int, csum_offset: int) -> None:
    """Finish a partial L4 checksum (NEEDS_CSUM): the field holds the pseudo-header sum already."""
    field = csum_start + csum_offset
    seed = int.from_bytes(frame[field : field + 2], "big")
    frame[field : field + 2] = b"\x00\x00"
    value = inet_checksum(memoryview(frame)[csum_start:], seed)
    if value == 0 and csum_offset == 6:
        value = 0xFFFF  # UDP: zero means "no checksum"
    frame[field : field + 2] = value.to_bytes(2, "big")


NEEDS_UDP_CSUM = 6  # csum_offset of the UDP checksum field


def vnet_for_copy(frame: bytes | memoryview) -> bytes:
    """The virtio-net header for a frame copied off the wire without its offload state (the VXLAN sniffer's raw
    socket): NEEDS_CSUM when it is an unfragmented UDP datagram whose checksum field holds just the pseudo-header
    sum, else ZERO_VNET.

    Why: a datagram sent with checksum offload is a *partial* skb whose checksum field holds only the pseudo-header
    sum, and it stays partial while it crosses veths and software bridges (a test bed, containers on one VM, VMs
    on one hypervisor with virtio offloads): the kernel that receives it over VXLAN trusts it, but a raw socket's
    copy of it is just bytes. Relayed as they are, such frames arrive elsewhere with a "bad udp cksum" and are
    dropped. The header tells the receiving kernel (through its TAP) or ``segment`` (for a Go peer) to finish the
    checksum; nothing is summed here. A datagram whose correct checksum happens to equal the pseudo-header sum is
    finished into the same value, so a false match is harmless. Only broadcast and multicast frames pass here
    (unicast never reaches the sniffer), so the bulk path pays nothing. TCP is never broadcast, so only UDP is
    looked at.
    """
    n = len(frame)
    if n < ETH_HLEN + 28:
        return ZERO_VNET
    kind = frame[12] << 8 | frame[13]
    if kind == ETHERTYPE_IPV4:
        ip = ETH_HLEN
        ihl = (frame[ip] & 0x0F) * 4
        # fragments carry no complete UDP datagram (and are never partial): only a whole datagram is finished
        if frame[ip + 9] != 17 or ihl < 20 or int.from_bytes(frame[ip + 6 : ip + 8], "big") & 0x3FFF:
            return ZERO_VNET
        l4 = ip + ihl
        ip_payload = int.from_bytes(frame[ip + 2 : ip + 4], "big") - ihl
        pseudo = ones_sum(bytes(frame[ip + 12 : ip + 20]))
    elif kind == ETHERTYPE_IPV6 and n >= ETH_HLEN + 48:
        ip = ETH_HLEN
        if frame[ip + 6] != 17:  # UDP right after the fixed header (extension headers: left alone)
            return ZERO_VNET
        l4 = ip + 40
        ip_payload = int.from_bytes(frame[ip + 4 : ip + 6], "big")
        pseudo = ones_sum(bytes(frame[ip + 8 : ip + 40]))
    else:
        return ZERO_VNET
    udp_len = int.from_bytes(frame[l4 + 4 : l4 + 6], "big")
    if udp_len < 8 or udp_len != ip_payload or l4 + udp_len != n:
        return ZERO_VNET  # malformed, or padded (a partial frame never met a NIC, the only thing that pads)
    field = int.from_bytes(frame[l4 + 6 : l4 + 8], "big")
    if not field or field % 0xFFFF != (pseudo + 17 + udp_len) % 0xFFFF:
        return ZERO_VNET  # no checksum (IPv4), or a complete one
    return VNET_HDR.pack(VNET_F_NEEDS_CSUM, GSO_NONE, 0, 0, l4, NEEDS_UDP_CSUM)


def _pseudo_v4(src: bytes, dst: bytes, proto: int, length: int) -> int:
    return ones_sum(src + dst + bytes((0, proto)) + length.to_bytes(2, "big"))


def segment(vnet: bytes, frame: bytes | memoryview) -> list[bytes]:
    """Turn a TAP frame (virtio header + Ethernet frame) into ordinary frames with correct checksums.

    TCPv4 super-frames are cut at ``gso_size``; other GSO types (rare: IPv6, ECN) are passed through
    segmented only if IPv4/TCP, else with the checksum completed when possible. Frames without offload
    state come back unchanged.
    """
    flags, gso_type, _hdr_len, gso_size, csum_start, csum_offset = VNET_HDR.unpack(vnet)
    if gso_type & ~GSO_ECN == GSO_NONE:
        if flags & VNET_F_NEEDS_CSUM:
            buf = bytearray(frame)
            complete_checksum(buf, csum_start, csum_offset)
            return [bytes(buf)]
        return [bytes(frame)]
    if gso_type & ~GSO_ECN != GSO_TCPV4:
        # Not produced with our offload flags (TSO6 frames are segmented by the kernel when not negotiated).
        return [bytes(frame)]
    return _segment_tcp4(frame, gso_size)


def _segment_tcp4(
    frame: bytes | memoryview, mss: int, usable: Callable[[int, int], bool] | None = None, complete: bool = True
) -> list[bytes]:
    """Cut a TCPv4 super-frame at ``mss``. With ``usable(start, end)``, only segments whose bytes (offsets in
    ``frame``) are usable are produced; ``complete=False`` means the end of ``frame`` is not its real end."""
    mv = memoryview(frame)
    ip = ETH_HLEN
    ihl = (mv[ip] & 0x0F) * 4
    tcp = ip + ihl
    thl = (mv[tcp + 12] >> 4) * 4
    payload_at = tcp + thl
    payload = mv[payload_at:]
    if mss <= 0 or (len(payload) <= mss and complete and usable is None):
        buf = bytearray(mv)
        _fix_tcp4(buf, ip, ihl, tcp, len(buf) - tcp)
        return [bytes(buf)]
    eth = bytes(mv[:ETH_HLEN])
    ip_hdr = bytearray(mv[ip:tcp])
    tcp_hdr = bytearray(mv[tcp:payload_at])
    src, dst = bytes(ip_hdr[12:16]), bytes(ip_hdr[16:20])
    ident = int.from_bytes(ip_hdr[4:6], "big")
    seq = int.from_bytes(tcp_hdr[4:8], "big")
    flags = tcp_hdr[13]
    out = []
    n = (len(payload) + mss - 1) // mss if complete else len(payload) // mss
    for i in range(n):
        chunk = payload[i * mss : (i + 1) * mss]
        if usable is not None and not usable(payload_at + i * mss, payload_at + i * mss + len(chunk)):
            continue
        last = complete and i == n - 1
        ip_hdr[2:4] = (ihl + thl + len(chunk)).to_bytes(2, "big")
        ip_hdr[4:6] = ((ident + i) & 0xFFFF).to_bytes(2, "big")
        ip_hdr[10:12] = b"\x00\x00"
        ip_hdr[10:12] = inet_checksum(ip_hdr).to_bytes(2, "big")
        tcp_hdr[4:8] = ((seq + i * mss) & 0xFFFFFFFF).to_bytes(4, "big")
        # FIN and PSH only on the last segment; CWR only on the first
        tcp_hdr[13] = flags if last else flags & ~0x09
        if i:
            tcp_hdr[13] &= ~0x80
        tcp_hdr[16:18] = b"\x00\x00"
        seg_len = thl + len(chunk)
        csum = inet_checksum(bytes(tcp_hdr) + bytes(chunk), _pseudo_v4(src, dst, 6, seg_len))
        tcp_hdr[16:18] = csum.to_bytes(2, "big")
        out.append(eth + bytes(ip_hdr) + bytes(tcp_hdr) + bytes(chunk))
    return out


def _fix_tcp4(buf: bytearray, ip: int, ihl: int, tcp: int, tcp_len: int) -> None:
    buf[ip + 10 : ip + 12] = b"\x00\x00"
    buf[ip + 10 : ip + 12] = inet_checksum(memoryview(buf)[ip : ip + ihl]).to_bytes(2, "big")
    src, dst = bytes(buf[ip + 12 : ip + 16]), bytes(buf[ip + 16 : ip + 20])
    buf[tcp + 16 : tcp + 18] = b"\x00\x00"
    csum = inet_checksum(memoryview(buf)[tcp:], _pseudo_v4(src, dst, 6, tcp_len))
    buf[tcp + 16 : tcp + 18] = csum.to_bytes(2, "big")


def salvage(vnet: bytes, pieces: dict[int, bytes | memoryview], room: int, prefix: int, count: int) -> list[bytes]:
    """Rebuild what can be rebuilt of a super-frame that lost chunks.

    ``pieces`` maps chunk index to its bytes; every chunk carries ``room`` bytes, chunk 0 starting with a
    ``prefix`` that is not part of the frame. A TCPv4 super-frame is cut into its MSS segments and every segment
    whose bytes all arrived is returned as an ordinary frame with correct checksums, so one lost UDP datagram
    costs the receiver one or two TCP segments instead of all of them. Anything else is lost whole.
    """
    _flags, gso_type, _hdr_len, gso_size, _cs, _co = VNET_HDR.unpack(vnet)
    if 0 not in pieces or gso_type & ~GSO_ECN != GSO_TCPV4:
        return []
    complete = (count - 1) in pieces
    # chunk i holds frame bytes from i * room - prefix on; without the last chunk the real end is unknown
    length = (count - 1) * room + len(pieces[count - 1]) if complete else (max(pieces) + 1) * room
    buf = bytearray(length - prefix)
    spans = []
    for idx, piece in pieces.items():
        start = idx * room - prefix  # frame offset of this chunk's first byte
        data = memoryview(piece)[prefix:] if idx == 0 else memoryview(piece)
        start = max(start, 0)
        buf[start : start + len(data)] = data
        spans.append((start, start + len(data)))
    spans.sort()

    def usable(a: int, b: int) -> bool:
        for lo, hi in spans:
            if lo <= a < hi:
                if b <= hi:
                    return True
                a = hi
        return False

    if len(buf) < ETH_HLEN + 40 or not usable(0, ETH_HLEN + 60 if len(buf) >= ETH_HLEN + 60 else len(buf)):
        return []
    return _segment_tcp4(bytes(buf), gso_size, usable, complete)
