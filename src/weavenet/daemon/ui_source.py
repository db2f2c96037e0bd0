"""What the web view reads from the router each tick: the report, and three things the report does not carry.

* which neighbours are weavenet routers and which are Go Weave (from the features each sent in its handshake), and
  when each last said anything over the sleeve (so that a fast datapath gone quiet is told from a cut link);
* the free addresses each peer reports in its IPAM ranges (the ring's gossiped free counts: used = owned - free);
* this host's containers: IPAM's allocations by container, with the names weaveDNS has for them.

Everything here only reads (no call changes the router, IPAM or the attach registry), on the router's loop, in
the same step as the report.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from weavenet.core.names import PeerName
from weavenet.status import WeaveStatus
from weavenet.ui.model import ContainerView, ViewInput

if TYPE_CHECKING:
    from weavenet.daemon.root import Weaver

WEAVENET_FEATURE_PREFIX = "Weavenet"  # every feature only weavenet routers send starts so (core.router, beacons)


class WeaverView:
    """The :class:`weavenet.ui.hub.ViewSource` of a running router."""

    def __init__(self, weaver: Weaver) -> None:
        self.weaver = weaver

    def view_input(self) -> ViewInput:
        report = self.weaver.report()
        me = report.router.name if report.router is not None else ""
        return ViewInput(report, self._kinds(), self._ring_free(), self._containers(report, me), self._heard())

    def _kinds(self) -> dict[str, str]:
        out = {}
        for name, conn in self.weaver.router.by_peer.items():
            features = conn.features
            if features is None:
                continue
            weavenet = any(k.startswith(WEAVENET_FEATURE_PREFIX) for k in features.raw)
            out[str(name)] = "weavenet" if weavenet else "weave"
        return out

    def _heard(self) -> dict[str, float]:
        """Seconds since each neighbour's sleeve last said anything (a heartbeat or another special frame)."""
        now = self.weaver.driver.now()
        out = {}
        for name, conn in self.weaver.router.by_peer.items():
            sleeve = conn.sleeve_forwarder()
            if sleeve is not None and sleeve.last_heard is not None:
                out[str(name)] = round(now - sleeve.last_heard, 1)
        return out

    def _ring_free(self) -> dict[str, int]:
        ipam = self.weaver.ipam
        if ipam is None:
            return {}
        out: dict[str, int] = {}
        for entry in ipam.allocator.ring.entries:
            peer = str(PeerName(int(entry.peer)))
            out[peer] = out.get(peer, 0) + entry.free
        return out

    def _containers(self, report: WeaveStatus, me: str) -> tuple[ContainerView, ...]:
        ipam = self.weaver.ipam
        owned = ipam.owned() if ipam is not None else {}
        names: dict[str, list[str]] = {}
        if report.dns is not None:
            for e in report.dns.entries or []:
                if e.origin == me and not e.tombstone:
                    names.setdefault(e.container_id, []).append(e.hostname)
        idents = sorted(set(owned) | set(names))
        return tuple(
            ContainerView(ident, tuple(str(c) for c in owned.get(ident, ())), tuple(sorted(names.get(ident, ()))))
            for ident in idents
        )
