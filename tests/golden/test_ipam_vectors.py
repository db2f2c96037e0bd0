"""IPAM against Weave's golden vectors (``vectors/ipam.json``, ``vectors/persistence.json``; SPEC §5, §8).

Two layers: the codec (every payload decodes to what Go decoded and re-encodes to the same bytes), and
behaviour (real allocators, driven as the Go generator drove Weave's, emit the same messages and store the
same values). Go writes map entries in random order, so where an allocator's own maps are encoded the test
puts them in the vector's order first, and whole-message comparisons are made on decoded values.
"""

from __future__ import annotations

import random
from typing import Any

import pytest

from tests.golden.wire_vectors import case, cases
from weavenet.core.gossip import TAG_GOSSIP_BROADCAST, TAG_GOSSIP_UNICAST, GossipData, encode_envelope
from weavenet.core.names import PeerName
from weavenet.ipam import wire
from weavenet.ipam.address import CIDR
from weavenet.ipam.allocator import Allocator, AllocatorConfig
from weavenet.ipam.operations import Result

FILE = "ipam"
NOW_UNIX = 1672628645
UNIVERSE = CIDR.parse_subnet("10.32.0.0/12")
PEERS = case(FILE, "ring_seeded_initial_broadcast")["inputs"]["peers"]
A, B, C = (PeerName.parse(p["Name"]) for p in PEERS)


def test_every_case_is_covered() -> None:
    assert {c["name"] for c in cases(FILE)} == {
        "ring_seeded_initial_broadcast",
        "ring_after_gossip_and_allocations",
        "observer_ring_request",
        "unicast_space_request",
        "unicast_space_request_denied",
        "unicast_ring_update",
        "paxos_consensus_sequence",
    }


# ------------------------------------------------------------------------------------------------ harness


class View:
    def __init__(self, known: set[PeerName]) -> None:
        self.known = known

    def is_known_peer(self, name: PeerName) -> bool:
        return name in self.known

    def is_reachable(self, name: PeerName) -> bool:
        return name in self.known

    def target_count(self) -> int:
        return 2

    def peer_uid(self, name: PeerName) -> int | None:
        return None


class Capture:
    """A sink that records what the allocator sends (broadcast data stays lazy, as in the mesh)."""

    def __init__(self) -> None:
        self.out: list[tuple[str, PeerName | None, Any]] = []

    def gossip_unicast(self, dst: PeerName, msg: bytes) -> None:
        self.out.append(("unicast", dst, msg))

    def gossip_broadcast(self, data: GossipData) -> None:
        self.out.append(("broadcast", None, data))

    def gossip_neighbour_subset(self, data: GossipData) -> None:
        self.out.append(("gossip", None, data))


def make(
    i: int,
    seed: bool = False,
    peer_count: int = 0,
    observer: bool = False,
    name: PeerName | None = None,
    nickname: str | None = None,
) -> tuple[Allocator, Capture]:
    p = PEERS[i] if i < len(PEERS) else None
    cfg = AllocatorConfig(
        name=name or PeerName.parse(p["Name"]),  # type: ignore[index]
        uid=p["UID"] if p else 4,
        nickname=nickname or p["NickName"],  # type: ignore[index]
        universe=UNIVERSE,
        seed=[A, B, C] if seed else [],
        observer=observer,
        peer_count=peer_count,
        wall_offset=NOW_UNIX,
    )
    alloc = Allocator(cfg, View({A, B, C}), random.Random(i), 0.0)
    sink = Capture()
    alloc.set_sink(sink)
    alloc.start({}, [], 0.0)
    return alloc, sink


def ordered(alloc: Allocator, nicknames: list[list[Any]]) -> None:
    """Put the allocator's nickname map in the vector's (random, Go) order."""
    alloc.nicknames = {PeerName(k): v for k, v in nicknames}


def gob_value_nicknames(c: dict[str, Any]) -> list[list[Any]]:
    return c["gob"]["gob_values"][0]["Nicknames"]


# ------------------------------------------------------------------------------------------------ codec


@pytest.mark.parametrize(
    "name", ["ring_seeded_initial_broadcast", "ring_after_gossip_and_allocations", "observer_ring_request"]
)
def test_gossip_state_codec(name: str) -> None:
    c = case(FILE, name)
    raw = bytes.fromhex(c["output_hex"])
    msg = wire.decode_gossip(raw)
    d = c["decoded"]
    assert msg.now == d["Now"] == NOW_UNIX
    assert msg.nicknames == {PeerName(k): v for k, v in d["Nicknames"]}
    assert msg.paxos is None
    if d["Ring"] is None:
        assert msg.ring is None
    else:
        assert msg.ring is not None
        assert [(e.token, e.peer, e.version, e.free) for e in msg.ring.entries] == [
            (e["Token"], e["Peer"], e["Version"], e["Free"]) for e in d["Ring"]["Entries"]
        ]
        assert msg.ring.seeds == d["Ring"]["Seeds"]
        assert (msg.ring.start, msg.ring.end, msg.ring.peer) == (
            d["Ring"]["Start"],
            d["Ring"]["End"],
            d["Ring"]["Peer"],
        )
    assert wire.encode_gossip(msg) == raw
    if "as_protocol_message" in c:
        src = PeerName.parse(c["inputs"]["local_peer"])
        assert encode_envelope(TAG_GOSSIP_BROADCAST, wire.CHANNEL, src, raw).hex() == c["as_protocol_message"]["hex"]


