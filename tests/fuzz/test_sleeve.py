"""Fuzz the sleeve's UDP input: Weave's frame format (plain, and sealed with the connection's session key) into
the router core, and both Weave's format and weavenet's fast format (plain and sealed) into the data plane's
receiving worker, which is what reads port 6783 in a running router.

Invariants: every datagram is counted, and dropped for one reason at most; nothing escapes but what the poll
loop handles (``RemoteProtocolError``, counted as malformed); no internal error; after the garbage, the link
still works (the connection stays established, a valid frame is still delivered).
"""

from __future__ import annotations

import socket
from collections.abc import Iterator

import pytest
from hypothesis import given
from hypothesis import strategies as st

from tests.fuzz.budget import fuzz
from tests.fuzz.test_gossip import mutate
from tests.unit.core.test_router import router
from tests.unit.dataplane.test_rx_worker import FRAME, KEY, ME_BIN, PEER_BIN, Rig, fast_datagrams
from weavenet.core.router import MeshRouter
from weavenet.core.sleeve_codec import Encryptor, encode_frames, heartbeat_frame
from weavenet.dataplane import fastwire
from weavenet.dataplane.frames import ZERO_VNET
from weavenet.errors import RemoteProtocolError
from weavenet.sim.network import PORT, SimNetwork

flips = st.lists(st.tuples(st.integers(0, 1 << 16), st.integers(0, 255)), max_size=3)
cuts = st.one_of(st.none(), st.integers(0, 1 << 16))
junk = st.one_of(st.just(b""), st.binary(max_size=32))
mutation = st.tuples(flips, cuts, junk, st.booleans())  # the last: leave the datagram as it is


def _drops(c: object) -> int:
    return sum(getattr(c, k) for k in ("too_short", "unknown_sender", "malformed", "decrypt_failed", "replayed"))


@given(st.binary(max_size=300))
@fuzz(200)
def test_core_random_datagrams_from_anyone(data: bytes) -> None:
    r = router()
    r.datagram_received(data, ("10.0.0.9", 6783), 0.1)
    r.actions(0.1)
    c = r.sleeve.counters
    assert c.packets == 1 and _drops(c) <= 1


def _established_pair(password: bytes | None) -> SimNetwork:
    net = SimNetwork(2, seed=1, password=password)
    net.connect(1, [0])
    r1 = net.peers[1].router
    assert net.run_until_true(lambda: bool(r1.by_peer) and all(c.established for c in r1.by_peer.values()), 30, 0.1)
    return net


def _sender_datagrams(net: SimNetwork, n: int) -> list[bytes]:
    """Valid datagrams from peer 0 to peer 1 as its sleeve would send them: a heartbeat, data frames."""
    r0, r1 = net.peers[0].router, net.peers[1].router
    (conn,) = r0.by_peer.values()
    fwd = conn.forwarders[0]
    src, dst = r0.name.bytes6(), r1.name.bytes6()
    frames = [
        [(src, dst, heartbeat_frame(fwd.conn_uid))],
        [(src, dst, FRAME)],
        [(src, dst, FRAME), (src, b"\xff" * 6, FRAME + bytes(100))],
    ]
    out = []
    for i in range(n):
        body = encode_frames(frames[i % len(frames)])
        out.append(src + body if fwd.session_key is None else fwd.enc.seal(src, body))
    return out


def _established(r: MeshRouter) -> bool:
    return bool(r.by_peer) and all(c.established for c in r.by_peer.values())


@pytest.mark.parametrize("password", [None, b"pw"], ids=["plain", "encrypted"])
@given(st.lists(mutation, min_size=1, max_size=5))
@fuzz(100)
def test_core_mutated_datagrams_on_a_live_link(password: bytes | None, mutations: list) -> None:
    net = _established_pair(password)
    r1 = net.peers[1].router
    before = r1.sleeve.counters.packets
    sender = (net.peers[0].ip, PORT)
    for seed, (f, cut, tail, keep) in zip(_sender_datagrams(net, len(mutations)), mutations, strict=True):
        r1.datagram_received(seed if keep else mutate(seed, f, cut, tail), sender, net.now())
        r1.actions(net.now())
    c = r1.sleeve.counters
    assert c.packets == before + len(mutations) and _drops(c) <= len(mutations)
    net.run_for(5)
    assert _established(r1) and _established(net.peers[0].router)


# -- the data plane's receiving worker ---------------------------------------------------------------------------


