"""Fuzz the fast datapath's inputs: what the raw VXLAN sniffer reads (IPv4, UDP, VXLAN, the inner frame), the
heartbeats and probes that reach the router core from it, and the overlay control messages a peer sends over
TCP to its fast-datapath forwarder.

Invariants: parsers accept or raise ``RemoteProtocolError``; the core counts every special frame once (a
heartbeat, a probe, or one drop reason); no internal error; after the garbage the fast datapath between the
two peers is still established.
"""

from __future__ import annotations

import dataclasses
import socket
import struct
from collections.abc import Iterator

import pytest
from hypothesis import given
from hypothesis import strategies as st

from tests.fuzz.budget import fuzz
from tests.fuzz.test_gossip import mutate
from tests.unit.dataplane.test_rx_worker import PEER, Rig
from weavenet.core.connection import TAG_OVERLAY_CONTROL
from weavenet.core.fastdp import FastdpForwarder
from weavenet.core.fastdp_codec import (
    decode_vxlan,
    encode_vxlan,
    heartbeat_frame,
    parse_heartbeat,
    parse_ipv4_vxlan,
    split_vni,
    vni_for,
)
from weavenet.core.names import PeerName
from weavenet.core.router import MeshConfig, MeshRouter
from weavenet.errors import RemoteProtocolError
from weavenet.sim.network import SimNetwork

flips = st.lists(st.tuples(st.integers(0, 1 << 16), st.integers(0, 255)), max_size=3)
cuts = st.one_of(st.none(), st.integers(0, 1 << 16))
junk = st.one_of(st.just(b""), st.binary(max_size=32))
ME_SHORT, PEER_SHORT = 0x101, 0x202
BCAST = bytes.fromhex("ffffffffffff0a11223344550806") + bytes(46)
UNICAST = bytes.fromhex("0a00000000010a11223344550800") + bytes(46)


def ipv4_udp(payload: bytes, dport: int = 6784, src: str = "192.168.48.12") -> bytes:
    udp = struct.pack(">HHHH", 40000, dport, 8 + len(payload), 0) + payload
    return struct.pack(">BBHHHBBH4s4s", 0x45, 0, 20 + len(udp), 1, 0, 64, 17, 0, socket.inet_aton(src), bytes(4)) + udp


PACKETS = [
    ipv4_udp(encode_vxlan(vni_for(PEER_SHORT, ME_SHORT), frame))
    for frame in (heartbeat_frame(7, 1376), heartbeat_frame(7, 1376, flags=1), BCAST, UNICAST)
]


@given(st.binary(max_size=200))
@fuzz(200)
def test_parsers_random_bytes(data: bytes) -> None:
    for fn in (lambda: parse_ipv4_vxlan(data), lambda: decode_vxlan(data), lambda: parse_heartbeat(data, len(data))):
        try:
            fn()
        except RemoteProtocolError:
            pass


@given(st.sampled_from(PACKETS), flips, cuts, junk)
@fuzz(300)
def test_sniffed_packets_mutated(packet: bytes, f: list[tuple[int, int]], cut: int | None, tail: bytes) -> None:
    try:
        got = parse_ipv4_vxlan(mutate(packet, f, cut, tail))
    except RemoteProtocolError:
        return
    assert 0 <= got.vni < 1 << 24
    try:
        parse_heartbeat(bytes(got.frame[:64]), len(got.frame))
    except RemoteProtocolError:
        pass


@pytest.fixture(scope="module")
def rig() -> Iterator[Rig]:
    r = Rig(None)
    r.worker.on_tables(dataclasses.replace(r.worker.tables, me_short=ME_SHORT, short_ids={PEER_SHORT: PEER}))
    yield r
    r.close()