@pytest.mark.parametrize("name", ["unicast_space_request", "unicast_space_request_denied"])
def test_range_unicast_codec(name: str) -> None:
    c = case(FILE, name)
    raw = bytes.fromhex(c["output_hex"])
    assert raw[0] == c["inputs"]["kind_byte"]
    r = wire.decode_range(raw[1:])
    assert (r.start, r.end) == (c["decoded"]["Start"], c["decoded"]["End"])
    assert str(r) == c["inputs"]["range"]["text"]
    assert wire.encode_unicast(raw[0], wire.encode_range(r)) == raw
    src, dst = PeerName.parse(c["inputs"]["src"]), PeerName.parse(c["inputs"]["dst"])
    assert encode_envelope(TAG_GOSSIP_UNICAST, wire.CHANNEL, src, raw, dst).hex() == c["as_protocol_message"]["hex"]


def test_ring_update_unicast_codec() -> None:
    c = case(FILE, "unicast_ring_update")
    raw = bytes.fromhex(c["output_hex"])
    assert raw[0] == wire.MSG_RING_UPDATE
    msg = wire.decode_gossip(raw[1:])
    assert msg.ring is not None and msg.ring.peer == B
    assert wire.encode_unicast(raw[0], wire.encode_gossip(msg)) == raw


# ------------------------------------------------------------------------------------------------ behaviour


def test_seeded_ring_broadcast_is_byte_identical() -> None:
    c = case(FILE, "ring_seeded_initial_broadcast")
    alloc, sink = make(0, seed=True)
    kinds = [k for k, _, _ in sink.out]
    assert kinds == ["broadcast"]  # createRing broadcasts once
    (payload,) = sink.out[0][2].encode()
    assert payload.hex() == c["output_hex"]
    assert alloc.status(None).to_dict()["Entries"][0]["Token"] == "10.32.0.0"


def test_ring_after_gossip_and_allocations_is_byte_identical() -> None:
    c = case(FILE, "ring_after_gossip_and_allocations")
    a, _ = make(0, seed=True)
    b, _ = make(1, seed=True)
    cc, _ = make(2, seed=True)
    for other in (b, cc):
        a.on_gossip_broadcast(other.name, other.encode_state(), 0.0)
    got: list[Result] = []
    a.allocate("container1", UNIVERSE, True, 0.0, got.append)
    a.allocate("container2", UNIVERSE, True, 0.0, got.append)
    a.claim("weave:expose", CIDR.parse("10.32.0.100/12"), False, 0.0, got.append)
    assert [str(r.cidr) if r.cidr else r.error for r in got] == ["10.32.0.1/12", "10.32.0.2/12", None]
    ordered(a, gob_value_nicknames(c))
    assert a.encode_state().hex() == c["output_hex"]


def test_observer_ring_request_is_byte_identical() -> None:
    c = case(FILE, "observer_ring_request")
    obs, sink = make(3, observer=True, name=PeerName.parse(c["inputs"]["local_peer"]), nickname="host-d")
    assert obs.encode_state().hex() == c["output_hex"]
    box: list[Result] = []
    obs.allocate("c", UNIVERSE, True, 0.0, box.append)
    assert box == [] and sink.out and sink.out[-1][0] == "broadcast"  # asks the electors for the ring
    assert sink.out[-1][2].encode()[0].hex() == c["output_hex"]


def test_space_request_denied_then_ring_update() -> None:
    """A asks B for 10.44.0.0 (C's): B has nothing there, so denies, and always sends its ring back."""
    req = case(FILE, "unicast_space_request")
    a, a_out = make(0, seed=True)
    b, b_out = make(1, seed=True)
    a_out.out.clear()
    b_out.out.clear()
    a.send_space_request(B, wire.decode_range(bytes.fromhex(req["output_hex"])[1:]))
    ((kind, dst, msg),) = a_out.out
    assert (kind, dst, msg.hex()) == ("unicast", B, req["output_hex"])
    b.on_gossip_unicast(A, msg, 0.0)
    assert [(k, d) for k, d, _ in b_out.out] == [("unicast", A), ("unicast", A)]
    assert b_out.out[0][2].hex() == case(FILE, "unicast_space_request_denied")["output_hex"]
    assert b_out.out[1][2].hex() == case(FILE, "unicast_ring_update")["output_hex"]


