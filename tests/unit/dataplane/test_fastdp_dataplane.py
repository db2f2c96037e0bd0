"""The data plane's share of the fast datapath: the sniffer's BPF filter, the sleeve leaving out peers the
kernel flooded to, and the rx worker handling what the sniffer saw (heartbeats to the router, broadcasts passed
on through the sleeve, or delivered when no kernel device took them)."""

from __future__ import annotations

import pickle
import socket
import struct

from hypothesis import given
from hypothesis import strategies as st

from tests.unit.dataplane.test_frames import udp4_frame
from weavenet.core.fastdp_codec import encode_vxlan, heartbeat_frame, vni_for
from weavenet.dataplane import forward, frames, vxlan
from weavenet.dataplane.channel import Channel
from weavenet.dataplane.frames import VNET_LEN
from weavenet.dataplane.mac_cache import MacCache
from weavenet.dataplane.tables import Link, Tables
from weavenet.dataplane.worker import IN_VNET, RxWorker

ME, A, B = 0xCE0000000001, 0xCE0000000002, 0xCE0000000003
SHORT = {ME: 0x101, A: 0x202, B: 0x303}
BCAST = bytes.fromhex("ffffffffffff" "0a1122334455" "0806") + bytes(46)
UNICAST = bytes.fromhex("0a0000000001" "0a1122334455" "0800") + bytes(46)


def ipv4_udp(payload: bytes, dport: int = 6784, src: str = "192.168.48.12") -> bytes:
    udp = struct.pack(">HHHH", 40000, dport, 8 + len(payload), 0) + payload
    return struct.pack(">BBHHHBBH4s4s", 0x45, 0, 20 + len(udp), 1, 0, 64, 17, 0, socket.inet_aton(src), bytes(4)) + udp


# -- the sniffer's filter ------------------------------------------------------------------------------------------


def accepts(packet: bytes, port: int = 6784) -> bool:
    return vxlan.run_program(vxlan.sniff_program(port), packet) > 0


def test_filter_passes_heartbeats_and_broadcasts_only() -> None:
    assert accepts(ipv4_udp(encode_vxlan(5, heartbeat_frame(1, 1376))))
    assert accepts(ipv4_udp(encode_vxlan(5, BCAST)))
    assert accepts(ipv4_udp(encode_vxlan(5, bytes.fromhex("01005e000001") + BCAST[6:])))  # multicast
    assert not accepts(ipv4_udp(encode_vxlan(5, UNICAST)))  # bulk traffic stays in the kernel
    assert not accepts(ipv4_udp(encode_vxlan(5, BCAST), dport=6783))
    assert not accepts(ipv4_udp(encode_vxlan(5, BCAST))[:36])  # truncated before the inner frame: rejected


def test_filter_follows_ip_options() -> None:
    pkt = bytearray(ipv4_udp(encode_vxlan(5, BCAST)))
    pkt[0] = 0x46  # a 24-byte header: the UDP header moves by 4
    pkt = pkt[:20] + bytearray(4) + pkt[20:]
    assert accepts(bytes(pkt))


@given(st.binary(max_size=80))
def test_filter_never_fails_on_garbage(data: bytes) -> None:
    vxlan.run_program(vxlan.sniff_program(6784), data)


# -- the sleeve around the kernel's flooding ---------------------------------------------------------------------


def tables(fastdp: frozenset[int] = frozenset()) -> Tables:
    links = {p: Link(p, 1, False, ("127.0.0.1", 9), None, True) for p in (A, B)}
    return Tables(
        me=ME,
        links=links,
        unicast={A: A, B: B},
        broadcast={ME: [A, B], A: [B], B: []},
        fastdp=fastdp,
        vxlan_rx=frozenset({SHORT[A]}),
        me_short=SHORT[ME],
        short_ids={s: p for p, s in SHORT.items()},
    )