@given(st.sampled_from(PACKETS), flips, cuts, junk, st.booleans())
@fuzz(300)
def test_worker_sniffed_packets(rig: Rig, packet: bytes, f: list, cut: int | None, tail: bytes, keep: bool) -> None:
    """The rx worker's handling of what the sniffer read: only ``RemoteProtocolError`` (counted by the poll loop
    as ``vxlan_malformed``) may escape."""
    try:
        rig.worker.vxlan(packet if keep else mutate(packet, f, cut, tail), 1.0)
    except RemoteProtocolError:
        pass
    rig.injected()
    assert rig.worker.counters.get("internal_errors", 0) == 0


# -- the router core on a live fast-datapath connection ------------------------------------------------------------


def _cfg(i: int) -> MeshConfig:
    return MeshConfig(name=PeerName(0x0A0000000000 + i + 1), nickname=f"p{i + 1}", overlays=("fastdp", "sleeve"))


def _fastdp_pair() -> SimNetwork:
    net = SimNetwork(2, seed=5, config=_cfg)
    net.connect(1, [0])
    assert net.run_until_true(lambda: _on_fastdp(net.peers[0].router) and _on_fastdp(net.peers[1].router), 30, 0.1)
    return net


def _forwarder(r: MeshRouter) -> FastdpForwarder:
    (conn,) = r.by_peer.values()
    fwd = conn.fastdp_forwarder()
    assert fwd is not None
    return fwd


def _on_fastdp(r: MeshRouter) -> bool:
    if not r.by_peer:
        return False
    (conn,) = r.by_peer.values()
    fwd = conn.fastdp_forwarder()
    return conn.established and fwd is not None and fwd.established and conn.best_forwarder() is fwd


special = st.tuples(
    st.sampled_from(["heartbeat", "probe", "flags"]), flips, cuts, junk, st.booleans(), st.integers(-2, 2)
)


@given(st.lists(special, min_size=1, max_size=5))
@fuzz(80)
def test_core_heartbeats_mutated(specials: list) -> None:
    net = _fastdp_pair()
    r0, r1 = net.peers[0].router, net.peers[1].router
    fwd = _forwarder(r0)
    vni = vni_for(r0.ourself.short_id, r1.ourself.short_id)
    c = r1.fastdp.counters  # type: ignore[union-attr]
    before = c.heartbeats + c.probes + c.wrong_destination + c.unknown_sender + c.wrong_connection + c.malformed
    for kind, f, cut, tail, keep, vni_delta in specials:
        frame = heartbeat_frame(fwd.conn_uid, 1376, flags=1 if kind == "flags" else None)
        if kind == "probe":
            frame = frame[:60]
        data = frame if keep else mutate(frame, f, cut, tail)
        r1.vxlan_special_received(net.peers[0].ip, (vni + vni_delta) % (1 << 24), data[:64], len(data), net.now())
        r1.actions(net.now())
    after = c.heartbeats + c.probes + c.wrong_destination + c.unknown_sender + c.wrong_connection + c.malformed
    assert after == before + len(specials)
    assert split_vni(vni)[1] == r1.ourself.short_id
    net.run_for(5)
    assert _on_fastdp(r0) and _on_fastdp(r1)


@given(st.lists(st.tuples(st.integers(0, 3), st.integers(0, 255), st.binary(max_size=12)), min_size=1, max_size=5))
@fuzz(80)
def test_core_overlay_control_messages(controls: list[tuple[int, int, bytes]]) -> None:
    """``TAG_OVERLAY_CONTROL`` ‖ forwarder index ‖ subtag ‖ body, as the peer would send them over TCP."""
    net = _fastdp_pair()
    r0, r1 = net.peers[0].router, net.peers[1].router
    (conn0,) = r0.by_peer.values()
    (conn1,) = r1.by_peer.values()
    assert conn0.framer is not None
    for index, subtag, body in controls:
        r1.data_received(conn1.id, conn0.framer.encode(bytes((TAG_OVERLAY_CONTROL, index, subtag)) + body), net.now())
        r1.actions(net.now())
        assert r1.internal_errors == 0
    net.run_for(5)
    assert _on_fastdp(r0) and _on_fastdp(r1)
