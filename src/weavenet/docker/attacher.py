"""Putting a proxied container on the weave network once it runs (Weave's proxy ``attach``).

Addresses come from the router's own HTTP API, as Weave's proxy gets them (``POST /ip/<id>`` for
``net:default``, ``POST /ip/<id>/<subnet>`` for ``net:<cidr>``, ``PUT /ip/<id>/<cidr>`` to claim an explicit
address; ``check-alive=true`` so an address is not kept for a container that already died), then ``ethwe`` is
made (``weavenet.host.attach``), ``/etc/hosts`` rewritten and the name registered with weaveDNS
(``PUT /name/<id>/<ip>``). The same container is attached once per run (per PID): the start interception and the
``start`` event both ask, whichever comes first does it and the other waits for it.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlencode

import aiohttp

from weavenet.docker import hosts_file
from weavenet.docker.api import DockerClient
from weavenet.docker.hostname import container_fqdn
from weavenet.docker.rewrite import ProxySettings, is_weave_container, network_mode_attaches
from weavenet.docker.weave_cidr import AddrSpec, specs_from_env
from weavenet.errors import HostError

log = logging.getLogger("weavenet.proxy")
NO_IPAM = "IP address allocation must be enabled to use 'net:'"


@dataclass
class RouterReply:
    status: int
    body: str


class RouterAPI:
    """Client of our own router's HTTP API (the proxy and plugin use it as a separate process would)."""

    def __init__(self, http_addr: str) -> None:
        self.http_addr = http_addr
        self._session: aiohttp.ClientSession | None = None

    def session(self) -> aiohttp.ClientSession:
        if self._session is None or self._session.closed:
            if self.http_addr.startswith("/"):
                conn: aiohttp.BaseConnector = aiohttp.UnixConnector(path=self.http_addr)
                self._base = "http://weave"
            else:
                host, _, port = self.http_addr.rpartition(":")
                conn = aiohttp.TCPConnector()
                self._base = f"http://{host if host not in ('', '0.0.0.0') else '127.0.0.1'}:{port}"
            self._session = aiohttp.ClientSession(connector=conn, timeout=aiohttp.ClientTimeout(total=120))
        return self._session

    async def call(self, method: str, path: str, form: dict[str, str] | None = None) -> RouterReply:
        session = self.session()
        data = urlencode(form) if form is not None else None
        headers = {"Content-Type": "application/x-www-form-urlencoded"} if form is not None else {}
        async with session.request(method, self._base + path, data=data, headers=headers) as resp:
            return RouterReply(resp.status, (await resp.text()).strip())

    async def close(self) -> None:
        if self._session is not None:
            await self._session.close()


async def allocate(api: RouterAPI, cid: str, specs: list[AddrSpec], check_alive: bool = True) -> list[str]:
    """CIDRs for ``cid`` per ``WEAVE_CIDR``, asked of IPAM; explicit addresses are claimed (or kept if IPAM is off)."""
    q = "?check-alive=true" if check_alive else ""
    out: list[str] = []
    for spec in specs:
        if spec.kind == "ip":
            ip, _, plen = spec.cidr.partition("/")
            reply = await api.call("PUT", f"/ip/{cid}/{ip}/{plen}{q}")
            if reply.status not in (200, 204, 404):
                raise HostError(f"claiming {spec.cidr} for {cid[:12]} failed: {reply.body or reply.status}")
            out.append(spec.cidr)
            continue
        path = f"/ip/{cid}" if spec.kind == "default" else f"/ip/{cid}/{spec.cidr}"
        reply = await api.call("POST", path + q)
        if reply.status == 404:
            raise HostError(NO_IPAM)
        if reply.status != 200 or "/" not in reply.body:
            raise HostError(f"allocating {spec} for {cid[:12]} failed: {reply.body or reply.status}")
        out.append(reply.body.split()[0])
    return out


HostAttach = Callable[[str, int, list[str], bool], Awaitable[list[str]]]
HostsWriter = Callable[[int, str], Awaitable[None]]
PodSink = Callable[..., Awaitable[None]]  # (id, name, labels, addresses, wait=True): network policy's registration