def test_broadcasts_skip_peers_the_kernel_flooded_to() -> None:
    macs = MacCache()
    t = tables(fastdp=frozenset({A}))
    assert forward.from_local(t, macs, BCAST[:6], BCAST[6:12], 1.0) == [(B, ME, B)]
    # unknown unicast: the VXLAN ports do not flood it, so the sleeve takes it to every neighbour
    assert forward.from_local(t, macs, UNICAST[:6], UNICAST[6:12], 1.0) == [(A, ME, A), (B, ME, B)]
    macs.add_forced(UNICAST[:6], A, 1.0)
    assert forward.from_local(t, macs, UNICAST[:6], UNICAST[6:12], 1.0) == [(A, ME, A)]  # known: where it lives
    assert forward.from_local(tables(), macs, BCAST[:6], BCAST[6:12], 1.0) == [(A, ME, A), (B, ME, B)]


def test_a_frame_never_goes_back_to_the_neighbour_it_came_from() -> None:
    """While a peer joins, two neighbours' views of it differ and each sees the other as downstream of it: without
    this rule a broadcast of the joining peer bounced between them until their routes agreed (hundreds to thousands
    of times on a test bed, injected each time)."""
    c = 0xCE0000000009  # the joining peer, source of the broadcast
    mld = bytes.fromhex("333300000016" "0a00000000c9" "86dd") + bytes(46)
    # ME thinks C is linked to it only (passes C's broadcasts on to A); A thinks C is linked to it only (to ME)
    me_tables = Tables(me=ME, links=tables().links, unicast={A: A, c: A}, broadcast={c: [A]})
    a_tables = Tables(me=A, links={}, unicast={ME: ME, c: ME}, broadcast={c: [ME]})
    inject, hops, _ = forward.from_overlay(me_tables, MacCache(), c, ME, mld[:6], mld[6:12], 1.0, via=c)
    assert inject and hops == [(A, c, A)]  # from C itself: on to A, as the broadcast routes say
    inject, hops, _ = forward.from_overlay(a_tables, MacCache(), c, A, mld[:6], mld[6:12], 1.0, via=ME)
    assert inject and hops == []  # from ME: not back to ME, whatever A's routes say
    inject, hops, _ = forward.from_overlay(me_tables, MacCache(), c, ME, mld[:6], mld[6:12], 1.0, via=A)
    assert inject and hops == []
    # a unicast for C whose route leads back where it came from is dropped, not bounced
    assert forward.from_overlay(a_tables, MacCache(), B, c, UNICAST[:6], UNICAST[6:12], 1.0, via=ME)[1] == []
    assert forward.from_overlay(a_tables, MacCache(), B, c, UNICAST[:6], UNICAST[6:12], 1.0, via=B)[1] == [
        (ME, B, c)
    ]


# -- the rx worker and the sniffer ---------------------------------------------------------------------------------


class Rig:
    def __init__(self) -> None:
        self.tap, self.tap_far = socket.socketpair(socket.AF_UNIX, socket.SOCK_SEQPACKET)
        self.tap_far.setblocking(False)
        self.sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        self.sock.bind(("127.0.0.1", 0))
        self.hop = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)  # where the sleeve relays to
        self.hop.bind(("127.0.0.1", 0))
        self.hop.setblocking(False)
        self.ends = [socket.socketpair() for _ in range(2)]
        for _, far in self.ends:
            far.setblocking(False)
        self.worker = RxWorker(self.tap.fileno(), self.sock, Channel(self.ends[0][0]), Channel(self.ends[1][0]))
        t = tables(fastdp=frozenset({A, B}))
        t.links[B] = Link(B, 1, False, self.hop.getsockname(), None, True)
        self.worker.on_tables(t)

    def ctl(self) -> list[tuple[object, ...]]:
        out = []
        chan = Channel(self.ends[0][1])
        self.ends[0][1].setblocking(False)
        try:
            out += chan.feed(self.ends[0][1].recv(1 << 20))
        except BlockingIOError:
            pass
        return out

    @staticmethod
    def drain(sock: socket.socket) -> list[bytes]:
        out = []
        while True:
            try:
                out.append(sock.recv(1 << 17))
            except BlockingIOError:
                return out

    def close(self) -> None:
        for s in (self.tap, self.tap_far, self.sock, self.hop, *(x for pair in self.ends for x in pair)):
            s.close()


