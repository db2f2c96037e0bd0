"""A weavenet peer and a peer that behaves as Weave 2.8 (Go) does, over the real router cores in the simulated
network: the Go stand-in is a router with ``extensions`` off (no Weavenet* feature sent or read, so Weave's own
protocol and timings: heartbeats every 10 s per overlay once established, 60 s timeouts, TCP heartbeat every 30 s,
PMTU verification frames answered). An underlay that goes dark without an error must be noticed within seconds,
as between weavenet peers, with exactly the idle traffic a Go peer's connection had (``core/liveness.py``)."""

from __future__ import annotations

import pytest

from weavenet.core.fastdp import FastdpForwarder
from weavenet.core.liveness import CHALLENGE_LEN
from weavenet.core.names import PeerName
from weavenet.core.router import MeshConfig
from weavenet.core.sleeve import SLOW_HEARTBEAT, SleeveForwarder
from weavenet.sim.network import SimNetwork

GO = 1  # the Go stand-in; peer 0 is weavenet


def cfg(i: int, fastdp: bool, weavenet_extensions: bool = True) -> MeshConfig:
    go = i == GO
    return MeshConfig(
        name=PeerName(0x0A0000000000 + i + 1),
        nickname=f"p{i + 1}",
        overlays=("fastdp", "sleeve") if fastdp else ("sleeve",),
        gossip_filter=not go,
        extensions=weavenet_extensions and not go,
    )


def pair(fastdp: bool, seed: int = 1, go_dials: bool = True, udp_loss: float = 0.0, **kw: bool) -> SimNetwork:
    net = SimNetwork(2, seed=seed, config=lambda i: cfg(i, fastdp, **kw), udp_loss=udp_loss)
    net.connect(GO if go_dials else 0, [0 if go_dials else GO])
    up = lambda: all(p.router.by_peer and all(c.established for c in p.router.by_peer.values()) for p in net.peers)  # noqa: E731
    assert net.run_until_true(up, 30) is not None
    return net


def noticed_after_cut(net: SimNetwork) -> float:
    net.cut(0, GO)
    took = net.run_until_true(lambda: not net.peers[0].router.by_peer, 120, step=0.05)
    assert took is not None
    return took


@pytest.mark.parametrize(("fastdp", "bound"), [(True, 7.5), (False, 10.0)])
def test_a_silent_go_peer_is_noticed_within_seconds(fastdp: bool, bound: float) -> None:
    """Was 50-60 s (the sleeve's 60 s heartbeat timeout), then 12 s on one heartbeat stream (sleeve only) before
    regular challenges. Cut at moments spread over two heartbeat periods."""
    worst = 0.0
    for k in range(12):
        net = pair(fastdp, seed=k, go_dials=bool(k % 2))
        net.run_for(30 + k * 1.7)
        worst = max(worst, noticed_after_cut(net))
    assert worst <= bound, worst


def test_the_go_peers_two_heartbeat_streams_are_interleaved() -> None:
    """The second first-ack is held, so the sleeve's and the fast datapath's heartbeats come 5 s apart."""
    net = pair(fastdp=True)
    net.run_for(40)
    conn = net.peers[0].router.by_peer[net.peers[GO].name]
    sleeve, fastdp = conn.sleeve_forwarder(), conn.fastdp_forwarder()
    assert isinstance(sleeve, SleeveForwarder) and isinstance(fastdp, FastdpForwarder)
    assert sleeve.last_heartbeat is not None and fastdp.last_rx is not None
    offset = abs(fastdp.last_rx - sleeve.last_heartbeat) % SLOW_HEARTBEAT
    assert abs(offset - SLOW_HEARTBEAT / 2) < 0.5, offset
    assert fastdp.healthy and conn.best_forwarder() is fastdp  # held for a few seconds, then fastdp as before


