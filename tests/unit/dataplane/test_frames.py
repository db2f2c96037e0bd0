"""Software segmentation, salvage of damaged super-frames, and the too-big rules: every frame we make is valid."""

from __future__ import annotations

import random
import struct

from hypothesis import given, settings
from hypothesis import strategies as st

from weavenet.dataplane import frames, toobig
from weavenet.dataplane.frames import ETH_HLEN, GSO_TCPV4, VNET_F_NEEDS_CSUM, VNET_HDR, inet_checksum

SRC_IP, DST_IP = bytes([10, 2, 1, 1]), bytes([10, 2, 1, 2])
ETH = bytes.fromhex("0a0000000002" "0a0000000001" "0800")


def pseudo(length: int, proto: int = 6) -> int:
    return frames.ones_sum(SRC_IP + DST_IP + bytes((0, proto)) + length.to_bytes(2, "big"))


def tcp_frame(payload: bytes, seq: int = 1000, flags: int = 0x18, df: bool = True, partial: bool = False) -> bytes:
    """An Ethernet/IPv4/TCP frame; ``partial``: the TCP checksum holds only the pseudo-header sum (as offloaded)."""
    tcp = bytearray(struct.pack(">HHIIBBHHH", 40000, 5001, seq, 7, 5 << 4, flags, 65000, 0, 0)) + payload
    ip = bytearray(struct.pack(">BBHHHBBH4s4s", 0x45, 0, 20 + len(tcp), 0x1234, 0x4000 if df else 0, 64, 6, 0,
                               SRC_IP, DST_IP))
    ip[10:12] = inet_checksum(ip).to_bytes(2, "big")
    if partial:
        tcp[16:18] = frames.checksum_fold(pseudo(len(tcp))).to_bytes(2, "big")
    else:
        tcp[16:18] = inet_checksum(tcp, pseudo(len(tcp))).to_bytes(2, "big")
    return ETH + bytes(ip) + bytes(tcp)


def verifies(data: bytes, initial: int = 0) -> bool:
    """One's-complement sum of everything, checksum included, is (either representation of) zero."""
    return inet_checksum(data, initial) in (0, 0xFFFF)


def check_valid_tcp(frame: bytes) -> tuple[int, bytes]:
    """Assert IPv4 and TCP checksums verify; return (sequence number, payload)."""
    ip = frame[ETH_HLEN : ETH_HLEN + 20]
    assert verifies(ip), "IP checksum"
    total = int.from_bytes(ip[2:4], "big")
    assert total == len(frame) - ETH_HLEN
    tcp = frame[ETH_HLEN + 20 :]
    assert verifies(tcp, pseudo(len(tcp))), "TCP checksum"
    return int.from_bytes(tcp[4:8], "big"), tcp[20:]


def vnet(mss: int) -> bytes:
    return VNET_HDR.pack(VNET_F_NEEDS_CSUM, GSO_TCPV4, ETH_HLEN + 40, mss, ETH_HLEN + 20, 16)