def labels_of(info: dict[str, Any]) -> dict[str, str]:
    """A container's labels as the engine reports them (``Config.Labels``)."""
    labels = (info.get("Config") or {}).get("Labels")
    if not isinstance(labels, dict):
        return {}
    return {str(k): str(v) for k, v in labels.items()}


class Attacher:
    def __init__(
        self,
        docker: DockerClient,
        api: RouterAPI,
        settings: Callable[[], Awaitable[ProxySettings]],
        host_attach: HostAttach,
        write_hosts: HostsWriter,
        on_pod: PodSink | None = None,
    ) -> None:
        """``on_pod``: told of each container with its labels and addresses before its interface exists (network
        policy is then in force for it from its first packet)."""
        self.docker = docker
        self.on_pod = on_pod
        self.api = api
        self.settings = settings
        self.host_attach = host_attach
        self.write_hosts = write_hosts
        self._done: dict[str, int] = {}  # container id -> pid attached
        self._locks: dict[str, asyncio.Lock] = {}
        self.stats = {"attached": 0, "failed": 0}
        self.last_error = ""

    def forget(self, cid: str) -> None:
        self._done.pop(cid, None)
        self._locks.pop(cid, None)

    def attached(self) -> list[tuple[str, int]]:
        """(ID, PID) of the containers attached since they last started (``weave ps`` without an engine)."""
        return sorted(self._done.items())

    async def attach(self, ident: str) -> None:
        """Attach a running proxied container (by id or name); no-op for containers that are not weave's."""
        info = await self.docker.inspect_container(ident)
        await self.attach_info(info)

    async def attach_info(self, info: dict[str, Any]) -> list[str]:
        cid = str(info.get("Id", ""))
        state = info.get("State") or {}
        pid = int(state.get("Pid") or 0)
        if not cid or not state.get("Running") or not pid or not is_weave_container(info):
            return []
        host_cfg = info.get("HostConfig") or {}
        if not network_mode_attaches(str(host_cfg.get("NetworkMode") or "")):
            return []
        settings = await self.settings()
        specs = specs_from_env((info.get("Config") or {}).get("Env"), settings.no_default_ipalloc)
        if specs is None:
            return []
        lock = self._locks.setdefault(cid, asyncio.Lock())
        async with lock:
            if self._done.get(cid) == pid:
                return []
            self._done[cid] = pid  # one try per run of the container, whatever its outcome
            try:
                t0 = time.monotonic()
                cidrs = await allocate(self.api, cid, specs)
                t1 = time.monotonic()
                ips = list(dict.fromkeys(c.split("/")[0] for c in cidrs))
                if self.on_pod is not None:
                    await self.on_pod(cid, str(info.get("Name") or ""), labels_of(info), ips)
                name = container_fqdn(info)
                # Before the interface: the container's process is held by the wait program until ethwe is up,
                # so its first look at /etc/hosts or its own name must already see the weave addresses.
                if not settings.no_rewrite_hosts:
                    cfg = info.get("Config") or {}
                    text = hosts_file.render(ips, name, str(cfg.get("Hostname") or ""), host_cfg.get("ExtraHosts"))
                    await self.write_hosts(pid, text)
                if name and not settings.without_dns:
                    for ip in ips:
                        reply = await self.api.call("PUT", f"/name/{cid}/{ip}", {"fqdn": name, "check-alive": "true"})
                        if reply.status not in (200, 204, 404):
                            log.warning("registering %s for %s in weaveDNS failed: %s", name, cid[:12], reply.body)
                t2 = time.monotonic()
                got = await self.host_attach(cid, pid, cidrs, not settings.no_multicast_route)
                t3 = time.monotonic()
            except Exception as e:
                self.stats["failed"] += 1
                self.last_error = f"{cid[:12]}: {e}"
                raise
            self.stats["attached"] += 1
            log.info(
                "Attached container %s to weave network: %s (addresses %.0f ms, hosts and names %.0f ms, "
                "interface %.0f ms)",
                cid[:12],
                " ".join(got),
                (t1 - t0) * 1000,
                (t2 - t1) * 1000,
                (t3 - t2) * 1000,
            )
            return got
