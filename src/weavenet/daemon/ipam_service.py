"""IPAM in the router daemon: the allocator on the mesh, its timer, its store, and awaitables for the API.

Wiring, as Weave's ``prog/weaver/main.go`` does it: the allocator is registered on gossip channel
``IPallocation`` (and on weavenet's ``weavenet-ipam-members``, see ``ipam.members``) before any connection
forms; the topology's peer removals prune its nicknames; it is started with the persisted ring and owned
addresses (``ring``, ``ownedAddresses``, ``peername`` in the state store, and ``weavenetIpamMembers``, written
in one transaction whenever they change) and with *pre-claims*: the addresses really in use, found on the bridge
(every container veth's peer and its addresses, :mod:`weavenet.host.ports`, and the bridge's own for
``weave:expose``), so a restarted router never hands them out again, even when the attach registry or the owned
addresses could not be read (said in the log, in ``weave status`` and by ``weave launch``). Containers that went
away while it was down are pruned.

A change that cannot be saved (a full disk) fails the operation that made it, undone (see the allocator); a
release stays released and is saved by the next write that succeeds.

The allocator is a machine of the shared :class:`~weavenet.aio.machine.MachineDriver`: every call into it runs
through ``driver.run``, so the gossip it causes goes out at once and its timer is re-armed afterwards. Results
come back through callbacks, turned into futures here; a caller that disconnects while its request waits (for
consensus, for space) cancels it.

Container lifecycle comes from the container events: ``die`` frees a container's addresses after 30 s unless it
``start``\\ s again, ``destroy`` at once.
"""

from __future__ import annotations

import asyncio
import logging
import random
from collections.abc import Callable
from typing import TYPE_CHECKING

from weavenet.aio.machine import MachineDriver
from weavenet.config import IpamSetup
from weavenet.core.container_events import DESTROY, DIE, START, ContainerEvent, ContainerEvents
from weavenet.core.names import PeerName
from weavenet.daemon import container_watch
from weavenet.daemon.persistence import WHAT, Store, StoreError
from weavenet.errors import RemoteProtocolError, StateError
from weavenet.host import attached
from weavenet.ipam import members
from weavenet.ipam.address import CIDR
from weavenet.ipam.allocator import Allocator, AllocatorConfig, PreClaim
from weavenet.ipam.operations import Operation, Result
from weavenet.ipam.wire import CHANNEL, Owned, decode_owned
from weavenet.status.ipam import IPAMStatus

if TYPE_CHECKING:
    from weavenet.core.router import MeshRouter

log = logging.getLogger("weavenet.ipam")

# (stored keys, unreadable keys and why, problems found, live containers, pre-claims): IPAMService._read_and_scan
_Scanned = tuple[dict[str, bytes], dict[str, str], list[str], dict[str, attached.Attached], list[PreClaim]]

EXPOSE_IDENT = "weave:expose"
CANCEL_POLL = 0.5
STORE_KEYS = ("peername", "ring", "ownedAddresses", members.STORE_KEY)
OWNED_KEY = "ownedAddresses"
AFTERWARDS = {
    "ownedAddresses": "the addresses in use were found again on the bridge",
    "ring": "the ring is learnt again from the other peers, or made anew",
    "peername": "the peer name comes from the bridge again",
    members.STORE_KEY: "which peers reclaim automatically is learnt again from the other peers",
}


class RouterView:
    """The allocator's view of the mesh: the router's topology and routes."""

    def __init__(self, router: MeshRouter) -> None:
        self.router = router

    def is_known_peer(self, name: PeerName) -> bool:
        return self.router.topology.get(name) is not None

    def is_reachable(self, name: PeerName) -> bool:
        return name == self.router.name or self.router.routes.unicast_all(name) is not None

    def target_count(self) -> int:
        return len(self.router.maker.direct_targets(True))

    def peer_uid(self, name: PeerName) -> int | None:
        peer = self.router.topology.get(name)
        return peer.uid if peer is not None and peer.uid else None


