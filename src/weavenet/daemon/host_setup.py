"""What the router sets up on its host: the ``weave`` bridge, Weave's iptables rules and the exposed addresses,
kept there against firewall reloads (Weave's canary), and removed again by a launch that fails.

A failed launch must leave the host as it found it, but never remove what was there before it (a killed
router's bridge, with containers on it): :class:`HostSetup` records what *it* created (the bridge if it was not
there, the rules and chains that were not) and :meth:`HostSetup.undo` removes exactly that.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Callable

from weavenet.host.bridge import ensure_bridge
from weavenet.host.expose import expose, reexpose
from weavenet.host.iptables import Undo, canary_present, ensure_iptables
from weavenet.host.run import run

log = logging.getLogger("weavenet.daemon")

CANARY_INTERVAL = 10.0
CANARY_SETTLE = 5.0


class HostSetup:
    def __init__(self, bridge: str, mac: str, mtu: int) -> None:
        self.bridge = bridge
        self.mac = mac
        self.mtu = mtu
        self._bridge_created = False
        self._iptables_undo = Undo()
        self._canary: asyncio.Task[None] | None = None
        self.after_reapply: list[Callable[[], None]] = []  # more rules to put back after a firewall reload

    async def start(self) -> None:
        """Bridge, rules and exposed addresses, as the last run left them or new; then watch the canary."""
        self._bridge_created = await asyncio.to_thread(ensure_bridge, self.mac, self.mtu, self.bridge)
        await asyncio.to_thread(ensure_iptables, self.bridge, undo=self._iptables_undo)
        await asyncio.to_thread(reexpose, self.bridge)
        self._canary = asyncio.get_running_loop().create_task(self._canary_watch())

    async def close(self) -> None:
        """Stop watching (the bridge and rules stay: containers keep their network while the router is down)."""
        if self._canary is not None:
            self._canary.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._canary

    def undo(self) -> None:
        """After a failed launch: remove what it created, nothing that was there before."""
        try:
            self._iptables_undo.apply()
        except Exception as e:  # go on: the bridge must go too
            log.error("removing the iptables rules of the failed launch: %s", e)
        if self._bridge_created:
            run(["ip", "link", "del", self.bridge], check=False)
            self._bridge_created = False

    async def expose(self, cidr: str, skip_nat: bool) -> None:
        """``weave expose``: an address on the bridge, and NAT unless ``skip_nat``."""
        await asyncio.to_thread(expose, cidr, self.bridge, skip_nat)
        log.info("Exposed %s%s", cidr, " (without masquerading)" if skip_nat else "")

    async def _canary_watch(self) -> None:
        """Re-apply our iptables rules if a firewall reload flushed them (Weave's canary, every 10 s)."""
        while True:
            await asyncio.sleep(CANARY_INTERVAL)
            present = await asyncio.to_thread(canary_present)
            if not present:
                await asyncio.sleep(CANARY_SETTLE)
                log.warning("iptables rules were flushed (canary gone): re-applying them")
                await asyncio.to_thread(ensure_iptables, self.bridge)
                for again in self.after_reapply:
                    await asyncio.to_thread(again)
                await asyncio.to_thread(reexpose, self.bridge)
