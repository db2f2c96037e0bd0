"""Network policy on this host: whether it is enforced here, and the kernel kept in step with the cluster's.

Part of the network policy service (``policy_service.py``, whose docstring says when each ``--network-policy``
mode enforces). Once enforcing, every change of the cluster's snapshot is compiled (``compile_state``, in a
thread) and applied (``Enforcer.apply``: one ``nft`` transaction, a diff when only pods changed) at most
``DEBOUNCE`` after it, so a burst of changes is one transaction; the first apply after a start waits ``SETTLE``
for the other hosts' pods (the table of the last run stays in force meanwhile); a refused apply is tried again
after ``RETRY``, doubling. Requests that changed something wait (:meth:`PolicyEnforcement.in_force`) until their
change is in force here.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Iterator
from typing import TYPE_CHECKING, Any

from weavenet.aio.machine import MachineDriver
from weavenet.daemon.persistence import Store, StoreError
from weavenet.errors import ConfigError, HostError, StateError
from weavenet.policy import Options, Snapshot, compile_state
from weavenet.policy.cluster import PolicyCluster
from weavenet.policy.kube_source import KubeSource

if TYPE_CHECKING:
    from prometheus_client.core import Metric

    from weavenet.host.npc import Enforcer

log = logging.getLogger("weavenet.npc")

DEBOUNCE = 0.05  # changes within this are applied together
SETTLE = 2.0  # after a start, time for the other hosts' pods to arrive before the first apply
RETRY = (1.0, 30.0)  # a refused apply is tried again after this, doubling up to the second value
WAIT_APPLIED = 10.0  # longest a request waits for its change to be in force here
ENFORCED_KEY = "weavenetPolicyEnforced"  # this router has enforced policy here (so the table there is its own)


class PolicyEnforcement:
    """This host's side of the cluster's policies (see the module docstring)."""

    def __init__(
        self,
        cluster: PolicyCluster,
        driver: MachineDriver,
        store: Store,
        *,
        mode: str,
        node: str,
        options: Options,
        enforcer: Enforcer | None = None,
        kube: KubeSource | None = None,
    ) -> None:
        self.cluster = cluster
        self.kube = kube  # Kubernetes mode: the policies and pods come from the API's controller, not gossip
        self.driver = driver
        self.store = store
        self.mode = mode
        self.node = node
        self.options = options
        self._enforcer = enforcer  # made on first use: its imports need not delay the launch
        self.enforcing = False
        self.why_not = ""  # why this host does not enforce (status)
        self._wanted = -1  # the generation the applier was last told about
        self._applied = -1  # the generation in force in the kernel
        self._wake = asyncio.Event()
        self._not_before = 0.0
        self._retry = RETRY[0]
        self._waiters: list[tuple[int, asyncio.Future[None]]] = []
        self._task: asyncio.Task[None] | None = None
        self.last_apply: dict[str, Any] = {}
        self.applies = 0
        self.apply_errors = 0

    @property
    def enforcer(self) -> Enforcer:
        if self._enforcer is None:
            from weavenet.host.npc import Enforcer

            self._enforcer = Enforcer(bridge=self.options.bridge)
        return self._enforcer

    # -- whether this host enforces ---------------------------------------------------------------------------

    async def decide(self) -> None:
        """At start, the policy set loaded: enforce (closing the bridge until the first state) or say why not."""
        if self.mode == "off":
            self.why_not = "off on this host (--network-policy off)"
        elif self.mode in ("on", "kubernetes") or self.cluster.has_policies():
            await self._close_until_applied()
        elif await self._table_exists():
            if self._enforced_before():  # every policy was deleted: the table (allowing all) stays ours
                await self._close_until_applied()
            else:
                self.why_not = "the policy table on this host is another controller's (left alone)"
                log.warning("network policy: a policy table is on this host, but not this router's: left alone")
        else:
            self.why_not = "no network policy in the cluster"

    async def _table_exists(self) -> bool:
        try:
            return await asyncio.to_thread(self.enforcer.table_exists)
        except HostError:
            return False  # no nft: nothing was ever enforced here

    def _enforced_before(self) -> bool:
        try:
            return self.store.get_raw(ENFORCED_KEY) is not None
        except StoreError:
            return True  # unreadable: it was written, so it was ours

    def _now_enforcing(self) -> None:
        self.enforcing = True
        self.why_not = ""
        try:
            if self.store.get_raw(ENFORCED_KEY) is None:
                self.store.set_raw(ENFORCED_KEY, b"1")
        except StateError as e:
            log.warning("network policy: cannot note in the store that this host enforces: %s", e)

    async def _close_until_applied(self) -> None:
        """Enforce from now on: the closed table if the host has none (the last run's stays as it is)."""
        try:
            if await asyncio.to_thread(self.enforcer.ensure_closed):
                log.info("network policy: enforced on this host; new traffic into the bridge waits for the first state")
        except HostError as e:
            if self.mode in ("on", "kubernetes"):
                raise ConfigError(f"--network-policy on: {e}") from e
            self.why_not = f"cannot be enforced here: {e}"
            log.error("network policy: %s", self.why_not)
            return
        self._now_enforcing()

    # -- the kernel kept in step --------------------------------------------------------------------------------

    def start(self) -> None:
        """Start applying (the first time after ``SETTLE``)."""
        loop = asyncio.get_running_loop()
        self._not_before = loop.time() + (SETTLE if self.kube is None else 0.0)  # the controller sends all at once
        self._task = loop.create_task(self._apply_loop())

    def changed(self) -> None:
        """After every input of the cluster: the first policy of the cluster turns enforcement on in ``auto``; a
        new snapshot wakes the applier."""
        c = self.cluster
        if not self.enforcing and self.mode == "auto" and c.has_policies() and self._task is not None:
            self._now_enforcing()  # the first policy of the cluster: its state replaces no table, so no window
            log.info("network policy: the cluster has a policy: enforced on this host from now on")
        gen = self._generation()
        if self.enforcing and gen != self._wanted and (self.kube is None or self.kube.synced):
            self._wanted = gen
            self._wake.set()

    def _generation(self) -> int:
        return self.cluster.generation if self.kube is None else self.kube.generation

    def snapshot(self) -> Snapshot:
        """The engine's input: the cluster's (gossip), or in Kubernetes mode the API's."""
        return self.cluster.snapshot() if self.kube is None else self.kube.snapshot()

    def _options(self) -> Options:
        if self.kube is None:
            return self.options
        return Options(allow_mcast=self.kube.allow_mcast, bridge=self.options.bridge)

    async def close(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
        for _, fut in self._waiters:
            if not fut.done():
                fut.cancel()

    async def _apply_loop(self) -> None:
        loop = asyncio.get_running_loop()
        while True:
            await self._wake.wait()
            delay = max(DEBOUNCE, self._not_before - loop.time())
            await asyncio.sleep(delay)
            self._wake.clear()
            gen = self._generation()
            snap = self.snapshot()
            started = time.monotonic()
            try:
                state = await asyncio.to_thread(compile_state, snap, self.node, self._options())
                result = await asyncio.to_thread(self.enforcer.apply, state)
            except Exception as e:  # the kernel refused it, or nft is gone: the previous state stays in force
                self.apply_errors += 1
                message = str(e) if isinstance(e, HostError) else f"{type(e).__name__}: {e}"
                self.last_apply = {"Error": message, "At": self.driver.wall()}
                log.error("network policy: applying the state failed (the previous one stays): %s", message)
                self._not_before = loop.time() + self._retry
                self._retry = min(self._retry * 2, RETRY[1])
                self._wake.set()
                continue
            self._retry = RETRY[0]
            self.applies += 1
            self._applied = gen
            self.last_apply = {
                "At": self.driver.wall(),
                "Seconds": round(time.monotonic() - started, 3),
                "Commands": result.lines,
                "Full": result.full,
                "Pods": len(snap.pods),
                "Policies": len(snap.policies),
            }
            log.info("network policy: %d policies, %d pods in force (%s, %d commands, %.3fs)", len(snap.policies),
                     len(snap.pods), "all" if result.full else "a diff", result.lines,
                     self.last_apply["Seconds"])  # fmt: skip
            for g, fut in self._waiters:
                if g <= gen and not fut.done():
                    fut.set_result(None)
            self._waiters = [(g, f) for g, f in self._waiters if not f.done()]

    @property
    def up_to_date(self) -> bool:
        """Enforcing, and the cluster's current snapshot is in force here."""
        return self.enforcing and self._applied >= self._generation() and (self.kube is None or self.kube.synced)

    async def in_force(self) -> str:
        """Wait until the current snapshot is applied here (nothing to wait for when not enforcing); what went
        wrong, or ""."""
        if not self.enforcing:
            return ""
        gen = self._generation()
        if self._applied >= gen:
            return ""
        fut: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self._waiters.append((gen, fut))
        try:
            await asyncio.wait_for(asyncio.shield(fut), WAIT_APPLIED)
        except TimeoutError:
            return f"not in force on this host yet: {self.last_apply.get('Error') or 'still applying'}"
        return ""

    def collectors(self) -> list[Any]:
        """Prometheus collectors for ``/metrics``: weave-npc's blocked connections, once this host enforces."""
        return [_WhenEnforcing(self)]


class _WhenEnforcing:
    """``weavenpc_blocked_connections_total`` and ``weavenpc_policy_enforcement_errors`` (weave-npc's), read from
    the kernel's counters at each scrape; nothing while this host does not enforce (no table to read)."""

    def __init__(self, enforcement: PolicyEnforcement) -> None:
        self.enforcement = enforcement

    def collect(self) -> Iterator[Metric]:
        if not self.enforcement.enforcing:
            return
        from weavenet.host.npc import BlockedConnections

        yield from BlockedConnections(self.enforcement.enforcer).collect()