def test_sniffed_heartbeat_goes_to_the_router() -> None:
    rig = Rig()
    try:
        hb = heartbeat_frame(77, 1376)
        rig.worker.vxlan(ipv4_udp(encode_vxlan(vni_for(SHORT[A], SHORT[ME]), hb)), 1.0)
        (msg,) = rig.ctl()
        assert msg[:3] == ("vxlan_special", "192.168.48.12", vni_for(SHORT[A], SHORT[ME]))
        assert msg[3] == hb[:64] and msg[4] == len(hb)
        assert rig.drain(rig.tap_far) == []  # never onto the bridge
    finally:
        rig.close()


def test_sniffed_broadcast_is_relayed_not_injected_when_the_kernel_delivered_it() -> None:
    rig = Rig()
    try:
        rig.worker.vxlan(ipv4_udp(encode_vxlan(vni_for(SHORT[A], SHORT[ME]), BCAST)), 1.0)
        assert rig.drain(rig.tap_far) == []  # A has a kernel device here: it delivered the frame already
        assert rig.drain(rig.hop)  # broadcast[A] = [B]: passed on through the sleeve
        assert rig.worker.macs.lookup(BCAST[6:12]) == A
    finally:
        rig.close()


def test_sniffed_broadcast_without_a_device_is_delivered_here() -> None:
    rig = Rig()
    try:
        rig.worker.vxlan(ipv4_udp(encode_vxlan(vni_for(SHORT[B], SHORT[ME]), BCAST)), 1.0)
        (frame,) = rig.drain(rig.tap_far)
        assert frame[10:] == BCAST  # after the virtio-net header
        assert rig.drain(rig.hop) == []  # broadcast[B] is empty
    finally:
        rig.close()


def test_sniffed_partial_checksum_is_relayed_and_delivered_to_be_finished() -> None:
    # A datagram sent with checksum offload crosses veths as a partial skb: the kernel that receives it over VXLAN
    # trusts it, but the sniffer's copy has only the pseudo-header sum in its checksum field. It must go on with a
    # virtio-net header that has the receiving kernel (or segment(), for a Go peer) finish the checksum.
    partial = udp4_frame(b"7")
    want = frames.vnet_for_copy(partial)
    assert want != frames.ZERO_VNET
    rig = Rig()
    try:
        rig.worker.vxlan(ipv4_udp(encode_vxlan(vni_for(SHORT[A], SHORT[ME]), partial)), 1.0)  # relayed to B
        (dgram,) = rig.drain(rig.hop)
        assert dgram[IN_VNET : IN_VNET + VNET_LEN] == want and dgram[IN_VNET + VNET_LEN :] == partial
        assert rig.worker.counters["vxlan_partial_csums"] == 1
        rig.worker.vxlan(ipv4_udp(encode_vxlan(vni_for(SHORT[B], SHORT[ME]), partial)), 1.0)  # delivered here
        assert rig.drain(rig.tap_far) == [want + partial]
        complete = udp4_frame(b"7", "full")
        rig.worker.vxlan(ipv4_udp(encode_vxlan(vni_for(SHORT[A], SHORT[ME]), complete)), 1.0)
        (dgram,) = rig.drain(rig.hop)
        assert dgram[IN_VNET : IN_VNET + VNET_LEN] == frames.ZERO_VNET  # nothing to finish
    finally:
        rig.close()


def test_sniffed_packets_for_others_or_from_strangers_are_counted() -> None:
    rig = Rig()
    try:
        rig.worker.vxlan(ipv4_udp(encode_vxlan(vni_for(SHORT[A], 0x999), BCAST)), 1.0)
        rig.worker.vxlan(ipv4_udp(encode_vxlan(vni_for(0x777, SHORT[ME]), BCAST)), 1.0)
        c = rig.worker.counters
        assert c["vxlan_not_for_us"] == 1 and c["vxlan_unknown_sender"] == 1
        assert rig.drain(rig.tap_far) == [] and rig.drain(rig.hop) == []
    finally:
        rig.close()


def test_channel_messages_are_plain_data() -> None:
    # what the router unpickles from the rx worker: nothing but builtins
    msg = ("vxlan_special", "192.168.48.12", 5, b"\x00" * 64, 1390)
    assert pickle.loads(pickle.dumps(msg)) == msg
