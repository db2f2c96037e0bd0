"""A third overlay is an entry in the table of overlays, not an edit of the router.

A toy overlay (its forwarders say hello over the mesh connection and are established when the peer's hello
arrives) is added to ``OVERLAYS`` for the test; real router cores in the simulated network pick it by name in
the handshake, exchange its control messages and carry their connections over it.
"""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from weavenet.core.mesh_types import Action, MeshConfig
from weavenet.core.names import PeerName
from weavenet.core.overlay import Forwarder, Overlay, OverlayLink
from weavenet.core.overlay_switch import OVERLAYS, OverlayKind
from weavenet.core.topology import Peer
from weavenet.sim.network import SimNetwork

HELLO = 0


class ToyForwarder:
    name = "toy"

    def __init__(self, overlay: ToyOverlay, remote: PeerName) -> None:
        self.overlay = overlay
        self.remote = remote
        self.established = False
        self.stopped = False
        self.error: str | None = None
        self.error_logged = False
        self.control_out: list[tuple[int, bytes]] = []
        self.owner: object = None
        self.heard: list[bytes] = []

    @property
    def on_hold(self) -> bool:
        return False

    def attrs(self) -> dict[str, object]:
        return {"name": "toy", "mtu": 1400}

    def confirm(self, now: float) -> None:
        self.control_out.append((HELLO, b"hi " + str(self.overlay.me).encode()))
        self.overlay.changed.add(self)

    def control_message(self, subtag: int, body: bytes, now: float) -> None:
        if subtag == HELLO:
            self.heard.append(body)
            self.established = True
            self.overlay.changed.add(self)

    def get_timer(self) -> float | None:
        return None

    def handle_timer(self, now: float) -> None:
        pass

    def stop(self) -> None:
        self.stopped = True


class ToyOverlay:
    name = "toy"

    def __init__(self, me: PeerName) -> None:
        self.me = me
        self.changed: set[ToyForwarder] = set()
        self.made: list[ToyForwarder] = []

    def features(self, config: MeshConfig) -> dict[str, str]:
        return {"WeavenetToy": "1"}

    def forwarder(self, link: OverlayLink, now: float) -> Forwarder | str:
        if link.theirs.get("WeavenetToy") != "1":
            return "the peer cannot play"
        fwd = ToyForwarder(self, link.remote.name)
        self.made.append(fwd)
        return fwd

    def take_actions(self) -> list[Action]:
        return []

    def take_changed(self) -> set[ToyForwarder]:
        changed, self.changed = self.changed, set()
        return changed

    def take_strangers(self) -> list[str]:
        return []


def _toy(config: MeshConfig, ourself: Peer, resolve: object) -> Overlay:
    return ToyOverlay(config.name)


@pytest.fixture
def toy_table() -> Iterator[None]:
    kind = OverlayKind("toy", _toy, "toy disabled on this peer", "the peer does not offer toy")
    with pytest.MonkeyPatch.context() as mp:
        mp.setitem(OVERLAYS, "toy", kind)
        yield


def cfg(i: int, overlays: tuple[str, ...]) -> MeshConfig:
    return MeshConfig(name=PeerName(0x0A0000000000 + i + 1), nickname=f"p{i + 1}", overlays=overlays)


def toy_of(net: SimNetwork, i: int) -> ToyOverlay:
    overlay = net.peers[i].router.overlay_switch.overlays["toy"]
    assert isinstance(overlay, ToyOverlay)
    return overlay


def test_a_third_overlay_carries_connections_by_its_entry_alone(toy_table: None) -> None:
    net = SimNetwork(3, seed=4, config=lambda i: cfg(i, ("toy",)))
    net.connect(1, [0])
    net.connect(2, [0])
    up = lambda: all(  # noqa: E731
        len(p.router.by_peer) == 2 and all(c.established for c in p.router.by_peer.values()) for p in net.peers
    )
    assert net.run_until_true(up, 30) is not None
    for i in range(3):
        for row in net.peers[i].router.connection_status(net.now()):
            assert row.attrs is not None and row.attrs["name"] == "toy", row
    heard = {bytes(b) for i in range(3) for f in toy_of(net, i).made for b in f.heard}
    assert heard == {b"hi " + str(p.name).encode() for p in net.peers}


def test_an_overlay_one_side_lacks_is_refused_with_its_reason(toy_table: None) -> None:
    offers = [("toy", "sleeve"), ("sleeve",)]
    net = SimNetwork(2, seed=5, config=lambda i: cfg(i, offers[i]))
    net.connect(1, [0])
    up = lambda: all(p.router.by_peer and all(c.established for c in p.router.by_peer.values()) for p in net.peers)  # noqa: E731
    assert net.run_until_true(up, 30) is not None
    conn = next(iter(net.peers[0].router.by_peer.values()))
    assert [f.name if f is not None else None for f in conn.forwarders] == ["sleeve"]
    assert conn.refused == {"toy": "the peer does not offer toy"}
    assert not toy_of(net, 0).made