def test_paxos_consensus_sequence() -> None:
    """Three electors (consensus=3, quorum 2); A primes. Broadcasts are encoded when sent (lazily, as the
    mesh's sender does) and each is delivered to the two other peers; the run must produce the vector's
    messages in the vector's order."""
    c = case(FILE, "paxos_consensus_sequence")
    peers = {}
    for i in range(3):
        alloc, sink = make(i, peer_count=3)
        peers[alloc.name] = (alloc, sink)
    queue: list[tuple[PeerName, str, PeerName | None, Any]] = []

    def collect() -> None:
        for name, (_, sink) in peers.items():
            for kind, dst, data in sink.out:
                if kind == "broadcast" and any(q[0] == name and q[1] == "broadcast" for q in queue):
                    continue  # merged into the one already pending, as the mesh's sender does
                queue.append((name, kind, dst, data))
            sink.out.clear()

    done: list[Result] = []
    peers[A][0].prime(0.0, done.append)
    collect()
    produced = []
    while queue:
        src, kind, dst, data = queue.pop(0)
        if kind == "broadcast":
            (payload,) = data.encode()
            produced.append(("broadcast", src, None, payload))
            for name, (alloc, _) in peers.items():
                if name != src:
                    alloc.on_gossip_broadcast(src, payload, 0.0)
                    collect()
        else:
            produced.append(("unicast", src, dst, data))
            peers[dst][0].on_gossip_unicast(src, data, 0.0)
            collect()
    want = c["messages"]
    assert len(produced) == len(want)
    for (kind, src, dst, payload), m in zip(produced, want, strict=True):
        assert (kind, str(src)) == (m["kind"].split()[0], m["sender"])
        if dst is not None:
            assert str(dst) == m["destination"]
        expected = bytes.fromhex(m["payload_hex"])
        assert wire.decode_gossip(payload[1:] if kind == "unicast" else payload) == wire.decode_gossip(
            expected[1:] if kind == "unicast" else expected
        )
    assert done == [Result()]
    rings = [peers[n][0].ring for n in (A, B, C)]
    assert all([(e.token, e.peer) for e in r.entries] == [(0x0A200000, A), (0x0A280000, B)] for r in rings)


# ------------------------------------------------------------------------------------------------ persistence


def test_persisted_values_are_byte_identical() -> None:
    scenario: dict[str, bytes] = {}
    cfg = AllocatorConfig(name=A, uid=1, nickname="host-a", universe=UNIVERSE, seed=[A, B, C], wall_offset=NOW_UNIX)
    alloc = Allocator(cfg, View({A, B, C}), random.Random(1), 0.0, persist=scenario.update)
    alloc.set_sink(Capture())
    alloc.start({}, [], 0.0)
    got: list[Result] = []
    alloc.allocate("c0ffee000001", UNIVERSE, True, 1.0, got.append)
    alloc.allocate("c0ffee000001", CIDR.parse_subnet("10.33.0.0/16"), True, 1.0, got.append)
    alloc.allocate("c0ffee000002", UNIVERSE, True, 1.0, got.append)
    alloc.claim("weave:expose", CIDR.parse("10.32.0.100/12"), False, 1.0, got.append)
    assert all(r.ok for r in got)
    p = "persistence"
    assert scenario["peername"].hex() == case(p, "peername")["output_hex"]
    assert scenario["ring"].hex() == case(p, "ring")["output_hex"]
    assert scenario["ownedAddresses"].hex() == case(p, "ownedAddresses")["output_hex"]
    # and what a long-running Go allocator wrote (other type ids) decodes to the same value
    running = bytes.fromhex(case(p, "ownedAddresses")["as_written_by_running_allocator"]["hex"])
    assert wire.decode_owned(running) == wire.decode_owned(scenario["ownedAddresses"])
    raw = {kv["key"]: bytes.fromhex(kv["value_hex"]) for kv in case(p, "all_keys_raw")["decoded"]}
    assert wire.decode_owned(raw["ownedAddresses"]) == alloc.owned
    assert wire.decode_ring(raw["ring"]) == alloc.ring
    assert wire.decode_peer_name(raw["peername"]) == A


def test_persisted_data_is_loaded_back() -> None:
    raw = {kv["key"]: bytes.fromhex(kv["value_hex"]) for kv in case("persistence", "all_keys_raw")["decoded"]}
    cfg = AllocatorConfig(name=A, uid=2, nickname="host-a", universe=UNIVERSE)
    alloc = Allocator(cfg, View({A, B, C}), random.Random(1), 0.0)
    alloc.set_sink(Capture())
    alloc.start(raw, [], 0.0)
    assert not alloc.ring.empty()
    assert alloc.lookup("c0ffee000001", UNIVERSE.range()) == [
        CIDR.parse("10.32.0.1/12"),
        CIDR.parse("10.33.0.1/16"),
    ]
    got: list[Result] = []
    alloc.allocate("new", UNIVERSE, True, 1.0, got.append)
    assert str(got[0].cidr) == "10.32.0.3/12"  # .1 .2 and .100 are held
