"""The policy gossip machine (``weavenet.policy.cluster``), pure: convergence of concurrent changes, tombstones,
restarted peers, the pods of each host, the wire and store encodings."""

from __future__ import annotations

import random
import zlib

import pytest

from tests.unit.policy.cluster_net import Net
from weavenet.core.names import PeerName
from weavenet.errors import RemoteProtocolError
from weavenet.policy import NetworkPolicy, Pod, PolicyInvalid
from weavenet.policy.cluster import (
    OBJECT_TOMBSTONE_KEEP,
    POD_TOMBSTONE_KEEP,
    TICK,
    PolicyCluster,
    objects_from_text,
)
from weavenet.policy.wire import FORMAT, decode, encode, pods_size

DENY = (
    "apiVersion: networking.k8s.io/v1\nkind: NetworkPolicy\nmetadata: {name: deny, namespace: x}\n"
    "spec: {podSelector: {}}\n"
)
ALLOW_B = (
    "apiVersion: networking.k8s.io/v1\nkind: NetworkPolicy\nmetadata: {name: deny, namespace: x}\n"
    "spec:\n  podSelector: {}\n  ingress: [{from: [{podSelector: {matchLabels: {pod: b}}}]}]\n"
)
NS_X = "apiVersion: v1\nkind: Namespace\nmetadata: {name: x, labels: {team: blue}}\n"


def put(c: PolicyCluster, text: str, now: float = 0.0) -> list[str]:
    return c.put_objects([(k, d) for k, d, _ in objects_from_text(text)], now)


def policies(c: PolicyCluster) -> list[NetworkPolicy]:
    return list(c.snapshot().policies)


def pod(name: str, ip: str, **labels: str) -> Pod:
    return Pod("x", name, {"pod": name, **labels}, (ip,))


def test_a_change_on_one_peer_reaches_all_and_says_what_it_did() -> None:
    net = Net(3)
    assert put(net.peers[0], DENY + "---\n" + NS_X) == ["created", "created"]
    net.deliver()
    assert net.converged()
    for c in net.peers:
        snap = c.snapshot()
        assert [p.key for p in snap.policies] == ["x/deny"]
        assert [(n.name, dict(n.labels)) for n in snap.namespaces] == [("x", {"team": "blue"})]
        assert c.has_policies()
    assert put(net.peers[1], DENY) == ["unchanged"]
    assert net.queue == []  # nothing changed, nothing said
    assert put(net.peers[1], ALLOW_B) == ["configured"]
    net.deliver()
    assert net.converged() and policies(net.peers[2])[0].ingress


def test_concurrent_changes_converge_on_the_later_one_whatever_the_order() -> None:
    net = Net(3)
    put(net.peers[0], DENY, now=1.0)
    put(net.peers[2], ALLOW_B, now=2.0)  # later, not having seen the first
    net.deliver()
    assert net.converged()
    assert all(policies(c)[0].ingress for c in net.peers)  # the later write wins everywhere
    # the same instant: the writer's peer name decides, the same way on every peer
    net = Net(3)
    put(net.peers[0], DENY, now=5.0)
    put(net.peers[1], ALLOW_B, now=5.0)
    net.deliver()
    assert net.converged() and all(policies(c)[0].ingress for c in net.peers)  # peer 2 > peer 1


def test_a_change_made_after_seeing_another_wins_even_with_a_clock_behind() -> None:
    net = Net(2)
    put(net.peers[0], DENY, now=100.0)
    net.deliver()
    put(net.peers[1], ALLOW_B, now=50.0)  # its clock is 50 s behind, but it saw the first change
    net.deliver()
    assert net.converged() and policies(net.peers[0])[0].ingress


