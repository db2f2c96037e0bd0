"""Lean liveness between weavenet peers: a small packet every few seconds, a question when one is late.

Before this, two weavenet peers proved each connection with a full-size (MTU) VXLAN heartbeat and a sleeve
heartbeat every 2 s each way: ~0.77 kB/s per connection and direction at idle, 95 % of it the full-size frames,
whose only purpose is to prove the path MTU -- which changes when the path does, not every two seconds. Between
two peers that both announce ``WeavenetLiveness`` (``features.LIVENESS_FEATURE``):

* **One small beat per ``BEAT``, on the path that carries.** While the fast datapath is healthy it sends a
  29-byte probe every ``BEAT`` (``fastdp``: lean), and the sleeve, *covered* by it, a heartbeat every
  ``COVERED_BEAT`` only (it keeps NAT mappings and the peer's view of our address fresh); otherwise the sleeve
  beats every ``BEAT``. A connection costs ~20 B/s each way instead of ~770.
* **Contact, and asks when it is late.** Any valid packet from the peer on either path is *contact*. When none
  has come for ``BEAT + LATE``, the connection *asks* on every path it has (a sleeve ask frame, a fast-datapath
  probe with the ``ASK`` flag), ``ASKS`` times ``ASK_EVERY`` apart; the peer answers each ask at once on the
  path it came by. Without contact for ``SILENT`` seconds the peer is gone: the connection is torn down within
  6 s of the last packet (so within 6 s of a cut), as before, and one lost beat costs an ask, not the connection.
* **The sleeve gives up ``SLEEVE_GIVE_UP`` after the last packet of either path** (a covered sleeve stays up
  while the fast datapath hears the peer; it is what the connection falls back on).
* **Path-MTU proof when it is needed.** A full-size heartbeat goes at establishment and whenever the fast
  datapath is not healthy (as before), and else only when the receiver asks for one (flag ``PROVE``): after a
  change of the sender's address, after a lost beat (every ask also asks for proof), and every ``PROOF_EVERY``.
  A proof asked for that does not come within ``PROOF_WAIT`` voids the path (``RX_HEARTBEATS`` cleared), so the
  connection falls back to the sleeve with "path MTU too small" and the fast datapath re-proves itself as before.

Indirect probes through neighbours (SWIM) were considered: with a full mesh each pair still needs its own path
checked (the fast datapath is per pair, and its MTU proof cannot be delegated), so they would add packets to the
direct beat rather than replace it; the beat is already one small packet per 4 s.

Go peers never see any of this: they announce no such feature, and keep Weave's heartbeats exactly
(``liveness.py`` watches them).
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from typing import TYPE_CHECKING

from weavenet.core.features import LIVENESS_FEATURE

if TYPE_CHECKING:
    from weavenet.core.connection import LocalConnection

log = logging.getLogger("weavenet.mesh")

BEAT = 4.0  # each side sends one small packet on the carrying path at least this often
COVERED_BEAT = 60.0  # the sleeve's heartbeats while a healthy fast datapath carries the beats
LATE = 0.5  # contact this overdue past a beat: ask
ASK_EVERY = 0.5  # asks are repeated this often ...
ASKS = 3  # ... this many times
SILENT = BEAT + LATE + ASKS * ASK_EVERY  # 6 s without contact: the peer is gone
SLEEVE_GIVE_UP = 8.0  # the sleeve stops this long after the last packet from the peer (either path)
PROOF_EVERY = 300.0  # a receiver asks for a full-size heartbeat this often even when nothing changed
PROOF_WAIT = 3.0  # a proof asked for and not come by then: the path does not carry full-size packets
PROOF_RETRY = 1.0  # the request for proof is repeated this often while it waits


def leans(ours: Mapping[str, str], theirs: Mapping[str, str]) -> bool:
    """Whether a connection runs the lean scheme: both peers announced it (each side decides from the other's
    features, so a one-sided decision would time out on the peer's slower or different beats)."""
    return ours.get(LIVENESS_FEATURE) == "1" and theirs.get(LIVENESS_FEATURE) == "1"


class Contact:
    """When we last heard the peer on any path, and the round of asks under way if that is overdue."""

    __slots__ = ("asks", "heard_at", "next_ask")

    def __init__(self, now: float) -> None:
        self.heard_at = now
        self.asks = 0
        self.next_ask = 0.0

    def heard(self, at: float | None) -> None:
        if at is not None and at > self.heard_at:
            self.heard_at = at
            self.asks = 0
            self.next_ask = 0.0

    def step(self, now: float) -> str | None:
        """``"ask"`` (ask on every path now), ``"dead"`` (silent for ``SILENT`` seconds) or None."""
        if now >= self.heard_at + SILENT:
            return "dead"
        if now < self.heard_at + BEAT + LATE or now < self.next_ask or self.asks >= ASKS:
            return None
        self.asks += 1
        self.next_ask = now + ASK_EVERY
        return "ask"

    def timer(self) -> float:
        if self.asks >= ASKS:
            return self.heard_at + SILENT
        return min(self.heard_at + SILENT, max(self.heard_at + BEAT + LATE, self.next_ask))

    def describe(self, now: float) -> str:
        return f"no packet from the peer for {now - self.heard_at:.1f}s ({self.asks} asks unanswered)"


# -- a lean connection (the router calls these) ------------------------------------------------------------------


def sync(conn: LocalConnection, contact: Contact, now: float) -> None:
    """Gather the forwarders' last arrivals into ``contact``; tell the sleeve of contact by the other path and
    whether a healthy fast datapath covers it."""
    sleeve, fastdp = conn.sleeve_forwarder(), conn.fastdp_forwarder()
    if sleeve is not None:
        contact.heard(sleeve.last_heard)
    if fastdp is not None and not fastdp.stopped:
        contact.heard(fastdp.last_any)
    if sleeve is not None:
        sleeve.heard_elsewhere(contact.heard_at)
        sleeve.cover(fastdp is not None and not fastdp.stopped and fastdp.healthy, now)


def check(conn: LocalConnection, contact: Contact, now: float) -> bool:
    """The connection's timer: ask a late peer on every path; False if it is gone (silent ``SILENT`` seconds)."""
    sync(conn, contact, now)
    step = contact.step(now)
    if step == "ask":
        sleeve, fastdp = conn.sleeve_forwarder(), conn.fastdp_forwarder()
        if sleeve is not None:
            sleeve.ask()
        if fastdp is not None and not fastdp.stopped:
            fastdp.ask(now)
        log.debug("%s: no packet for %.1fs, ask %d sent", conn.describe(), now - contact.heard_at, contact.asks)
    return step != "dead"
