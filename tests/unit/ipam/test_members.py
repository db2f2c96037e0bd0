"""Who takes part in automatic reclaim: the statements table, its wire format, and the allocator's channel."""

from __future__ import annotations

import struct

import pytest

from weavenet.core.names import PeerName
from weavenet.errors import RemoteProtocolError
from weavenet.ipam import members as mb
from weavenet.ipam.members import Members, Statement
from weavenet.ipam.reclaim import Reclaimer
from weavenet.ipam.ring import Ring
from weavenet.sim.ipam_cluster import IpamCluster

A, B, C, D, E = (PeerName(0x0A0000000000 + i) for i in (1, 2, 3, 4, 5))


def table(current: dict[PeerName, int] | None = None, reclaims: bool = True) -> Members:
    known = current or {}
    return Members(A, 11, reclaims, known.get)


# ------------------------------------------------------------------------------------------------ wire


def test_encode_decode_round_trip_and_unknown_flags() -> None:
    t = {B: Statement(7, 3, True), A: Statement(5, 1, False)}
    raw = mb.encode(t)
    assert raw[0] == mb.FORMAT and len(raw) == 1 + 2 * 23
    assert mb.decode(raw) == t
    assert mb.decode(mb.encode(t, [B, D])) == {B: t[B]}  # names not in the table are left out
    other_bits = bytes((mb.FORMAT,)) + struct.pack(">6sQQB", C.bytes6(), 1, 2, 0xFE)
    assert mb.decode(other_bits) == {C: Statement(1, 2, False)}  # bits for later use are ignored


def test_malformed_is_refused_and_another_format_ignored() -> None:
    with pytest.raises(RemoteProtocolError, match="empty"):
        mb.decode(b"")
    with pytest.raises(RemoteProtocolError, match="malformed"):
        mb.decode(bytes((mb.FORMAT,)) + b"\x00" * 22)
    assert mb.decode(b"\x02anything") is None


# ------------------------------------------------------------------------------------------------ the table


def test_merge_keeps_the_higher_version_and_only_peers_worth_keeping() -> None:
    m = table()
    keep = {B, C}.__contains__
    assert m.merge({B: Statement(1, 2, True), D: Statement(1, 9, True)}, keep) == {B}
    assert D not in m.table
    assert m.merge({B: Statement(1, 1, False)}, keep) == set()  # older: ignored
    assert m.merge({B: Statement(2, 3, False)}, keep) == {B}
    assert m.table[B] == Statement(2, 3, False)
    # a tie (a lost store) goes the same way on every peer
    assert m.merge({B: Statement(9, 3, False)}, keep) == {B}
    assert m.merge({B: Statement(2, 3, True)}, keep) == set()


def test_own_statement_is_made_above_any_older_incarnation() -> None:
    m = table()
    m.load({A: Statement(99, 4, False), B: Statement(1, 2, True)})
    assert m.own == Statement(11, 5, True) and m.table[B] == Statement(1, 2, True)
    assert m.merge({A: Statement(99, 4, False)}, lambda _: True) == set()  # older than ours
    assert m.merge({A: Statement(98, 8, False)}, lambda _: True) == {A}  # a store was lost: say it again, above
    assert m.own == Statement(11, 9, True)
    assert m.merge({A: m.own}, lambda _: True) == set()


def test_yields_holds_for_the_incarnation_that_said_it() -> None:
    current: dict[PeerName, int] = {}
    m = Members(A, 11, True, current.get)
    m.merge({B: Statement(7, 1, True), C: Statement(8, 1, False)}, lambda _: True)
    assert m.yields(B) and m.reclaims(B)  # unreachable and forgotten by the topology: what it last said
    current[B] = 7
    assert m.yields(B)
    current[B] = 70  # restarted (as Weave 2.8, or with reclaim off?): not until it says so again
    assert not m.yields(B) and m.reclaims(B)
    assert m.why_not(B) == "it restarted and has not said yet whether it gives reclaimed space back"
    assert not m.yields(C) and not m.reclaims(C)
    assert m.why_not(C) == "automatic reclaim is off on that peer"
    assert not m.yields(D) and not m.reclaims(D)
    assert m.why_not(D) == "a Weave 2.8 peer, or not known to give reclaimed space back"
    assert m.prune({A, C}.__contains__) and set(m.table) == {A, C}


