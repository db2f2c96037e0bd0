"""The daemon side of weaveDNS without a daemon process: options, the service on a real router core and
driver (no sockets opened), its HTTP routes, its report section, status text and metrics."""

from __future__ import annotations

import json
import random

import pytest
from aiohttp import web
from aiohttp.test_utils import TestClient, TestServer

from weavenet.aio.machine import MachineDriver
from weavenet.aio.mesh import MeshTransport
from weavenet.api.dns_routes import add_dns_routes
from weavenet.config import DaemonConfig, validate
from weavenet.config import from_argv as from_args
from weavenet.config import short_duration as parse_duration
from weavenet.core.container_events import ContainerEvent, ContainerEvents
from weavenet.core.names import PeerName
from weavenet.core.router import MeshConfig, MeshRouter
from weavenet.daemon.dns_service import DNSService, _host_port, container_alive
from weavenet.errors import ConfigError
from weavenet.status import RouterStatus, WeaveStatus, render_dns, render_metrics, render_status, report_json

NAME = PeerName(0xAABBCCDDEEFF)


def test_options_parse_and_validate() -> None:
    cfg = from_args(
        [
            "--dns-listen-address=10.2.1.1:5353",
            "--dns-domain=corp.local",
            "--dns-ttl=30",
            "--dns-fallback-timeout=500ms",
            "--dns-upstream=10.9.0.1:5300",
            "--dns-upstream=10.9.0.2",
        ],
        environ={},
    )
    assert (cfg.dns_listen_address, cfg.dns_domain, cfg.dns_ttl) == ("10.2.1.1:5353", "corp.local", 30)
    assert cfg.dns_fallback_timeout == 0.5 and cfg.dns_upstream == ["10.9.0.1:5300", "10.9.0.2"]
    assert from_args(["--no-dns"], environ={}).no_dns
    assert parse_duration("5s") == 5 and parse_duration("1m") == 60 and parse_duration("2") == 2
    for bad in (
        DaemonConfig(dns_listen_address="nohost:53"),
        DaemonConfig(dns_listen_address="10.0.0.1"),
        DaemonConfig(dns_domain="."),
        DaemonConfig(dns_domain="a" * 70 + ".local"),
        DaemonConfig(dns_ttl=-1),
        DaemonConfig(dns_fallback_timeout=0),
        DaemonConfig(dns_upstream=["resolver.example"]),
        DaemonConfig(dns_upstream=["10.0.0.1:99999"]),
    ):
        with pytest.raises(ConfigError):
            validate(bad)
    with pytest.raises(ConfigError):
        parse_duration("soon")
    assert _host_port("10.0.0.1", 53) == ("10.0.0.1", 53) and _host_port("[::1]:54", 53) == ("::1", 54)


def test_container_alive(tmp_path: object) -> None:
    assert container_alive("1") and not container_alive("999999999")
    assert container_alive("/proc/self/ns/net") and not container_alive("/nonexistent/ns")
    assert container_alive("0123456789ab")  # a Docker ID: no Docker client here, taken as alive


@pytest.fixture
async def service() -> DNSService:
    router = MeshRouter(MeshConfig(name=NAME, nickname="h1"), rng=random.Random(1), now=0.0)
    driver = MachineDriver()
    MeshTransport(router, driver, "", 0)  # the router's actions are carried out (nothing to send here)
    return DNSService(
        router, driver, ContainerEvents(), domain="weave.local.", ttl=1, resolv_conf="/nonexistent/resolv.conf"
    )


async def test_routes(service: DNSService) -> None:
    routes = web.RouteTableDef()
    add_dns_routes(routes, service)
    app = web.Application()
    app.add_routes(routes)
    async with TestClient(TestServer(app)) as client:
        assert await (await client.get("/domain")).text() == "weave.local."
        assert await (await client.get("/dns-address-port")).text() == ""
        r = await client.put("/name//var/run/netns/c1/10.2.1.1", data={"fqdn": "a1.weave.local", "check-alive": "true"})
        assert r.status == 204
        assert service.nameserver.lookup("a1.weave.local.") == []  # check-alive: that namespace does not exist
        r = await client.put("/name/weave:extern/10.2.1.9", data={"fqdn": "ext.weave.local"})
        assert r.status == 204 and service.nameserver.lookup("ext.weave.local.") == [0x0A020109]
        r = await client.put("/name/1/10.2.1.2?fqdn=pid1.weave.local&check-alive=true")
        assert r.status == 204 and service.nameserver.lookup("pid1.weave.local.")
        assert (await client.put("/name/c/10.2.1.300", data={"fqdn": "x.weave.local"})).status in (400, 404, 405)
        bad = await client.put("/name/c/10.2.1.3", data={"fqdn": ""})
        assert bad.status == 400 and "hostname" in await bad.text()
        entries = json.loads(await (await client.get("/name")).text())
        assert {e["Hostname"] for e in entries} == {"a1.weave.local.", "ext.weave.local.", "pid1.weave.local."}
        assert (await client.delete("/name/weave:extern")).status == 204
        assert service.nameserver.lookup("ext.weave.local.") == []
        assert (await client.delete("/name/1/10.2.1.2?fqdn=other.weave.local")).status == 204
        assert service.nameserver.lookup("pid1.weave.local.")  # fqdn did not match
        assert (await client.delete("/name")).status == 204
        assert service.nameserver.lookup("pid1.weave.local.") == []


async def test_container_death_tombstones_its_names(service: DNSService) -> None:
    import asyncio

    service.add("4242", "10.2.1.5", "dies.weave.local", check_alive=False)
    assert service.nameserver.lookup("dies.weave.local.")
    service.events.publish(ContainerEvent("die", "4242", 0.0))
    await asyncio.sleep(0)
    assert service.nameserver.lookup("dies.weave.local.") == []


async def test_report_status_and_metrics(service: DNSService) -> None:
    service.add("weave:extern", "10.32.0.1", "one.weave.local", check_alive=False)
    service.add("weave:extern", "10.32.0.2", "two.weave.local", check_alive=False)
    service.delete("weave:extern", "10.32.0.2", None)
    service.engine.handle(b"\x00" * 20)
    report = WeaveStatus(ready=True, version="x", router=RouterStatus.from_dict({}), dns=service.status())
    text = render_status(report)
    assert "        Service: dns\n         Domain: weave.local.\n       Upstream: none\n" in text
    assert "            TTL: 1\n        Entries: 1\n" in text
    assert render_dns(report) == "one          10.32.0.1       weave:extern aa:bb:cc:dd:ee:ff\n"
    dns = json.loads(report_json(report))["DNS"]
    assert list(dns)[:5] == ["Domain", "Upstream", "Address", "TTL", "Entries"]
    assert dns["Diagnostics"]["LocalEntries"] == 1
    body = render_metrics(report).decode()
    assert "weave_dns_entries 1.0" in body
    assert 'weave_dns_queries_total{transport="udp"} 1.0' in body
    assert 'weave_dns_responses_total{rcode="FORMERR",source="local",type="other"} 1.0' in body
