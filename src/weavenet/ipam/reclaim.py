"""Automatic reclaim of IP space held by a peer that is gone for good (a weavenet extension).

Weave's most reported IPAM problem is space stuck on peers that died: only ``weave rmpeer`` on exactly one
surviving host frees it, and running it on two hosts, or for a peer that was only cut off, corrupts the ring.
This module decides, on every allocator tick, whether *this* peer should take such space over by itself.

What it assumes. Nothing can tell a dead peer from one cut off by a partition, so reclaim must be safe for a
peer that comes back: it is, only because the returning peer gives the reclaimed ranges up and re-claims the
addresses its containers still use. Weave 2.8 peers never do (they refuse the ring that takes their space and
drop every connection that brings it, for good), nor do weavenet peers with ``--ipalloc-reclaim-after 0``,
which keep Weave's rule. So only the space of peers that *said* they yield is reclaimed (``members``: what
every weavenet peer states of itself, gossiped and persisted); a peer that never said so, Weave 2.8 ones
included, keeps its space until ``weave rmpeer``. The rules:

* a peer that owns ring entries, said it yields, and has been unreachable for ``after`` seconds
  (``--ipalloc-reclaim-after``) counts as gone;
* only one survivor acts: the lowest-named among the ring owners this peer can reach (itself included) that
  said it reclaims automatically, so peers that see the same topology and statements pick the same one, and a
  Weave 2.8 peer with the lowest name (which never reclaims) is not waited for. A reachable owner that has
  said nothing yet is waited for during ``grace`` (two gossip intervals) after it became reachable: that is
  how long a statement may take to arrive, relayed by Weave 2.8 peers, and two reclaimers at once would
  give the same range two owners at the same version;
* only with a strict majority of *all* ring owners (the absent ones included, Weave 2.8 peers included)
  reachable, so the two sides of a partition can never both reclaim (their majorities would have to overlap),
  and a minority never does; in a two-owner cluster nothing is reclaimed automatically;
* the condition must hold on two ticks ``settle`` seconds apart, which rides out a topology still converging.

What remains possible is a weavenet peer cut off (not dead) for longer than ``after`` on the minority side:
its space is reclaimed while it still uses some. The reclaimer therefore allocates from reclaimed space last
(quarantine), and the returning peer yields its ranges and re-claims the addresses its containers hold (see
``allocator``), so that only addresses handed out again meanwhile can collide; those are reported as
conflicts.

Pure: time is passed in; reachability comes from a callback, who takes part from a :class:`Membership`.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Protocol

from weavenet.core.names import PeerName
from weavenet.gocompat import SECOND, format_duration
from weavenet.ipam.ring import Ring

DEFAULT_RECLAIM_AFTER = 3600.0
SETTLE = 10.0
GRACE = 60.0  # two periodic gossip rounds: every statement of a reachable peer has reached us by then


class Membership(Protocol):
    """Who takes part in automatic reclaim (``members.Members``)."""

    def reclaims(self, peer: PeerName) -> bool:
        """The peer said it reclaims automatically (so it may be the one to act)."""
        ...

    def yields(self, peer: PeerName) -> bool:
        """The peer said it gives reclaimed space back when it returns (so its space may be reclaimed)."""
        ...

    def said(self, peer: PeerName) -> bool:
        """The peer said anything at all (a Weave 2.8 peer never does)."""
        ...

    def why_not(self, peer: PeerName) -> str:
        """Why a peer that does not yield keeps its space."""
        ...


@dataclass(slots=True)
class Stuck:
    """A ring owner we cannot reach, and what will become of its space."""

    peer: PeerName
    ips: int
    absent_for: float
    plan: str  # human-readable: who reclaims it when, or why nobody will
    reclaim_in: float | None  # seconds until this peer reclaims it, if it is the one that will


@dataclass
class Reclaimer:
    after: float = DEFAULT_RECLAIM_AFTER  # 0: off
    settle: float = SETTLE
    grace: float = GRACE
    absent_since: dict[PeerName, float] = field(default_factory=dict)
    seen_since: dict[PeerName, float] = field(default_factory=dict)  # reachable owners: since when
    _ready_since: dict[PeerName, float] = field(default_factory=dict)

    def observe(self, ring: Ring, us: PeerName, reachable: Callable[[PeerName], bool], now: float) -> None:
        """Note who is absent since when (called on every tick)."""
        owners = ring.peer_names()
        for p in owners - {us}:
            if reachable(p):
                self.absent_since.pop(p, None)
                self.seen_since.setdefault(p, now)
            else:
                self.absent_since.setdefault(p, now)
                self.seen_since.pop(p, None)
        for known in (self.absent_since, self.seen_since):
            for p in list(known):
                if p not in owners or p == us:
                    del known[p]

    def _quorum(self, ring: Ring, us: PeerName, reachable: Callable[[PeerName], bool]) -> tuple[set[PeerName], int]:
        owners = ring.peer_names()
        reach = {p for p in owners if p == us or reachable(p)}
        return reach, len(owners)

    def _reclaimer(self, reach: set[PeerName], us: PeerName, members: Membership, now: float) -> PeerName | None:
        """The lowest-named reachable owner that reclaims automatically (or may: it said nothing yet, and became
        reachable less than ``grace`` ago): the one that acts."""

        def may(p: PeerName) -> bool:
            if members.reclaims(p):
                return True
            return p != us and not members.said(p) and now - self.seen_since.get(p, now) < self.grace

        return min((p for p in reach if may(p)), default=None)

    def due(
        self, ring: Ring, us: PeerName, reachable: Callable[[PeerName], bool], now: float, members: Membership
    ) -> list[PeerName]:
        """The peers this peer should reclaim now (usually none)."""
        if self.after <= 0 or ring.empty():
            return []
        reach, total = self._quorum(ring, us, reachable)
        gone = [p for p, since in self.absent_since.items() if now - since >= self.after and members.yields(p)]
        if not gone or 2 * len(reach) <= total or us not in reach or self._reclaimer(reach, us, members, now) != us:
            self._ready_since.clear()
            return []
        out = []
        for p in sorted(gone):
            since = self._ready_since.setdefault(p, now)
            if now - since >= min(self.settle, self.after):
                out.append(p)
        for p in out:
            self._ready_since.pop(p, None)
            self.absent_since.pop(p, None)
        return out

    def stuck(
        self,
        ring: Ring,
        us: PeerName,
        reachable: Callable[[PeerName], bool],
        now: float,
        describe: Callable[[PeerName], str],
        members: Membership,
    ) -> list[Stuck]:
        """Every unreachable ring owner, with the plan for its space (for ``weave status ipam``)."""
        if ring.empty():
            return []
        reach, total = self._quorum(ring, us, reachable)
        out = []
        for p in sorted(ring.peer_names() - {us}):
            if reachable(p):
                continue
            since = self.absent_since.get(p, now)
            absent = now - since
            reclaim_in: float | None = None
            who = self._reclaimer(reach, us, members, now)
            if self.after <= 0:
                plan = "automatic reclaim is off (--ipalloc-reclaim-after 0)"
            elif not members.yields(p):
                plan = f"not reclaimed automatically: {members.why_not(p)}"
            elif 2 * len(reach) <= total:
                plan = (
                    f"not reclaimed automatically: {len(reach)} of {total} peers owning IP space reachable, "
                    "a majority is needed"
                )
            elif who is None:
                plan = "not reclaimed automatically: no reachable peer owning IP space reclaims automatically"
            elif not members.said(who):
                plan = (
                    f"not reclaimed yet: waiting up to {duration(self.seen_since.get(who, now) + self.grace - now)} "
                    f"to hear whether {describe(who)} reclaims automatically (a Weave 2.8 peer never does)"
                )
            else:
                left = max(0.0, since + self.after - now)
                if who == us:
                    reclaim_in = left
                    plan = f"this peer reclaims its space in {duration(left)}"
                else:
                    plan = f"{describe(who)} reclaims its space in about {duration(left)}"
            out.append(Stuck(p, ring.owned_size(p), absent, plan, reclaim_in))
        return out


def duration(seconds: float) -> str:
    """Go's ``time.Duration`` string of ``seconds`` rounded to whole seconds (``1h2m3s``, ``45s``, ``0s``): the
    status texts speak of minutes and hours, where sub-second digits would only be noise."""
    return format_duration(round(seconds) * SECOND)
