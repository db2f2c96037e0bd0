"""Fast-datapath wire formats: VXLAN on UDP port+1, VNIs that name peers, heartbeats through the tunnel.

Weave Net 2.8's fast datapath (``router/fastdp.go``) sends standard VXLAN (RFC 7348: flags byte 0x08, 24-bit VNI)
and uses the VNI to say which peers a frame travels between: ``VNI = srcShortID | dstShortID << 12``, src being
the peer where the frame entered the overlay and dst the peer it is for (for broadcasts: the next hop). A kernel
VXLAN device on each side does the data frames; only the control frames below are handled by the router.

Heartbeats are Ethernet frames of ``14 + MTU`` bytes whose header is all zeros (so no bridge ever forwards them),
carrying ``connection UID (u64 BE) ‖ frame length (u16 BE)``. Sent with don't-fragment set, one only arrives if
the path carries full-size VXLAN packets, which is what the fast datapath needs. Go checks nothing but the UID
and that the length field equals the frame's length; the rest of the frame is zeros.

weavenet peers add, after those ten bytes, ``b"WNfd" ‖ flags`` (Go ignores it) so each side learns what the other
receives, which lets a broken direction, a too-small path MTU and a blocked port be told apart:

* bit 0 ``RX_HEARTBEATS``: I receive your full-size heartbeats (and can take your traffic);
* bit 1 ``RX_PROBES``: I receive your small probes;
* bit 2 ``ASK`` (lean liveness, ``core/contact.py``): I have not heard you for a while, answer with a probe now;
* bit 3 ``PROVE`` (lean liveness): send me a full-size heartbeat now (I want the path MTU proven).

A *probe* is the same header in a 29-byte frame whose length field is 0 (Go drops it as not a heartbeat). It
only goes to weavenet peers, next to each heartbeat: if probes arrive but heartbeats do not, the port is open and
the path MTU is the problem.
"""

from __future__ import annotations

import struct
from dataclasses import dataclass
from ipaddress import IPv4Address

from weavenet.errors import RemoteProtocolError

VXLAN_HEADER = 8
VXLAN_FLAG_VNI = 0x08  # the I flag: the VNI field is valid
ETH_HLEN = 14
IPV4_UDP_OVERHEAD = 20 + 8
# what one full-size frame costs on the underlay: outer IPv4 + UDP + VXLAN + the inner Ethernet header
UNDERLAY_OVERHEAD = IPV4_UDP_OVERHEAD + VXLAN_HEADER + ETH_HLEN
SHORT_ID_MASK = 0xFFF
HEARTBEAT_PAYLOAD = 10  # conn UID (8) + frame length (2)
MAGIC = b"WNfd"
EXTENSION = len(MAGIC) + 1
PROBE_LEN = ETH_HLEN + HEARTBEAT_PAYLOAD + EXTENSION
RX_HEARTBEATS = 0x01
RX_PROBES = 0x02
ASK = 0x04  # lean liveness (core/contact.py): answer with a probe at once
PROVE = 0x08  # lean liveness: send a full-size heartbeat at once (the receiver wants the path MTU proven)
MIN_MTU = 576 - ETH_HLEN  # a heartbeat must at least hold its payload and extension; real MTUs are far above

_VXLAN = struct.Struct(">B3xI")
_HB = struct.Struct(">QH")
_ZERO_ETH = bytes(ETH_HLEN)


def vni_for(src_short: int, dst_short: int) -> int:
    """The VNI a frame from ``src`` (where it entered the overlay) to ``dst`` travels with."""
    if not (0 <= src_short <= SHORT_ID_MASK and 0 <= dst_short <= SHORT_ID_MASK):
        raise ValueError(f"short IDs out of range: {src_short}, {dst_short}")
    return src_short | dst_short << 12


def split_vni(vni: int) -> tuple[int, int]:
    """(src short ID, dst short ID) of a VNI."""
    return vni & SHORT_ID_MASK, (vni >> 12) & SHORT_ID_MASK


def encode_vxlan(vni: int, frame: bytes) -> bytes:
    """A VXLAN UDP payload: the 8-byte header, then the Ethernet frame."""
    if not 0 <= vni < 1 << 24:
        raise ValueError(f"VNI out of range: {vni}")
    return _VXLAN.pack(VXLAN_FLAG_VNI, vni << 8) + frame


def decode_vxlan(payload: bytes | memoryview) -> tuple[int, memoryview]:
    """(VNI, Ethernet frame) of a VXLAN UDP payload; RemoteProtocolError if it is not one."""
    if len(payload) < VXLAN_HEADER + ETH_HLEN:
        raise RemoteProtocolError(f"VXLAN packet too short: {len(payload)} bytes")
    flags, word = _VXLAN.unpack_from(payload)
    if not flags & VXLAN_FLAG_VNI:
        raise RemoteProtocolError(f"VXLAN packet without a VNI (flags 0x{flags:02x})")
    return word >> 8, memoryview(payload)[VXLAN_HEADER:]


