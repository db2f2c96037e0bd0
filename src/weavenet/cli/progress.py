"""What ``weave launch`` waits for, said on a terminal: the router starting, its API, then peers and consensus.

A launch takes a few seconds (the router's imports, the host's setup, the Docker engine); silent, it looks hung.
On a terminal one line on standard error is rewritten as the launch goes, and once the router answers a last
line says how many of the peers it was given are connected and whether IPAM still awaits consensus (what a
first ``weave attach`` would wait for). Standard error that is not a terminal (scripts, CI, systemd) gets
nothing, as from Weave's script, so nothing that parses its output changes.
"""

from __future__ import annotations

import time
from typing import Any, TextIO


class Progress:
    """One rewritten line on ``stream`` while ``enabled`` (a terminal); nothing otherwise."""

    def __init__(self, stream: TextIO, enabled: bool | None = None) -> None:
        self.stream = stream
        self.enabled = stream.isatty() if enabled is None else enabled
        self.started = time.monotonic()
        self._last = ""

    def say(self, what: str) -> None:
        """Replace the line with ``weave launch: <what> (<seconds>)`` (only when it changed or a second passed)."""
        if not self.enabled:
            return
        line = f"weave launch: {what} ({time.monotonic() - self.started:.0f} s)"
        if line != self._last:
            self._last = line
            self.stream.write("\r\033[K" + line)
            self.stream.flush()

    def done(self, summary: str = "") -> None:
        """End the line: replaced by ``summary`` (if any) and a newline."""
        if not self.enabled:
            return
        self.stream.write("\r\033[K" + (f"weave launch: {summary}\n" if summary else ""))
        self.stream.flush()


def waiting_on(status: int | None) -> str:
    """What the launch waits for, from the answer of ``GET /status`` (None: nothing answers yet)."""
    if status is None:
        return "waiting for the router's API"
    return "API up; waiting for the router to be ready (Docker proxy and plugin)"


def summary(report: dict[str, Any], elapsed: float) -> str:
    """``ready in 2 s; peers: 1 of 2 connected; IPAM: awaiting consensus (1 of 3 peers known)``, from the
    router's report (its JSON)."""
    router = report.get("Router") or {}
    conns = router.get("Connections") or []
    up = sum(1 for c in conns if c.get("State") == "established")
    targets = len(router.get("Targets") or [])
    parts = [f"ready in {elapsed:.0f} s"]
    if targets or up:
        parts.append(f"peers: {up} connected" + (f", {targets} to connect to" if targets else ""))
    else:
        parts.append("no peers yet")
    ipam = report.get("IPAM")
    if ipam is not None:
        paxos = ipam.get("Paxos")
        if paxos is not None:
            parts.append(
                f"IPAM: awaiting consensus ({paxos.get('KnownNodes', 0)} peers known, {paxos.get('Quorum', 0)} "
                "needed; the first allocation or weave prime holds the election)"
            )
        elif not ipam.get("Entries"):
            parts.append("IPAM: no range yet (the first allocation or weave prime makes it)")
        else:
            parts.append(f"IPAM: ready ({ipam.get('Range', '')})")
    return "; ".join(parts)
