"""The Docker integration as the daemon runs it: engine check, proxy, event watcher, network plugin.

Started after the router's HTTP API (the proxy and plugin use it for addresses and names, as Weave's do) and
before the router reports ready. With no engine at the default ``--docker-api`` everything Docker is off and
says why in the log and ``weave report``; with an explicit ``--docker-api`` that does not answer, the proxy still
starts and answers every request with Docker's "Cannot connect" error until the engine is there.
"""

from __future__ import annotations

import asyncio
import contextlib
import importlib
import ipaddress
import json
import logging
import os
import re
from typing import TYPE_CHECKING, Any

import aiohttp

from weavenet.config import DockerOptions
from weavenet.core.container_events import DESTROY, ContainerEvent
from weavenet.docker import weavewait
from weavenet.docker.api import DockerClient, DockerError
from weavenet.docker.attacher import Attacher, PodSink, RouterAPI, labels_of
from weavenet.docker.endpoints import DEFAULT_DOCKER_API, parse_endpoint
from weavenet.docker.events import EventWatcher
from weavenet.docker.options import listen_endpoints, server_ssl, upstream_ssl
from weavenet.docker.rewrite import ProxySettings, is_weave_container
from weavenet.errors import HostError
from weavenet.status.docker import (
    DockerAttach,
    DockerDiagnostics,
    DockerEvents,
    DockerPlugin,
    DockerProxy,
    DockerReport,
    ProxyStatus,
)

if TYPE_CHECKING:
    from weavenet.core.container_events import ContainerEvents
    from weavenet.docker.plugin import Plugin
    from weavenet.docker.proxy import Proxy

log = logging.getLogger("weavenet.docker")
ENGINE_WAIT = 2.0
DOCKER_ID = re.compile(r"[0-9a-f]{64}")


def _host_attach_sync(cid: str, pid: int, cidrs: list[str], multicast: bool) -> list[str]:
    from weavenet.host import attach

    try:
        return attach.attach(attach.pid_ref(cid, pid), cidrs, multicast_route=multicast)
    except (HostError, OSError):
        if not os.path.exists(f"/proc/{pid}/ns/net"):
            return cidrs  # it ran its (short) command and exited as soon as it was on the network: not a failure
        raise


async def host_attach(cid: str, pid: int, cidrs: list[str], multicast: bool) -> list[str]:
    return await asyncio.to_thread(_host_attach_sync, cid, pid, cidrs, multicast)


def _write_hosts_sync(pid: int, text: str) -> None:
    """Rewrite the container's /etc/hosts in place (same inode: it is the file Docker bind-mounted there)."""
    path = f"/proc/{pid}/root/etc/hosts"
    with open(path, "r+") as f:
        f.truncate(0)
        f.write(text)


async def write_hosts(pid: int, text: str) -> None:
    await asyncio.to_thread(_write_hosts_sync, pid, text)


def _addrs_sync(pid: int) -> tuple[str, str] | None:
    from weavenet.host.attach import container_addrs, pid_ref

    got = container_addrs(pid_ref("", pid))
    if got is None or not got[1]:
        return None
    return got[0], got[1][0]


