"""weaveDNS over the real mesh cores in the simulated network: entries spread to every peer, tombstones beat
late gossip and survive a partition, and a peer that leaves takes its entries with it."""

from __future__ import annotations

from weavenet.core.names import PeerName
from weavenet.dns.entries import parse_addr
from weavenet.dns.nameserver import CHANNEL, Nameserver
from weavenet.sim.network import SimNetwork, SimPeer

ADDR = parse_addr("10.2.1.1")


def with_dns(net: SimNetwork) -> list[Nameserver]:
    out = []
    for p in net.peers:
        router = p.router
        ns = Nameserver(
            p.name,
            "weave.local.",
            lambda n, r=router: r.topology.get(n) is not None,  # type: ignore[misc]
            wall_offset=net.clock.wall() - net.clock.now(),
        )
        ns.set_sink(router.new_gossip(CHANNEL, ns))
        router.on_peer_removed.append(lambda peer, ns=ns: ns.peer_gone(peer.name))  # type: ignore[misc]
        out.append(ns)
    return out


def do(net: SimNetwork, peer: SimPeer, fn: object) -> None:
    """Run a local change at ``peer`` as an input of its router, so what it sends goes out."""
    net._input(peer, lambda r, now: fn())  # type: ignore[operator]


def resolves(nss: list[Nameserver], idx: list[int], name: str = "a1.weave.local.") -> list[bool]:
    return [bool(nss[i].lookup(name)) for i in idx]


def mesh(n: int, seed: int = 1) -> tuple[SimNetwork, list[Nameserver]]:
    net = SimNetwork(n, seed=seed)
    nss = with_dns(net)
    for i in range(1, n):
        net.connect(i, [0])
    assert net.run_until_true(net.converged, 30) is not None
    return net, nss


def test_an_entry_spreads_to_every_peer_and_its_removal_too() -> None:
    net, nss = mesh(6)
    everyone = list(range(6))
    do(net, net.peers[2], lambda: nss[2].add("a1.weave.local.", "c1", ADDR, net.now()))
    assert net.run_until_true(lambda: all(resolves(nss, everyone)), 10, step=0.1) is not None
    do(net, net.peers[2], lambda: nss[2].delete(None, "c1", None, net.now()))
    assert net.run_until_true(lambda: not any(resolves(nss, everyone)), 10, step=0.1) is not None
    # the periodic full gossip keeps everyone at the same state
    net.run_for(70)
    assert not any(resolves(nss, everyone))
    assert all(len(ns.entries) == 1 for ns in nss)


def test_late_gossip_does_not_resurrect_a_tombstone() -> None:
    net, nss = mesh(3)
    do(net, net.peers[0], lambda: nss[0].add("a1.weave.local.", "c1", ADDR, net.now()))
    assert net.run_until_true(lambda: all(resolves(nss, [0, 1, 2])), 10, step=0.1) is not None
    stale = nss[1].gossip(net.now())
    assert stale is not None
    old_payload = stale.encode()[0]
    do(net, net.peers[0], lambda: nss[0].container_died("c1", net.now()))
    assert net.run_until_true(lambda: not any(resolves(nss, [0, 1, 2])), 10, step=0.1) is not None
    nss[2].on_gossip(old_payload, net.now())  # the old state arrives late
    assert not any(resolves(nss, [0, 1, 2]))


def test_tombstone_wins_after_a_partition_heals() -> None:
    net, nss = mesh(5, seed=3)
    everyone = list(range(5))
    for i, name in ((0, "a1"), (4, "a3")):
        do(
            net,
            net.peers[i],
            lambda i=i, name=name: nss[i].add(f"{name}.weave.local.", name, ADDR + i, net.now()),
        )
    assert net.run_until_true(lambda: all(resolves(nss, everyone, "a3.weave.local.")), 10, step=0.1) is not None
    assert net.run_until_true(lambda: all(resolves(nss, everyone, "a1.weave.local.")), 10, step=0.1) is not None
    left, right = [0, 1, 2], [3, 4]
    net.partition(left, right)
    do(net, net.peers[0], lambda: nss[0].delete("a1.weave.local.", None, None, net.now()))
    assert net.run_until_true(lambda: not any(resolves(nss, left)), 10, step=0.1) is not None
    net.run_for(120)  # long enough for each side to forget the other
    net.heal_all()
    assert net.run_until_true(net.converged, 300, step=1.0) is not None
    assert net.run_until_true(lambda: all(resolves(nss, everyone, "a3.weave.local.")), 60, step=0.5) is not None
    net.run_for(70)
    assert not any(resolves(nss, everyone))


def test_a_departed_peer_takes_its_entries_with_it() -> None:
    net, nss = mesh(4, seed=5)
    do(net, net.peers[3], lambda: nss[3].add("a1.weave.local.", "c1", ADDR, net.now()))
    do(net, net.peers[1], lambda: nss[1].add("b.weave.local.", "c2", ADDR + 1, net.now()))
    assert net.run_until_true(lambda: all(resolves(nss, [0, 1, 2, 3])), 10, step=0.1) is not None
    net.peers[3].up = False
    for i in (0, 1, 2):
        net.cut(i, 3)
    gone = net.run_until_true(lambda: not any(resolves(nss, [0, 1, 2])), 180, step=1.0)
    assert gone is not None, "a departed peer's entries stayed"
    assert all(ns.lookup("b.weave.local.") for ns in nss[:3])
    assert all(PeerName(nss[3].ourname) not in {PeerName(e.origin) for e in ns.entries} for ns in nss[:3])


def test_a_removal_lost_with_a_broken_connection_arrives_with_its_replacement() -> None:
    """Found by the chaos run (bench/chaos.py --seed 424242 --duration 600): a removal broadcast on a connection
    that was cut and then timed out is lost with it; the connection that replaces it (the peer still reachable
    through a third one, so not a "new peer") carried nothing, and the removed name resolved on that peer, to an
    address since given to another container, until the 30 s full gossip. A replacement resyncs at once."""
    net, nss = mesh(3, seed=3)
    assert net.run_until_true(lambda: len(net.peers[1].router.by_peer) == 2, 30) is not None  # 1-2 by discovery
    do(net, net.peers[1], lambda: nss[1].add("a1.weave.local.", "c1", ADDR, net.now()))
    assert net.run_until_true(lambda: all(resolves(nss, [0, 1, 2])), 10, step=0.1) is not None
    net.run_for(31)  # just past a periodic round: the next one is half a minute away
    net.cut(1, 2)
    net.run_for(0.5)
    do(net, net.peers[1], lambda: nss[1].delete(None, "c1", None, net.now()))
    assert net.run_until_true(lambda: net.peers[1].name not in net.peers[2].router.by_peer, 20, step=0.1) is not None
    assert resolves(nss, [0, 1, 2]) == [False, False, True]  # 2 still has it: the removal went down the cut link
    net.heal(1, 2)
    took = net.run_until_true(lambda: not any(resolves(nss, [0, 1, 2])), 20, step=0.1)
    assert took is not None and took < 3, f"the removal reached peer 2 only {took} s after the link came back"
