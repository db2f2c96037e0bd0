"""A router's fast datapath kept across its restart (``core/fastdp_keep.py``), over the real router cores.

A killed router's peers keep its path (their kernel keeps forwarding to its host, whose kernel still delivers)
until the relaunched router's connection takes it over; the relaunched router adopts the devices its previous
process left, with the short ID they were made of, so the new connection's devices are the same ones. A router
that stops on purpose says goodbye, a host that dies says nothing (its path is dropped as before), and a Weave
2.8 (Go) peer neither keeps nor is sent anything new.
"""

from __future__ import annotations

from weavenet.core.connection import TAG_OVERLAY_CONTROL
from weavenet.core.fastdp_keep import CONTROL_GOODBYE, KEEP_FOR, TAKEOVER
from weavenet.core.names import PeerName
from weavenet.core.router import MeshConfig
from weavenet.sim.network import SimNetwork


def cfg(i: int, go: int | None = None) -> MeshConfig:
    return MeshConfig(
        name=PeerName(0x0A0000000000 + i + 1),
        nickname=f"p{i + 1}",
        overlays=("fastdp", "sleeve"),
        extensions=i != go,
        gossip_filter=i != go,
    )


def on_fastdp(net: SimNetwork, a: int, b: int) -> bool:
    conn = net.peers[a].router.by_peer.get(net.peers[b].name)
    fwd = conn.fastdp_forwarder() if conn is not None else None
    return conn is not None and fwd is not None and fwd.healthy and conn.best_forwarder() is fwd


def pair(go: int | None = None, seed: int = 4) -> SimNetwork:
    net = SimNetwork(2, seed=seed, config=lambda i: cfg(i, go))
    net.connect(1, [0])
    assert net.run_until_true(lambda: on_fastdp(net, 0, 1) and on_fastdp(net, 1, 0), 30) is not None
    net.run_for(3)
    return net


def kept(net: SimNetwork, a: int, b: int) -> bool:
    return net.peers[b].name in net.peers[a].router.fastdp_keeps.paths


def test_kill_keeps_the_path_until_the_relaunched_router_takes_it_over() -> None:
    net = pair()
    p1 = net.peers[1]
    short_id, vnis = p1.router.ourself.short_id, p1.router.by_peer[net.peers[0].name].fastdp_forwarder().vnis  # type: ignore[union-attr]
    net.kill(1)
    net.run_for(0.1)
    assert net.peers[1].name not in net.peers[0].router.by_peer  # the reset took the connection down ...
    path = net.peers[0].router.fastdp_keeps.paths[net.peers[1].name]  # ... but not its path
    assert path.until - path.since == KEEP_FOR and "without a goodbye" in path.why
    net.run_for(5)
    assert kept(net, 0, 1)

    net.relaunch(1, targets=[0])
    new = net.peers[1].router
    assert new.ourself.short_id == short_id  # taken back from its devices' VNIs: the same devices
    assert kept(net, 1, 0) and new.fastdp_keeps.paths[net.peers[0].name].adopted
    took = net.run_until_true(lambda: not kept(net, 0, 1) and not kept(net, 1, 0), 10, step=0.05)
    assert took is not None and took < 2, took
    assert on_fastdp(net, 0, 1) and on_fastdp(net, 1, 0)
    assert new.by_peer[net.peers[0].name].fastdp_forwarder().vnis == vnis  # type: ignore[union-attr]
    assert net.peers[0].router.fastdp_keeps.counters() == {"kept": 1, "adopted": 0, "taken_over": 1, "expired": 0}
    assert new.fastdp_keeps.counters() == {"kept": 0, "adopted": 1, "taken_over": 1, "expired": 0}


def test_a_kept_path_expires_without_a_relaunch() -> None:
    net = pair()
    net.kill(1)
    net.run_for(KEEP_FOR - 1)
    assert kept(net, 0, 1)
    net.run_for(1.5)
    assert not kept(net, 0, 1)
    assert net.peers[0].router.fastdp_keeps.expired == 1


