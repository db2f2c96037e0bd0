"""The router core against hostile or broken input: it refuses with a reason and keeps running."""

from __future__ import annotations

import random

from weavenet.core.connection_maker import Target, TargetState
from weavenet.core.handshake import Handshake, HandshakeCompleted
from weavenet.core.names import PeerName
from weavenet.core.router import Close, ConnState, MeshConfig, MeshRouter, Write
from weavenet.sim.network import SimNetwork

ME = PeerName(0x0A0000000001)
THEM = PeerName(0x0A0000000002)


def router(**kw: object) -> MeshRouter:
    return MeshRouter(MeshConfig(name=ME, nickname="me", **kw), rng=random.Random(1), now=0.0)  # type: ignore[arg-type]


def remote_handshake(name: PeerName = THEM, uid: int = 77, password: bytes | None = None, **kw: object) -> Handshake:
    return Handshake(
        outbound=True,
        name=name,
        nickname="them",
        uid=uid,
        conn_id=5,
        short_id=9,
        trusted=False,
        overlays="sleeve",
        password=password,
        **kw,  # type: ignore[arg-type]
    )


def pump(r: MeshRouter, conn_id: int, hs: Handshake, now: float = 0.1) -> HandshakeCompleted | None:
    """Exchange bytes between the router's inbound connection and a handshake playing the remote peer."""
    done = None
    for _ in range(10):
        out = hs.data_to_send()
        if out:
            r.data_received(conn_id, out, now)
        for a in r.actions(now):
            if isinstance(a, Write) and a.conn_id == conn_id and not hs.finished:
                hs.receive_data(bytes(a.data))
        ev = hs.next_event()
        if isinstance(ev, HandshakeCompleted):
            done = ev
    return done


def closes(r: MeshRouter, now: float) -> list[Close]:
    return [a for a in r.actions(now) if isinstance(a, Close)]


def test_good_peer_is_added() -> None:
    r = router()
    cid = r.accepted("10.0.0.2:40000", "10.0.0.1:6783", 0.0)
    assert pump(r, cid, remote_handshake()) is not None
    assert r.connections[cid].state is ConnState.READY and THEM in r.by_peer


def test_unknown_protocol_version_is_refused_with_reason() -> None:
    r = router()
    cid = r.accepted("10.0.0.2:40000", "10.0.0.1:6783", 0.0)
    r.data_received(cid, b"weave\x03\x04", 0.1)
    (close,) = closes(r, 0.1)
    assert "remote version range [3,4] is incompatible with ours [1,2]" in close.reason
    status = r.connection_status(0.1)
    assert status[-1].state == "failed" and "incompatible" in status[-1].info


def test_peer_name_collision_and_connect_to_self() -> None:
    r = router()
    cid = r.accepted("10.0.0.2:40000", "10.0.0.1:6783", 0.0)
    pump(r, cid, remote_handshake(name=ME, uid=12345))
    assert cid not in r.connections
    assert "peer names collision" in r.connection_status(0.1)[-1].info
    cid = r.accepted("10.0.0.1:40001", "10.0.0.1:6783", 0.0)
    pump(r, cid, remote_handshake(name=ME, uid=r.ourself.uid))
    assert cid not in r.connections


def test_password_mismatch_is_refused() -> None:
    r = router(password=b"right")
    cid = r.accepted("10.0.0.2:40000", "10.0.0.1:6783", 0.0)
    pump(r, cid, remote_handshake(password=None))
    assert "peer requested an unencrypted connection" in r.connection_status(0.1)[-1].info
    cid = r.accepted("10.0.0.3:40000", "10.0.0.1:6783", 0.0)
    pump(r, cid, remote_handshake(password=b"wrong"))
    assert "same --password" in r.connection_status(0.1)[-1].info


def test_retry_time_prints_as_the_report_prints_times() -> None:
    """``weave status connections`` shows a failed target's retry time with the report's time formatter: the
    wall clock float 1e9 + 1µs prints as ``.000001``, not as the ``.000000954`` of its binary value."""
    r = MeshRouter(MeshConfig(name=ME, nickname="me"), rng=random.Random(1), now=0.0, wall_offset=1_000_000_000.0)
    r.maker.targets["10.0.0.2:6783"] = Target(TargetState.WAITING, last_error="no route", try_after=0.000001)
    assert r.connection_status(0.0)[-1].info == "no route, retry: 2001-09-09 01:46:40.000001 +0000 UTC"


