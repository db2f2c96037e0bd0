"""Fuzz the router core over TCP: bytes before the handshake, then messages on a live connection carrying
every gossip channel (``topology``, ``IPallocation``, ``nameserver``, the digest channel, an unknown one)
with mutated valid payloads and mangled envelopes.

Invariants: nothing escapes ``data_received`` and nothing is counted as an internal error; a refused message
closes its connection with a reason (the peer is dropped from ``by_peer``); whatever was accepted can be
gossiped on (every message the router sends afterwards decodes); the router keeps answering (a new peer
completes its handshake) and its status, report and IPAM state stay consistent.
"""

from __future__ import annotations

import random

from hypothesis import given
from hypothesis import strategies as st

from tests.fuzz.budget import fuzz
from tests.fuzz.test_gossip import DIGEST_SEEDS, DNS_SEED, NOW, RANGE_SEED, SAMPLE, TOPOLOGY_SEED, U, mutate
from tests.unit.core.test_router import ME, THEM, pump, remote_handshake, router
from weavenet.core import gossip as g
from weavenet.core import topology_gossip as tg
from weavenet.core.router import Close, ConnState, MeshRouter, Write
from weavenet.core.router_status import router_status
from weavenet.core.topology import decode_update
from weavenet.daemon.ipam_service import RouterView
from weavenet.dns import nameserver as dns_ns
from weavenet.dns.wire import decode_gossip as decode_dns
from weavenet.errors import RemoteProtocolError
from weavenet.ipam import wire
from weavenet.ipam.allocator import Allocator, AllocatorConfig

OTHER = "somebody-elses-channel"
SEEDS: dict[str, list[bytes]] = {
    "topology": [TOPOLOGY_SEED],
    wire.CHANNEL: [SAMPLE, wire.encode_unicast(wire.MSG_RING_UPDATE, SAMPLE)]
    + [wire.encode_unicast(k, RANGE_SEED) for k in (wire.MSG_SPACE_REQUEST, wire.MSG_SPACE_REQUEST_DENIED)],
    dns_ns.CHANNEL: [DNS_SEED],
    tg.DIGEST_CHANNEL: DIGEST_SEEDS,
    OTHER: [b"opaque"],
}
SOURCES = [THEM, ME, 0x0F0000000001, 0xFFFFFFFFFFFF]


class Rig:
    """A router with IPAM and weaveDNS on their channels, and one peer (THEM) connected to it."""

    def __init__(self) -> None:
        r = self.router = router()
        self.alloc = Allocator(AllocatorConfig(ME, r.ourself.uid, "me", U), RouterView(r), random.Random(0), 0.0)
        self.alloc.set_sink(r.new_gossip(wire.CHANNEL, self.alloc))
        self.alloc.start({}, [], 0.0)
        self.ns = dns_ns.Nameserver(ME, "weave.local.", lambda p: r.topology.get(p) is not None, wall_offset=NOW)
        self.ns.set_sink(r.new_gossip(dns_ns.CHANNEL, self.ns))
        self.cid = r.accepted("10.0.0.2:40000", "10.0.0.1:6783", 0.0)
        done = pump(r, self.cid, remote_handshake(extra_features={tg.DIGEST_FEATURE: "1"}))
        assert done is not None
        self.framer = done.framer
        self.closed: list[Close] = []
        self.sent: list[bytes] = []
        self.fed: set[bytes] = set()  # a unicast for another peer is relayed verbatim: not ours to check

    def drain(self, now: float) -> None:
        for a in self.router.actions(now):
            if isinstance(a, Close):
                self.closed.append(a)
            elif isinstance(a, Write) and a.conn_id == self.cid:
                self.sent += self.framer.feed(bytes(a.data))

    def feed(self, message: bytes, now: float) -> None:
        self.fed.add(message)
        if self.cid in self.router.connections:
            self.router.data_received(self.cid, self.framer.encode(message), now)
        self.drain(now)


