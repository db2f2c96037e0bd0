"""What the router asks of an overlay: a way of carrying a connection's frames to its peer.

Weave's *overlay switch*: peers offer their overlays by name in the handshake (``Overlays: "fastdp sleeve"``); a
connection gets one forwarder per overlay both sides offer, in the connecting side's order, and carries its frames
over the best working one (:meth:`~weavenet.core.connection.LocalConnection.best_forwarder`).

An :class:`Overlay` is the per-router part of one way (the sleeve's UDP demultiplexing, the fast datapath's
VXLAN heartbeats): it makes a :class:`Forwarder` for each connection that may use it, queues what is to be sent
and reports which forwarders have news. A forwarder is the per-connection control machine (heartbeats,
establishment, health); its control messages travel over the mesh connection. The router names no overlay: the
table of overlays by name is :data:`weavenet.core.overlay_switch.OVERLAYS`; adding one (IPsec ESP, WireGuard) is
an overlay and forwarder class, an entry there, and a data-plane adapter feeding its inputs through
:meth:`~weavenet.core.router.MeshRouter.overlay_input`.

Both are pure, like the rest of the core: time comes in as ``now``, outputs are queued for the router to drain.
"""

from __future__ import annotations

from collections.abc import Collection, Mapping, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Protocol

from weavenet.core.topology import Peer

if TYPE_CHECKING:
    from weavenet.core.mesh_types import Action, MeshConfig


class Forwarder(Protocol):
    """The control state of one overlay for one mesh connection."""

    established: bool  # works both ways: the connection may count as established over it
    stopped: bool
    error: str | None  # why it stopped (logged once, with ``error_logged``)
    error_logged: bool
    control_out: list[tuple[int, bytes]]  # (sub-tag, body) to send to the peer over the mesh connection
    owner: object  # the mesh connection it belongs to (set by the overlay switch)

    @property
    def name(self) -> str: ...

    @property
    def on_hold(self) -> bool:
        """Established once, but not working now: the overlay switch passes over it."""
        ...

    def attrs(self) -> dict[str, object]:
        """What ``weave status connections`` shows of it (``name``, ``mtu``)."""
        ...

    def confirm(self, now: float) -> None:
        """The connection was added: start (heartbeats, ...)."""
        ...

    def control_message(self, subtag: int, body: bytes, now: float) -> None: ...

    def get_timer(self) -> float | None: ...

    def handle_timer(self, now: float) -> None: ...

    def stop(self) -> None: ...


@dataclass(frozen=True, slots=True)
class OverlayLink:
    """What an overlay is told of a connection that asks it for a forwarder."""

    config: MeshConfig  # the router's, as it is now (the host's capabilities are probed after start)
    remote: Peer
    conn_uid: int
    outbound: bool
    host: str  # the peer's address, as the TCP connection has it
    port: int | None  # its TCP port (None: not a number)
    untrusted: bool  # data-plane encryption applies: not both ends trust each other
    session_key: bytes | None  # the connection's key when untrusted (None without a password)
    ours: Mapping[str, str]  # the weavenet feature keys we sent
    theirs: Mapping[str, str]  # the peer's (empty with extensions off: a Go router reads none)


class Overlay(Protocol):
    """One way of carrying frames, for all connections of a router."""

    @property
    def name(self) -> str: ...

    def features(self, config: MeshConfig) -> dict[str, str]:
        """The weavenet feature keys it adds to the handshake (only sent with extensions on)."""
        ...

    def forwarder(self, link: OverlayLink, now: float) -> Forwarder | str:
        """A forwarder for this connection, or why it cannot have one (logged, and shown as its fallback)."""
        ...

    def take_actions(self) -> Sequence[Action]:
        """What it queued to send since the last call (drained with the router's actions)."""
        ...

    def take_changed(self) -> Collection[Forwarder]:
        """Forwarders with output, a new state or a new timer since the last call, for their connection to see."""
        ...

    def take_strangers(self) -> Collection[str]:
        """Addresses heard from under a peer name no connection has: signs of life for the connection maker."""
        ...
