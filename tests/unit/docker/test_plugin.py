"""The network plugin's protocol, driven as dockerd drives it (calls recorded from a real engine), with fakes for
the router's API and the veth plumbing; the real thing runs in ``tests/integration/test_docker.py``."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import aiohttp
import pytest

from weavenet.config import DockerOptions
from weavenet.docker.api import DockerUnreachable
from weavenet.docker.attacher import RouterReply
from weavenet.docker.plugin import CONTENT_TYPE, Plugin


class FakeRouter:
    def __init__(self) -> None:
        self.calls: list[tuple[str, str]] = []
        self.next_ip = 1

    async def call(self, method: str, path: str, form: dict[str, str] | None = None) -> RouterReply:
        self.calls.append((method, path))
        if path == "/ipinfo/defaultsubnet":
            return RouterReply(200, "10.32.0.0/12")
        if method == "POST" and path.startswith("/ip/_/"):
            ip = f"10.40.1.{self.next_ip}/24"
            self.next_ip += 1
            return RouterReply(200, ip)
        if method in ("PUT", "DELETE") and path.startswith("/ip/"):
            return RouterReply(204, "")
        return RouterReply(404, "")


class FakeDocker:
    def __init__(self, swarm: str | None = "inactive") -> None:
        self.created: list[dict[str, Any]] = []
        self.swarm = swarm  # Swarm.LocalNodeState in GET /info; None: the engine does not answer

    async def networks(self) -> list[dict[str, Any]]:
        return [{"Name": "bridge"}]

    async def create_network(self, spec: dict[str, Any]) -> dict[str, Any]:
        self.created.append(spec)
        return {"Id": "n1"}

    async def request(self, method: str, path: str, **kw: Any) -> Any:
        if path == "/info":
            if self.swarm is None:
                raise DockerUnreachable("Cannot connect to the Docker daemon")
            return {"ID": "x", "Swarm": {"LocalNodeState": self.swarm}}
        return {"Driver": "weavemesh", "Options": {"works.weave.multicast": "true"}}


@pytest.fixture
async def plugin(tmp_path: Path) -> AsyncIterator[tuple[Plugin, list[str], FakeRouter, FakeDocker]]:
    made: list[str] = []

    async def create_ep(eid: str, mtu: int | None) -> str:
        made.append(eid)
        return "aa:bb:cc:dd:ee:ff"

    async def delete_ep(eid: str) -> None:
        made.remove(eid)

    opts = DockerOptions(
        plugin_socket=str(tmp_path / "weave.sock"), plugin_mesh_socket=str(tmp_path / "weavemesh.sock")
    )
    router, docker = FakeRouter(), FakeDocker()
    p = Plugin(opts, docker, router, create_ep, delete_ep)  # type: ignore[arg-type]
    await p.start()
    try:
        yield p, made, router, docker
    finally:
        await p.close()


async def call(sock: str, name: str, body: dict[str, Any] | None = None) -> dict[str, Any]:
    connector = aiohttp.UnixConnector(path=sock)
    async with aiohttp.ClientSession(connector=connector) as s, s.post(f"http://plugin/{name}", json=body) as r:
        assert r.status == 200 and r.headers["Content-Type"] == CONTENT_TYPE
        return dict(await r.json(content_type=None))


async def test_activation_and_capabilities(plugin: tuple[Plugin, list[str], FakeRouter, FakeDocker]) -> None:
    p, *_ = plugin
    assert await call(p.opts.plugin_socket, "Plugin.Activate") == {"Implements": ["NetworkDriver"]}
    mesh = p.opts.plugin_mesh_socket
    assert await call(mesh, "Plugin.Activate") == {"Implements": ["NetworkDriver", "IpamDriver"]}
    # no swarm: "local", or Docker refuses ``docker network create -d weave --subnet ...``
    assert await call(p.opts.plugin_socket, "NetworkDriver.GetCapabilities") == {"Scope": "local"}
    assert await call(mesh, "NetworkDriver.GetCapabilities") == {"Scope": "local"}


@pytest.mark.parametrize(
    ("swarm", "scope", "why"),
    [
        ("active", "global", "in swarm mode"),  # Weave's answer, where Docker accepts it
        ("inactive", "local", "not in swarm mode"),
        ("pending", "local", "not in swarm mode"),  # joining is not membership yet
        ("locked", "local", "not in swarm mode"),
        (None, "local", "unknown: Cannot connect"),  # an engine that does not answer: what works without swarm
    ],
)
async def test_weave_driver_scope_follows_the_engines_swarm_mode(
    tmp_path: Path, caplog: pytest.LogCaptureFixture, swarm: str | None, scope: str, why: str
) -> None:
    opts = DockerOptions(
        plugin_socket=str(tmp_path / "weave.sock"), plugin_mesh_socket=str(tmp_path / "weavemesh.sock")
    )
    p = Plugin(opts, FakeDocker(swarm), FakeRouter())  # type: ignore[arg-type]
    with caplog.at_level("INFO", logger="weavenet.plugin"):
        await p.start()
    try:
        assert await call(opts.plugin_socket, "NetworkDriver.GetCapabilities") == {"Scope": scope}
        assert await call(opts.plugin_mesh_socket, "NetworkDriver.GetCapabilities") == {"Scope": "local"}
    finally:
        await p.close()
    (line,) = [r.getMessage() for r in caplog.records if " scope: " in r.getMessage()]
    assert line.startswith(f"plugin: driver weave has {scope} scope: ") and why in line, line


async def test_endpoint_lifecycle_cleans_up(plugin: tuple[Plugin, list[str], FakeRouter, FakeDocker]) -> None:
    p, made, _, _ = plugin
    sock = p.opts.plugin_mesh_socket
    nid, eid = "n" * 64, "e1234567890" + "0" * 53
    opts = {"com.docker.network.generic": {"works.weave.multicast": "true"}}
    assert await call(sock, "NetworkDriver.CreateNetwork", {"NetworkID": nid, "Options": opts}) == {}
    ep = {"NetworkID": nid, "EndpointID": eid, "Interface": {"Address": "10.40.1.1/24", "MacAddress": ""}}
    assert await call(sock, "NetworkDriver.CreateEndpoint", ep) == {"Interface": {"MacAddress": "aa:bb:cc:dd:ee:ff"}}
    joined = await call(sock, "NetworkDriver.Join", {"NetworkID": nid, "EndpointID": eid, "SandboxKey": "/x"})
    assert joined["InterfaceName"] == {"SrcName": "vethwge12345678", "DstPrefix": "ethwe"}
    assert joined["StaticRoutes"] == [{"Destination": "224.0.0.0/4", "RouteType": 1}]
    assert await call(sock, "NetworkDriver.EndpointOperInfo", {"NetworkID": nid, "EndpointID": eid}) == {"Value": {}}
    assert await call(sock, "NetworkDriver.Leave", {"NetworkID": nid, "EndpointID": eid}) == {}
    assert made == [eid]
    assert await call(sock, "NetworkDriver.DeleteEndpoint", {"NetworkID": nid, "EndpointID": eid}) == {}
    assert made == []


async def test_endpoint_without_address_is_refused(plugin: tuple[Plugin, list[str], FakeRouter, FakeDocker]) -> None:
    p, made, _, _ = plugin
    ep = {"NetworkID": "n", "EndpointID": "e1", "Interface": {}}
    got = await call(p.opts.plugin_socket, "NetworkDriver.CreateEndpoint", ep)
    assert "No address" in got["Err"] and made == []


async def test_ipam_pool_and_addresses(plugin: tuple[Plugin, list[str], FakeRouter, FakeDocker]) -> None:
    p, _, router, _ = plugin
    sock = p.opts.plugin_mesh_socket
    spaces = await call(sock, "IpamDriver.GetDefaultAddressSpaces")
    assert spaces == {"LocalDefaultAddressSpace": "weavelocal", "GlobalDefaultAddressSpace": "weaveglobal"}
    pool = await call(sock, "IpamDriver.RequestPool", {"AddressSpace": "weavelocal", "Pool": "10.40.0.0/16"})
    assert pool["Pool"] == "10.40.0.0/16"
    gw = await call(
        sock,
        "IpamDriver.RequestAddress",
        {"PoolID": pool["PoolID"], "Options": {"RequestAddressType": "com.docker.network.gateway"}},
    )
    assert gw["Address"] == "10.40.0.0/16"
    got = await call(sock, "IpamDriver.RequestAddress", {"PoolID": pool["PoolID"]})
    assert got["Address"] == "10.40.1.1/16"  # mask fixed to the pool's subnet
    fixed = await call(sock, "IpamDriver.RequestAddress", {"PoolID": pool["PoolID"], "Address": "10.40.0.1"})
    assert fixed["Address"] == "10.40.0.1/16"
    assert await call(sock, "IpamDriver.ReleaseAddress", {"PoolID": pool["PoolID"], "Address": "10.40.1.1"}) == {}
    assert ("DELETE", "/ip/10.40.1.1") in router.calls
    assert await call(sock, "IpamDriver.ReleaseAddress", {"PoolID": pool["PoolID"], "Address": "10.40.0.0"}) == {}
    assert ("DELETE", "/ip/10.40.0.0") not in router.calls  # the fake gateway is never freed
    v6 = await call(sock, "IpamDriver.RequestPool", {"V6": True})
    assert "IPv6" in v6["Err"]
    bad = await call(sock, "IpamDriver.RequestAddress", {"PoolID": "garbage"})
    assert "unknown pool" in bad["Err"]


async def test_malformed_calls_get_an_error_not_a_crash(
    plugin: tuple[Plugin, list[str], FakeRouter, FakeDocker],
) -> None:
    p, *_ = plugin
    async with aiohttp.ClientSession(connector=aiohttp.UnixConnector(path=p.opts.plugin_mesh_socket)) as s:
        for payload in (b"{", b"[]", b'{"NetworkID": 1}'):
            async with s.post("http://plugin/NetworkDriver.Join", data=payload) as r:
                assert r.status == 200 and "Err" in await r.json(content_type=None)
    assert await call(p.opts.plugin_socket, "IpamDriver.RequestPool", {}) != {}  # not an IPAM driver


async def test_network_weave_is_created_at_start(plugin: tuple[Plugin, list[str], FakeRouter, FakeDocker]) -> None:
    import asyncio

    p, _, _, docker = plugin
    for _ in range(50):
        if docker.created:
            break
        await asyncio.sleep(0.02)
    spec = docker.created[0]
    assert spec["Name"] == "weave" and spec["Driver"] == "weavemesh"
    assert spec["IPAM"] == {"Driver": "weavemesh", "Config": [{"Subnet": "10.32.0.0/12"}]}
    assert p.report().driver_name == "weave" and p.report().mesh_driver_name == "weavemesh"


@pytest.mark.parametrize(
    ("name", "body"),
    [
        ("NetworkDriver.CreateEndpoint", {"EndpointID": "e1", "Interface": True}),
        ("NetworkDriver.CreateNetwork", {"NetworkID": "n1", "Options": [1]}),
        ("NetworkDriver.CreateNetwork", {"NetworkID": "n1", "Options": {"com.docker.network.generic": "x"}}),
    ],
)
async def test_fields_of_the_wrong_type_get_an_err_not_a_500(
    plugin: tuple[Plugin, list[str], FakeRouter, FakeDocker], name: str, body: dict[str, Any]
) -> None:
    """Found by the fuzz suite: ``"Interface": true`` raised AttributeError (aiohttp's 500 and a traceback)."""
    p, *_ = plugin
    reply = await call(p.opts.plugin_mesh_socket, name, body)
    assert reply["Err"].startswith(f"malformed request to {name}: ")
    assert await call(p.opts.plugin_socket, "Plugin.Activate") == {"Implements": ["NetworkDriver"]}
