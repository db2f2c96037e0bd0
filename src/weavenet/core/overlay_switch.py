"""Weave's overlay switch: the table of overlays by name, and the choice of forwarders for each connection.

A router builds the overlays it offers from :data:`OVERLAYS` (the sleeve always: beacons and packets from peers
we have no connection to arrive through its socket), and hands each introduced connection to
:meth:`OverlaySwitch.attach`: one forwarder per overlay both sides offer, in the connecting side's order; an
overlay that cannot serve the connection (the fast datapath on an encrypted link without IPsec, say) leaves a
gap and says why. The connection then carries its frames over its best working forwarder, and
:meth:`OverlaySwitch.fallback_reason` explains, in ``weave status`` and the log, why that is not the fast datapath.

A new overlay is an entry in :data:`OVERLAYS` (see :mod:`weavenet.core.overlay` for what it must provide).
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Mapping
from dataclasses import dataclass

from weavenet.core.connection import LocalConnection
from weavenet.core.connection_maker import split_host_port
from weavenet.core.fastdp import FastdpForwarder, FastdpOverlay
from weavenet.core.mesh_types import Action, MeshConfig
from weavenet.core.overlay import Forwarder, Overlay, OverlayLink
from weavenet.core.sleeve import SleeveOverlay
from weavenet.core.topology import Peer
from weavenet.errors import HandshakeError

log = logging.getLogger("weavenet.mesh")

PREDATES_SWITCH = "the peer predates the overlay switch (sleeve only)"


@dataclass(frozen=True)
class OverlayKind:
    """An entry of the table: how to build the overlay, and how to explain its absence on a connection."""

    name: str
    build: Callable[[MeshConfig, Peer, Callable[[int], Peer | None]], Overlay]  # (config, ourself, by short ID)
    off: str  # we do not offer it (and nobody said why: see ``OverlaySwitch.disable``)
    absent: str  # the peer does not offer it
    always: bool = False  # built even when not offered


def _sleeve(config: MeshConfig, ourself: Peer, resolve: Callable[[int], Peer | None]) -> Overlay:
    return SleeveOverlay(config.name, external=config.external_datapath)


def _fastdp(config: MeshConfig, ourself: Peer, resolve: Callable[[int], Peer | None]) -> Overlay:
    return FastdpOverlay(ourself, config.fastdp_mtu, config.port + 1, resolve)


# In the order their outputs are drained and their feature keys sent.
OVERLAYS: dict[str, OverlayKind] = {
    kind.name: kind
    for kind in (
        OverlayKind("sleeve", _sleeve, "sleeve disabled on this peer", "the peer does not offer the sleeve", True),
        OverlayKind(
            "fastdp", _fastdp, "fast datapath disabled on this peer", "the peer does not offer the fast datapath"
        ),
    )
}


class OverlaySwitch:
    """The overlays of one router (``config.overlays`` says which it offers, in its order of preference)."""

    def __init__(self, config: MeshConfig, ourself: Peer, resolve: Callable[[int], Peer | None]) -> None:
        self.config = config
        self.overlays: dict[str, Overlay] = {
            kind.name: kind.build(config, ourself, resolve)
            for kind in OVERLAYS.values()
            if kind.always or kind.name in config.overlays
        }
        self.off_reasons: dict[str, str] = {}  # why an overlay was disabled after start

    def disable(self, name: str, reason: str) -> None:
        """Offer ``name`` no more (the host cannot run it); call before any connection forms."""
        if not OVERLAYS[name].always:
            self.overlays.pop(name, None)
        self.off_reasons[name] = reason
        self.config.overlays = tuple(o for o in self.config.overlays if o != name)

    def features(self) -> dict[str, str]:
        """The weavenet feature keys of our overlays."""
        out: dict[str, str] = {}
        for overlay in self.overlays.values():
            out.update(overlay.features(self.config))
        return out

    # -- the switch --------------------------------------------------------------------------------------------

    def attach(self, conn: LocalConnection, ours: Mapping[str, str], now: float) -> None:
        """Give an introduced connection its forwarders (``ours``: the weavenet feature keys we sent it)."""
        features = conn.features
        assert features is not None and conn.remote is not None
        offered = self.config.overlays
        if features.overlays is None:
            conn.compat = True  # pre-overlay-switch peer: sleeve only, raw control tags
            common = ["sleeve"]
            conn.refused.update((name, PREDATES_SWITCH) for name in OVERLAYS if name != "sleeve")
        else:
            order = offered if conn.outbound else features.overlays
            common = list(dict.fromkeys(n for n in order if n in offered and n in features.overlays))
            if not common:
                raise HandshakeError("no overlays in common with peer")
            for kind in OVERLAYS.values():  # only worth a word if one side offers it
                if kind.name not in common and (kind.name in offered or kind.name in features.overlays):
                    mine = kind.name in offered
                    conn.refused[kind.name] = kind.absent if mine else self.off_reasons.get(kind.name, kind.off)
        host, port = split_host_port(conn.remote_tcp_addr) or ("", "0")
        link = OverlayLink(
            config=self.config,
            remote=conn.remote,
            conn_uid=conn.uid,
            outbound=conn.outbound,
            host=host,
            port=int(port) if port.isdigit() else None,
            untrusted=conn.untrusted,
            session_key=conn.session_key if conn.untrusted else None,
            ours=ours,
            theirs=features.raw if self.config.extensions else {},
        )
        for name in common:
            overlay = self.overlays.get(name)
            made = overlay.forwarder(link, now) if overlay is not None else None
            if isinstance(made, str):
                conn.refused[name] = made
                remote = link.remote
                log.info("Unable to use %s for connection to %s(%s): %s", name, remote.name, remote.nickname, made)
                made = None
            if made is not None:
                made.owner = conn
            conn.forwarders.append(made)

    # -- after every input --------------------------------------------------------------------------------------

    def take_actions(self) -> list[Action]:
        return [action for overlay in self.overlays.values() for action in overlay.take_actions()]

    def take_changed(self) -> set[Forwarder]:
        return {fwd for overlay in self.overlays.values() for fwd in overlay.take_changed()}

    def take_strangers(self) -> set[str]:
        return {ip for overlay in self.overlays.values() for ip in overlay.take_strangers()}

    # -- what is shown -----------------------------------------------------------------------------------------

    @staticmethod
    def fallback_reason(conn: LocalConnection, now: float) -> str | None:
        """Why a connection is not on the fast datapath (None if it is, or while fastdp is still being tried)."""
        best = conn.best_forwarder()
        if isinstance(best, FastdpForwarder) and best.healthy:
            return None
        fwd = conn.fastdp_forwarder()
        if fwd is None:
            return conn.refused.get("fastdp")
        return fwd.reason(now)

    def log_choice(self, conn: LocalConnection, best: Forwarder, now: float) -> None:
        """Log each change of the overlay a connection uses, and why it is not the fast datapath, once."""
        if not conn.established:
            return
        reason = None if best.name == "fastdp" else self.fallback_reason(conn, now)
        shown = (best.name, reason)
        before = conn.overlay_shown
        if shown == before:
            return
        conn.overlay_shown = shown
        if before is not None and before[0] == best.name and before[1] is not None:
            # same overlay, a new explanation: the state evolved within one fallback (status shows it)
            log.debug("overlay_switch ->[%s] still using %s (fastdp: %s)", conn.remote, best.name, reason)
        elif reason is None:
            log.info("overlay_switch ->[%s] using %s", conn.remote, best.name)
        else:
            log.info("overlay_switch ->[%s] using %s (fastdp: %s)", conn.remote, best.name, reason)