def test_deletions_are_tombstones_that_win_over_older_writes_and_are_forgotten_late() -> None:
    net = Net(3)
    put(net.peers[0], DENY, now=1.0)
    net.deliver()
    stale = net.peers[2].gossip(net.now)  # peer 3's full state, from before the deletion
    assert stale is not None
    stale_msgs = stale.encode()
    key = ("NetworkPolicy", "x", "deny")
    assert net.peers[1].delete_object(key, now=2.0)
    assert not net.peers[1].delete_object(key, now=2.5)  # already gone: not found
    net.deliver()
    for payload in stale_msgs:  # an old copy arriving late does not bring it back
        net.peers[0].on_gossip(payload, net.now)
    assert net.converged()
    assert all(not c.snapshot().policies and not c.has_policies() for c in net.peers)
    assert key in net.peers[0].objects  # the tombstone
    # re-created after the deletion: alive again everywhere
    assert put(net.peers[2], DENY, now=3.0) == ["created"]
    net.deliver()
    assert net.converged() and all(policies(c) for c in net.peers)
    net.peers[0].delete_object(key, now=4.0)
    net.deliver()
    c = net.peers[0]
    c.handle_timer(4.0 + TICK)
    assert key in c.objects
    c.handle_timer(4.0 + OBJECT_TOMBSTONE_KEEP + TICK)
    assert key not in c.objects


def test_pods_are_per_origin_and_tombstoned() -> None:
    net = Net(3)
    a, b = net.peers[0], net.peers[1]
    assert a.put_pod("/run/netns/a", pod("a", "10.0.0.1"), 1.0)
    assert not a.put_pod("/run/netns/a", pod("a", "10.0.0.1"), 1.5)  # no change, nothing said
    b.put_pod("cid-b", pod("b", "10.0.0.2"), 1.0)
    net.deliver()
    assert net.converged()
    snap = net.peers[2].snapshot()
    assert sorted((p.name, p.host) for p in snap.pods) == [("a", "00:00:00:00:00:01"), ("b", "00:00:00:00:00:02")]
    a.put_pod("/run/netns/a", pod("a", "10.0.0.1", tier="web"), 2.0)
    assert a.remove_pod("nothing", 2.0) is False
    b.remove_pod("cid-b", 2.0)
    net.deliver()
    assert net.converged()
    assert [(p.name, dict(p.labels)) for p in net.peers[2].snapshot().pods] == [("a", {"pod": "a", "tier": "web"})]
    c = net.peers[2]
    c.handle_timer(2.0 + POD_TOMBSTONE_KEEP + TICK)
    assert "cid-b" not in c.origins[PeerName(2)].entries


def test_an_address_given_again_moves_to_the_new_container() -> None:
    net = Net(2)
    a = net.peers[0]
    a.put_pod("old", pod("old", "10.0.0.1"), 1.0)
    a.put_pod("other", pod("other", "10.0.0.2"), 1.0)
    a.put_pod("new", pod("new", "10.0.0.1"), 2.0)  # "old" died unnoticed and its address went to "new"
    net.deliver()
    assert net.converged()
    assert sorted(p.name for p in net.peers[1].snapshot().pods) == ["new", "other"]


def test_a_pod_name_taken_on_two_hosts_stays_two_pods() -> None:
    net = Net(2)
    net.peers[0].put_pod("1234", pod("web", "10.0.0.1"), 1.0)
    net.peers[1].put_pod("abcdef0123456789", pod("web", "10.0.0.2"), 1.0)
    net.deliver()
    snap = net.peers[0].snapshot()
    assert sorted(p.name for p in snap.pods) == ["web", "web~abcdef012345"]


def test_a_restarted_peer_keeps_its_policies_and_replaces_its_pods() -> None:
    net = Net(3)
    put(net.peers[0], DENY, now=1.0)
    net.peers[0].put_pod("/run/netns/a", pod("a", "10.0.0.1"), 1.0)
    net.peers[0].put_pod("/run/netns/gone", pod("gone", "10.0.0.9"), 1.0)
    net.deliver()
    old = net.peers[0].incarnation
    net.now = 10.0
    c = net.restart(0)
    assert c.incarnation > old
    assert [p.key for p in policies(c)] == ["x/deny"]  # from the store
    assert c.local_pods() == {}
    c.put_pod("/run/netns/a", pod("a", "10.0.0.1"), 10.0)  # what it finds at start
    net.deliver()
    assert net.converged()
    assert [p.name for p in net.peers[1].snapshot().pods] == ["a"]  # "gone" went with the old incarnation
    # an old echo of the previous run changes nothing anywhere
    echo = net.peers[1].origins[PeerName(1)].entries["/run/netns/a"]
    stale = encode([], [(PeerName(1), old, [("/run/netns/gone", echo)])])
    for payload in stale:
        net.peers[1].on_gossip(payload, net.now)
        c.on_gossip(payload, net.now)
    net.deliver()
    assert net.converged() and [p.name for p in net.peers[1].snapshot().pods] == ["a"]


