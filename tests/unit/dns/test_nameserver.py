"""The nameserver gossiper: registration rules, deletion, gossip receipt, skew, origin checks, overrides."""

from __future__ import annotations

import pytest

from weavenet.core.names import PeerName
from weavenet.dns.entries import TOMBSTONE_TIMEOUT, Entry, parse_addr
from weavenet.dns.nameserver import GOSSIP_WINDOW, Nameserver, NameserverGossip
from weavenet.dns.wire import decode_gossip, encode_gossip
from weavenet.errors import RemoteProtocolError

US, THEM, STRANGER = PeerName(0xA1), PeerName(0xB2), PeerName(0xC3)
NOW = 1_700_000_000.0


class Sink:
    def __init__(self) -> None:
        self.sent: list[list[Entry]] = []

    def gossip_unicast(self, dst: PeerName, msg: bytes) -> None:
        raise AssertionError

    def gossip_broadcast(self, data: NameserverGossip) -> None:  # type: ignore[override]
        self.sent.append(data.entries)

    def gossip_neighbour_subset(self, data: NameserverGossip) -> None:  # type: ignore[override]
        raise AssertionError


def make(name: PeerName = US) -> tuple[Nameserver, Sink]:
    ns = Nameserver(name, "weave.local", lambda p: p in (US, THEM))
    sink = Sink()
    ns.set_sink(sink)
    return ns, sink


def payload(*entries: Entry, ts: float = NOW) -> bytes:
    return encode_gossip(int(ts), list(entries))


def test_add_outside_the_domain_is_ignored_and_counted() -> None:
    ns, sink = make()
    assert ns.add("a1.example.com", "c", 1, NOW) is None
    assert ns.counters["registrations_ignored"] == 1
    assert sink.sent == []
    e = ns.add("a1.weave.local", "c", parse_addr("10.0.0.1"), NOW)
    assert e is not None and e.hostname == "a1.weave.local."
    assert sink.sent == [[e]]
    assert ns.lookup("A1.WEAVE.LOCAL.") == [parse_addr("10.0.0.1")]


def test_delete_wildcards_and_reverse_lookup() -> None:
    ns, _ = make()
    ns.add("a.weave.local.", "c1", 1, NOW)
    ns.add("a.weave.local.", "c1", 2, NOW)
    ns.add("b.weave.local.", "c2", 3, NOW)
    assert ns.reverse_lookup(2) == "a.weave.local."
    gone = ns.delete(None, "c1", 2, NOW + 1)
    assert [(e.addr, e.tombstone, e.version) for e in gone] == [(2, int(NOW) + 1, 1)]
    assert ns.reverse_lookup(2) is None
    assert len(ns.delete("b.weave.local", None, None, NOW)) == 1
    assert ns.lookup("a.weave.local.") == [1]
    assert ns.container_died("c1", NOW)[0].addr == 1
    assert ns.lookup("a.weave.local.") == []
    assert ns.local_live_count() == 0


def test_received_gossip_merges_and_returns_only_news() -> None:
    ns, _ = make()
    e = Entry("x", int(THEM), 7, "t.weave.local.")
    new = ns.on_gossip(payload(e), NOW)
    assert isinstance(new, NameserverGossip) and [x.addr for x in new.entries] == [7]
    assert ns.on_gossip(payload(e), NOW) is None  # nothing new the second time
    relayed = ns.on_gossip_broadcast(THEM, payload(e), NOW)
    assert isinstance(relayed, NameserverGossip) and len(relayed.entries) == 1  # broadcasts go on regardless
    assert ns.index().by_name[b"\x01t\x05weave\x05local\x00"] == [(7).to_bytes(4, "big")]


def test_clock_skew_refuses_the_whole_message() -> None:
    ns, _ = make()
    e = Entry("x", int(THEM), 7, "t.weave.local.")
    with pytest.raises(RemoteProtocolError, match="host clock skew of 901s exceeds 900s limit"):
        ns.on_gossip(payload(e, ts=NOW + GOSSIP_WINDOW + 1), NOW)
    assert ns.on_gossip(payload(e, ts=NOW - GOSSIP_WINDOW), NOW) is not None
    assert ns.counters["gossip_clock_skew"] == 1


def test_malformed_gossip_raises_remote_protocol_error() -> None:
    ns, _ = make()
    with pytest.raises(RemoteProtocolError):
        ns.on_gossip(b"\x05\xff\x81\x03\x01", NOW)
    assert ns.counters["gossip_malformed"] == 1


def test_entries_of_unknown_peers_are_dropped() -> None:
    ns, _ = make()
    assert ns.on_gossip(payload(Entry("x", int(STRANGER), 7, "s.weave.local.")), NOW) is None
    assert ns.lookup("s.weave.local.") == []
    assert ns.counters["entries_unknown_origin"] == 1


def test_gossip_about_our_entries_is_overridden() -> None:
    ns, sink = make()
    mine = ns.add("a.weave.local.", "c", 1, NOW)
    assert mine is not None
    sink.sent.clear()
    # a stale copy says our entry was deleted at version 5: we keep ours, at version 6
    ns.on_gossip(payload(Entry("c", int(US), 1, "a.weave.local.", version=5, tombstone=3)), NOW)
    assert ns.lookup("a.weave.local.") == [1]
    (fixed,) = sink.sent[0]
    assert (fixed.version, fixed.tombstone) == (6, 0)
    # a live entry we never had, claiming to be ours, is tombstoned and the tombstone broadcast
    sink.sent.clear()
    ns.on_gossip(payload(Entry("old", int(US), 9, "ghost.weave.local.")), NOW)
    assert ns.lookup("ghost.weave.local.") == []
    (ghost,) = sink.sent[0]
    assert ghost.tombstone == int(NOW) and ghost.version == 1


def test_peer_gone_and_tombstone_purge() -> None:
    ns, _ = make()
    ns.on_gossip(payload(Entry("x", int(THEM), 7, "t.weave.local.")), NOW)
    ns.add("a.weave.local.", "c", 1, NOW)
    ns.delete(None, "c", None, NOW)
    assert ns.peer_gone(THEM) == 1
    assert ns.lookup("t.weave.local.") == []
    assert ns.purge_tombstones(NOW + TOMBSTONE_TIMEOUT) == 0
    assert ns.purge_tombstones(NOW + TOMBSTONE_TIMEOUT + 1) == 1
    assert len(ns.entries) == 0


def test_full_gossip_and_merge_of_pending_data() -> None:
    ns, _ = make()
    assert ns.gossip(NOW) is None
    ns.add("a.weave.local.", "c", 1, NOW)
    full = ns.gossip(NOW)
    assert isinstance(full, NameserverGossip)
    ts, entries = decode_gossip(full.encode()[0])
    assert ts == int(NOW) and [e.hostname for e in entries] == ["a.weave.local."]
    a = NameserverGossip(1, [Entry("c", 1, 1, "a.", version=1)])
    b = NameserverGossip(2, [Entry("c", 1, 1, "a.", version=2, tombstone=5), Entry("d", 1, 2, "b.")])
    m = a.merge(b)
    assert isinstance(m, NameserverGossip) and m.timestamp == 2
    assert [(e.hostname, e.version) for e in m.entries] == [("a.", 2), ("b.", 0)]