class IPAMService:
    def __init__(
        self,
        router: MeshRouter,
        driver: MachineDriver,
        store: Store,
        events: ContainerEvents,
        setup: IpamSetup,
        *,
        nickname: str,
        run_dir: str,
        problem: Callable[[str], None],
    ) -> None:
        """``problem``: where to say state that could not be read (the log, ``weave status``, ``weave launch``)."""
        self.setup = setup
        self.router = router
        self.name = router.name
        self.driver = driver
        self.store = store
        self.run_dir = run_dir
        self.problem = problem
        self.default_subnet = setup.default_subnet
        self.on_delete: list[Callable[[str], None]] = []  # told of each ident ``DELETE /ip/<ident>`` released
        loop = driver.loop
        self.loop = loop
        cfg = AllocatorConfig(
            name=router.name,
            uid=self.router.ourself.uid,
            nickname=nickname,
            universe=setup.universe,
            seed=list(setup.seed),
            observer=setup.observer,
            peer_count=setup.peer_count,
            reclaim_after=setup.reclaim_after,
            wall_offset=self.driver.wall_offset,
        )
        self.allocator = Allocator(
            cfg,
            RouterView(self.router),
            random.Random(random.SystemRandom().getrandbits(64)),
            loop.time(),
            persist=self._persist,
        )
        self.allocator.set_sink(self.router.new_gossip(CHANNEL, self.allocator))
        self.allocator.set_members_sink(self.router.new_gossip(members.CHANNEL, self.allocator.members_gossiper()))
        self.router.on_peer_removed.append(lambda peer: self.allocator.peer_gone(peer.name))
        self.events = events
        events.subscribe(self._on_container_event)
        self.watch = container_watch.ContainerWatch(
            run_dir, events, loop.time, hints=lambda: list(self.allocator.owned)
        )
        self.persist_failures = 0
        self._scan: asyncio.Task[_Scanned] | None = None  # the saved state and what is in use (prescan)
        self._persist_error: str | None = None
        driver.add("IPAM allocator", self.allocator)

    # -- lifecycle ----------------------------------------------------------------------------------------------

    def prescan(self) -> None:
        """Start reading the saved state and scanning what is in use (the bridge's container veths, the attach
        registry; pyroute2's import with it) at the launch's first step, in a thread: the steps before IPAM's
        overlap it instead of the dial waiting for it. Nothing attaches before the API is up, so what it finds is
        what :meth:`start` would have found."""
        if self._scan is None:
            self._scan = self.loop.create_task(self._read_and_scan())
            self._scan.add_done_callback(lambda t: t.cancelled() or t.exception())  # a failed launch: retrieved

    async def start(self) -> None:
        """Load the store, pre-claim what is in use, prune what is gone, start watching containers."""
        self.prescan()
        assert self._scan is not None
        stored, unreadable, problems, live, preclaims = await self._scan
        for message in problems:
            self.problem(message)
        registered = {e.ident for e in live.values()}
        for p in preclaims:
            log.info("[allocator %s] Found address %s for ID %s", self.name, p.cidr, p.ident)
        self._run(lambda now: self.allocator.start(stored, preclaims, now))
        unreadable.update(self.allocator.unreadable)
        for key, reason in unreadable.items():
            self.problem(
                f"{self.store.path}: the saved {WHAT.get(key, key)} (key {key!r}) is unreadable ({reason}); "
                f"{AFTERWARDS.get(key, 'it is written again')}. If anything looks wrong, 'weave reset' starts afresh"
            )
        live_idents = registered | {p.ident for p in preclaims if p.is_container}
        keep = {
            ident
            for ident in self.allocator.owned_all()
            if ident in live_idents
            or not container_watch.checkable(ident)
            or (ident not in registered and container_watch.ident_alive(ident))
        }
        self._run(lambda now: self.allocator.prune_owned(keep, now))
        self.watch.start(live)

    async def _read_and_scan(self) -> _Scanned:
        """The saved state (a whole file unreadable: raised, the launch fails saying which and what to do) and
        what is in use: (stored, unreadable keys, problems found, live containers, pre-claims)."""
        stored: dict[str, bytes] = {}
        unreadable: dict[str, str] = {}
        for k in STORE_KEYS:
            try:
                if (v := self.store.get_raw(k)) is not None:
                    stored[k] = v
            except StoreError as e:
                if e.key is None:
                    raise  # the whole file: the launch fails, saying which and what to do
                unreadable[k] = e.reason
        owned: dict[str, Owned] = {}
        if OWNED_KEY in stored:
            try:
                owned = decode_owned(stored[OWNED_KEY])
            except RemoteProtocolError:
                pass  # the allocator finds it unreadable too, and says so below
        problems: list[str] = []
        live, preclaims = await asyncio.to_thread(_in_use, self.run_dir, owned, problems)
        return stored, unreadable, problems, live, preclaims

    async def close(self) -> None:
        await self.watch.close()

    # -- plumbing -----------------------------------------------------------------------------------------------

    def _run(self, fn: Callable[[float], object]) -> None:
        self.driver.run(fn)

    def _persist(self, items: dict[str, bytes]) -> None:
        """Write, or raise StateError: the allocator then fails and undoes what callers were about to be given."""
        try:
            self.store.set_many_raw(items)
        except StateError as e:  # a full disk must not take the router down: logged, counted, said to callers
            self.persist_failures += 1
            if str(e) != self._persist_error:  # once, not on every retry (each tick tries again)
                log.error("[allocator] Error persisting IPAM data: %s", e)
            self._persist_error = str(e)
            raise
        if self._persist_error is not None:
            log.info("[allocator] IPAM data saved again")
            self._persist_error = None

    def _on_container_event(self, ev: ContainerEvent) -> None:
        if ev.kind == DIE:
            self._run(lambda now: self.allocator.container_died(ev.ident, now))
        elif ev.kind == START:
            self._run(lambda now: self.allocator.container_started(ev.ident, now))
        elif ev.kind == DESTROY:
            self._run(lambda now: self.allocator.container_destroyed(ev.ident, now))

    async def _wait(
        self, submit: Callable[[float, Callable[[Result], None]], Operation], disconnected: Callable[[], bool]
    ) -> Result:
        fut: asyncio.Future[Result] = self.loop.create_future()

        def done(result: Result) -> None:
            if not fut.done():
                fut.set_result(result)

        ops: list[Operation] = []
        self._run(lambda now: ops.append(submit(now, done)))
        while not fut.done():
            await asyncio.wait([fut], timeout=CANCEL_POLL)
            if not fut.done() and disconnected():
                self._run(lambda now: self.allocator.cancel(ops[0], now))
        return fut.result()

    # -- what the API asks ----------------------------------------------------------------------------------

    async def allocate(
        self, ident: str, subnet: CIDR | None, check_alive: bool, disconnected: Callable[[], bool]
    ) -> Result:
        if check_alive and not container_watch.ident_alive(ident):
            return Result(error=f"Allocate request for {ident} cancelled", cancelled=True)
        net = subnet or self.default_subnet
        return await self._wait(
            lambda now, done: self.allocator.allocate(ident, net, check_alive, now, done), disconnected
        )

    async def claim(
        self, ident: str, cidr: CIDR, check_alive: bool, no_error_on_unknown: bool, disconnected: Callable[[], bool]
    ) -> Result:
        if check_alive and not container_watch.ident_alive(ident):
            return Result(error=f"Claim request for {ident} cancelled", cancelled=True)
        return await self._wait(
            lambda now, done: self.allocator.claim(ident, cidr, check_alive, now, done, no_error_on_unknown),
            disconnected,
        )

    async def prime(self, disconnected: Callable[[], bool]) -> Result:
        return await self._wait(self.allocator.prime, disconnected)

    def lookup(self, ident: str, subnet: CIDR | None) -> list[CIDR]:
        return self.allocator.lookup(ident, (subnet or self.default_subnet).host_range())

    def owned(self) -> dict[str, list[CIDR]]:
        return self.allocator.owned_all()

    def free(self, ident: str, addr: int) -> str | None:
        """Release one address: an error message if ``ident`` does not hold it; StateError if the release is
        done but could not be saved yet."""
        out: list[str | None] = []
        self._run(lambda now: out.append(self.allocator.free(ident, addr, now)))
        self._check_saved(out)
        return out[0] if out else "IPAM is shutting down"

    def delete(self, ident: str) -> str | None:
        """``DELETE /ip/<ident>`` (a CNI plugin's DEL among others): every address of ``ident`` released; those
        who follow ``on_delete`` are told, even when the release is not saved yet."""
        out: list[str | None] = []
        self._run(lambda now: out.append(self.allocator.delete(ident, now)))
        if out and out[0] is None:
            for tell in self.on_delete:
                try:
                    tell(ident)
                except Exception:  # the release stands whatever a follower makes of it
                    log.exception("after releasing %s's addresses", ident)
        self._check_saved(out)
        return out[0] if out else "IPAM is shutting down"

    def _check_saved(self, out: list[str | None]) -> None:
        if out and out[0] is None and self.allocator.unsaved is not None:
            raise StateError(
                f"released, but not saved yet ({self.allocator.unsaved}); the router saves it as soon as it can"
            )

    def rmpeer(self, peer: str) -> int:
        """``DELETE /peer/<id>``; raises ``TakeoverError`` for ourselves, a live peer or an unknown name."""
        out: list[int] = []
        errors: list[Exception] = []

        def take(now: float) -> None:
            try:
                out.append(self.allocator.admin_takeover(peer, now))
            except Exception as e:
                errors.append(e)

        self._run(take)
        if errors:
            raise errors[0]
        log.info("[allocator] %d IPs taken over from %s", out[0], peer)
        return out[0]

    def shutdown(self) -> None:
        """``DELETE /peer`` (``weave reset``): hand our ranges to a live peer."""
        self._run(self.allocator.shutdown)

    def status(self) -> IPAMStatus:
        """The ``IPAM`` part of ``weave report``: the allocator's, with this service's counters."""
        st = self.allocator.status(self.default_subnet, self.loop.time())
        st.persist_failures = self.persist_failures
        st.unsaved = self.allocator.unsaved or ""
        st.container_deaths = self.watch.deaths
        return st