def test_a_peer_that_lost_its_store_overrides_what_others_remember_of_it() -> None:
    net = Net(2)
    net.peers[0].put_pod("/run/netns/a", pod("a", "10.0.0.1"), 1.0)
    net.deliver()
    remembered = net.peers[1].origins[PeerName(1)].incarnation
    net.now = -3600.0  # its clock is now an hour behind and its store is gone: a lower incarnation
    c = net.restart(0, keep_store=False)
    assert c.incarnation < remembered
    c.put_pod("/run/netns/b", pod("b", "10.0.0.2"), net.now)
    net.deliver()  # ignored by peer 2: an older incarnation than the one it knows
    assert [p.name for p in net.peers[1].snapshot().pods] == ["a"]
    net.exchange()  # peer 2's gossip about peer 1 reaches it: it re-incarnates above and says its pods again
    assert c.incarnation > remembered
    assert net.converged() and [p.name for p in net.peers[1].snapshot().pods] == ["b"]


def test_same_incarnation_echoes_of_pods_we_never_had_are_tombstoned() -> None:
    net = Net(2)
    c = net.peers[0]
    forged = encode([], [(PeerName(1), c.incarnation, [("ghost", _entry(5, pod("g", "10.0.0.5")))])])
    net.peers[1].on_gossip(forged[0], net.now)
    c.on_gossip(forged[0], net.now)
    net.deliver()
    assert net.converged() and net.peers[1].snapshot().pods == ()
    assert c.counters["pods_overridden"] == 1


def _entry(seq: int, p: Pod) -> object:
    from weavenet.policy.wire import PodEntry

    return PodEntry(seq, p)


def test_unknown_hosts_pods_are_dropped_at_the_tick_and_gone_peers_at_once() -> None:
    known = {PeerName(1)}
    c = PolicyCluster(PeerName(1), 0.0, is_known_peer=lambda p: p in known)
    other = PolicyCluster(PeerName(2), 0.0)
    other.put_pod("x", pod("x", "10.0.0.3"), 0.0)
    data = other.gossip(0.0)
    assert data is not None
    for payload in data.encode():
        c.on_gossip(payload, 0.0)
    assert len(c.snapshot().pods) == 1
    c.handle_timer(TICK)
    assert c.snapshot().pods == ()
    known.add(PeerName(2))
    for payload in data.encode():
        c.on_gossip(payload, TICK)
    c.peer_gone(PeerName(2))
    assert c.snapshot().pods == ()


def test_invalid_objects_are_refused_before_anything_changes() -> None:
    with pytest.raises(PolicyInvalid) as e:
        objects_from_text(DENY + "---\n" + DENY.replace("podSelector: {}", "podSelector: {}, policyTypes: [Sideways]"))
    assert str(e.value) == (
        'The NetworkPolicy "deny" is invalid: spec.policyTypes[0]: Unsupported value: "Sideways": '
        'supported values: "Ingress", "Egress"'
    )


def test_an_object_this_version_cannot_use_is_kept_and_relayed_but_not_enforced() -> None:
    a, b = PolicyCluster(PeerName(1), 0.0), PolicyCluster(PeerName(2), 0.0)
    from weavenet.policy.wire import StoredObject

    odd = ("NetworkPolicy", "x", "future")
    doc = (
        '{"apiVersion":"networking.k8s.io/v1","kind":"NetworkPolicy",'
        '"metadata":{"name":"future","namespace":"x"},"spec":{"podSelector":{},"newField":1}}'
    )
    for payload in encode([(odd, StoredObject(5, 1, doc))], []):
        b.on_gossip(payload, 0.0)
    assert b.snapshot().policies == () and b.status()["Unusable"] == {"x/future": b.parsed[odd]}
    data = b.gossip(0.0)
    assert data is not None
    for payload in data.encode():
        a.on_gossip(payload, 0.0)
    assert a.objects[odd] == b.objects[odd]