@dataclass(frozen=True, slots=True)
class Sniffed:
    """A VXLAN packet as the raw IPv4 socket saw it (outer addresses, VNI, the inner frame)."""

    src_ip: str
    src_port: int
    dst_port: int
    vni: int
    frame: memoryview


def parse_ipv4_vxlan(packet: bytes | memoryview) -> Sniffed:
    """Parse what a raw ``IPPROTO_UDP`` socket returns (IPv4 header first); RemoteProtocolError if malformed."""
    mv = memoryview(packet)
    if len(mv) < 20:
        raise RemoteProtocolError(f"IPv4 packet too short: {len(mv)} bytes")
    if mv[0] >> 4 != 4:
        raise RemoteProtocolError(f"not IPv4 (version {mv[0] >> 4})")
    ihl = (mv[0] & 0x0F) * 4
    total = int.from_bytes(mv[2:4], "big")
    if ihl < 20 or total < ihl + 8 or total > len(mv):
        raise RemoteProtocolError(f"bad IPv4 lengths (header {ihl}, total {total}, got {len(mv)})")
    if mv[9] != 17:
        raise RemoteProtocolError(f"not UDP (protocol {mv[9]})")
    src_ip = str(IPv4Address(bytes(mv[12:16])))
    sport, dport, ulen = struct.unpack_from(">HHH", mv, ihl)
    if ulen < 8 or ihl + ulen > total:
        raise RemoteProtocolError(f"bad UDP length {ulen}")
    vni, frame = decode_vxlan(mv[ihl + 8 : ihl + ulen])
    return Sniffed(src_ip, sport, dport, vni, frame)


def is_special(frame: bytes | memoryview) -> bool:
    """Heartbeats and probes: an all-zero Ethernet header (MACs and EtherType/length)."""
    return len(frame) >= ETH_HLEN and bytes(frame[:ETH_HLEN]) == _ZERO_ETH


def heartbeat_frame(conn_uid: int, mtu: int, flags: int | None = None) -> bytes:
    """A heartbeat for an overlay of ``mtu``: ``14 + mtu`` bytes; ``flags`` adds weavenet's extension."""
    if mtu < MIN_MTU:
        raise ValueError(f"MTU {mtu} too small for a heartbeat")
    frame = bytearray(ETH_HLEN + mtu)
    _HB.pack_into(frame, ETH_HLEN, conn_uid, len(frame) & 0xFFFF)
    if flags is not None:
        at = ETH_HLEN + HEARTBEAT_PAYLOAD
        frame[at : at + EXTENSION] = MAGIC + bytes((flags,))
    return bytes(frame)


def probe_frame(conn_uid: int, flags: int) -> bytes:
    """weavenet's small probe: the heartbeat header with length field 0 (never a valid heartbeat for Go)."""
    return _ZERO_ETH + _HB.pack(conn_uid, 0) + MAGIC + bytes((flags,))


@dataclass(frozen=True, slots=True)
class Heartbeat:
    conn_uid: int
    length: int  # the real frame length
    probe: bool  # weavenet's small probe rather than a full-size heartbeat
    flags: int | None  # weavenet's extension, None from Go peers


def parse_heartbeat(head: bytes | memoryview, length: int) -> Heartbeat:
    """A special frame, given its first bytes and its real length. RemoteProtocolError unless it is a heartbeat
    (length field equal to the frame length, as Go demands) or a weavenet probe (length field 0, short)."""
    if length < ETH_HLEN + HEARTBEAT_PAYLOAD or len(head) < min(length, ETH_HLEN + HEARTBEAT_PAYLOAD):
        raise RemoteProtocolError(f"short vxlan special packet: {length} bytes")
    if not is_special(head):
        raise RemoteProtocolError("not a special frame")
    uid, declared = _HB.unpack_from(head, ETH_HLEN)
    flags = None
    at = ETH_HLEN + HEARTBEAT_PAYLOAD
    if len(head) >= at + EXTENSION and bytes(head[at : at + len(MAGIC)]) == MAGIC:
        flags = head[at + len(MAGIC)]
    if declared == 0 and length == PROBE_LEN and flags is not None:
        return Heartbeat(uid, length, True, flags)
    if declared != length & 0xFFFF:
        raise RemoteProtocolError(f"heartbeat length field {declared} does not match its length {length}")
    return Heartbeat(uid, length, False, flags)
