"""Keeping a peer's fast datapath across its router's restart, so containers' traffic does not stop.

The kernel carries fast-datapath traffic (a VXLAN device per peer, its forwarding entry, the MACs the bridge
learned behind it); the router only decides whether a device may forward. When a router process dies (SIGKILL,
a crash, an upgrade that replaces it) its host's kernel still forwards: the devices, the bridge and the
containers are all there. What used to stop the traffic was the routers themselves: the peer tore its device
down with the connection, and the relaunched router deleted its own at start. So:

* **The peer keeps the path.** When a connection that was carrying traffic over the fast datapath ends because
  the *peer's kernel* closed it (EOF or a reset: its process died), the path is kept -- the device stays, and
  keeps forwarding -- for up to ``KEEP_FOR`` seconds. A new connection to that peer must take the path over
  within ``TAKEOVER`` seconds of being added (its own fast datapath healthy and chosen), or the kept path is
  dropped and the device follows the new connection as any other. A path that dies for another reason (a
  timeout, silence, our own decision) is never kept: its peer may be gone, and the sleeve must take over.
* **A router that closes on purpose says goodbye.** ``weave stop``, a timeout, a refusal, a duplicate: before
  the router closes a connection itself it sends ``CONTROL_GOODBYE`` (fast-datapath control sub-tag 2), and the
  peer then drops the path at once, as before. Only a process that could not say it (killed) leaves a kept path.
* **The relaunched router adopts its devices** (``weavenet.daemon.fastdp_link``): a device whose alias says it
  was forwarding to a peer that keeps (``weavenet/<peer>/keeps``) is left as it is and kept here the same way,
  and the router takes back the short ID its devices' VNIs were made of, so the new connection's devices are
  the very same and nothing in the kernel changes when it takes over.

Only between peers that announce ``WeavenetFastdpKeep`` in the handshake: a Weave 2.8 (Go) peer sends no
goodbye and does not keep, so with it nothing changes, and it sees nothing new (the goodbye goes only to peers
that announced the feature).

Everything is pure: time comes in as ``now``; the daemon reads :meth:`FastdpKeeps.paths` to set the kernel.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, replace

from weavenet.core.names import PeerName

log = logging.getLogger("weavenet.fastdp")

KEEP_FEATURE = "WeavenetFastdpKeep"  # keeps a peer's path across its restart, and says goodbye when closing
CONTROL_GOODBYE = 2  # fast-datapath control sub-tag: "I close this on purpose, do not keep my path"
KEEP_FOR = 30.0  # a kept path lasts this long without a new connection to its peer ...
TAKEOVER = 6.0  # ... and this long after a new connection is added, unless that one takes it over sooner

# What a connection's end looks like when the peer's kernel closed it: EOF (None) or a reset.
_PEER_CLOSED = ("reset by peer", "connection reset", "broken pipe")


@dataclass(frozen=True, slots=True)
class KeptPath:
    """A peer's fast-datapath path kept without a connection: what its device looks like, and until when."""

    peer: PeerName
    short_id: int  # the peer's short ID (names the device)
    rx_vni: int  # the peer's frames arrive with this VNI
    tx_vni: int  # ours leave with this one
    remote: tuple[str, int]  # the peer's VXLAN address
    since: float
    until: float
    why: str  # for the log and ``weave report``
    adopted: bool = False  # left by our previous process, rather than kept from a connection of this one


def peer_closed(error: str | None) -> bool:
    """Whether a connection's end (``None``: EOF, else the socket's error) was the peer's kernel closing it."""
    return error is None or any(s in error.lower() for s in _PEER_CLOSED)


def why_not_keep(*, carrying: bool, peer_keeps: bool, goodbye: bool, error: str | None) -> str | None:
    """Why a lost connection's fast datapath is not kept (None: keep it). The order is the order of interest."""
    if not carrying:
        return "its fast datapath was not carrying traffic"
    if not peer_keeps:
        return "the peer does not keep paths across restarts"
    if goodbye:
        return "the peer said goodbye"
    if not peer_closed(error):
        return f"the connection did not end by the peer's process going ({error})"
    return None


class FastdpKeeps:
    """The kept paths of one router, by peer."""

    def __init__(self) -> None:
        self.paths: dict[PeerName, KeptPath] = {}
        self.kept = 0  # paths kept from lost connections
        self.adopted = 0  # paths adopted from our previous process
        self.taken_over = 0  # ... taken over by a new connection
        self.expired = 0  # ... dropped unused (no new connection, or one that did not take over in time)

    def keep(
        self, peer: PeerName, short_id: int, vnis: tuple[int, int], remote: tuple[str, int], why: str, now: float
    ) -> KeptPath:
        """Keep a lost connection's path (the caller checked :func:`why_not_keep`)."""
        path = KeptPath(peer, short_id, vnis[0], vnis[1], remote, now, now + KEEP_FOR, why)
        self.paths[peer] = path
        self.kept += 1
        log.info("fast datapath to %s kept for up to %.0fs: %s", peer, KEEP_FOR, why)
        return path

    def adopt(
        self, peer: PeerName, short_id: int, vnis: tuple[int, int], remote: tuple[str, int], now: float
    ) -> KeptPath:
        """A device our previous process left forwarding to a peer that keeps: kept as if its connection was lost
        just now."""
        why = "adopted from the previous router process"
        path = KeptPath(peer, short_id, vnis[0], vnis[1], remote, now, now + KEEP_FOR, why, adopted=True)
        self.paths[peer] = path
        self.adopted += 1
        log.info("fast datapath to %s (%s, VNI in %#x, out %#x) %s", peer, remote[0], vnis[0], vnis[1], why)
        return path

    def connection_added(self, peer: PeerName, now: float) -> None:
        """A new connection to the peer: it has ``TAKEOVER`` seconds to take the path over."""
        path = self.paths.get(peer)
        if path is not None and path.until > now + TAKEOVER:
            self.paths[peer] = replace(path, until=now + TAKEOVER)

    def take_over(self, peer: PeerName, now: float) -> None:
        """The new connection's fast datapath carries the traffic: the kept path is its now."""
        path = self.paths.pop(peer, None)
        if path is not None:
            self.taken_over += 1
            log.info(
                "fast datapath to %s taken over by the new connection %.2fs after it was kept", peer, now - path.since
            )

    def drop(self, peer: PeerName, why: str) -> None:
        if self.paths.pop(peer, None) is not None:
            log.info("fast datapath to %s no longer kept: %s", peer, why)

    def expire(self, now: float) -> list[KeptPath]:
        """Drop the paths whose time is up; returns them."""
        gone = [p for p in self.paths.values() if p.until <= now]
        for path in gone:
            del self.paths[path.peer]
            self.expired += 1
            log.info(
                "fast datapath to %s no longer kept: no new connection took it over within %.1fs",
                path.peer,
                now - path.since,
            )
        return gone

    def next_deadline(self) -> float | None:
        return min((p.until for p in self.paths.values()), default=None)

    def counters(self) -> dict[str, int]:
        return {"kept": self.kept, "adopted": self.adopted, "taken_over": self.taken_over, "expired": self.expired}