@pytest.fixture(scope="module")
def plain() -> Iterator[Rig]:
    rig = Rig(None)
    yield rig
    rig.close()


@pytest.fixture(scope="module")
def sealed() -> Iterator[Rig]:
    rig = Rig(KEY)
    yield rig
    rig.close()


_seq = iter(range(1, 1 << 40))


def _seeds(key: bytes | None) -> list[bytes]:
    """Valid datagrams of both formats for the rig's link, each with a fresh sequence number."""
    classic = encode_frames([(PEER_BIN, ME_BIN, FRAME)])
    weave = Encryptor(KEY, outbound=True, df=False, first_seq=next(_seq)).seal(PEER_BIN, classic) if key else (
        PEER_BIN + classic
    )  # fmt: skip
    return [weave, *fast_datagrams(next(_seq), key=key), *fast_datagrams(next(_seq), FRAME + bytes(3000), key)]


def _check_rig(rig: Rig, key: bytes | None, mutations: list, gro: int) -> None:
    seeds = _seeds(key)
    for i, (f, cut, tail, keep) in enumerate(mutations):
        seed = seeds[i % len(seeds)]
        data = seed if keep else mutate(seed, f, cut, tail)
        rig.feed(data * (2 if gro else 1), gro if gro and len(data) > gro else 0)
    rig.injected()
    assert rig.worker.counters.get("internal_errors", 0) == 0
    fresh = _seeds(key)[1:2]  # a one-datagram super-frame, new sequence number: still delivered
    for d in fresh:
        rig.feed(d)
    assert rig.injected() == [ZERO_VNET + FRAME]


@given(st.lists(mutation, min_size=1, max_size=6), st.sampled_from([0, 0, 0, 40, 100]))
@fuzz(200)
def test_worker_mutated_datagrams_plain(plain: Rig, mutations: list, gro: int) -> None:
    _check_rig(plain, None, mutations, gro)


@given(st.lists(mutation, min_size=1, max_size=6), st.sampled_from([0, 0, 0, 40, 100]))
@fuzz(200)
def test_worker_mutated_datagrams_sealed(sealed: Rig, mutations: list, gro: int) -> None:
    _check_rig(sealed, KEY, mutations, gro)


@given(
    body=st.binary(max_size=300),
    fast=st.booleans(),
    size=st.sampled_from([0, 0, 40, 100]),
    repeat=st.integers(min_value=1, max_value=3),
)
@fuzz(200)
def test_worker_random_datagrams(plain: Rig, body: bytes, fast: bool, size: int, repeat: int) -> None:
    data = PEER_BIN + (fastwire.MAGIC if fast else b"") + body
    plain.feed(data * repeat, size if repeat > 1 else 0)
    plain.injected()
    assert plain.worker.counters.get("internal_errors", 0) == 0


@given(data=st.binary(max_size=400), size=st.integers(min_value=1, max_value=200))
@fuzz(200)
def test_fast_format_reassembly(data: bytes, size: int) -> None:
    sender = PEER_BIN
    reasm = fastwire.Reassembler()
    for candidate in (data, sender + fastwire.MAGIC + data):
        try:
            reasm.add(memoryview(candidate), 0.0)
        except RemoteProtocolError:
            pass
        for item in fastwire.runs(memoryview(candidate), size):
            if isinstance(item, int):
                assert 0 <= item < len(candidate)
                continue
            try:
                reasm.add_run(*item, now=0.0)
            except RemoteProtocolError:
                pass


@given(
    count=st.sampled_from([1, 1, 0, 2]),
    flags=st.integers(min_value=0, max_value=255),
    idx=st.sampled_from([0, 0, 1]),
    body=st.binary(max_size=200),
)
@fuzz(150)
def test_worker_single_datagrams_through_the_socket(plain: Rig, count: int, flags: int, idx: int, body: bytes) -> None:
    """The one-datagram path parses its header from the plain receive buffer: fuzz it through the real socket."""
    head = PEER_BIN + fastwire.MAGIC + bytes([0, count, flags]) + (7).to_bytes(8, "big") + bytes([idx])
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as tx:
        tx.sendto(head + body, plain.sock.getsockname())  # on loopback: queued before sendto returns
    plain.sock.setblocking(False)
    plain.worker.reader.single = True  # as after any single datagram
    plain.worker.read_socket(socket.CMSG_SPACE(4))
    plain.injected()
    assert plain.worker.counters.get("internal_errors", 0) == 0