# ------------------------------------------------------------------------------------------------ reclaim rules


class _Said:
    def __init__(self, reclaim: set[PeerName]) -> None:
        self.reclaim = reclaim

    def reclaims(self, peer: PeerName) -> bool:
        return peer in self.reclaim

    def yields(self, peer: PeerName) -> bool:
        return peer in self.reclaim

    def said(self, peer: PeerName) -> bool:
        return peer in self.reclaim

    def why_not(self, peer: PeerName) -> str:
        return "silent"


def test_reclaimer_is_the_lowest_reachable_owner_that_reclaims_and_only_yielding_peers_lose_space() -> None:
    ring = Ring(0x0A200000, 0x0A300000, B)
    ring.claim_for_peers([A, B, C, D, E])
    up = {A, B, E}.__contains__  # 3 of 5 owners: a majority
    r = Reclaimer(after=10, settle=0, grace=15)
    said = _Said({B, C})  # A (lowest, reachable) never reclaims: a Weave 2.8 peer; D never said it yields
    for t in (0.0, 10.0):
        r.observe(ring, B, up, t)
    # A said nothing yet: it might be a weavenet peer whose statement is still on its way, so B waits
    assert r.due(ring, B, up, 10.0, said) == []
    assert {s.peer: s.plan for s in r.stuck(ring, B, up, 10.0, str, said)}[C] == (
        f"not reclaimed yet: waiting up to 5s to hear whether {A} reclaims automatically (a Weave 2.8 peer never does)"
    )
    r.observe(ring, B, up, 20.0)
    stuck = {s.peer: s.plan for s in r.stuck(ring, B, up, 20.0, str, said)}
    assert stuck == {C: "this peer reclaims its space in 0s", D: "not reclaimed automatically: silent"}
    assert {s.peer: s.plan for s in r.stuck(ring, E, up, 20.0, str, said)}[C].startswith(
        f"{B} reclaims its space in about"
    )
    nobody = _Said({C})  # the only peer that said it reclaims is the one cut off
    assert {s.peer: s.plan for s in r.stuck(ring, B, up, 20.0, str, nobody)}[C] == (
        "not reclaimed automatically: no reachable peer owning IP space reclaims automatically"
    )
    assert r.due(ring, B, up, 20.0, nobody) == []
    assert r.due(ring, B, up, 20.0, said) == [C]
    up_c = {A, B, C}.__contains__  # as C sees it, were it on B's side
    assert r.due(ring, C, up_c, 40.0, said) == []  # from C's side: B is lower and reclaims


def test_allocator_channel_refuses_malformed_ignores_other_formats_and_relays() -> None:
    c = IpamCluster(2, seed=1)
    gossiper = c.peers[0].alloc.members_gossiper()
    alloc = c.peers[0].alloc
    with pytest.raises(RemoteProtocolError):
        gossiper.on_gossip_broadcast(c.peers[1].name, b"\x01\x00", c.now)
    assert alloc.refused_count == 1 and "malformed IPAM members message" in alloc.refusals[-1]
    assert gossiper.on_gossip(b"\x07later", c.now) is None and alloc.refused_count == 1
    other = c.peers[1].name
    said = mb.encode({other: Statement(5, 40, True)})
    relayed = gossiper.on_gossip_broadcast(other, said, c.now)
    assert relayed is not None and mb.decode(relayed.encode()[0]) == {other: Statement(5, 40, True)}
    assert gossiper.on_gossip(said, c.now) is None  # nothing new: gossip is not passed on
    assert mb.decode(c.peers[0].stored[mb.STORE_KEY])[other] == Statement(5, 40, True)  # type: ignore[index]
    assert mb.decode(gossiper.gossip(c.now).encode()[0]).keys() == {c.peers[0].name, other}  # type: ignore[union-attr]


def test_go_peers_in_the_simulation_say_nothing() -> None:
    c = IpamCluster(3, seed=2, go_peers=[0])
    c.run_for(1)
    assert set(c.peers[1].alloc.members.table) == {c.peers[1].name, c.peers[2].name}
    assert mb.CHANNEL not in c.peers[0].gossipers
