"""Tables for the data plane from the router's state: sleeve links also for connections on the fast datapath,
and the fast-datapath facts the sleeve needs (who the kernel floods to, which VNIs it takes, short IDs)."""

from __future__ import annotations

from weavenet.core.names import PeerName
from weavenet.core.router import MeshConfig
from weavenet.core.sleeve_cipher import AEGIS256, SECRETBOX, negotiate
from weavenet.daemon.datapath_link import TableBuilder
from weavenet.sim.network import SimNetwork


def mesh(fastdp: bool) -> SimNetwork:
    overlays = ("fastdp", "sleeve") if fastdp else ("sleeve",)
    net = SimNetwork(
        2,
        seed=7,
        config=lambda i: MeshConfig(name=PeerName(0x0A0000000001 + i), nickname=f"p{i + 1}", overlays=overlays),
    )
    net.connect(1, [0])
    ok = net.run_until_true(
        lambda: all(
            p.router.by_peer
            and all(
                c.best_forwarder().name == ("fastdp" if fastdp else "sleeve")  # type: ignore[union-attr]
                for c in p.router.by_peer.values()
            )
            for p in net.peers
        ),
        30,
    )
    assert ok is not None
    return net


def test_connections_on_fastdp_keep_their_sleeve_link() -> None:
    net = mesh(fastdp=True)
    router = net.peers[0].router
    builder = TableBuilder(router)
    builder.fastdp = frozenset({int(net.peers[1].name)})
    builder.vxlan_rx = frozenset({net.peers[1].router.ourself.short_id})
    t = builder.build()
    assert t is not None
    other = int(net.peers[1].name)
    assert other in t.links and t.links[other].addr is not None  # relays and broadcasts still need it
    assert t.fastdp == {other} and t.me_short == router.ourself.short_id
    assert t.short_ids[net.peers[1].router.ourself.short_id] == other
    assert builder.build() is None  # nothing changed: nothing to push
    builder.fastdp = frozenset()
    assert builder.build() is not None  # the kernel stopped flooding: the sleeve must know at once


def test_without_fastdp_there_are_no_vxlan_facts() -> None:
    net = mesh(fastdp=False)
    t = TableBuilder(net.peers[0].router).build()
    assert t is not None and t.me_short is None and not t.short_ids and not t.fastdp


def encrypted_pair(ciphers: tuple[tuple[str, ...], tuple[str, ...]]) -> SimNetwork:
    net = SimNetwork(
        2,
        seed=11,
        config=lambda i: MeshConfig(
            name=PeerName(0x0A0000000001 + i),
            nickname=f"p{i + 1}",
            password=b"secret",
            fast_sleeve=True,
            fast_sleeve_ciphers=ciphers[i],
        ),
    )
    net.connect(1, [0])
    assert net.run_until_true(lambda: all(p.router.by_peer for p in net.peers), 30) is not None
    return net


def test_encrypted_fast_links_take_aegis_only_when_both_peers_offer_it() -> None:
    both = encrypted_pair(((AEGIS256,), (AEGIS256,)))
    for i in (0, 1):
        t = TableBuilder(both.peers[i].router).build()
        assert t is not None
        (link,) = t.links.values()
        assert link.key is not None and link.fast and link.cipher == AEGIS256
    both.run_until_true(lambda: all(c.established for p in both.peers for c in p.router.by_peer.values()), 30)
    (status,) = [s for s in both.peers[0].router.connection_status(both.now()) if s.state == "established"]
    assert status.attrs is not None and status.attrs["cipher"] == AEGIS256 and status.attrs["encrypted"] is True
    one = encrypted_pair(((AEGIS256,), ()))
    for i in (0, 1):
        t = TableBuilder(one.peers[i].router).build()
        assert t is not None
        (link,) = t.links.values()
        assert link.cipher == SECRETBOX
    one.run_until_true(lambda: all(c.established for p in one.peers for c in p.router.by_peer.values()), 30)
    (status,) = [s for s in one.peers[0].router.connection_status(one.now()) if s.state == "established"]
    assert status.attrs is not None and "cipher" not in status.attrs


def test_fast_cipher_prefers_ours_in_order_and_defaults_to_secretbox() -> None:
    assert negotiate((AEGIS256,), {"WeavenetSleeveCiphers": "x,aegis256"}) == AEGIS256
    assert negotiate((AEGIS256,), {"WeavenetSleeveCiphers": "x"}) == SECRETBOX
    assert negotiate((), {"WeavenetSleeveCiphers": "aegis256"}) == SECRETBOX
    assert negotiate((AEGIS256,), {}) == SECRETBOX