def test_a_new_connection_that_does_not_take_over_in_time_ends_the_keep() -> None:
    net = pair()
    net.kill(1)
    net.run_for(1)
    net.block_vxlan(0, 1)  # the relaunched router's fast datapath cannot work: its connection runs on the sleeve
    net.relaunch(1, targets=[0])
    assert net.run_until_true(lambda: net.peers[1].name in net.peers[0].router.by_peer, 5) is not None
    net.run_for(TAKEOVER - 1)
    assert kept(net, 0, 1)
    net.run_for(1.5)
    assert not kept(net, 0, 1) and not kept(net, 1, 0)
    assert net.peers[0].router.by_peer[net.peers[1].name].established  # on the sleeve


def test_stop_says_goodbye_and_nothing_is_kept() -> None:
    net = pair()
    net.stop(1)
    net.run_for(1)
    assert net.peers[1].name not in net.peers[0].router.by_peer
    assert not net.peers[0].router.fastdp_keeps.paths
    net.relaunch(1, targets=[0])  # it deleted its devices: nothing to adopt, a new short ID
    assert not net.peers[1].router.fastdp_keeps.paths


def test_a_router_closing_a_connection_itself_says_goodbye() -> None:
    net = pair()
    r1 = net.peers[1].router
    conn = r1.by_peer[net.peers[0].name]
    r1._shutdown(conn, RuntimeError("Multiple connections"), net.now())  # as a refusal or a timeout does
    net._after(net.peers[1])
    net.run_for(1)
    assert not net.peers[0].router.fastdp_keeps.paths


def test_host_death_is_not_kept() -> None:
    net = pair()
    net.host_death(1)
    gone = net.run_until_true(lambda: net.peers[1].name not in net.peers[0].router.by_peer, 30)
    assert gone is not None
    net.run_for(1)
    assert not net.peers[0].router.fastdp_keeps.paths


def test_go_peers_neither_keep_nor_get_a_goodbye() -> None:
    for go in (0, 1):
        go_peer_kill_relaunch_stop(go)


def go_peer_kill_relaunch_stop(go: int) -> None:
    net = pair(go=go)
    sent: list[bytes] = []
    wn = net.peers[1 - go].router
    original = wn.send_message
    wn.send_message = lambda conn, msg: (sent.append(bytes(msg)), original(conn, msg))[1]  # type: ignore[method-assign]
    net.kill(1)
    net.run_for(1)
    assert not net.peers[0].router.fastdp_keeps.paths
    net.relaunch(1, targets=[0])
    assert not net.peers[1].router.fastdp_keeps.paths  # nothing left to adopt: the peer does not keep
    assert net.run_until_true(lambda: on_fastdp(net, 0, 1), 30) is not None
    if go == 1:
        net.stop(0)  # weave stop of the weavenet peer: no goodbye to the Go peer
        net.run_for(1)
    assert bytes((TAG_OVERLAY_CONTROL, 0, CONTROL_GOODBYE)) not in sent  # fastdp is forwarder 0


def test_a_peer_back_only_through_others_ends_the_keep_soon() -> None:
    net = SimNetwork(3, seed=6, config=lambda i: cfg(i))
    net.connect(1, [0])
    net.connect(2, [0, 1])
    assert net.run_until_true(lambda: all(on_fastdp(net, a, b) for a in range(3) for b in range(3) if a != b), 30)
    net.run_for(3)
    net.kill(1)
    net.run_for(1)
    assert kept(net, 0, 1)
    net.cut(0, 1)  # the relaunched router reaches 2, not 0: 0's traffic for it must go through 2
    net.relaunch(1, targets=[2])
    gone = net.run_until_true(lambda: not kept(net, 0, 1), 20, step=0.1)
    assert gone is not None and gone < TAKEOVER + 2, gone
    assert net.peers[0].router.routes.unicast(net.peers[1].name) == net.peers[2].name
