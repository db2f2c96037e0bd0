"""The asyncio mesh transport on loopback: two real routers in one event loop (no packet leaves the machine)."""

from __future__ import annotations

import asyncio
import random
import socket

from weavenet.aio.machine import MachineDriver
from weavenet.aio.mesh import MeshTransport
from weavenet.core.names import PeerName
from weavenet.core.router import MeshConfig, MeshRouter


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


async def _pair() -> list[tuple[MeshRouter, MeshTransport]]:
    loop = asyncio.get_running_loop()
    out = []
    for i in range(2):
        port = _free_port()
        cfg = MeshConfig(name=PeerName(i + 1), nickname=f"n{i}", port=port)
        router = MeshRouter(cfg, rng=random.Random(i), now=loop.time())
        driver = MeshTransport(router, MachineDriver(loop), "127.0.0.1", port)
        await driver.start()
        out.append((router, driver))
    return out


async def test_a_dial_with_a_timeout_completes_its_handshake() -> None:
    """Dials run under a timeout (an extra task hop): the peer's first bytes may then arrive before the dial's await
    returns, and were once dropped by a core still "dialling", leaving both ends stuck in the handshake."""
    (a, da), (b, db) = await _pair()
    try:
        for _ in range(5):
            assert await db.connect([f"127.0.0.1:{a.config.port}"], False) == []
            for _ in range(100):
                await asyncio.sleep(0.02)
                if all(r.by_peer and all(c.established for c in r.by_peer.values()) for r in (a, b)):
                    break
            else:
                raise AssertionError("no established connection within 2 s")
            db.forget([f"127.0.0.1:{a.config.port}"])
            for conn in list(b.connections.values()):  # drop it, for the next round's dial
                db.run(lambda now, c=conn: b._shutdown(c, RuntimeError("next round"), now))
            await asyncio.sleep(0.05)
    finally:
        await da.close()
        await db.close()


async def test_an_inbound_connection_gone_before_it_is_accepted_is_dropped_quietly() -> None:
    """On a loaded machine the peer may hang up before ``connection_made`` runs: the socket then has no peer name,
    which once raised a TypeError in the callback."""
    from weavenet.aio.mesh import _MeshTCP

    class _Gone:
        aborted = False

        def get_extra_info(self, name: str) -> None:
            return None

        def abort(self) -> None:
            self.aborted = True

    (a, da), (_b, db) = await _pair()
    try:
        proto = _MeshTCP.__new__(_MeshTCP)
        proto.transport = _Gone()  # type: ignore[assignment]
        proto.conn_id = None
        da.tcp_made(proto)
        assert proto.transport.aborted and not a.connections  # type: ignore[attr-defined]
    finally:
        await da.close()
        await db.close()
