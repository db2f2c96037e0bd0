"""Liveness beacons: how a peer learns, within a second, that the path to a peer it lost has healed.

When a connection to a weavenet peer is lost, neither side knows when the path comes back: TCP redials back off
(2 s growing to 6 min, and a pending dial's SYNs themselves back off 1, 2, 4, 8 s), so after a 30 s cut the link
returned 5-17 s after the heal. So each side sends the lost peer a *beacon*, one small UDP datagram on the mesh
port, every second. Across a cut they are lost; the first one through after the heal is a *sign of life*: the
receiver, which has no connection to the sender, brings its redial of that address forward
(``ConnectionMaker.sign_of_life``), and the link is back about one beacon interval after the heal.

Bounded: beacons go only to peers that announced they understand them (``BEACON_FEATURE``, never to Go peers),
only to peers we had a connection to, every second for five minutes, every 10 s for the rest of the hour, then
never; and a sign of life hurries each redial at most once per backoff step.

The datagram is the sender's peer name (6 bytes, where every sleeve packet carries it) and ``MAGIC``. A receiver
without a connection to that name drops it as from an unknown sender, after noting the sign of life; nothing
else is in it, so a forged one can do no more than bring a dial we wanted anyway forward by one step.
"""

from __future__ import annotations

from dataclasses import dataclass

from weavenet.core.names import PeerName

BEACON_FEATURE = "WeavenetBeacon"
MAGIC = b"weavenet-beacon\x01"
INTERVAL = 1.0
FAST_FOR = 300.0
SLOW_INTERVAL = 10.0
GIVE_UP_AFTER = 3600.0
MAX_LOST = 1024  # peers beaconed at once; the oldest losses are dropped beyond this

Addr = tuple[str, int]


def beacon(sender: PeerName) -> bytes:
    return sender.bytes6() + MAGIC


def is_beacon(data: bytes) -> bool:
    return len(data) == 6 + len(MAGIC) and data[6:] == MAGIC


@dataclass(slots=True)
class _Lost:
    addr: Addr
    since: float
    next_at: float


class Beacons:
    """The peers we beacon to, and when. Pure: the router drains :meth:`due` when :meth:`next_deadline` passes."""

    def __init__(self) -> None:
        self._lost: dict[PeerName, _Lost] = {}

    def lost(self, peer: PeerName, addr: Addr, now: float) -> None:
        """A connection to ``peer`` (a weavenet peer whose mesh UDP address is ``addr``) ended: start beaconing."""
        self._lost.pop(peer, None)
        self._lost[peer] = _Lost(addr, now, now + INTERVAL)
        while len(self._lost) > MAX_LOST:
            del self._lost[next(iter(self._lost))]

    def found(self, peer: PeerName) -> None:
        """Connected to ``peer`` again: no more beacons."""
        self._lost.pop(peer, None)

    def due(self, now: float) -> list[Addr]:
        """Addresses to send a beacon to now; reschedules them (and forgets peers beaconed for an hour)."""
        out = []
        for peer, entry in list(self._lost.items()):
            if entry.next_at > now:
                continue
            age = now - entry.since
            if age >= GIVE_UP_AFTER:
                del self._lost[peer]
                continue
            out.append(entry.addr)
            entry.next_at = now + (INTERVAL if age < FAST_FOR else SLOW_INTERVAL)
        return out

    def next_deadline(self) -> float | None:
        return min((e.next_at for e in self._lost.values()), default=None)

    def peers(self) -> list[PeerName]:
        return list(self._lost)
