"""The overlay switch with the fast datapath, over the real router cores in the simulated network.

Every connection starts on the sleeve and moves to fastdp once VXLAN heartbeats prove the path; a blocked UDP
port or a narrow path sends just that connection back to the sleeve, with the reason in its status, and it
returns to fastdp by itself when the path heals.
"""

from __future__ import annotations

import pytest

from weavenet.core.contact import PROOF_EVERY, PROOF_WAIT
from weavenet.core.names import PeerName
from weavenet.core.router import MeshConfig
from weavenet.sim.network import SimNetwork


def cfg(i: int, password: bytes | None = None, fastdp: bool = True, lean: bool = True) -> MeshConfig:
    return MeshConfig(
        name=PeerName(0x0A0000000000 + i + 1),
        nickname=f"p{i + 1}",
        password=password,
        overlays=("fastdp", "sleeve") if fastdp else ("sleeve",),
        lean_liveness=lean,
    )


def net3(**kw: object) -> SimNetwork:
    net = SimNetwork(3, seed=3, config=lambda i: cfg(i, **kw))  # type: ignore[arg-type]
    net.connect(1, [0])
    net.connect(2, [0])
    assert net.run_until_true(lambda: all_established(net), 30) is not None
    return net


def all_established(net: SimNetwork) -> bool:
    return all(len(p.router.by_peer) == 2 and all(c.established for c in p.router.by_peer.values()) for p in net.peers)


def overlay(net: SimNetwork, a: int, b: int) -> tuple[str, str | None]:
    """(overlay in use, fallback reason) of a's connection to b, as ``weave status connections`` shows them."""
    for row in net.peers[a].router.connection_status(net.now()):
        if str(net.peers[b].name) in row.info and row.attrs:
            return str(row.attrs["name"]), row.attrs.get("fallback")
    raise AssertionError(f"no connection from {a} to {b}")


def test_fastdp_everywhere_then_a_blocked_pair_falls_back_and_recovers() -> None:
    net = net3()
    pairs = [(a, b) for a in range(3) for b in range(3) if a != b]
    assert net.run_until_true(lambda: all(overlay(net, a, b)[0] == "fastdp" for a, b in pairs), 20) is not None
    assert overlay(net, 0, 1) == ("fastdp", None)

    net.block_vxlan(1, 2)
    took = net.run_until_true(lambda: overlay(net, 1, 2)[0] == "sleeve" and overlay(net, 2, 1)[0] == "sleeve", 30)
    assert took is not None and took < 10
    net.run_for(5)
    name, reason = overlay(net, 1, 2)
    assert name == "sleeve" and reason is not None and "UDP port 6784 blocked" in reason, reason
    assert overlay(net, 0, 1)[0] == overlay(net, 0, 2)[0] == "fastdp"
    assert all(c.established for p in net.peers for c in p.router.by_peer.values())  # the sleeve carries it

    net.block_vxlan(1, 2, blocked=False)
    back = net.run_until_true(lambda: overlay(net, 1, 2) == overlay(net, 2, 1) == ("fastdp", None), 60)
    assert back is not None and back < 10


@pytest.mark.parametrize("lean", [False, True])
def test_one_way_block_is_seen_by_both_ends(lean: bool) -> None:
    """A path that narrows under an established connection: seen within seconds with full-size heartbeats every
    2 s; with lean liveness at the next proof of the path (``PROOF_EVERY``, or sooner after a lost beat)."""
    net = net3(lean=lean)
    net.run_for(5)
    # drop VXLAN from 1 to 2 only, by making 1's packets too big for the path: small probes still pass
    net.set_vxlan_mtu(1, 2, 1000)
    within = PROOF_EVERY + PROOF_WAIT + 10 if lean else 30
    assert net.run_until_true(lambda: overlay(net, 1, 2)[0] == "sleeve" and overlay(net, 2, 1)[0] == "sleeve", within)
    net.run_for(3)
    for a, b in ((1, 2), (2, 1)):
        reason = overlay(net, a, b)[1]
        assert reason is not None and "path MTU too small" in reason, reason
    net.set_vxlan_mtu(1, 2, 1500)
    assert net.run_until_true(lambda: overlay(net, 1, 2) == ("fastdp", None), 30) is not None


def test_encrypted_connections_stay_on_sleeve_with_the_reason() -> None:
    net = net3(password=b"secret")
    net.run_for(10)
    name, reason = overlay(net, 0, 1)
    assert name == "sleeve" and reason is not None and "no IPsec ESP in the kernel" in reason


def test_peer_without_fastdp_uses_sleeve() -> None:
    net = SimNetwork(2, seed=5, config=lambda i: cfg(i, fastdp=(i == 0)))
    net.connect(1, [0])
    up = lambda: all(p.router.by_peer and all(c.established for c in p.router.by_peer.values()) for p in net.peers)  # noqa: E731
    assert net.run_until_true(up, 30) is not None
    net.run_for(5)
    assert overlay(net, 0, 1) == ("sleeve", "the peer does not offer the fast datapath")
    assert overlay(net, 1, 0) == ("sleeve", "fast datapath disabled on this peer")


def test_a_dead_link_is_torn_down_rather_than_kept_on_a_fastdp_on_hold() -> None:
    net = net3()
    net.run_for(5)
    net.cut(1, 2)  # nothing gets through: sleeve and VXLAN both die, so the connection must go
    gone = net.run_until_true(lambda: net.peers[2].name not in net.peers[1].router.by_peer, 30)
    assert gone is not None and gone < 15
    # traffic between 1 and 2 now routes through 0, which both still reach over fastdp
    assert net.peers[1].router.routes.unicast(net.peers[2].name) == net.peers[0].name
    assert overlay(net, 1, 0)[0] == "fastdp"


def test_control_messages_match_weaves_bytes() -> None:
    """HeartbeatAck and the sleeve's ConnectionEstablished, wrapped as Weave 2.8 wraps them for "fastdp sleeve"."""
    from tests.golden.wire_vectors import case

    net = SimNetwork(2, seed=9, config=lambda i: cfg(i))
    sent: list[bytes] = []
    router = net.peers[1].router
    original = router.send_message
    router.send_message = lambda conn, msg: (sent.append(bytes(msg)), original(conn, msg))[1]  # type: ignore[method-assign]
    net.connect(1, [0])
    assert net.run_until_true(lambda: overlay(net, 1, 0)[0] == "fastdp" if net.peers[1].router.by_peer else False, 20)
    for name in ("overlay_control_fastdp_heartbeat_ack", "overlay_control_sleeve_connection_established"):
        assert bytes.fromhex(case("gossip", name)["output_hex"]) in sent, name
