"""The Docker network plugin v1 (Weave's ``plugin/``): ``docker run --net=weave`` with no cluster store.

Two sockets in ``/run/docker/plugins``: ``weave.sock`` (network driver ``weave``) and ``weavemesh.sock`` (network
driver ``weavemesh``, local scope, and IPAM driver ``weavemesh`` backed by the router's IPAM). At start the
network ``weave`` (driver and IPAM ``weavemesh``, the default subnet, multicast on) is created if missing, and
made again if it is on another subnet (left by a crash or a reset done by hand) and no container uses it;
``weave stop`` and ``weave reset`` remove it.

The ``weave`` driver's scope is decided once, at start, from the engine's ``GET /info``: "global" (Weave's
answer) only when the engine is an active swarm member, "local" otherwise, because Docker refuses to create a
global-scope network without swarm and ``docker network create -d weave --subnet ...`` must work on a plain
engine. Docker asks ``GetCapabilities`` once per activation, so the answer must not change while we run.

Endpoints are veth pairs ``vethwl<eid>`` (a port of the weave bridge) / ``vethwg<eid>`` (handed to Docker, which
moves it into the container as ``ethwe0``), created in the engine's network namespace (which is ours: the
router runs beside the engine). ``DeleteEndpoint`` removes the pair, so nothing piles up when containers go.
"""

from __future__ import annotations

import asyncio
import contextlib
import ipaddress
import json
import logging
import os
from collections.abc import Awaitable, Callable
from typing import Any

from aiohttp import web

from weavenet.api.guard import API_LIMITS, GuardedRunner
from weavenet.config import DockerOptions
from weavenet.docker import endpoints_plugin as ep_names
from weavenet.docker.api import DockerClient, DockerError
from weavenet.docker.attacher import RouterAPI
from weavenet.errors import HostError, WeavenetError
from weavenet.status.docker import PluginConfig, PluginStatus

log = logging.getLogger("weavenet.plugin")
CONTENT_TYPE = "application/vnd.docker.plugins.v1.2+json"
NETWORK = "weave"
MESH_DRIVER = "weavemesh"
MULTICAST_OPT = "works.weave.multicast"
GENERIC = "com.docker.network.generic"
GATEWAY_TYPE = "com.docker.network.gateway"
CREATE_RETRY = 2.0
INFO_TIMEOUT = 5.0  # for the scope decision at start: an engine that hangs must not hold the daemon's start up


def _reply(body: dict[str, Any], status: int = 200) -> web.Response:
    return web.Response(status=status, body=json.dumps(body).encode(), headers={"Content-Type": CONTENT_TYPE})


def _err(message: str) -> web.Response:
    return _reply({"Err": message}, 200)  # libnetwork reads Err from any answer


def _sync_create_endpoint(eid: str, mtu: int | None) -> str:
    from weavenet.host.attach import CONTAINER_GSO_MAX_SIZE
    from weavenet.host.bridge import BRIDGE, bridge_mtu
    from weavenet.host.run import run

    local, guest = ep_names.veth_names(eid)
    size = ["mtu", str(mtu or bridge_mtu(BRIDGE) or 1376)]
    gso = ["gso_max_size", str(CONTAINER_GSO_MAX_SIZE)]  # the container's end only, as weave attach does
    run(["ip", "link", "del", local], check=False)  # a leftover of a crashed run
    run(["ip", "link", "add", local, *size, "type", "veth", "peer", "name", guest, *size, *gso])
    try:
        run(["ip", "link", "set", local, "master", BRIDGE])
        run(["ip", "link", "set", "dev", local, "type", "bridge_slave", "hairpin", "on"], check=False)
        run(["ip", "link", "set", local, "up"])
        info = json.loads(run(["ip", "-j", "link", "show", guest]) or "[]")
    except BaseException:
        run(["ip", "link", "del", local], check=False)
        raise
    return str(info[0]["address"]) if info else ""


def _sync_delete_endpoint(eid: str) -> None:
    from weavenet.host.run import run

    for name in ep_names.veth_names(eid):
        run(["ip", "link", "del", name], check=False)


def _sync_container_up(pid: int) -> None:
    """ARP settings and a gratuitous ARP for the plugin-made interface, as Weave's watcher does on start."""
    from weavenet.host.bridge import arp_sysctls
    from weavenet.host.run import run

    netns = f"/proc/{pid}/ns/net"
    links = json.loads(run(["ip", "-j", "-4", "addr", "show"], netns=netns, check=False) or "[]")
    for link in links:
        name = str(link.get("ifname", ""))
        if not name.startswith("ethwe"):
            continue
        with contextlib.suppress(HostError):
            arp_sysctls(name, netns=netns)
        for a in link.get("addr_info", []):
            run(["arping", "-U", "-q", "-c", "1", "-I", name, a["local"]], netns=netns, check=False)


