"""Network policy in the kernel: the :class:`Enforcer` applies kernel states (``weavenet.policy``) with ``nft``.

Its life on a host, and why there is never a moment that lets through what should not pass:

* ``ensure_closed()`` at router start: if the host has no policy table yet, one that lets nothing new into the
  weave bridge (established traffic only) is installed, as weave-npc's FORWARD DROP does until its chains are
  filled. If a table is there (the enforcer or the router restarted), it is left exactly as it is: the last
  state applied stays in force.
* The first ``apply()`` replaces the table's contents in one transaction (listing what is there first, keeping
  the drop counters); later ones send only the diff from the state last applied. Either way one ``nft -f`` run:
  the kernel commits it whole or not at all. If it fails, the kernel still holds the previous state, the error is
  raised, and the next ``apply()`` is a full replacement again.
* ``reset()`` (``weave reset``) deletes the table.

The table survives the enforcer's process, so a restart neither opens nor closes anything by itself.
"""

from __future__ import annotations

import json
import logging
import time
from collections.abc import Iterator
from dataclasses import dataclass

from prometheus_client.core import CounterMetricFamily, Metric

from weavenet.errors import HostError
from weavenet.host.run import ok, run
from weavenet.policy import nft
from weavenet.policy.compile import KernelState

log = logging.getLogger("weavenet.npc")


@dataclass(frozen=True, slots=True)
class ApplyResult:
    full: bool  # a full replacement (first apply, or after a failure) rather than a diff
    lines: int  # nft commands sent (0: nothing to change)
    seconds: float


class Enforcer:
    """Applies kernel states to one host (the current network namespace, or ``netns``, a path)."""

    def __init__(self, netns: str | None = None, bridge: str = "weave") -> None:
        self.netns = netns
        self.bridge = bridge
        self.current: KernelState | None = None  # what the kernel holds, as far as we know
        self.errors = 0

    def _nft(self, *args: str, script: str | None = None) -> str:
        return run(["nft", *args], netns=self.netns, input=script)

    def table_exists(self) -> bool:
        try:
            return ok(["nft", "list", "table", nft.FAMILY, nft.TABLE], self.netns)
        except FileNotFoundError as e:
            raise HostError("nft is not installed (package nftables): network policy cannot be enforced") from e

    def ensure_closed(self) -> bool:
        """Install the closed table if the host has none; True if it did."""
        if self.table_exists():
            return False
        self._nft("-f", "-", script=nft.closed_script(self.bridge))
        log.info("network policy: no table yet, new traffic into %s refused until the first policy state", self.bridge)
        return True

    def listing(self) -> tuple[list[str], list[str]]:
        """The chains and sets the table holds now."""
        if not self.table_exists():
            return [], []
        data = json.loads(self._nft("-j", "list", "table", nft.FAMILY, nft.TABLE) or "{}")
        chains, sets = [], []
        for item in data.get("nftables", []):
            if "chain" in item:
                chains.append(item["chain"]["name"])
            elif "set" in item:
                sets.append(item["set"]["name"])
        return chains, sets

    def blocked_counts(self) -> dict[tuple[str, int], tuple[int, int]]:
        """Refused connection attempts so far: (protocol, port) -> (packets, bytes)."""
        try:
            out = self._nft("-j", "list", "set", nft.FAMILY, nft.TABLE, nft.BLOCKED)
        except HostError:
            return {}
        counts: dict[tuple[str, int], tuple[int, int]] = {}
        for item in json.loads(out or "{}").get("nftables", []):
            for elem in (item.get("set") or {}).get("elem", []):
                e = elem.get("elem", elem) if isinstance(elem, dict) else {}
                concat = (e.get("val") or {}).get("concat") if isinstance(e, dict) else None
                counter = e.get("counter") or {} if isinstance(e, dict) else {}
                if isinstance(concat, list) and len(concat) == 2:
                    proto, port = str(concat[0]), int(concat[1])
                    counts[(proto, port)] = (int(counter.get("packets", 0)), int(counter.get("bytes", 0)))
        return counts

    def apply(self, state: KernelState) -> ApplyResult:
        """Make the kernel hold ``state`` (one transaction)."""
        start = time.monotonic()
        script = None if self.current is None else nft.diff_script(self.current, state)
        full = script is None
        if script is None:
            chains, sets = self.listing()
            script = nft.full_script(state, chains, sets, self.blocked_counts() if nft.BLOCKED in sets else None)
        if script:
            try:
                self._nft("-f", "-", script=script)
            except HostError:
                self.errors += 1
                self.current = None
                raise
        self.current = state
        result = ApplyResult(full, script.count("\n"), time.monotonic() - start)
        log.debug("network policy: applied %s (%d commands) in %.3fs", "all" if full else "a diff", result.lines,
                  result.seconds)  # fmt: skip
        return result

    def reset(self) -> None:
        """Remove the table and everything in it (``weave reset``)."""
        if self.table_exists():
            self._nft("delete", "table", nft.FAMILY, nft.TABLE)
        self.current = None


class BlockedConnections:
    """A Prometheus collector for ``weavenpc_blocked_connections_total{dport,protocol}`` (weave-npc's name and
    labels), read from the kernel's counters at each scrape. Register it with ``registry.register(...)``."""

    def __init__(self, enforcer: Enforcer) -> None:
        self.enforcer = enforcer

    def collect(self) -> Iterator[Metric]:
        family = CounterMetricFamily(
            "weavenpc_blocked_connections",
            "Connection attempts blocked by policy controller.",
            labels=["dport", "protocol"],
        )
        for (proto, port), (packets, _) in sorted(self.enforcer.blocked_counts().items()):
            family.add_metric([str(port), proto], packets)
        yield family
        yield CounterMetricFamily(
            "weavenpc_policy_enforcement_errors",
            "Policy states the kernel refused to apply.",
            value=self.enforcer.errors,
        )


def remove_all(netns: str | None = None) -> None:
    """``weave reset``: remove the policy table if there is one. Without ``nft`` there cannot be one."""
    try:
        Enforcer(netns).reset()
    except HostError as e:
        if "not installed" not in str(e):
            raise
