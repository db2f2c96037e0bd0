"""The composition root: the one place where the router's parts are built and connected.

Every other module takes what it uses (the router, the driver, the store, the container events, its own
options) and, where another part must call it, offers the callback; only this module hands one part to another.
Like mesh's ``NewRouter`` it builds everything first and starts listening afterwards, so gossipers (IPAM, DNS)
register their channels before any connection forms.

Start fills an :class:`contextlib.AsyncExitStack` as it goes: each part that started pushes its own stop, and a
part that changes the host pushes its undo, which runs only if the launch fails. So a failed launch unwinds
exactly what it did, newest first, every step even when one fails, and leaves the host as it found it; a stop
after a good launch closes everything but keeps the bridge, the rules and the state for the next run.

The order of start (each step needs the ones before it): host (bridge, rules) -> the fast datapath's probe ->
the data plane's workers and the mesh sockets -> weaveDNS -> IPAM (persisted ring, pre-claims) -> the peers
to connect to -> network policy (persisted policies, the bridge closed if it is enforced, the attached
containers' labels) -> the store's held writes flushed -> the HTTP API -> Docker (its proxy and plugin use the
API) -> the pid file, and ready.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import random
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any

from weavenet.aio.machine import MachineDriver
from weavenet.aio.mesh import MeshTransport
from weavenet.config import DaemonConfig, pid_file, resolve_ipam
from weavenet.core.container_events import ContainerEvents
from weavenet.core.router import MeshConfig, MeshRouter
from weavenet.core.router_status import router_status
from weavenet.core.sleeve_cipher import AEGIS256
from weavenet.daemon import state
from weavenet.daemon.announce import Announcer
from weavenet.daemon.datapath_link import DatapathLink
from weavenet.daemon.dns_service import DNSService
from weavenet.daemon.fastdp_link import FastdpLink, find_leftovers, overlays
from weavenet.daemon.host_setup import HostSetup
from weavenet.daemon.ipam_service import IPAMService
from weavenet.daemon.policy_service import PolicyService
from weavenet.dataplane import fastcrypto
from weavenet.errors import ConfigError, StateError
from weavenet.host.bridge import BRIDGE
from weavenet.status import VERSION, StateStatus, WeaveStatus

if TYPE_CHECKING:
    from weavenet.api.ui_routes import WebView
    from weavenet.docker.service import DockerIntegration

log = logging.getLogger("weavenet.daemon")


class Weaver:
    """One router: its parts, built and connected; :meth:`start` and :meth:`close` (see the module docstring)."""

    def __init__(self, config: DaemonConfig) -> None:
        self.config = config
        self.problems = state.Problems()
        self.store, self.name = state.open_store(
            config.state_dir, config.db_prefix, config.name, config.host_root, self.problems
        )
        try:
            self._build(config)
        except BaseException:
            self.store.discard()
            raise
        self.ready = False
        self.launched = False
        self.collectors: list[Any] = []  # more for /metrics, from who runs the router (Kubernetes mode)
        self.stopping = asyncio.Event()
        self._stack = contextlib.AsyncExitStack()

    def _build(self, config: DaemonConfig) -> None:
        loop = asyncio.get_running_loop()
        self.driver = MachineDriver(loop)
        # the devices a killed router left: the ones still forwarding are adopted, with the short ID they were
        # made of, so the containers' traffic over them never stops (core/fastdp_keep.py)
        _, adoption = find_leftovers(config.no_fastdp, BRIDGE)
        self.router = MeshRouter(
            MeshConfig(
                name=self.name,
                nickname=config.nickname,
                port=config.port,
                password=config.password,
                conn_limit=config.conn_limit,
                discovery=config.discovery,
                trusted_subnets=config.trusted_subnets,
                min_protocol_version=config.min_protocol_version,
                external_datapath=True,
                fast_sleeve=True,
                fast_sleeve_ciphers=(AEGIS256,) if fastcrypto.aegis_available() else (),
                overlays=overlays(config.no_fastdp),
                fastdp_mtu=config.mtu,
                extensions=config.extensions,
                gossip_filter=config.extensions,  # Go sends every topology entry: so does a plain Weave router
                beacons=config.extensions,
            ),
            rng=random.Random(random.SystemRandom().getrandbits(64)),
            now=loop.time(),
            short_id=adoption.short_id,
            secret_bytes=os.urandom,
        )
        self.router.wall_offset = self.driver.wall_offset
        self.host = HostSetup(BRIDGE, str(self.name), config.mtu)
        self.link = DatapathLink(
            self.router,
            self.driver.run,
            BRIDGE,
            config.host,
            config.port,
            steering=config.tap_steering,
            warm_tick=config.warm_tick,
            rehearsal=config.rehearsal,
        )
        self.fastdp = FastdpLink(
            self.router,
            self.driver.run,
            self.driver.now,
            self.link,
            config.port + 1,
            config.mtu,
            config.host,
            adoption,
        )
        hooks = self.fastdp.hooks()  # None when this router offers only the sleeve
        if hooks is not None:
            self.link.datapath.vxlan_port = hooks.vxlan_port
            self.link.datapath.on_vxlan_special = hooks.on_vxlan_special
        self.transport = MeshTransport(
            self.router,
            self.driver,
            config.host,
            config.port,
            send_special=self.link.send_special,
            send_vxlan=hooks.send_vxlan if hooks is not None else None,
            send_datagram=self.link.datapath.send_datagram,  # liveness beacons, from the mesh port
        )
        self.driver.after_input.append(self.link.push)
        self.announcer = Announcer(self.router, config.run_dir)  # gratuitous ARP when peers come back
        self.driver.after_input.append(self.announcer.check)
        if hooks is not None:
            self.driver.after_input.append(hooks.after_input)
        self.container_events = ContainerEvents()
        self.dns = None if config.no_dns else self._dns(config)  # registers its gossip channel before we listen
        ipam_setup = resolve_ipam(config.ipam)
        self.ipam = (
            None
            if ipam_setup is None
            else IPAMService(
                self.router,
                self.driver,
                self.store,
                self.container_events,
                ipam_setup,
                nickname=config.nickname,
                run_dir=config.run_dir,
                problem=self.problems.problem,
            )
        )
        self.policy = PolicyService(
            self.router,
            self.driver,
            self.store,
            self.container_events,
            mode=config.network_policy,
            run_dir=config.run_dir,
            problem=self.problems.problem,
            unsaved=self.problems.unsaved,
            bridge=BRIDGE,
        )  # registers its gossip channel before we listen
        self.docker: DockerIntegration | None = None  # made once the mesh is dialling (see _start)

    def _dns(self, config: DaemonConfig) -> DNSService:
        return DNSService(
            self.router,
            self.driver,
            self.container_events,
            domain=config.dns_domain,
            ttl=config.dns_ttl,
            listen_address=config.dns_listen_address,
            upstream=list(config.dns_upstream),
            resolv_conf=config.resolv_conf,
            fallback_timeout=config.dns_fallback_timeout,
            bridge=BRIDGE,
            run_dir=config.run_dir,
        )

    # -- lifecycle ----------------------------------------------------------------------------------------------

    def _on_failure(self, undo: Callable[[], object]) -> None:
        """Push an undo that runs only if the launch fails (a stop after a good launch keeps what it did); it runs
        in a thread, as it runs commands."""

        async def maybe() -> None:
            if not self.launched:
                await asyncio.to_thread(undo)

        self._stack.push_async_callback(maybe)

    async def start(self) -> None:
        """Start every part in order; on failure, what started is stopped and what changed the host is undone."""
        try:
            await self._start(self._stack)
        except BaseException:
            await self.close()  # says what failed in the unwinding; the launch's own error is the one raised
            raise

    async def _start(self, stack: contextlib.AsyncExitStack) -> None:
        config = self.config
        log.info("Our name is %s(%s)", self.name, config.nickname)
        if config.password is None:
            log.info("Communication between peers is unencrypted.")
        else:
            log.info("Communication between peers via untrusted networks is encrypted.")
        if not config.extensions:
            log.info("weavenet extensions off (WEAVE_NO_EXTENSIONS): Weave 2.8's protocol only, as a Go router")
        self._on_failure(self.store.discard)  # a fresh file and its journal, if this launch created them
        state.check_space(self.store, self.problems)
        if self.ipam is not None:
            self.ipam.prescan()  # in a thread, beside the steps below: the dial need not wait for it
        self._on_failure(self.host.undo)
        stack.push_async_callback(self.host.close)
        stack.callback(self.announcer.close)
        await self.host.start()
        stack.push_async_callback(self.fastdp.close)
        await self.fastdp.start()  # probes VXLAN and ESP; falls back to sleeve-only before anything connects
        stack.push_async_callback(self.link.stop)
        stack.push_async_callback(self.transport.close)
        stack.callback(self.driver.close)
        try:
            await self.link.start()
            await self.transport.start()
        except OSError as e:
            raise ConfigError(f"unable to listen on port {config.port}: {e.strerror or e}") from e
        if self.dns is not None:
            stack.push_async_callback(self.dns.close)
            await self.dns.start()
        if self.ipam is not None:
            stack.push_async_callback(self.ipam.close)
            await self.ipam.start()  # persisted ring and addresses, pre-claims, before any peer connects
        if config.no_masq_local:
            await self._no_masq_local(stack)
        else:
            await asyncio.to_thread(state.check_registry, config.run_dir, self.problems)
        peers = state.resumed_peers(self.store, self.problems) if config.resume else config.peers
        errors = await self.transport.connect(list(peers), replace=False)
        heavy = asyncio.ensure_future(asyncio.to_thread(_heavy_imports))
        heavy.add_done_callback(lambda t: t.cancelled() or t.exception())  # retrieved if the launch fails first
        if errors:
            raise ConfigError("; ".join(errors))
        state.save_peers(self.store, self.router.maker.direct_targets(), self.problems, launching=True)
        stack.push_async_callback(self.policy.close)
        await self.policy.start()  # the bridge closed before the API and Docker attach anything, if enforced
        self.store.flush()  # from here on callers are told things: what they are told is on disk first
        # The HTTP API and the Docker integration (aiohttp: ~0.8 s of imports on a loaded machine) only now, and
        # imported in a thread (begun when the mesh started dialling): a relaunched router's connections, and so
        # its containers' traffic, need neither wait for them nor for a loop blocked by their imports.
        await heavy
        from weavenet.api.http import ApiParts, start_api
        from weavenet.docker.service import DockerIntegration

        self.docker = DockerIntegration(
            config.docker, config.http_addr, config.run_dir, self.container_events, on_pod=self.policy.docker_pod
        )
        ui = await self._web_view(stack)
        api = ApiParts(
            status=self,
            router=self,
            docker=self.docker,
            ipam=self.ipam,
            dns=self.dns,
            policy=self.policy,
            collectors=[*self.policy.collectors(), *self.collectors],
            ui=ui,
        )
        await start_api(stack, api, config.http_addr, config.status_addr, config.metrics_addr)
        stack.push_async_callback(self.docker.close)
        await self.docker.start()  # proxy and plugin use the API above; ready only once they run, as Weave's
        self._podman(stack)
        await self._cni_service(stack)
        self._write_pid_file(stack)
        self.ready = True
        self.launched = True
        log.info("weavenet router ready (version %s)", VERSION)

    async def _web_view(self, stack: contextlib.AsyncExitStack) -> WebView | None:
        """The web view (weavenet.ui), where ``--ui-addr`` puts it; its hub ticks from here on."""
        from weavenet.api.ui_routes import WebView, placement
        from weavenet.daemon.ui_source import WeaverView
        from weavenet.ui.hub import Hub

        where = placement(self.config.ui_addr, self.config.http_addr, self.config.status_addr)
        if where is None:
            return None
        hub = Hub(WeaverView(self))
        stack.push_async_callback(hub.close)
        hub.start()
        return WebView(hub, *where)

    def _podman(self, stack: contextlib.AsyncExitStack) -> None:
        """The labels of podman's containers (``--podman-api``), which the CNI plugin cannot be told: not in
        Kubernetes mode, whose pods come from the Kubernetes API."""
        config = self.config
        if not config.podman_api or config.network_policy == "kubernetes":
            return
        from weavenet.config.model import DEFAULT_PODMAN_API
        from weavenet.docker.podman import PodmanWatch

        policy = self.policy
        watch = PodmanWatch(config.podman_api, BRIDGE, policy.docker_pod, policy.delete_pod,
                            explicit=config.podman_api != DEFAULT_PODMAN_API)  # fmt: skip
        policy.podman = watch.status
        if self.ipam is not None:
            self.ipam.on_delete.append(watch.released)
        stack.push_async_callback(watch.close)
        watch.start()

    async def _no_masq_local(self, stack: contextlib.AsyncExitStack) -> None:
        """``--no-masq-local``: this peer's ranges in the set that keeps their traffic from being masqueraded."""
        from weavenet.daemon.no_masq_local import NoMasqLocal
        from weavenet.host import no_masq_local

        ipam = self.ipam
        tracker = NoMasqLocal(lambda: ipam.allocator.ring.owned_ranges() if ipam is not None else [])
        self._on_failure(no_masq_local.remove)
        stack.push_async_callback(tracker.close)
        await tracker.start()
        self.driver.after_input.append(tracker.check)
        self.host.after_reapply.append(no_masq_local.ensure_rule)

    async def _cni_service(self, stack: contextlib.AsyncExitStack) -> None:
        """The process the CNI plugins hand their executions to (not the launch's to fail: see its module)."""
        from weavenet.daemon.cni_service import CniService, service_name

        name = service_name(os.environ)
        if name is None:
            log.info("CNI service off (WEAVE_CNI_SERVICE=off): the CNI plugins run in their own process")
            return
        service = CniService(name, self.problems.problem)
        stack.push_async_callback(service.close)
        await service.start()

    def _write_pid_file(self, stack: contextlib.AsyncExitStack) -> None:
        pid_path = Path(pid_file(self.config.run_dir))
        try:
            pid_path.write_text(f"{os.getpid()}\n")
        except OSError as e:
            pid_path.unlink(missing_ok=True)
            raise StateError(f"cannot write the pid file {pid_path}: {e.strerror or e}") from e
        # the pid file is ours only once we wrote it (a killed router's stays as it was)
        stack.callback(lambda: pid_path.unlink(missing_ok=True))

    async def close(self) -> None:
        """Stop every part that started, newest first; after a failed launch also undo what it changed. A step
        that fails is logged and the others still run."""
        try:
            await self._stack.aclose()
        except Exception:
            log.exception("stopping the router: a step failed (the others ran)")
        finally:
            self.store.close()

    async def run_until_stopped(self) -> None:
        import signal

        loop = asyncio.get_running_loop()
        for sig in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(sig, self.stopping.set)
        await self.stopping.wait()
        log.info("shutting down")
        await self.close()

    # -- what the API asks (RouterControl) ----------------------------------------------------------------------

    async def connect(self, peers: list[str], replace: bool) -> list[str]:
        errors = await self.transport.connect(peers, replace)
        unsaved = state.save_peers(self.store, self.router.maker.direct_targets(), self.problems)
        return errors + ([unsaved] if unsaved else [])

    def forget(self, peers: list[str]) -> None:
        self.transport.forget(peers)
        state.save_peers(self.store, self.router.maker.direct_targets(), self.problems)

    async def expose(self, cidr: str, skip_nat: bool) -> None:
        """``weave expose``: an address on the bridge, and NAT unless ``skip_nat``."""
        await self.host.expose(cidr, skip_nat)
        if self.dns is not None:
            await self.dns.refresh_listeners()  # weaveDNS follows the bridge's addresses

    def remove_from_cluster(self) -> None:
        """``DELETE /peer`` (``weave reset``): hand our state to others before going."""
        log.info("leaving the cluster")
        if self.ipam is not None:
            self.ipam.shutdown()  # our IP ranges go to a live peer

    # -- status (StatusSource) ------------------------------------------------------------------------------------

    def report(self) -> WeaveStatus:
        """The whole report, built afresh: ``weave status``, ``weave report`` and ``/metrics`` render it."""
        dp = self.link.datapath
        router = router_status(self.router, self.driver.now(), interface=dp.tap_name, dataplane=dp.stats, macs=dp.macs)
        self.fastdp.add_to_report(router)
        self.link.add_to_report(router)
        docker = self.docker.report() if self.docker is not None else None  # "Proxy", "Plugin": each if it runs
        unsaved = dict(self.problems.unsaved)
        if self.ipam is not None and self.ipam.allocator.unsaved:
            unsaved["ipam"] = self.ipam.allocator.unsaved
        problems = list(self.problems.found)
        return WeaveStatus(
            ready=self.ready,
            version=VERSION,
            router=router,
            ipam=self.ipam.status() if self.ipam is not None else None,
            dns=self.dns.status() if self.dns is not None else None,
            proxy=docker.proxy if docker is not None else None,
            plugin=docker.plugin if docker is not None else None,
            # absent when all is well, as Weave's report has no such section
            state=StateStatus(problems, unsaved) if problems or unsaved else None,
            docker=docker.diagnostics if docker is not None else None,
            network_policy=self.policy.status(),
        )


def _heavy_imports() -> None:
    """What the API, the Docker integration and the web view import (aiohttp above all), in a thread: the event
    loop goes on handshaking and heartbeating meanwhile. The later imports on the loop find them loaded."""
    import weavenet.api.http
    import weavenet.api.ui_routes
    import weavenet.daemon.ui_source
    import weavenet.docker.service
    import weavenet.ui.hub  # noqa: F401