def _full_mesh_with_fastdp(n: int) -> SimNetwork:
    net = SimNetwork(
        n,
        seed=5,
        config=lambda i: MeshConfig(
            name=PeerName(0x0A0000000001 + i), nickname=f"p{i + 1}", overlays=("fastdp", "sleeve")
        ),
    )
    for i in range(1, n):
        net.connect(i, [0])
    ok = net.run_until_true(
        lambda: all(
            len(p.router.by_peer) == n - 1 and all(c.established for c in p.router.by_peer.values()) for p in net.peers
        ),
        60,
    )
    assert ok is not None
    return net


def test_tables_and_devices_are_derived_again_only_when_something_they_read_changed() -> None:
    """Idle heartbeats change nothing the tables or the VXLAN devices hold: no whole derivation for them (it
    was one per input, O(N) each, so an idle router's CPU grew with N^2); a lost peer still shows at once."""
    import asyncio

    from weavenet.daemon.fastdp_link import FastdpLink

    class _Link:
        bridge = "weave"
        tables = None

    net = _full_mesh_with_fastdp(5)
    router = net.peers[0].router
    builder = TableBuilder(router)
    devices = FastdpLink(router, lambda fn: None, lambda: 0.0, _Link(), 6784, 1376, "")  # type: ignore[arg-type]
    devices._task = asyncio.Future  # type: ignore[assignment]  # as if started: kick() reconciles
    net.run_for(10)  # fastdp health settles after the connections are established
    tables = builder.build()
    assert tables is not None and len(tables.links) == 4
    devices.kick()
    wanted = devices._wanted
    assert isinstance(wanted, dict) and len(wanted) == 4
    base_tables, base_devices = builder.derivations, devices.derivations
    inputs = 0
    after = net._after

    def after_input(peer):  # type: ignore[no-untyped-def]
        nonlocal inputs
        after(peer)
        if peer.index == 0:
            inputs += 1
            assert builder.build() is None
            devices.kick()

    net._after = after_input  # type: ignore[method-assign]
    net.run_for(30)
    assert inputs > 60  # heartbeats and gossip kept coming
    assert builder.derivations == base_tables and devices.derivations == base_devices
    assert devices._wanted == wanted

    net._after = after  # type: ignore[method-assign]
    net.peers[3].up = False  # silent: only the heartbeats' absence tells
    gone = int(net.peers[3].name)
    net.run_until_true(lambda: net.peers[3].name not in router.by_peer, 60)
    tables = builder.build()
    assert tables is not None and gone not in tables.links and len(tables.links) == 3
    devices.kick()
    assert isinstance(devices._wanted, dict) and len(devices._wanted) == 3


def test_route_only_changes_are_coalesced_and_link_changes_go_at_once() -> None:
    from weavenet.daemon.datapath_link import ROUTES_GAP, PushGate
    from weavenet.dataplane.tables import Tables

    gate = PushGate()
    t1, t2, t3, t4 = (Tables(me=1, generation=g) for g in range(1, 5))
    assert gate.offer(t1, routes_only=False, now=0.0) is t1
    assert gate.offer(t2, routes_only=True, now=0.05) is None  # routes moved again right after: they wait
    assert gate.offer(t3, routes_only=True, now=0.1) is None
    assert gate.due() == ROUTES_GAP
    assert gate.take(ROUTES_GAP) is t3  # only the newest goes
    assert gate.take(ROUTES_GAP) is None and gate.due() is None
    assert gate.offer(t4, routes_only=True, now=ROUTES_GAP + 0.01) is None
    t5 = Tables(me=1, generation=5)
    assert gate.offer(t5, routes_only=False, now=ROUTES_GAP + 0.02) is t5  # a link changed: at once, newest
    assert gate.due() is None


def test_builder_says_when_only_routes_changed() -> None:
    net = _full_mesh_with_fastdp(3)
    router = net.peers[0].router
    builder = TableBuilder(router)
    assert builder.build() is not None and not builder.routes_only
    assert builder.build() is None  # nothing moved
    builder.fastdp = frozenset({int(net.peers[1].name)})
    assert builder.build() is not None and not builder.routes_only
    other = router.topology.by_name[net.peers[2].name]  # our view of peer 2
    del other.connections[router.name]  # it stops reporting us: unicast to it goes via peer 1
    router.routes.invalidate()
    t = builder.build()
    assert t is not None and builder.routes_only and t.unicast[int(other.name)] == int(net.peers[1].name)
