"""Topology merge rules, placeholders, GC and short IDs (mesh peers.go), and the Go-generated topology vectors."""

from __future__ import annotations

import random

import pytest

from tests.golden.wire_vectors import case
from weavenet.core.names import PeerName
from weavenet.core.topology import ConnSummary, Peer, Topology, TopologyEffects
from weavenet.errors import RemoteProtocolError

A, B, C, D = (PeerName.parse(f"ce:12:34:56:78:0{i}") for i in range(1, 5))


def _topo(name: PeerName = A, uid: int = 1, short_id: int = 1) -> Topology:
    return Topology(Peer(name, "a", uid=uid, short_id=short_id, has_short_id=True), random.Random(0))


def _peer(
    name: PeerName, version: int, uid: int = 7, nick: str = "x", short_id: int = 5, conns: dict | None = None
) -> Peer:
    return Peer(name, nick, uid=uid, version=version, short_id=short_id, has_short_id=True, connections=conns or {})


def _payload(*peers: Peer) -> bytes:
    src = _topo(PeerName(0x0F0000000001), uid=99)
    for p in peers:
        src.by_name[p.name] = p
    return src.encode_peers([p.name for p in peers])


def _vector_topology(inputs: dict) -> Topology:
    local = PeerName.parse(inputs["local_peer"])
    peers = {}
    for p in inputs["peers"]:
        peers[p["Name"]] = Peer(
            PeerName.parse(p["Name"]),
            p["NickName"],
            uid=p["UID"],
            version=p["Version"],
            short_id=p["ShortID"],
            has_short_id=p["HasShortID"],
        )
    ourself = peers[str(local)]
    topo = Topology(ourself, random.Random(0))
    for p in peers.values():
        topo.by_name[p.name] = p
    for c in inputs["connections"] or []:
        src = topo.by_name[PeerName.parse(c["from"])]
        dst = PeerName.parse(c["to"])
        src.connections[dst] = ConnSummary(dst, c["RemoteTCPAddr"], c["Outbound"], c["Established"])
    return topo


@pytest.mark.parametrize(
    "name",
    [
        "topology_full_3_peers",
        "topology_update_local_only",
        "topology_peer_without_short_id",
        "topology_single_peer_no_connections",
    ],
)
def test_topology_vectors(name: str) -> None:
    c = case("gossip", name)
    topo = _vector_topology(c["inputs"])
    names = [PeerName.parse(n) for n in c["inputs"]["update_names"]]
    assert topo.encode_peers(names).hex() == c["output_hex"]
    # and a fresh peer merges it into exactly what was described
    other = _topo(PeerName(0x0E0000000001), uid=5)
    result = other.apply_update(bytes.fromhex(c["output_hex"]))
    assert result.received == set(names) == result.improved
    for entry in c["decoded"]:
        pn = PeerName.from_bytes6(bytes.fromhex(entry["peer"]["NameByte"]))
        got = other.by_name[pn]
        assert (got.uid, got.version, got.nickname) == (
            entry["peer"]["UID"],
            entry["peer"]["Version"],
            entry["peer"]["NickName"],
        )
        assert {str(k) for k in got.connections} == {
            str(PeerName.from_bytes6(bytes.fromhex(x["NameByte"]))) for x in entry["connections"]
        }


def test_newer_version_wins_and_placeholders_appear() -> None:
    topo = _topo()
    b1 = _peer(B, 1, conns={C: ConnSummary(C, "10.0.0.3:6783", True, True)})
    r = topo.apply_update(_payload(b1))
    assert r.improved == {B}
    assert topo.by_name[C].is_placeholder  # known only from B's connection list
    assert topo.apply_update(_payload(_peer(B, 1, nick="older-same"))).improved == set()
    assert topo.apply_update(_payload(_peer(B, 0))).improved == set()
    r = topo.apply_update(_payload(_peer(B, 2, nick="new")))
    assert r.improved == {B} and topo.by_name[B].nickname == "new"
    # equal version: higher UID wins; same UID: an entry with a short ID beats one without
    assert topo.apply_update(_payload(_peer(B, 2, uid=8))).improved == {B}
    no_sid = _peer(B, 3, uid=8)
    no_sid.has_short_id = False
    topo.apply_update(_payload(no_sid))
    assert topo.apply_update(_payload(_peer(B, 3, uid=8))).improved == {B}


def test_gossip_about_old_incarnation_of_ourselves_bumps_our_version() -> None:
    topo = _topo(uid=1)
    topo.ourself.version = 3
    r = topo.apply_update(_payload(_peer(A, 10, uid=2)))
    assert r.effects.local_modified and topo.ourself.version == 11 and topo.ourself.uid == 1
    r = topo.apply_update(_payload(_peer(A, 50, uid=1)))  # same UID: we are authoritative, ignore
    assert not r.effects.local_modified and topo.ourself.version == 11


def test_gc_keeps_reachable_and_referenced() -> None:
    topo = _topo()
    topo.apply_update(_payload(_peer(B, 1), _peer(C, 1)))
    topo.fetch_and_add_ref(C)
    removed = topo.garbage_collect({A}).removed
    assert [p.name for p in removed] == [B]
    assert C in topo.by_name


def test_short_id_collision_lowest_name_keeps_it() -> None:
    topo = _topo(name=B, short_id=7)  # we are B
    eff = TopologyEffects()
    topo.fetch_with_default(_peer(A, 1, short_id=7), eff)  # A < B takes short ID 7 from us
    assert eff.reassign_local_short_id and eff.invalidate_short_ids
    assert topo.by_short_id(7).name == A  # type: ignore[union-attr]
    assert topo.reassign_local_short_id(TopologyEffects())
    assert topo.ourself.short_id != 7 and topo.by_short_id(topo.ourself.short_id) is topo.ourself


def test_malformed_updates_are_rejected_whole() -> None:
    topo = _topo()
    good = _payload(_peer(B, 1))
    for bad in (good[:-1], good + b"\x00", b"\xff" * 10, b""):
        before = set(topo.by_name)
        if bad == b"":
            assert topo.apply_update(bad).received == set()
            continue
        with pytest.raises(RemoteProtocolError):
            topo.apply_update(bad)
        assert set(topo.by_name) == before




def test_a_type_id_running_past_its_message_is_refused_not_an_index_error() -> None:
    """Found by the fuzz suite: a value message whose type id claims 128 bytes (first byte 0x80) in a payload
    that otherwise uses our canonical definitions raised IndexError out of the fast path's definition check."""
    payload = bytearray(_payload(_peer(B, 3), _peer(C, 4)))
    canonical = _payload(_peer(B, 3))
    value_at = len(canonical) + 1  # the second peer's summary: its length byte, then its type id
    assert payload[value_at - 1] < 0x80 and payload[value_at] == 0xFF
    payload[value_at] = 0x80
    with pytest.raises(RemoteProtocolError):
        _topo().apply_update(bytes(payload))