def _in_use(
    run_dir: str, owned: dict[str, Owned], problems: list[str]
) -> tuple[dict[str, attached.Attached], list[PreClaim]]:
    """Containers still attached (the registry, rebuilt from the bridge if unreadable) and the addresses really in
    use: every container veth's peer on the bridge and the bridge's own (Weave's ``findExistingAddresses``, which
    asked Docker; the bridge also knows containers attached by PID or namespace path, and needs no records).

    Each address is claimed for whoever IPAM recorded it under, else the container's registry ident, else the
    PID or namespace path its veth leads to."""
    from weavenet.errors import HostError
    from weavenet.host.attach import ContainerRef, container_addrs
    from weavenet.host.bridge import BRIDGE
    from weavenet.host.expose import exposed
    from weavenet.host.ports import bridge_ports, display_path

    checkable = [i for i in owned if container_watch.checkable(i)]
    try:
        known = list(attached.read(run_dir).values())
    except StateError:
        known = []
    ports = bridge_ports(BRIDGE, hints=checkable + [e.netns for e in known])
    by_inode = attached.idents_by_inode(checkable)
    registry = attached.load(run_dir, rebuild=lambda: attached.from_ports(ports, by_inode), problems=problems)
    live = {k: e for k, e in registry.items() if attached.alive(e)}
    for entry in live.values():
        ino = attached.ns_inode(entry.netns)
        if ino is not None:
            by_inode[ino] = entry.ident
    by_addr = {c.addr: ident for ident, o in owned.items() for c in o.cidrs}
    claims: list[PreClaim] = []
    try:
        for cidr in exposed(BRIDGE):
            claims.append(PreClaim(EXPOSE_IDENT, CIDR.parse(cidr), is_container=False))
    except HostError as e:
        log.warning("cannot read the addresses of bridge %s: %s", BRIDGE, e)
    covered: set[int] = set()
    for port in ports:
        if port.netns is None:
            continue
        covered.add(port.inode)
        fallback = by_inode.get(port.inode) or (str(port.pid) if port.pid else display_path(port.netns))
        for text in port.cidrs:
            addr = CIDR.parse(text)
            claims.append(PreClaim(by_addr.get(addr.addr) or fallback, addr, is_container=True))
    for entry in live.values():  # attached, but not on this bridge (it was re-created): what its interface says
        ino = attached.ns_inode(entry.netns)
        if ino is not None and ino in covered:
            continue
        try:
            got = container_addrs(ContainerRef(entry.ident, entry.netns, ""))
        except HostError:
            continue
        for text in got[1] if got else []:
            claims.append(PreClaim(entry.ident, CIDR.parse(text), is_container=True))
    return live, claims
