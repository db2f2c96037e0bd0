"""Weave's peer list annotation and the reclaim protocol's decisions (``weavenet.kube.peers``).

The annotation values below are what Go's ``kube-utils`` (``json.Marshal`` of its ``peerList``) writes; the
decoder follows Go's ``json.Unmarshal`` into that struct.
"""

from __future__ import annotations

import pytest

from weavenet.kube import peers as p
from weavenet.kube.peers import NodeInfo, PeerInfo, PeerList

P1, P2, P3 = "01:00:00:00:00:00", "02:00:00:00:00:00", "03:00:00:00:00:00"
GO_TWO = '{"Peers":[{"PeerName":"01:00:00:00:00:00","NodeName":"fake-node-1"},{"PeerName":"02:00:00:00:00:00","NodeName":"fake-node-2"}]}'  # noqa: E501


def test_encode_is_gos_json_marshal() -> None:
    two = PeerList().add(P1, "fake-node-1").add(P2, "fake-node-2")
    assert p.encode_peer_list(two) == GO_TWO
    assert p.encode_peer_list(PeerList()) == '{"Peers":null}'  # a nil slice
    assert p.encode_peer_list(two.remove(P1).remove(P2)) == '{"Peers":[]}'  # emptied by append: a list
    assert p.encode_peer_list(PeerList().add(P1, "a<b&c>")) == (
        '{"Peers":[{"PeerName":"01:00:00:00:00:00","NodeName":"a\\u003cb\\u0026c\\u003e"}]}'
    )


def test_decode_reads_what_go_writes_and_what_go_would_read() -> None:
    two = p.decode_peer_list(GO_TWO)
    assert two.peers == (PeerInfo(P1, "fake-node-1"), PeerInfo(P2, "fake-node-2"))
    assert p.decode_peer_list(None) == PeerList()
    assert p.decode_peer_list("null") == PeerList()
    assert p.decode_peer_list('{"Peers":null}').peers is None
    assert p.decode_peer_list('{"Peers":[]}').peers == ()
    # field names in any case, the last of duplicates, unknown fields and null entries as Go
    text = '{"peers":[{"peername":"x","NODENAME":"n","Extra":1},null],"Other":{},"PEERS":[{"PeerName":"y"}]}'
    assert p.decode_peer_list(text).peers == (PeerInfo("y", ""),)
    assert p.decode_peer_list('{"Peers":[{"PeerName":null,"NodeName":"n"}]}').peers == (PeerInfo("", "n"),)


@pytest.mark.parametrize(
    ("text", "words"),
    [
        ("{", "not JSON"),
        ("[]", "cannot unmarshal array into Go value of type main.peerList"),
        ('"x"', "cannot unmarshal string"),
        ('{"Peers":{}}', "cannot unmarshal object into Go struct field peerList.Peers"),
        ('{"Peers":[1]}', "cannot unmarshal number"),
        ('{"Peers":[{"PeerName":7}]}', "peerInfo.Peers.PeerName of type string"),
        ('{"Peers":[{"NodeName":true}]}', "cannot unmarshal bool"),
    ],
)
def test_decode_refuses_what_go_refuses(text: str, words: str) -> None:
    with pytest.raises(p.PeerListError, match=words):
        p.decode_peer_list(text)


def test_lock_keys_are_cleaned_as_gos() -> None:
    assert p.lock_key("ce:31:e0:06:45:1a") == "kube-peers.weave.works/ce_31_e0_06_45_1a"
    assert p.clean_key("a b/é") == "a_b/__"  # per byte of the UTF-8 text
    assert p.PEERS_KEY == "kube-peers.weave.works/peers" == p.clean_key(p.PEERS_KEY)


def test_disappeared_peers() -> None:
    stored = PeerList().add(P1, "n1").add(P2, "n2").add(P3, "n3").add("04:00:00:00:00:00", "n1")
    # we are P1 on n1; n3 left; our node is not in the node set (Go leaves the local node out); the other peer
    # recorded on n1 is an earlier incarnation of this host
    assert p.disappeared(stored, {"n2"}, P1, "n1") == [PeerInfo(P3, "n3"), PeerInfo("04:00:00:00:00:00", "n1")]
    assert p.disappeared(stored, {"n1", "n2", "n3"}, P1, "n1") == [PeerInfo("04:00:00:00:00:00", "n1")]
    assert p.disappeared(PeerList().add(P1, "n1"), set(), P1, "n1") == []  # never ourselves
    # one entry per peer name, the last stored (Go's map)
    dup = PeerList().add(P2, "gone").add(P2, "n2")
    assert p.disappeared(dup, {"n2"}, P1, "n1") == []


def test_lock_states() -> None:
    stored = PeerList().add(P1, "n1").add(P2, "n2")
    assert p.lock_state({}, P3, P1, stored) == p.FREE
    assert p.lock_state({p.lock_key(P3): P1}, P3, P1, stored) == p.OURS
    assert p.lock_state({p.lock_key(P3): P2}, P3, P1, stored) == p.HELD
    # held by a peer no longer in the list (it died reclaiming): free, or it would stay locked for ever
    assert p.lock_state({p.lock_key(P3): "09:00:00:00:00:00"}, P3, P1, stored) == p.FREE
    assert p.take_lock({"a": "b"}, P3, P1) == {"a": "b", p.lock_key(P3): P1}


def test_release_removes_the_peer_its_lock_and_the_locks_it_held() -> None:
    stored = PeerList().add(P1, "n1").add(P2, "n2").add(P3, "n3")
    ann = {
        p.PEERS_KEY: p.encode_peer_list(stored),
        p.lock_key(P3): P1,  # we reclaim P3
        p.lock_key("05:00:00:00:00:00"): P3,  # P3 died while reclaiming 05
        "other": "kept",
    }
    out, listed = p.release(ann, P3)
    assert listed
    assert out == {p.PEERS_KEY: p.encode_peer_list(stored.remove(P3)), "other": "kept"}
    again, listed = p.release(out, P3)
    assert (again, listed) == (out, False)


def test_add_myself() -> None:
    assert p.add_myself({}, P1, "n1") == {p.PEERS_KEY: '{"Peers":[{"PeerName":"01:00:00:00:00:00","NodeName":"n1"}]}'}
    ann = p.add_myself({}, P1, "n1")
    assert ann is not None and p.add_myself(ann, P1, "n1") is None


def test_node_peers_as_gos_get_kube_peers() -> None:
    nodes = [
        ("n1", [("InternalIP", "192.0.2.1"), ("Hostname", "n1")]),
        ("n2", [("ExternalIP", "198.51.100.2"), ("InternalIP", "192.0.2.2"), ("InternalIP", "192.0.2.22")]),
        ("n3", [("ExternalIP", "198.51.100.3"), ("InternalIP", "2001:db8::3")]),  # no IPv4 internal address
        ("n4", [("Hostname", "n4")]),
        ("n5", [("InternalIP", "::ffff:192.0.2.5"), ("InternalIP", "192.0.2.050")]),  # mapped; leading zero invalid
    ]
    local = {"192.0.2.1"}.__contains__
    assert p.node_peers(nodes, local) == [
        NodeInfo("n2", "192.0.2.22"),
        NodeInfo("n3", "198.51.100.3"),
        NodeInfo("n5", "192.0.2.5"),
    ]
    assert [n.name for n in p.node_peers(nodes, local, include_without_addr=True)] == ["n2", "n3", "n4", "n5"]