def test_peers_refused_by_the_connection_limit_never_enter_the_topology() -> None:
    """Mesh registers the remote before checking ``--conn-limit``, so every refused peer was kept, gossiped, and
    (with a lower name and our short ID) could even take our short ID, until the next garbage collection."""
    r = router(conn_limit=1)
    cid = r.accepted("10.0.0.2:40000", "10.0.0.1:6783", 0.0)
    assert pump(r, cid, remote_handshake()) is not None
    ours = r.ourself.short_id
    refused = [PeerName(0x01DEADBEEF00 + i) for i in range(20)]  # lower names than ours
    for i, name in enumerate(refused):
        extra = r.accepted(f"10.0.1.{i}:40000", "10.0.0.1:6783", 0.2)
        hs = Handshake(
            outbound=True, name=name, nickname=f"x{i}", uid=100 + i, conn_id=7, short_id=ours, trusted=False,
            overlays="sleeve", password=None,
        )  # fmt: skip
        pump(r, extra, hs, now=0.2)
        assert extra not in r.connections
    assert "Connection limit reached (1)" in r.connection_status(0.2)[-1].info
    assert set(r.topology.by_name) == {ME, THEM} and r.ourself.short_id == ours
    sent = bytearray()
    for t in (1.5, 31.0):  # the batched topology update, then a full gossip round, to THEM
        r.handle_timer(t)
        sent += b"".join(a.data for a in r.actions(t) if isinstance(a, Write) and a.conn_id == cid)
    assert THEM in r.by_peer and sent and not any(name.to_bytes(6, "big") in sent for name in refused)


def test_the_connection_limit_does_not_refuse_a_peer_already_connected() -> None:
    r = router(conn_limit=1)
    cid = r.accepted("10.0.0.2:40000", "10.0.0.1:6783", 0.0)
    assert pump(r, cid, remote_handshake()) is not None
    again = r.accepted("10.0.0.2:40001", "10.0.0.1:6783", 0.1)
    pump(r, again, remote_handshake(), now=0.1)  # the same peer again: one of the two wins the tie-break
    assert THEM in r.by_peer
    assert all("Connection limit" not in c.reason for c in closes(r, 0.1))
    assert all("Connection limit" not in s.info for s in r.connection_status(0.1))


class _BuggyGossiper:
    """A channel whose handler has a bug: any exception other than RemoteProtocolError."""

    def on_gossip_unicast(self, src: PeerName, msg: bytes, now: float) -> None:
        raise IndexError("a bug")

    def on_gossip_broadcast(self, src: PeerName, update: bytes, now: float) -> None:
        raise IndexError("a bug")

    def gossip(self, now: float) -> None:
        return None

    def on_gossip(self, update: bytes, now: float) -> None:
        raise IndexError("a bug")


def test_a_bug_handling_a_peers_message_drops_that_connection_not_the_router() -> None:
    from weavenet.core import gossip as g

    r = router()
    r.new_gossip("buggy", _BuggyGossiper())
    cid = r.accepted("10.0.0.2:40000", "10.0.0.1:6783", 0.0)
    done = pump(r, cid, remote_handshake())
    assert done is not None
    r.data_received(cid, done.framer.encode(g.encode_envelope(g.TAG_GOSSIP, "buggy", THEM, b"x")), 0.2)
    assert any("internal error handling the peer's input: IndexError('a bug')" in c.reason for c in closes(r, 0.2))
    assert r.internal_errors == 1 and THEM not in r.by_peer
    again = r.accepted("10.0.0.2:40001", "10.0.0.1:6783", 0.3)
    assert pump(r, again, remote_handshake(), now=0.3) is not None and THEM in r.by_peer


def test_oversized_frame_is_refused() -> None:
    r = router()
    cid = r.accepted("10.0.0.2:40000", "10.0.0.1:6783", 0.0)
    done = pump(r, cid, remote_handshake())
    assert done is not None
    r.data_received(cid, (11 * 1024 * 1024).to_bytes(4, "big"), 0.2)
    assert any("exceeds maximum size" in c.reason for c in closes(r, 0.2))
    assert THEM not in r.by_peer


def test_a_mesh_survives_a_hostile_peer_sending_garbage() -> None:
    net = SimNetwork(3, seed=3)
    net.connect(1, [0])
    net.connect(2, [0])
    net.run_for(10)
    r0 = net.peers[0].router
    for i in range(20):
        cid = r0.accepted(f"10.66.0.{i}:1", "10.0.1.1:6783", net.now())
        r0.data_received(cid, bytes(random.Random(i).randbytes(100)), net.now())
        r0.actions(net.now())
    net.run_for(10)
    assert net.converged()