class Plugin:
    def __init__(
        self,
        opts: DockerOptions,
        docker: DockerClient,
        api: RouterAPI,
        create_endpoint: Callable[[str, int | None], Awaitable[str]] | None = None,
        delete_endpoint: Callable[[str], Awaitable[None]] | None = None,
    ) -> None:
        self.opts = opts
        self.docker = docker
        self.api = api
        self._create_ep = create_endpoint or (lambda eid, mtu: asyncio.to_thread(_sync_create_endpoint, eid, mtu))
        self._delete_ep = delete_endpoint or (lambda eid: asyncio.to_thread(_sync_delete_endpoint, eid))
        self.multicast: dict[str, bool] = {}  # network id -> multicast route wanted
        self.runners: list[web.AppRunner] = []
        self.sockets: list[str] = []
        self.default_subnet = ""
        self.calls: dict[str, int] = {}
        self.last_error = ""
        self.scope = "local"  # the ``weave`` driver's, decided in start()
        self._task: asyncio.Task[None] | None = None

    # -- lifecycle --------------------------------------------------------------------------------------------------

    async def start(self) -> None:
        if self.opts.plugin_socket:
            self.scope, why = await self._decide_scope()
            log.info(
                "plugin: driver %s has %s scope: %s", ep_names.driver_name(self.opts.plugin_socket), self.scope, why
            )
        for path, mesh in ((self.opts.plugin_socket, False), (self.opts.plugin_mesh_socket, True)):
            if not path:
                continue
            os.makedirs(os.path.dirname(path), exist_ok=True)
            with contextlib.suppress(FileNotFoundError):
                os.unlink(path)
            runner = GuardedRunner(self._app(mesh), f"plugin {ep_names.driver_name(path)}", API_LIMITS)
            await runner.setup()
            await web.UnixSite(runner, path).start()
            self.runners.append(runner)
            self.sockets.append(path)
            log.info("plugin: driver %s listening on %s", ep_names.driver_name(path), path)
        if self.opts.plugin_mesh_socket:
            self._task = asyncio.get_running_loop().create_task(self._ensure_network())

    async def _decide_scope(self) -> tuple[str, str]:
        """Before the sockets listen, so the engine never sees an undecided answer."""
        try:
            info = await asyncio.wait_for(self.docker.request("GET", "/info"), INFO_TIMEOUT)
        except DockerError as e:
            problem = e.message
        except TimeoutError:
            problem = f"GET /info got no answer in {INFO_TIMEOUT:.0f} s"
        else:
            return ep_names.driver_scope(info if isinstance(info, dict) else None)
        scope, why = ep_names.driver_scope(None)
        return scope, f"{why}: {problem}"

    async def close(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await self._task
        for r in self.runners:
            await r.cleanup()
        for path in self.sockets:
            with contextlib.suppress(FileNotFoundError):
                os.unlink(path)

    async def _ensure_network(self) -> None:
        """Network ``weave`` on the default subnet, once IPAM knows it (retried: IPAM may come up later)."""
        while True:
            try:
                reply = await self.api.call("GET", "/ipinfo/defaultsubnet")
                if reply.status == 404:
                    log.info("plugin: IPAM is off: network %s is not created", NETWORK)
                    return
                if reply.status == 200 and reply.body:
                    self.default_subnet = reply.body.strip()
                    names = {n.get("Name") for n in await self.docker.networks()}
                    if NETWORK in names and not await self._replace_stale_network():
                        return
                    await self.docker.create_network(ep_names.weave_network_spec(self.default_subnet))
                    log.info("plugin: created Docker network %s (%s)", NETWORK, self.default_subnet)
                    return
            except asyncio.CancelledError:
                raise
            except (DockerError, WeavenetError, OSError) as e:
                self.last_error = f"creating network {NETWORK}: {e}"
                log.warning("plugin: %s", self.last_error)
            except Exception as e:  # never crash the daemon over it
                self.last_error = f"creating network {NETWORK}: {e}"
                log.exception("plugin")
            await asyncio.sleep(CREATE_RETRY)

    async def _replace_stale_network(self) -> bool:
        """An existing ``weave`` network on another subnet than the default one is removed (True: create it
        anew) unless containers use it; then it is kept, and the reason logged and shown in ``weave status
        docker``."""
        info = await self.docker.request("GET", f"/networks/{NETWORK}")
        old = ep_names.stale_subnet(info if isinstance(info, dict) else {}, self.default_subnet)
        if old is None:
            return False
        users = sorted(str(c)[:12] for c in (info.get("Containers") or {}))
        if users:
            self.last_error = (
                f"network {NETWORK} is on subnet {old}, not the default subnet {self.default_subnet}, and is kept "
                f"because containers use it ({' '.join(users)}): remove them, then 'docker network rm {NETWORK}' "
                "and relaunch"
            )
            log.warning("plugin: %s", self.last_error)
            return False
        await self.docker.remove_network(NETWORK)
        log.info(
            "plugin: network %s was on subnet %s, the default subnet is %s: made anew",
            NETWORK,
            old,
            self.default_subnet,
        )
        return True

    def report(self) -> PluginStatus:
        """The report's ``Plugin`` section, as Weave's legacy plugin gives it."""
        config = PluginConfig(
            socket=self.opts.plugin_socket,
            mesh_socket=self.opts.plugin_mesh_socket,
            enable=True,
            enable_v2=False,
            enable_v2_multicast=False,
            dns=not self.opts.without_dns,
            default_subnet=self.default_subnet,
            proc_path="/proc",
        )
        opts = self.opts
        return PluginStatus(
            config,
            ep_names.driver_name(opts.plugin_socket) if opts.plugin_socket else "",
            ep_names.driver_name(opts.plugin_mesh_socket) if opts.plugin_mesh_socket else "",
        )

    # -- HTTP -------------------------------------------------------------------------------------------------------

    def _app(self, mesh: bool) -> web.Application:
        app = web.Application(client_max_size=1 << 20)

        async def handle(request: web.Request) -> web.Response:
            call = request.match_info["call"]
            self.calls[call] = self.calls.get(call, 0) + 1
            raw = await request.read()
            try:
                body = json.loads(raw) if raw.strip() else {}
                if not isinstance(body, dict):
                    raise ValueError("expected a JSON object")
            except ValueError as e:
                return _err(f"malformed request to {call}: {e}")
            try:
                return _reply(await self._call(call, body, mesh))
            except (WeavenetError, ValueError, KeyError, OSError) as e:
                self.last_error = f"{call}: {e}"
                log.warning("plugin: %s", self.last_error)
                return _err(str(e))
            except (AttributeError, TypeError) as e:
                # a field of the wrong JSON type (an Interface that is not an object, ...): where libnetwork's Go
                # structs fail to decode, Docker gets the same kind of answer
                self.last_error = f"{call}: malformed request: {e}"
                log.warning("plugin: %s", self.last_error)
                return _err(f"malformed request to {call}: {e}")

        app.router.add_post("/{call}", handle)
        return app

    async def _call(self, call: str, body: dict[str, Any], mesh: bool) -> dict[str, Any]:
        if call == "Plugin.Activate":
            return {"Implements": ["NetworkDriver", "IpamDriver"] if mesh else ["NetworkDriver"]}
        if call == "NetworkDriver.GetCapabilities":
            return {"Scope": "local" if mesh else self.scope}
        if call == "NetworkDriver.CreateNetwork":
            opts = (body.get("Options") or {}).get(GENERIC) or {}
            self.multicast[str(body["NetworkID"])] = ep_names.parse_multicast(opts.get(MULTICAST_OPT))
            return {}
        if call == "NetworkDriver.DeleteNetwork":
            self.multicast.pop(str(body.get("NetworkID", "")), None)
            return {}
        if call == "NetworkDriver.CreateEndpoint":
            iface = body.get("Interface") or {}
            if not iface.get("Address"):
                raise WeavenetError(
                    "No address supplied: the network needs an IPAM driver (e.g. --ipam-driver weavemesh)"
                )
            mac = await self._create_ep(str(body["EndpointID"]), None)
            return {"Interface": {} if iface.get("MacAddress") else {"MacAddress": mac}}
        if call == "NetworkDriver.DeleteEndpoint":
            await self._delete_ep(str(body["EndpointID"]))
            return {}
        if call == "NetworkDriver.Join":
            _, guest = ep_names.veth_names(str(body["EndpointID"]))
            out: dict[str, Any] = {"InterfaceName": {"SrcName": guest, "DstPrefix": "ethwe"}}
            if await self._network_multicast(str(body.get("NetworkID", ""))):
                out["StaticRoutes"] = [{"Destination": "224.0.0.0/4", "RouteType": 1}]
            return out
        if call == "NetworkDriver.EndpointOperInfo":
            return {"Value": {}}
        if call.startswith("NetworkDriver."):
            return {}  # Leave, AllocateNetwork, FreeNetwork, DiscoverNew, DiscoverDelete, connectivity: no-ops
        if not mesh:
            raise WeavenetError(f"{call}: not implemented by driver weave")
        return await self._ipam(call, body)

    async def _network_multicast(self, nid: str) -> bool:
        if nid in self.multicast:
            return self.multicast[nid]
        with contextlib.suppress(DockerError):  # a network made before we (re)started
            info = await self.docker.request("GET", f"/networks/{nid}")
            self.multicast[nid] = ep_names.parse_multicast((info.get("Options") or {}).get(MULTICAST_OPT))
        return self.multicast.get(nid, False)

    async def _ipam(self, call: str, body: dict[str, Any]) -> dict[str, Any]:
        if call == "IpamDriver.GetCapabilities":
            return {"RequiresMACAddress": False}
        if call == "IpamDriver.GetDefaultAddressSpaces":
            return {"LocalDefaultAddressSpace": "weavelocal", "GlobalDefaultAddressSpace": "weaveglobal"}
        if call == "IpamDriver.RequestPool":
            if body.get("V6"):
                raise WeavenetError("IPv6 is not supported by the weavemesh IPAM driver")
            pool = str(body.get("Pool") or "")
            if not pool:
                reply = await self.api.call("GET", "/ipinfo/defaultsubnet")
                if reply.status != 200:
                    raise WeavenetError("IP address allocation is not enabled in the weave router")
                pool = reply.body.strip()
            return ep_names.pool_answer(pool, str(body.get("SubPool") or ""))
        if call == "IpamDriver.ReleasePool":
            return {}
        if call == "IpamDriver.RequestAddress":
            subnet, iprange = ep_names.parse_pool_id(str(body["PoolID"]))
            net = ipaddress.IPv4Network(subnet)
            if (body.get("Options") or {}).get("RequestAddressType") == GATEWAY_TYPE:
                return {"Address": ep_names.fake_gateway(subnet), "Data": {}}
            wanted = str(body.get("Address") or "")
            if wanted:
                reply = await self.api.call("PUT", f"/ip/{wanted}/{wanted}/{net.prefixlen}")
                if reply.status not in (200, 204):
                    raise WeavenetError(f"claiming {wanted}: {reply.body or reply.status}")
                return {"Address": f"{wanted}/{net.prefixlen}", "Data": {}}
            rng = ipaddress.IPv4Network(iprange)
            reply = await self.api.call("POST", f"/ip/_/{rng.network_address}/{rng.prefixlen}")
            if reply.status != 200 or "/" not in reply.body:
                raise WeavenetError(f"allocating in {iprange}: {reply.body or reply.status}")
            return {"Address": f"{reply.body.split('/')[0]}/{net.prefixlen}", "Data": {}}
        if call == "IpamDriver.ReleaseAddress":
            subnet, _ = ep_names.parse_pool_id(str(body["PoolID"]))
            addr = str(body.get("Address") or "")
            if addr and addr != ep_names.fake_gateway(subnet).split("/")[0]:
                reply = await self.api.call("DELETE", f"/ip/{addr}")
                if reply.status not in (200, 204, 404):
                    raise WeavenetError(f"releasing {addr}: {reply.body or reply.status}")
            return {}
        raise WeavenetError(f"{call}: not implemented")

    # -- containers --------------------------------------------------------------------------------------------------

    async def container_started(self, info: dict[str, Any]) -> list[str]:
        """A container on one of our networks started: ARP settings, and its names in weaveDNS. Its addresses on
        our networks (none: it is not on one)."""
        nets = ((info.get("NetworkSettings") or {}).get("Networks")) or {}
        ours = {name: n for name, n in nets.items() if await self._is_ours(name)}
        pid = int((info.get("State") or {}).get("Pid") or 0)
        if not ours or not pid:
            return []
        ips = [str(n.get("IPAddress") or "") for n in ours.values() if n.get("IPAddress")]
        await asyncio.to_thread(_sync_container_up, pid)
        if self.opts.without_dns:
            return ips
        cid = str(info.get("Id", ""))
        names = ep_names.dns_names(info, ours, await self._domain())
        for n in ours.values():
            ip = str(n.get("IPAddress") or "")
            for fq in names:
                if ip:
                    await self.api.call("PUT", f"/name/{cid}/{ip}", {"fqdn": fq, "check-alive": "true"})
        return ips

    async def _is_ours(self, network: str) -> bool:
        try:
            info = await self.docker.request("GET", f"/networks/{network}")
        except DockerError:
            return False
        return str(info.get("Driver", "")) in {
            ep_names.driver_name(p) for p in (self.opts.plugin_socket, self.opts.plugin_mesh_socket) if p
        }

    async def _domain(self) -> str:
        try:
            reply = await self.api.call("GET", "/domain")
        except Exception:
            return ""
        return reply.body if reply.status == 200 else ""