class DockerIntegration:
    def __init__(
        self, opts: DockerOptions, http_addr: str, run_dir: str, hub: ContainerEvents, on_pod: PodSink | None = None
    ) -> None:
        """``on_pod``: told of every container put on the weave network, with its labels and addresses (network
        policy's pods)."""
        self.opts = opts
        self.on_pod = on_pod
        self.run_dir = run_dir
        self.hub = hub
        self.api = RouterAPI(http_addr)
        self.docker: DockerClient | None = None
        self.proxy: Proxy | None = None
        self.plugin: Plugin | None = None
        self.watcher: EventWatcher | None = None
        self.attacher: Attacher | None = None
        self.disabled_reason = ""
        self.wait_dir = ""
        self.wait_problem = ""
        self.engine_version = ""

    @property
    def enabled(self) -> bool:
        return self.docker is not None

    async def start(self) -> None:
        opts = self.opts
        if not opts.docker_api:
            self.disabled_reason = "--docker-api is empty"
            log.info("Docker integration disabled: %s", self.disabled_reason)
            return
        docker = DockerClient(opts.docker_api, upstream_ssl(opts.docker_api))
        up = await self._engine_answers(docker)
        if not up and opts.docker_api == DEFAULT_DOCKER_API:
            await docker.close()
            self.disabled_reason = f"no Docker engine answers at {opts.docker_api}"
            log.info("Docker integration disabled: %s", self.disabled_reason)
            return
        if not up:
            log.warning(
                "Docker engine at %s does not answer (yet): the proxy reports errors until it does", opts.docker_api
            )
        self.docker = docker
        self.wait_dir = os.path.join(self.run_dir, "weavewait")
        problem = await asyncio.to_thread(weavewait.install, self.wait_dir)
        if problem:
            self.wait_problem, self.wait_dir = problem, ""
            log.warning("proxy: %s", problem)
        # weavenet.host.attach imports pyroute2 on first use, which costs a few hundred ms: not on the first start
        await asyncio.to_thread(importlib.import_module, "pyroute2")

        self.attacher = Attacher(docker, self.api, self.settings, host_attach, write_hosts, self._pod)
        self.watcher = EventWatcher(
            docker, self.hub, on_start=self._on_start, on_destroy=self.attacher.forget, on_connected=self.reattach
        )
        self.watcher.start()
        if opts.proxy:
            from weavenet.docker.proxy import Proxy

            self.proxy = Proxy(
                parse_endpoint(opts.docker_api),
                self.settings,
                self.attacher.attach,
                upstream_ssl=docker.ssl_context,
                server_ssl=server_ssl(opts),
                inspect_addrs=self._inspect_addrs,
            )
            from weavenet.docker.endpoints import parse_endpoint as pe

            await self.proxy.start([pe(a) for a in listen_endpoints(opts, os.environ)])
        if opts.plugin:
            from weavenet.docker.plugin import Plugin

            self.plugin = Plugin(opts, docker, self.api)
            await self.plugin.start()

    async def _engine_answers(self, docker: DockerClient) -> bool:
        deadline = asyncio.get_running_loop().time() + ENGINE_WAIT
        while True:
            try:
                self.engine_version = str((await docker.version()).get("Version", ""))
                return True
            except DockerError:
                if asyncio.get_running_loop().time() >= deadline:
                    return False
                await asyncio.sleep(0.2)

    async def close(self) -> None:
        for part in (self.plugin, self.proxy, self.watcher):
            if part is not None:
                with contextlib.suppress(Exception):
                    await part.close()
        if self.docker is not None:
            await self.docker.close()
        await self.api.close()

    async def settings(self) -> ProxySettings:
        dns_ip, domain = await self._dns()
        o = self.opts
        return ProxySettings(
            no_default_ipalloc=o.no_default_ipalloc,
            without_dns=o.without_dns,
            no_multicast_route=o.no_multicast_route,
            dns_ip=dns_ip,
            dns_domain=domain,
            hostname_from_label=o.hostname_from_label,
            hostname_match=o.hostname_match,
            hostname_replacement=o.hostname_replacement,
            wait_dir=self.wait_dir,
            rewrite_inspect=o.rewrite_inspect,
            no_rewrite_hosts=o.no_rewrite_hosts,
        )

    async def _dns(self) -> tuple[str, str]:
        """weaveDNS' address and domain from the router's API; ("", default) when DNS is off or unusable."""
        try:
            addr = await self.api.call("GET", "/dns-address")
            domain = await self.api.call("GET", "/domain")
        except Exception:
            return "", "weave.local."
        ip = addr.body.split(":")[0] if addr.status == 200 else ""
        try:
            usable = (
                bool(ip) and not ipaddress.ip_address(ip).is_unspecified and not ipaddress.ip_address(ip).is_loopback
            )
        except ValueError:
            usable = False
        return (ip if usable else ""), (domain.body if domain.status == 200 and domain.body else "weave.local.")

    async def _on_start(self, cid: str) -> None:
        if self.attacher is None or self.docker is None:
            return
        try:
            info = await self.docker.inspect_container(cid)
            if self.plugin is not None:
                ips = await self.plugin.container_started(info)
                if ips:  # on the plugin's network: running already, registered as soon as we hear of it
                    await self._pod(cid, str(info.get("Name") or ""), labels_of(info), ips, wait=False)
            if is_weave_container(info):
                await self.attacher.attach_info(info)
        except DockerError as e:
            log.info("container %s started: %s", cid[:12], e.message)
        except Exception as e:
            log.error("Attaching container %s to weave failed: %s; killing it", cid[:12], e, exc_info=True)
            with contextlib.suppress(DockerError):
                await self.docker.kill(cid)

    async def _pod(self, cid: str, name: str, labels: dict[str, str], ips: list[str], wait: bool = True) -> None:
        if self.on_pod is None:
            return
        try:
            await self.on_pod(cid, name, labels, ips, wait=wait)
        except Exception:  # the container still goes on the network; policy for it is logged as missing
            log.exception("network policy: registering container %s failed", cid[:12])

    async def reattach(self) -> None:
        """On (re)connecting to the engine: containers that already run get on the network again (router
        restarted), and addresses held for Docker containers that no longer run are freed (Weave's
        ``PruneOwned``), since their ``die``/``destroy`` events may have come while nobody listened."""
        if self.docker is None:
            return
        try:
            running = {str(c.get("Id", "")) for c in await self.docker.containers()}
            for ident in running:
                await self._on_start(ident)
            await self._prune(running)
        except DockerError as e:
            log.warning("re-attaching running containers: %s", e.message)

    async def _prune(self, running: set[str]) -> None:
        try:
            reply = await self.api.call("GET", "/ip")
            owned = json.loads(reply.body).get("owned") or [] if reply.status == 200 else []
        except (ValueError, AttributeError, OSError, aiohttp.ClientError):
            return
        now = asyncio.get_running_loop().time()
        for entry in owned:
            ident = str(entry.get("containerid", ""))
            if DOCKER_ID.fullmatch(ident) and ident not in running:
                log.info("container %s is not running: releasing its addresses", ident[:12])
                with contextlib.suppress(Exception):
                    self.hub.publish(ContainerEvent(DESTROY, ident, now))

    async def _inspect_addrs(self, info: dict[str, Any]) -> tuple[str, str] | None:
        pid = int((info.get("State") or {}).get("Pid") or 0)
        if not pid:
            return None
        return await asyncio.to_thread(_addrs_sync, pid)

    # -- status ------------------------------------------------------------------------------------------------------

    def report(self) -> DockerReport:
        """The report's ``Proxy`` and ``Plugin`` sections (only the services that run), as Weave's, and our
        diagnostics (not in Weave's report: only ``weave status docker`` shows them)."""
        proxy = ProxyStatus(list(self.proxy.addresses)) if self.proxy is not None else None
        plugin = self.plugin.report() if self.plugin is not None else None
        return DockerReport(proxy, plugin, self.diagnostics())

    def proxy_addresses(self) -> list[str]:
        return list(self.proxy.addresses) if self.proxy is not None else []

    def attached_containers(self) -> list[tuple[str, int]]:
        return self.attacher.attached() if self.attacher is not None else []

    def diagnostics(self) -> DockerDiagnostics:
        d = DockerDiagnostics(self.opts.docker_api, self.enabled, self.disabled_reason, self.wait_problem)
        if self.watcher is not None:
            d.events = DockerEvents(self.watcher.connected.is_set(), self.watcher.last_error, dict(self.watcher.counts))
        if self.proxy is not None:
            d.proxy = DockerProxy(dict(self.proxy.stats), self.proxy.active)
        if self.attacher is not None:
            d.attach = DockerAttach(dict(self.attacher.stats), self.attacher.last_error)
        if self.plugin is not None:
            d.plugin = DockerPlugin(self.plugin.scope, dict(self.plugin.calls), self.plugin.last_error)
        return d