@settings(max_examples=60, deadline=None)
@given(size=st.integers(min_value=0, max_value=64000), mss=st.integers(min_value=500, max_value=9000))
def test_segmentation_makes_valid_segments_carrying_the_whole_stream(size: int, mss: int) -> None:
    payload = random.Random(size).randbytes(size)
    segs = frames.segment(vnet(mss), tcp_frame(payload, partial=True))
    assert len(segs) == max(1, -(-size // mss))
    got = b""
    for i, seg in enumerate(segs):
        seq, data = check_valid_tcp(seg)
        assert seq == 1000 + i * mss and len(data) <= mss
        psh = seg[ETH_HLEN + 20 + 13] & 0x08
        assert bool(psh) == (i == len(segs) - 1)  # PSH only on the last segment
        got += data
    assert got == payload


def test_partial_checksum_is_completed_for_a_frame_without_gso() -> None:
    frame = tcp_frame(b"hello", partial=True)
    header = VNET_HDR.pack(VNET_F_NEEDS_CSUM, 0, 0, 0, ETH_HLEN + 20, 16)
    (out,) = frames.segment(header, frame)
    assert check_valid_tcp(out)[1] == b"hello"
    assert frames.segment(frames.ZERO_VNET, frame) == [frame]


@settings(max_examples=60, deadline=None)
@given(
    size=st.integers(min_value=3000, max_value=64000),
    room=st.integers(min_value=1200, max_value=1450),
    data=st.data(),
)
def test_salvage_returns_exactly_the_segments_that_arrived_whole(size: int, room: int, data: st.DataObject) -> None:
    mss = 1448
    payload = random.Random(size).randbytes(size)
    prefix = bytes(22)  # what precedes the frame in chunk 0 (super-frame header + virtio header)
    blob = prefix + tcp_frame(payload, partial=True)
    count = -(-len(blob) // room)
    pieces = {i: blob[i * room : (i + 1) * room] for i in range(count)}
    lost = data.draw(st.sets(st.integers(min_value=1, max_value=count - 1), min_size=1, max_size=max(1, count // 3)))
    for i in lost:
        del pieces[i]
    rebuilt = frames.salvage(vnet(mss), pieces, room, len(prefix), count)
    payload_at = len(prefix) + ETH_HLEN + 40  # blob offset of the TCP payload

    def arrived(a: int, b: int) -> bool:
        return all((p // room) in pieces for p in range(a, b))

    complete = (count - 1) in pieces
    expected = []
    n = -(-size // mss)
    for k in range(n):
        a, b = payload_at + k * mss, payload_at + min((k + 1) * mss, size)
        if b - a < mss and not complete:
            continue
        if arrived(a, b):
            expected.append((1000 + k * mss, payload[k * mss : (k + 1) * mss]))
    got = [check_valid_tcp(f) for f in rebuilt]
    assert got == expected


def test_salvage_needs_the_headers() -> None:
    blob = bytes(22) + tcp_frame(bytes(20000), partial=True)
    pieces = {i: blob[i * 1400 : (i + 1) * 1400] for i in range(1, 15)}
    assert frames.salvage(vnet(1448), pieces, 1400, 22, 15) == []
    udp_gso = VNET_HDR.pack(VNET_F_NEEDS_CSUM, frames.GSO_UDP_L4, 42, 1400, 34, 6)
    assert frames.salvage(udp_gso, {0: blob[:1400]}, 1400, 22, 15) == []


def test_frag_needed_reply_is_a_valid_icmp_to_the_sender() -> None:
    frame = tcp_frame(bytes(3000))
    frags, reply = toobig.handle(frame, 1300)
    assert frags == [] and reply is not None
    assert reply[0:6] == frame[6:12] and reply[6:12] == frame[0:6]
    ip = reply[ETH_HLEN : ETH_HLEN + 20]
    assert verifies(ip) and ip[9] == 1 and ip[12:16] == DST_IP and ip[16:20] == SRC_IP
    icmp = reply[ETH_HLEN + 20 :]
    assert verifies(icmp) and icmp[0:2] == b"\x03\x04"
    assert int.from_bytes(icmp[6:8], "big") == 1300
    assert icmp[8 : 8 + 28] == frame[ETH_HLEN : ETH_HLEN + 28]  # original header + 8 bytes


@settings(max_examples=60, deadline=None)
@given(size=st.integers(min_value=1, max_value=9000), mtu=st.integers(min_value=68, max_value=1500))
def test_fragments_fit_and_reassemble(size: int, mtu: int) -> None:
    payload = random.Random(size).randbytes(size)
    frame = tcp_frame(payload, df=False)
    frags, reply = toobig.handle(frame, mtu)
    assert reply is None and frags
    whole = bytearray()
    for i, f in enumerate(frags):
        ip = f[ETH_HLEN : ETH_HLEN + 20]
        assert verifies(ip) and len(f) - ETH_HLEN <= mtu
        off = (int.from_bytes(ip[6:8], "big") & 0x1FFF) * 8
        more = bool(int.from_bytes(ip[6:8], "big") & 0x2000)
        assert off == len(whole) and more == (i < len(frags) - 1)
        whole += f[ETH_HLEN + 20 :]
    assert bytes(whole) == frame[ETH_HLEN + 20 :]


@settings(max_examples=200, deadline=None)
@given(frame=st.binary(max_size=200), mtu=st.integers(min_value=0, max_value=1500))
def test_too_big_rules_never_fail_on_odd_frames(frame: bytes, mtu: int) -> None:
    frags, reply = toobig.handle(frame, mtu)
    assert isinstance(frags, list) and (reply is None or isinstance(reply, bytes))


def _ipv4(proto: int, l4: bytes) -> bytes:
    ip = struct.pack(">BBHHHBBH4s4s", 0x45, 0, 20 + len(l4), 1, 0, 64, proto, 0, SRC_IP, DST_IP)
    return ETH + ip + l4


def _ipv6(nh: int, l4: bytes) -> bytes:
    ip = struct.pack(">IHBB16s16s", 6 << 28, len(l4), nh, 64, bytes(15) + b"\x01", bytes(15) + b"\x02")
    return ETH[:12] + b"\x86\xdd" + ip + l4


def _tcp(flags: int, payload: bytes = b"") -> bytes:
    return struct.pack(">HHIIBBHHH", 40000, 5001, 1, 7, 5 << 4, flags, 65000, 0, 0) + payload


def _arp(op: int) -> bytes:
    return ETH[:12] + b"\x08\x06" + struct.pack(">HHBBH", 1, 0x0800, 6, 4, op) + bytes(20)


ACK, SYN, FIN = 0x10, 0x02, 0x01


def test_an_answer_is_looked_for_only_where_the_kernel_gives_one_at_once() -> None:
    answered = [
        _arp(1),
        _ipv4(1, bytes([8, 0]) + bytes(62)),  # echo request
        _ipv4(6, _tcp(ACK | 0x08, b"data")),
        _ipv4(6, _tcp(SYN)),
        _ipv4(6, _tcp(ACK | FIN)),
        _ipv6(58, bytes([128, 0]) + bytes(62)),  # echo request
        _ipv6(58, bytes([135, 0]) + bytes(30)),  # neighbour solicitation
        _ipv6(6, _tcp(ACK, b"data")),
    ]
    not_answered = [
        _arp(2),
        _ipv4(1, bytes([0, 0]) + bytes(62)),  # echo reply
        _ipv4(6, _tcp(ACK)),  # a bare ACK
        _ipv4(17, struct.pack(">HHHH", 5353, 53, 20, 0) + bytes(12)),  # a DNS query: a process answers, later
        _ipv6(58, bytes([129, 0]) + bytes(62)),
        _ipv6(6, _tcp(ACK)),
        _ipv6(0, bytes(48)),  # an extension header: not looked into
        ETH[:12] + b"\x88\xcc" + bytes(40),  # LLDP
    ]
    assert [frames.answered_in_kernel(f) for f in answered] == [True] * len(answered)
    assert [frames.answered_in_kernel(f) for f in not_answered] == [False] * len(not_answered)
    for f in answered + not_answered:  # truncated anywhere: an answer or not, never an error
        for n in range(len(f)):
            frames.answered_in_kernel(f[:n])


@given(st.binary(max_size=200))
def test_looking_for_an_answer_never_fails_on_arbitrary_frames(data: bytes) -> None:
    assert frames.answered_in_kernel(data) in (True, False)


# -- frames copied off the wire without their offload state (the VXLAN sniffer) ----------------------------------

MCAST_ETH = bytes.fromhex("01005e010203" "0a0000000001" "0800")
V6_SRC, V6_DST = bytes.fromhex("fd00" + "00" * 13 + "01"), bytes.fromhex("ff02" + "00" * 13 + "fb")


def udp4_frame(payload: bytes, csum: str = "partial", frag: int = 0x4000) -> bytes:
    """Ethernet/IPv4/UDP to 239.1.2.3; ``csum``: "partial" (pseudo-header sum only, as sent with offload),
    "full" or "none"."""
    dst = bytes([239, 1, 2, 3])
    udp = bytearray(struct.pack(">HHHH", 40000, 5007, 8 + len(payload), 0) + payload)
    ip = bytearray(struct.pack(">BBHHHBBH4s4s", 0x45, 0, 20 + len(udp), 7, frag, 2, 17, 0, SRC_IP, dst))
    ip[10:12] = inet_checksum(ip).to_bytes(2, "big")
    ph = frames.ones_sum(SRC_IP + dst + bytes((0, 17)) + len(udp).to_bytes(2, "big"))
    if csum == "partial":
        udp[6:8] = frames.checksum_fold(ph).to_bytes(2, "big")
    elif csum == "full":
        udp[6:8] = (inet_checksum(udp, ph) or 0xFFFF).to_bytes(2, "big")
    return MCAST_ETH + bytes(ip) + bytes(udp)


def udp6_frame(payload: bytes, partial: bool = True) -> bytes:
    udp = bytearray(struct.pack(">HHHH", 5353, 5353, 8 + len(payload), 0) + payload)
    ip = struct.pack(">IHBB16s16s", 6 << 28, len(udp), 17, 255, V6_SRC, V6_DST)
    ph = frames.ones_sum(V6_SRC + V6_DST + len(udp).to_bytes(4, "big") + bytes((0, 0, 0, 17)))
    udp[6:8] = (frames.checksum_fold(ph) if partial else inet_checksum(udp, ph) or 0xFFFF).to_bytes(2, "big")
    return bytes.fromhex("3333000000fb" "0a0000000001" "86dd") + ip + bytes(udp)


def udp_verifies(frame: bytes) -> bool:
    if frame[12:14] == b"\x86\xdd":
        ip, l4 = frame[ETH_HLEN:], frame[ETH_HLEN + 40 :]
        return verifies(l4, frames.ones_sum(ip[8:40] + len(l4).to_bytes(4, "big") + bytes((0, 0, 0, 17))))
    ip, l4 = frame[ETH_HLEN : ETH_HLEN + 20], frame[ETH_HLEN + 20 :]
    return verifies(l4, frames.ones_sum(ip[12:20] + bytes((0, 17)) + len(l4).to_bytes(2, "big")))


@settings(max_examples=50, deadline=None)
@given(payload=st.binary(max_size=1400), v6=st.booleans())
def test_a_copied_partial_udp_checksum_is_marked_and_then_finished(payload: bytes, v6: bool) -> None:
    frame = udp6_frame(payload) if v6 else udp4_frame(payload)
    assert not udp_verifies(frame)  # as the sniffer reads it: the receiving stack would drop it
    vnet = frames.vnet_for_copy(frame)
    flags, gso, _, _, start, offset = VNET_HDR.unpack(vnet)
    assert (flags, gso, start, offset) == (VNET_F_NEEDS_CSUM, 0, ETH_HLEN + (40 if v6 else 20), 6)
    (done,) = frames.segment(vnet, frame)  # what a Go peer gets; a weavenet peer's kernel does the same
    assert udp_verifies(done) and done[: start + 6] == frame[: start + 6] and done[start + 8 :] == frame[start + 8 :]


@settings(max_examples=50, deadline=None)
@given(payload=st.binary(max_size=1400), v6=st.booleans())
def test_a_copied_complete_udp_checksum_is_left_alone_or_finished_into_itself(payload: bytes, v6: bool) -> None:
    frame = udp6_frame(payload, partial=False) if v6 else udp4_frame(payload, "full")
    vnet = frames.vnet_for_copy(frame)
    # a complete checksum equal to the pseudo-header sum (1 in 65535) is marked, and finished into the same value
    assert vnet == frames.ZERO_VNET or frames.segment(vnet, frame) == [frame]


def test_frames_that_are_not_a_whole_partial_udp_datagram_are_not_marked() -> None:
    z = frames.ZERO_VNET
    assert frames.vnet_for_copy(udp4_frame(b"hello", "none")) == z  # IPv4 without a UDP checksum
    assert frames.vnet_for_copy(udp4_frame(b"hello", frag=0x2000)) == z  # first fragment
    assert frames.vnet_for_copy(udp4_frame(b"hello", frag=0x0010)) == z  # a later one
    assert frames.vnet_for_copy(udp4_frame(b"hello") + bytes(20)) == z  # padded
    assert frames.vnet_for_copy(udp4_frame(b"hello")[:-1]) == z  # truncated
    assert frames.vnet_for_copy(tcp_frame(b"x", partial=True)) == z  # TCP is never broadcast
    assert frames.vnet_for_copy(bytes.fromhex("ffffffffffff" "0a1122334455" "0806") + bytes(46)) == z  # ARP
    assert frames.vnet_for_copy(udp4_frame(b"hello")) != z


@given(data=st.binary(max_size=120))
def test_marking_copies_never_fails_on_arbitrary_frames(data: bytes) -> None:
    for frame in (data, MCAST_ETH + data, udp4_frame(b"")[:34] + data):
        vnet = frames.vnet_for_copy(frame)
        assert vnet == frames.ZERO_VNET or VNET_HDR.unpack(vnet)[4] + 8 <= len(frame)