@pytest.mark.parametrize("fastdp", [True, False])
def test_an_idle_go_connection_carries_what_it_did(fastdp: bool) -> None:
    """Ten idle minutes, both directions, against a router that does not watch (the weavenet peer with its
    extensions off behaves towards a Go peer exactly as before the watch existed). With the fast datapath: the
    same bytes and packets. Sleeve only: the same datagrams (a regular challenge every 10 s, our heartbeat riding
    in every other one), plus the Go peer's answers over TCP: a few bytes a second more (measured +6 %)."""

    def idle(watching: bool) -> list[tuple[int, int, int, int]]:
        net = pair(fastdp, weavenet_extensions=watching)
        net.run_for(60)
        before = [(p.stats.tcp_bytes, p.stats.tcp_writes, p.stats.udp_bytes, p.stats.datagrams) for p in net.peers]
        net.run_for(600)
        after = [(p.stats.tcp_bytes, p.stats.tcp_writes, p.stats.udp_bytes, p.stats.datagrams) for p in net.peers]
        return [tuple(b - a for a, b in zip(x, y, strict=True)) for x, y in zip(before, after, strict=True)]  # type: ignore[misc]

    watching, before = idle(watching=True), idle(watching=False)
    if fastdp:
        assert watching == before
        return
    assert [w[3] for w in watching] == [b[3] for b in before]  # datagrams each way
    assert watching[0][:2] == before[0][:2]  # our TCP bytes and writes
    total = lambda rows: sum(r[0] + r[2] for r in rows)  # noqa: E731
    assert total(before) < total(watching) <= 1.08 * total(before), (watching, before)


@pytest.mark.parametrize("fastdp", [True, False])
def test_a_lossy_underlay_costs_challenges_not_the_connection(fastdp: bool) -> None:
    """5 % UDP loss: lost heartbeats are followed by challenges, which the Go peer answers; nothing is torn down."""
    net = pair(fastdp=fastdp, udp_loss=0.05)
    router = net.peers[0].router
    conn = router.by_peer[net.peers[GO].name]
    sleeve = conn.sleeve_forwarder()
    assert sleeve is not None
    challenges = 0
    original = sleeve.challenge

    def counted(size: int, now: float | None = None) -> bool:
        nonlocal challenges
        assert size == CHALLENGE_LEN
        challenges += now is None  # a challenge after a lost heartbeat, not a regular one
        return original(size, now)

    sleeve.challenge = counted  # type: ignore[method-assign]
    net.run_for(1800)
    assert router.by_peer.get(net.peers[GO].name) is conn  # the same connection, never re-dialled
    assert challenges > 0
    go_sleeve = net.peers[GO].router.sleeve
    assert go_sleeve.counters.bad_special == 0 and go_sleeve.counters.malformed == 0


def test_a_go_peer_is_not_watched_by_a_go_peer_and_weavenet_peers_are_not_challenged() -> None:
    """Only weavenet watches, and only peers without its features (weavenet peers heartbeat every 2 s)."""
    net = pair(fastdp=True)
    go_features = net.peers[0].router.by_peer[net.peers[GO].name].features
    assert go_features is not None and not [k for k in go_features.raw if k.startswith("Weavenet")]
    assert net.peers[0].router.by_peer[net.peers[GO].name].watch
    assert not net.peers[GO].router.by_peer[net.peers[0].name].watch
    both = SimNetwork(2, seed=2, config=lambda i: MeshConfig(name=PeerName(0x0A0000000000 + i + 1), nickname="p"))
    both.connect(1, [0])
    assert both.run_until_true(lambda: bool(both.peers[0].router.by_peer), 30) is not None
    assert not any(c.watch for p in both.peers for c in p.router.by_peer.values())


def test_a_closed_sleeve_path_with_a_working_fast_datapath_costs_at_most_one_reconnection() -> None:
    """Challenges take the sleeve's path: when only that path closes, they go unanswered before the fast datapath's
    next heartbeat was due, and the connection is re-dialled once; from then on the peer's sleeve heartbeats never
    come, so no challenge goes, and the connection lives on the fast datapath (liveness: ``live``)."""
    net = pair(fastdp=True, go_dials=False, udp_loss=0.03)  # lost fastdp heartbeats: not a silent peer
    router, go = net.peers[0].router, net.peers[GO].name
    net.run_for(20)
    net.block_sleeve(0, GO)
    seen = []
    for _ in range(1200):
        net.run_for(1.0)
        conn = router.by_peer.get(go)
        if conn is not None and (not seen or seen[-1] is not conn):
            seen.append(conn)
    assert len(seen) <= 2, f"{len(seen) - 1} reconnections"
    conn = router.by_peer[go]
    fastdp = conn.fastdp_forwarder()
    assert conn.established and fastdp is not None and conn.best_forwarder() is fastdp
