"""weaveDNS gossip against the Go-generated vectors: our encoder makes Go's bytes, our decoder reads them, and a
nameserver driven through the same steps as Go's broadcasts the same payloads."""

from __future__ import annotations

import pytest

from tests.golden.wire_vectors import case, cases
from weavenet.core.gossip import TAG_GOSSIP, TAG_GOSSIP_BROADCAST, decode_envelope, encode_envelope
from weavenet.core.names import PeerName
from weavenet.dns.entries import Entry, parse_addr
from weavenet.dns.nameserver import CHANNEL, Nameserver, NameserverGossip
from weavenet.dns.wire import decode_gossip, encode_gossip

NAMES = [c["name"] for c in cases("dns")]


def _entries(value: dict) -> list[Entry]:
    return [
        Entry(e["ContainerID"], e["Origin"], e["Addr"], e["Hostname"], e["Version"], e["Tombstone"])
        for e in value["Entries"]
    ]


@pytest.mark.parametrize("name", NAMES)
def test_encode_is_byte_identical(name: str) -> None:
    c = case("dns", name)
    value = c["gob"]["gob_values"][0]
    entries = _entries(value)
    assert encode_gossip(value["Timestamp"], entries).hex() == c["output_hex"]
    assert encode_gossip(value["Timestamp"], list(reversed(entries))).hex() == c["output_hex"]  # we sort


@pytest.mark.parametrize("name", NAMES)
def test_decode_equals_go(name: str) -> None:
    c = case("dns", name)
    ts, entries = decode_gossip(bytes.fromhex(c["output_hex"]))
    assert ts == c["decoded"]["Timestamp"]
    assert entries == _entries(c["decoded"])


@pytest.mark.parametrize("name", NAMES)
def test_protocol_message(name: str) -> None:
    c = case("dns", name)
    msg = c["as_protocol_message"]
    raw = bytes.fromhex(msg["hex"])
    assert raw[0] == msg["tag"] == (TAG_GOSSIP if name == "full_state_gossip" else TAG_GOSSIP_BROADCAST)
    env = decode_envelope(raw[0], raw[1:])
    assert env.channel == CHANNEL
    assert env.payload.hex() == c["output_hex"]
    assert encode_envelope(env.tag, CHANNEL, env.src, env.payload) == raw


class _Sink:
    def __init__(self) -> None:
        self.broadcasts: list[NameserverGossip] = []

    def gossip_unicast(self, dst: PeerName, msg: bytes) -> None:
        raise AssertionError("nameserver never unicasts")

    def gossip_broadcast(self, data: NameserverGossip) -> None:  # type: ignore[override]
        self.broadcasts.append(data)

    def gossip_neighbour_subset(self, data: NameserverGossip) -> None:  # type: ignore[override]
        raise AssertionError("not used")


def test_nameserver_replays_the_go_scenario() -> None:
    """Add the five entries as Go's test did, then delete one: same broadcasts, same full state."""
    c = case("dns", "add_entry_broadcast")
    inp = c["inputs"]
    us = PeerName.parse(inp["local_peer"])
    clock = [float(inp["entries_added_at"])]
    ns = Nameserver(us, inp["domain"], lambda p: True)
    sink = _Sink()
    ns.set_sink(sink)
    for e in inp["entries"]:
        origin = e["Origin_uint64"]
        if origin == int(us):
            ns.add(e["Hostname"], e["ContainerID"], parse_addr(e["Addr"]), clock[0])
        else:  # a peer's entry arrives by gossip
            ns.entries.merge([Entry(e["ContainerID"], origin, e["Addr_uint32"], e["Hostname"])])
    assert sink.broadcasts[0].encode() == [bytes.fromhex(c["output_hex"])]
    clock[0] = float(inp["then"]["at"])
    sink.broadcasts.clear()
    ns.delete("db.weave.local.", "c0ffee000004", parse_addr("10.32.0.4"), clock[0])
    assert sink.broadcasts[0].encode() == [bytes.fromhex(case("dns", "tombstone_broadcast")["output_hex"])]
    full = ns.gossip(clock[0])
    assert full is not None
    assert full.encode() == [bytes.fromhex(case("dns", "full_state_gossip")["output_hex"])]


def test_container_died_broadcast_is_accepted_and_matches() -> None:
    c = case("dns", "container_died_tombstone_from_B")
    inp = c["inputs"]
    b = PeerName.parse(inp["local_peer"])
    now = float(inp["now_unix"])
    ns_b = Nameserver(b, "weave.local.", lambda p: True)
    sink = _Sink()
    ns_b.set_sink(sink)
    e = inp["entry"]
    ns_b.add(e["Hostname"], e["ContainerID"], parse_addr(e["Addr"]), now)
    sink.broadcasts.clear()
    ns_b.container_died(e["ContainerID"], now)
    payload = sink.broadcasts[0].encode()[0]
    assert payload.hex() == c["output_hex"]
    a = PeerName.parse("ce:12:34:56:78:01")
    ns_a = Nameserver(a, "weave.local.", lambda p: True)
    ns_a.entries.merge([Entry(e["ContainerID"], int(b), parse_addr(e["Addr"]), e["Hostname"])])
    assert ns_a.lookup("cache.weave.local.") == [parse_addr(e["Addr"])]
    relayed = ns_a.on_gossip_broadcast(b, payload, now)
    assert relayed is not None
    assert ns_a.lookup("cache.weave.local.") == []
