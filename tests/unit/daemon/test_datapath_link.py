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