def test_the_store_keeps_objects_clock_and_incarnation() -> None:
    c = PolicyCluster(PeerName(1), 0.0, wall_offset=1000.0)
    put(c, DENY + "---\n" + NS_X, now=1.0)
    c.delete_object(("Namespace", "", "x"), 2.0)
    d = PolicyCluster(PeerName(1), 0.0, wall_offset=0.0)  # its clock far behind: versions still go up
    assert d.load(c.stored(), 0.0) is None
    assert d.objects == c.objects and d.clock == c.clock and d.incarnation > c.incarnation
    put(d, ALLOW_B, now=0.0)
    assert d.objects[("NetworkPolicy", "x", "deny")].version > c.clock
    assert PolicyCluster(PeerName(1), 0.0).load(b"\x01nonsense", 0.0) is not None


@pytest.mark.parametrize(
    "payload",
    [
        b"",
        bytes((FORMAT,)) + b"not zlib",
        bytes((FORMAT,)) + zlib.compress(b"[1,2]"),
        bytes((FORMAT,)) + zlib.compress(b'{"objects": [["Pod", "x", "y", 1, 1, null]]}'),
        bytes((FORMAT,)) + zlib.compress(b'{"objects": [["Namespace", "", "y", -1, 1, null]]}'),
        bytes((FORMAT,)) + zlib.compress(b'{"pods": [[1, 1, [["i", 1, {"namespace": "x"}, 0]]]]}'),
        bytes((FORMAT,)) + zlib.compress(b'{"pods": [[281474976710656, 1, []]]}'),
        bytes((FORMAT,)) + zlib.compress(b" " * (9 * 1024 * 1024)),
    ],
)
def test_malformed_messages_are_refused_and_counted(payload: bytes) -> None:
    c = PolicyCluster(PeerName(1), 0.0)
    with pytest.raises(RemoteProtocolError):
        c.on_gossip(payload, 0.0)
    assert c.counters["gossip_malformed"] == 1


def test_another_format_is_ignored() -> None:
    c = PolicyCluster(PeerName(1), 0.0)
    assert c.on_gossip(b"\x02whatever", 0.0) is None and decode(b"\x02") is None


def test_gossip_size_per_thousand_containers() -> None:
    """What 1,000 Compose-made containers of one host cost in the full-state gossip (the figure in the docs:
    about 55 kB compressed, 300 kB of JSON; Docker IDs are random, so they are most of it)."""
    rng = random.Random(1)
    compose = {"app": "web", "tier": "front", "com.docker.compose.project": "shop", "com.docker.compose.service": "web"}
    pods = [
        (
            f"{rng.getrandbits(256):064x}",
            Pod("default", f"shop-web-{i}", {**compose, "com.docker.compose.container-number": str(i)},
                (f"10.32.{i // 250}.{i % 250 + 1}",)),
        )
        for i in range(1000)
    ]  # fmt: skip
    wire, raw = pods_size(pods)
    assert raw < 400_000 and wire < 80_000, (wire, raw)


def test_loading_the_store_keeps_what_gossip_brought_first() -> None:
    """The router loads its store after it started dialling: newer versions may be there already."""
    old = PolicyCluster(PeerName(1), 0.0, wall_offset=1000.0)
    put(old, DENY, now=1.0)
    stored = old.stored()
    newer = PolicyCluster(PeerName(2), 0.0, wall_offset=1000.0)
    put(newer, ALLOW_B, now=5.0)
    c = PolicyCluster(PeerName(1), 0.0, wall_offset=1000.0)
    data = newer.gossip(5.0)
    assert data is not None
    for payload in data.encode():
        c.on_gossip(payload, 5.0)
    assert c.load(stored, 6.0) is None
    assert policies(c)[0].ingress  # the newer one, from gossip
