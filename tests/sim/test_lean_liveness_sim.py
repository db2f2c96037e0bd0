"""Lean liveness between weavenet peers over the real router cores in the simulated network (``core/contact.py``):
a silent peer noticed within 6 s of the cut, a few bytes a second at idle instead of ~0.77 kB/s, a lossy path that
costs asks and not the connection, and peers that do not both announce it keep the heartbeats they had."""

from __future__ import annotations

from collections import Counter

import pytest

from weavenet.core.contact import SILENT
from weavenet.core.fastdp import FastdpForwarder
from weavenet.core.names import PeerName
from weavenet.core.router import MeshConfig
from weavenet.core.sleeve import SleeveForwarder
from weavenet.sim.network import UNDERLAY_OVERHEAD, SendVxlan, SimNetwork, SimPeer


def cfg(i: int, fastdp: bool = True, lean: bool | tuple[bool, ...] = True, password: bytes | None = None) -> MeshConfig:
    return MeshConfig(
        name=PeerName(0x0A0000000000 + i + 1),
        nickname=f"p{i + 1}",
        overlays=("fastdp", "sleeve") if fastdp else ("sleeve",),
        lean_liveness=lean if isinstance(lean, bool) else lean[i],
        password=password,
    )


def pair(seed: int = 1, udp_loss: float = 0.0, **kw: object) -> SimNetwork:
    net = SimNetwork(2, seed=seed, config=lambda i: cfg(i, **kw), udp_loss=udp_loss)  # type: ignore[arg-type]
    net.connect(1, [0])
    up = lambda: all(p.router.by_peer and all(c.established for c in p.router.by_peer.values()) for p in net.peers)  # noqa: E731
    assert net.run_until_true(up, 30) is not None
    return net


def idle_udp(net: SimNetwork, seconds: float) -> Counter[str]:
    """Bytes on the wire (IPv4 and UDP headers included) peer 0 sends in ``seconds``, by path; the sleeve's
    60001-byte fragmentation test (never sent by a running router, whose data plane does not rely on it) apart."""
    out: Counter[str] = Counter()
    udp, vxlan = net._send_udp, net._send_vxlan

    def count_udp(peer: SimPeer, addr: tuple[str, int], data: bytes) -> None:
        if peer.index == 0:
            out["frag test" if len(data) > 10_000 else "sleeve"] += len(data) + 28
        udp(peer, addr, data)

    def count_vxlan(peer: SimPeer, action: SendVxlan) -> None:
        if peer.index == 0:
            out["vxlan"] += len(action.frame) + UNDERLAY_OVERHEAD - 14
        vxlan(peer, action)

    net._send_udp, net._send_vxlan = count_udp, count_vxlan  # type: ignore[method-assign]
    try:
        net.run_for(seconds)
    finally:
        net._send_udp, net._send_vxlan = udp, vxlan  # type: ignore[method-assign]
    return out


@pytest.mark.parametrize("fastdp", [True, False])
def test_a_silent_peer_is_noticed_within_6s_of_the_cut(fastdp: bool) -> None:
    """Cut at moments spread over two beats; both ends tear the connection down (it was 6-7.5 s, 8 s at worst)."""
    worst = 0.0
    for k in range(10):
        net = pair(seed=k, fastdp=fastdp)
        net.run_for(30 + k * 0.83)
        net.cut(0, 1)
        took = net.run_until_true(lambda: not any(p.router.by_peer for p in net.peers), 30, step=0.05)  # noqa: B023
        assert took is not None
        worst = max(worst, took)
    assert worst <= SILENT + 0.1, worst


@pytest.mark.parametrize(("fastdp", "before", "after"), [(True, 700, 25), (False, 30, 20)])
def test_an_idle_connection_costs_about_20_bytes_a_second_each_way(fastdp: bool, before: int, after: int) -> None:
    """Was a full-size VXLAN heartbeat, a probe and a sleeve heartbeat every 2 s (~780 B/s each way)."""
    rates = {}
    for lean in (False, True):
        net = pair(fastdp=fastdp, lean=lean)
        net.run_for(60)
        got = idle_udp(net, 1800)
        rates[lean] = (got["sleeve"] + got["vxlan"]) / 1800
    assert rates[False] >= before and rates[True] <= after, rates


def test_a_lossy_underlay_costs_asks_not_the_connection_nor_the_fast_datapath() -> None:
    net = pair(udp_loss=0.05)
    conns = [p.router.by_peer[q.name] for p, q in ((net.peers[0], net.peers[1]), (net.peers[1], net.peers[0]))]
    on_fastdp = 0
    for _ in range(900):
        net.run_for(2.0)
        on_fastdp += all(isinstance(c.best_forwarder(), FastdpForwarder) for c in conns)
    assert [p.router.by_peer[q.name] for p, q in ((net.peers[0], net.peers[1]), (net.peers[1], net.peers[0]))] == conns
    assert on_fastdp >= 0.98 * 900, on_fastdp


def test_a_blocked_vxlan_port_moves_the_connection_to_the_sleeve_and_back_without_a_reconnection() -> None:
    net = pair()
    net.run_for(20)
    conn = net.peers[0].router.by_peer[net.peers[1].name]
    sleeve = conn.sleeve_forwarder()
    assert isinstance(sleeve, SleeveForwarder) and sleeve.covered  # the fast datapath carries the beats
    net.block_vxlan(0, 1)
    took = net.run_until_true(lambda: isinstance(conn.best_forwarder(), SleeveForwarder), 30, step=0.1)
    assert took is not None and took <= SILENT + 0.5
    assert not sleeve.covered
    net.run_for(60)
    assert net.peers[0].router.by_peer[net.peers[1].name] is conn
    net.block_vxlan(0, 1, blocked=False)
    back = net.run_until_true(lambda: isinstance(conn.best_forwarder(), FastdpForwarder), 30, step=0.1)
    assert back is not None and back < 10
    assert net.peers[0].router.by_peer[net.peers[1].name] is conn


def test_a_peer_that_does_not_announce_it_keeps_quick_heartbeats() -> None:
    """One side without ``WeavenetLiveness``: full-size VXLAN heartbeats and 2 s sleeve heartbeats, as before."""
    net = pair(lean=(True, False))
    conn = net.peers[0].router.by_peer[net.peers[1].name]
    assert not conn.lean and conn.contact is None
    got = idle_udp(net, 600)
    assert got["vxlan"] / 600 > 500
    net.cut(0, 1)
    assert net.run_until_true(lambda: not net.peers[0].router.by_peer, 30, step=0.1) is not None


def test_encrypted_lean_connections_beat_on_the_sleeve() -> None:
    net = pair(password=b"secret")
    net.run_for(30)
    got = idle_udp(net, 600)
    assert got["vxlan"] == 0 and got["sleeve"] / 600 < 30, got