@st.composite
def envelopes(draw: st.DrawFn) -> bytes:
    channel = draw(st.sampled_from(sorted(SEEDS)))
    tag = draw(st.sampled_from([g.TAG_GOSSIP, g.TAG_GOSSIP_UNICAST, g.TAG_GOSSIP_BROADCAST]))
    src = draw(st.sampled_from(SOURCES))
    dst = draw(st.sampled_from(SOURCES)) if tag == g.TAG_GOSSIP_UNICAST else None
    payload = draw(st.sampled_from(SEEDS[channel]))
    if draw(st.booleans()):
        payload = mutate(payload, draw(flips), draw(cuts), draw(junk))
    message = g.encode_envelope(tag, channel, src, payload, dst)
    if draw(st.integers(0, 9)) == 0:  # now and then the envelope itself is mangled
        message = message[:1] + mutate(message[1:], draw(flips), draw(cuts), b"")
    return message


flips = st.lists(st.tuples(st.integers(0, 1 << 16), st.integers(0, 255)), max_size=3)
cuts = st.one_of(st.none(), st.integers(0, 1 << 16))
junk = st.one_of(st.just(b""), st.binary(max_size=16))
other_messages = st.tuples(st.integers(0, 12), st.binary(max_size=120)).map(lambda t: bytes((t[0],)) + t[1])


def _decode_ours(msg: bytes) -> None:
    """Every gossip message the router sends must decode on the other side."""
    tag = msg[0]
    if tag not in (g.TAG_GOSSIP, g.TAG_GOSSIP_UNICAST, g.TAG_GOSSIP_BROADCAST):
        return
    env = g.decode_envelope(tag, msg[1:])
    if env.channel == "topology":
        decode_update(env.payload)
    elif env.channel == wire.CHANNEL:
        wire.decode_gossip(env.payload[1:] if tag == g.TAG_GOSSIP_UNICAST else env.payload)
    elif env.channel == dns_ns.CHANNEL:
        decode_dns(env.payload)
    elif env.channel == tg.DIGEST_CHANNEL:
        tg.decode_digest(env.payload)
    # any other channel is opaque: a surrogate relays it as it came


def _still_answers(r: MeshRouter, now: float) -> None:
    fresh = r.accepted("10.0.0.7:40000", "10.0.0.1:6783", now)
    hs = remote_handshake(name=0x0A0000000007, uid=4242)  # type: ignore[arg-type]
    assert pump(r, fresh, hs, now=now) is not None
    assert r.connections[fresh].state is ConnState.READY


@given(st.lists(st.one_of(envelopes(), envelopes(), other_messages), min_size=1, max_size=6))
@fuzz(150)
def test_messages_on_a_live_connection(messages: list[bytes]) -> None:
    rig = Rig()
    r = rig.router
    for i, message in enumerate(messages):
        rig.feed(message, 0.2 + i * 0.01)
        assert r.internal_errors == 0
        if rig.cid not in r.connections:
            assert any(c.conn_id == rig.cid and c.reason for c in rig.closed)
            assert THEM not in r.by_peer or r.by_peer[THEM].id != rig.cid
            break
        assert r.connections[rig.cid].state is ConnState.READY
    for t in (1.5, 6.0, 31.0):  # batched updates, digest rounds, the full gossip round
        r.handle_timer(t)
        rig.drain(t)
    for msg in rig.sent:
        if msg in rig.fed:
            continue
        try:
            _decode_ours(msg)
        except RemoteProtocolError as e:
            raise AssertionError(f"the router gossiped what it cannot decode: {e}") from e
    rig.alloc.ring.check()
    rig.alloc.status(None)
    router_status(r, 31.0)
    _still_answers(r, 32.0)
    assert r.internal_errors == 0


@given(st.binary(max_size=400), st.integers(1, 50))
@fuzz(150)
def test_bytes_on_a_new_connection(data: bytes, chunk: int) -> None:
    r = router()
    cid = r.accepted("10.0.0.2:40000", "10.0.0.1:6783", 0.0)
    for i in range(0, len(data), chunk):
        r.data_received(cid, data[i : i + chunk], 0.1)
    r.handle_timer(100.0)  # the handshake deadline passes too
    r.actions(100.0)
    assert r.internal_errors == 0
    assert cid not in r.connections or r.connections[cid].state is ConnState.HANDSHAKE
    _still_answers(r, 100.0)
