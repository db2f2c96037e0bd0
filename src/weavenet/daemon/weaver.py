"""The router daemon: the composition root that wires core, adapters, persistence and the HTTP API.

Like mesh's ``NewRouter`` it builds everything first and starts listening afterwards, so gossipers (IPAM, DNS)
can register their channels before any connection forms.

A launch either succeeds or leaves the host as it found it: the state store holds its writes until the router is
about to serve requests, and :meth:`Daemon.rollback` removes what a failed launch created (the bridge if it was
not there, the iptables rules and chains that were not, a state file that did not exist), never what was there
before (a killed router's bridge, with containers on it). State that cannot be read is said
(:meth:`Daemon.problem`: the log, ``weave status``, and ``weave launch`` prints it), and rebuilt where it can be.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import random
import signal
from pathlib import Path
from typing import Any

from weavenet.aio.mesh import MeshDriver
from weavenet.config import DaemonConfig, pid_file
from weavenet.core.container_events import ContainerEvents
from weavenet.core.names import PeerName
from weavenet.core.router import MeshConfig, MeshRouter, SendSpecial
from weavenet.daemon import snapshot
from weavenet.daemon.datapath_link import TableBuilder
from weavenet.daemon.dns_service import DNSService
from weavenet.daemon.fastdp_link import FastdpLink, overlays
from weavenet.daemon.identity import resolve_peer_name
from weavenet.daemon.ipam_service import ipam_for
from weavenet.daemon.persistence import Store, StoreError
from weavenet.daemon.weave_import import at_start as import_weave_state_at_start
from weavenet.dataplane import fastcrypto
from weavenet.dataplane.supervisor import Datapath
from weavenet.docker.service import DockerIntegration
from weavenet.errors import ConfigError, StateError
from weavenet.host.bridge import BRIDGE, ensure_bridge
from weavenet.host.expose import expose, reexpose
from weavenet.host.iptables import Undo, canary_present, ensure_iptables
from weavenet.host.run import run

log = logging.getLogger("weavenet.daemon")

CANARY_INTERVAL = 10.0
CANARY_SETTLE = 5.0


class Daemon:
    """One running router. The HTTP API calls its methods; nothing here parses HTTP."""

    def __init__(self, config: DaemonConfig) -> None:
        self.config = config
        self.problems: list[str] = []  # state found unreadable at launch (and what was done about it)
        self.unsaved: dict[str, str] = {}  # what could not be saved lately -> why
        self._bridge_created = False
        self._iptables_undo = Undo()
        self._launched = False
        self.store = Store(config.state_dir)  # StoreError names the file and what to do
        self.store.hold()  # nothing reaches the file before the router serves (see start)
        try:
            self._build(config)
        except BaseException:
            self.store.discard()
            raise

    def _build(self, config: DaemonConfig) -> None:
        # upgrade in place from Weave 2.8: its BoltDB state, once, into an empty store, before the name is chosen
        import_weave_state_at_start(self.store, config.db_prefix, config.state_dir)
        try:
            persisted = self.store.load_peer_name()
        except StoreError as e:
            if e.key is None:
                raise
            self.problem(f"{e}; the peer name comes from the bridge again")
            persisted = None
        name = resolve_peer_name(config.name, "weave", persisted, config.host_root)
        self.store.save_peer_name(name)
        self.name = name
        sysrand = random.SystemRandom()
        rng = random.Random(sysrand.getrandbits(64))
        loop = asyncio.get_running_loop()
        self.router = MeshRouter(
            MeshConfig(
                name=name,
                nickname=config.nickname,
                port=config.port,
                password=config.password,
                conn_limit=config.conn_limit,
                discovery=config.discovery,
                trusted_subnets=config.trusted_subnets,
                min_protocol_version=config.min_protocol_version,
                external_datapath=True,
                fast_sleeve=True,
                fast_sleeve_ciphers=(fastcrypto.AEGIS256,) if fastcrypto.aegis_available() else (),
                overlays=overlays(config.no_fastdp),
                fastdp_mtu=config.mtu,
            ),
            rng=rng,
            now=loop.time(),
            secret_bytes=os.urandom,
        )
        self.datapath = Datapath(
            BRIDGE,
            config.host,
            config.port,
            on_special=self._on_special,
            steering=config.tap_steering,
            warm_tick=config.warm_tick,
            rehearsal=config.rehearsal,
        )
        self.driver = MeshDriver(self.router, config.host, config.port, send_special=self._send_special)
        self.router.wall_offset = self.driver.wall_offset
        self.tables = TableBuilder(self.router)
        self.datapath.on_pmtu = self._on_pmtu
        self.driver.after_input.append(self._push_tables)
        self.fastdp = FastdpLink(self)  # VXLAN devices, heartbeat socket and sniffer, if fastdp is offered
        self._tasks: list[asyncio.Task[None]] = []
        self.ready = False
        self.stopping = asyncio.Event()
        self._servers: list[Any] = []
        self.container_events = ContainerEvents()
        self.dns = None if config.no_dns else DNSService(self)  # registers its gossip channel before we listen
        self.ipam = ipam_for(self)  # None when IPAM is off; registers its gossip channel before we listen
        self.docker = DockerIntegration(config.docker, config.http_addr, config.run_dir, self.container_events)

    # -- lifecycle ----------------------------------------------------------------------------------------------

    async def start(self) -> None:
        from weavenet.api.http import start_api  # aiohttp is only imported by the daemon

        log.info("Our name is %s(%s)", self.name, self.config.nickname)
        if self.config.password is None:
            log.info("Communication between peers is unencrypted.")
        else:
            log.info("Communication between peers via untrusted networks is encrypted.")
        self._check_space()
        self._bridge_created = await asyncio.to_thread(ensure_bridge, str(self.name), self.config.mtu)
        await asyncio.to_thread(ensure_iptables, BRIDGE, undo=self._iptables_undo)
        await asyncio.to_thread(reexpose, BRIDGE)
        await self.fastdp.start()  # probes VXLAN and ESP; falls back to sleeve-only before anything connects
        try:
            await self.datapath.start()
            await self.driver.start()
        except OSError as e:
            raise ConfigError(f"unable to listen on port {self.config.port}: {e.strerror or e}") from e
        self._tasks.append(asyncio.get_running_loop().create_task(self._canary_watch()))
        if self.dns is not None:
            await self.dns.start()
        if self.ipam is not None:
            await self.ipam.start()  # persisted ring and addresses, pre-claims, before any peer connects
        else:
            await asyncio.to_thread(self._check_registry)
        peers = self._resumed_peers() if self.config.resume else self.config.peers
        errors = await self.driver.connect(list(peers), replace=False)
        if errors:
            raise ConfigError("; ".join(errors))
        self._save_peers(launching=True)
        self.store.flush()  # from here on callers are told things: what they are told is on disk first
        self._servers = await start_api(self)
        await self.docker.start()  # proxy and plugin use the API above; ready only once they run, as Weave's
        pid_path = Path(pid_file(self.config.run_dir))
        try:
            pid_path.write_text(f"{os.getpid()}\n")
        except OSError as e:
            pid_path.unlink(missing_ok=True)
            raise StateError(f"cannot write the pid file {pid_path}: {e.strerror or e}") from e
        self.ready = True
        self._launched = True
        log.info("weavenet router ready (version %s)", snapshot.VERSION)

    def problem(self, message: str) -> None:
        """State that could not be read (and what was done about it): logged, kept for ``weave status``."""
        log.warning("%s", message)
        self.problems.append(message)

    def _check_space(self) -> None:
        """A full state directory does not stop a router with nothing to save, but it must be said."""
        try:
            full = os.statvfs(self.store.path.parent).f_bavail == 0
        except OSError:
            return
        if full:
            self.problem(
                f"at launch the state directory {self.store.path.parent} was full: changes cannot be saved to "
                f"{self.store.path}, so new addresses are refused until there is room"
            )

    def _check_registry(self) -> None:
        """Without IPAM nobody else reads the attach registry at launch: an unreadable one is rebuilt and said."""
        from weavenet.host import attached

        found: list[str] = []
        attached.load(self.config.run_dir, problems=found)
        for message in found:
            self.problem(message)

    def _resumed_peers(self) -> list[str]:
        try:
            return self.store.load_direct_peers()
        except StoreError as e:
            if e.key is None:
                raise
            self.problem(f"{e}; --resume has no peers to connect to")
            return []

    def rollback(self) -> None:
        """After a failed launch: remove what it created, nothing that was there before (see the module doc)."""
        if self._launched:
            return
        try:
            self._iptables_undo.apply()
        except Exception as e:  # go on: the rest must be undone too
            log.error("removing the iptables rules of the failed launch: %s", e)
        if self._bridge_created:
            run(["ip", "link", "del", BRIDGE], check=False)
        self.store.discard()

    async def run_until_stopped(self) -> None:
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(sig, self.stopping.set)
        await self.stopping.wait()
        log.info("shutting down")
        await self.close()

    async def close(self) -> None:
        for task in self._tasks:
            task.cancel()
        for server in self._servers:
            with contextlib.suppress(Exception):
                await server.cleanup()
        await self.docker.close()
        if self.dns is not None:
            await self.dns.close()
        if self.ipam is not None:
            await self.ipam.close()
        await self.driver.close()
        await self.fastdp.close()
        await self.datapath.stop()
        self.store.close()
        if self._launched:  # the pid file is ours only once we wrote it (a killed router's stays as it was)
            with contextlib.suppress(FileNotFoundError):
                Path(pid_file(self.config.run_dir)).unlink()

    # -- data plane -------------------------------------------------------------------------------------------

    def _send_special(self, action: SendSpecial) -> None:
        self.datapath.send_special(int(action.peer), action.conn_uid, action.frame, action.df)

    def _on_special(self, peer: int, conn_uid: int, frame: bytes, addr: tuple[str, int]) -> None:
        self.driver.run(lambda now: self.router.special_received(peer, conn_uid, frame, addr, now))

    def _on_pmtu(self, peer: int, max_payload: int) -> None:
        log.info("path MTU to %s: UDP payload limited to %d bytes", PeerName(peer), max_payload)
        self.tables.pmtu[peer] = max_payload
        self._push_tables()

    def _push_tables(self) -> None:
        tables = self.tables.build()
        if tables is not None:
            self.datapath.update(tables)

    async def _canary_watch(self) -> None:
        """Re-apply our iptables rules if a firewall reload flushed them (Weave's canary, every 10 s)."""
        while True:
            await asyncio.sleep(CANARY_INTERVAL)
            present = await asyncio.to_thread(canary_present)
            if not present:
                await asyncio.sleep(CANARY_SETTLE)
                log.warning("iptables rules were flushed (canary gone): re-applying them")
                await asyncio.to_thread(ensure_iptables, BRIDGE)
                await asyncio.to_thread(reexpose, BRIDGE)

    # -- commands -------------------------------------------------------------------------------------------------

    async def connect(self, peers: list[str], replace: bool) -> list[str]:
        errors = await self.driver.connect(peers, replace)
        unsaved = self._save_peers()
        return errors + ([unsaved] if unsaved else [])

    def forget(self, peers: list[str]) -> None:
        self.driver.forget(peers)
        self._save_peers()

    def _save_peers(self, launching: bool = False) -> str | None:
        """Save the direct peers (for ``--resume``); a failure is said and kept until a save succeeds."""
        try:
            self.store.save_direct_peers(self.router.maker.direct_targets())
        except StoreError as e:
            if launching:
                raise
            log.error("the peers were not saved: %s", e)
            self.unsaved["peers"] = str(e)
            return f"the peers were not saved: {e}"
        self.unsaved.pop("peers", None)
        return None

    async def expose(self, cidr: str, skip_nat: bool) -> None:
        """``weave expose``: an address on the bridge, and NAT unless ``skip_nat``."""
        await asyncio.to_thread(expose, cidr, BRIDGE, skip_nat)
        log.info("Exposed %s%s", cidr, " (without masquerading)" if skip_nat else "")
        if self.dns is not None:
            await self.dns.refresh_listeners()  # weaveDNS follows the bridge's addresses

    def remove_from_cluster(self) -> None:
        """``DELETE /peer`` (``weave reset``): hand our state to others before going."""
        log.info("leaving the cluster")
        if self.ipam is not None:
            self.ipam.shutdown()  # our IP ranges go to a live peer

    # -- status -----------------------------------------------------------------------------------------------------

    def report(self) -> dict[str, Any]:
        dp = self.datapath
        report = snapshot.weave_status(self.router, self.ready, interface=dp.tap_name, dataplane=dp.stats, macs=dp.macs)
        if self.dns is not None:
            report["DNS"] = self.dns.status()
        if self.ipam is not None:
            report["IPAM"] = self.ipam.status()
        report.update(self.docker.report())  # "Proxy" and "Plugin", each only when it runs
        unsaved = dict(self.unsaved)
        if self.ipam is not None and self.ipam.allocator.unsaved:
            unsaved["ipam"] = self.ipam.allocator.unsaved
        if self.problems or unsaved:  # absent when all is well, as Weave's report has no such section
            report["State"] = {"Problems": list(self.problems), "Unsaved": unsaved}
        self.fastdp.add_to_report(report)
        return report
