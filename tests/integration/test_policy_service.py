"""The network policy service of the daemon on a real router core, driver and store, enforcing with ``nft`` in a
network namespace of its own (no routers, no hosts): when it enforces (``--network-policy``), what a restart
keeps, its HTTP routes' refusals, and the policy section of ``weave status``."""

from __future__ import annotations

import asyncio
import json
import os
import random
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest
from aiohttp import web
from aiohttp.test_utils import TestClient, TestServer

from weavenet.aio.machine import MachineDriver
from weavenet.aio.mesh import MeshTransport
from weavenet.api.policy_routes import add_policy_routes
from weavenet.core.container_events import DESTROY, ContainerEvent, ContainerEvents
from weavenet.core.names import PeerName
from weavenet.core.router import MeshConfig, MeshRouter
from weavenet.daemon import policy_enforcement, policy_service
from weavenet.daemon.persistence import Store
from weavenet.daemon.policy_service import PolicyService
from weavenet.host.npc import Enforcer
from weavenet.policy import PolicyInvalid, nft
from weavenet.status import WeaveStatus, render_status
from weavenet.status.metrics import render_metrics

pytestmark = pytest.mark.netns

NAME = PeerName(0xAABBCCDDEEFF)
DENY = "apiVersion: networking.k8s.io/v1\nkind: NetworkPolicy\nmetadata: {name: deny}\nspec: {podSelector: {}}\n"
WEB = "c0ffee" * 10 + "abcd"


@pytest.fixture
def netns() -> Iterator[str]:
    name = f"wnpc-svc-{os.getpid()}"
    subprocess.run(["ip", "netns", "add", name], check=True)
    try:
        yield f"/var/run/netns/{name}"
    finally:
        subprocess.run(["ip", "netns", "del", name], check=False)


@pytest.fixture(autouse=True)
def quick(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(policy_enforcement, "SETTLE", 0.2)
    monkeypatch.setattr(policy_service, "SAVE_DELAY", 0.05)


def table(netns: str) -> bool:
    return subprocess.run(["nsenter", f"--net={netns}", "nft", "list", "table", nft.FAMILY, nft.TABLE],
                          capture_output=True).returncode == 0  # fmt: skip


def isolated(netns: str) -> list[object]:
    out = subprocess.run(
        ["nsenter", f"--net={netns}", "nft", "-j", "list", "set", nft.FAMILY, nft.TABLE, "ingress-isolated"],
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    return json.loads(out)["nftables"][1]["set"].get("elem", [])


async def make(
    tmp: Path, netns: str, mode: str = "auto", unsaved: dict[str, str] | None = None
) -> tuple[PolicyService, Store, ContainerEvents]:
    router = MeshRouter(MeshConfig(name=NAME, nickname="h1"), rng=random.Random(1), now=0.0)
    driver = MachineDriver()
    MeshTransport(router, driver, "", 0)
    store = Store(tmp / "state")
    events = ContainerEvents()
    svc = PolicyService(
        router,
        driver,
        store,
        events,
        mode=mode,
        run_dir=str(tmp / "run"),
        problem=lambda message: None,
        unsaved=unsaved,
        enforcer=Enforcer(netns),
    )
    await svc.start()
    return svc, store, events


async def in_force(svc: PolicyService) -> None:
    for _ in range(100):
        if svc.enforcing and svc.status().in_force:
            return
        await asyncio.sleep(0.05)
    raise AssertionError(f"not in force: {svc.status()}")


async def stop(svc: PolicyService, store: Store) -> None:
    await svc.close()
    svc.driver.close()
    store.close()


async def test_auto_enforces_from_the_first_policy_and_a_restart_keeps_the_containers(
    tmp_path: Path, netns: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    svc, store, events = await make(tmp_path, netns)
    await svc.docker_pod(WEB, "/web", {"app": "web"}, ["10.32.0.5"])
    await asyncio.sleep(0.3)
    assert not svc.enforcing and not table(netns)  # no policy anywhere: nothing on the host
    assert render_status(WeaveStatus(network_policy=svc.status())).count("network policy") == 0
    lines, warning = await svc.apply(DENY)
    assert (lines, warning) == (["networkpolicy.networking.k8s.io/deny created"], "")
    assert svc.enforcing and isolated(netns) == ["10.32.0.5"]  # in force when apply answers
    await asyncio.sleep(0.2)  # this host's pods saved
    await stop(svc, store)
    # the restarted router polices web from its first state on, before Docker's events name it again
    monkeypatch.setattr(policy_service, "CONFIRM", 1.0)
    svc, store, events = await make(tmp_path, netns)
    assert svc.enforcing
    await in_force(svc)
    assert isolated(netns) == ["10.32.0.5"]
    text = render_status(WeaveStatus(network_policy=svc.status()))
    assert "        Service: network policy\n         Status: enforced\n       Policies: 1\n" \
        "           Pods: 1 (1 on this host)\n" in text, text  # fmt: skip
    await asyncio.sleep(1.5)  # not registered again within CONFIRM: gone
    await in_force(svc)
    assert isolated(netns) == []
    await svc.docker_pod(WEB, "web", {"app": "web"}, ["10.32.0.5"])
    assert isolated(netns) == ["10.32.0.5"]
    events.publish(ContainerEvent(DESTROY, WEB, 0.0))
    await asyncio.sleep(0.2)
    await in_force(svc)
    assert isolated(netns) == []
    registry = render_metrics(WeaveStatus(), svc.collectors()).decode()
    assert "weavenpc_policy_enforcement_errors_total 0.0" in registry
    await stop(svc, store)


async def test_on_closes_at_launch_and_off_never_enforces(tmp_path: Path, netns: str) -> None:
    svc, store, _ = await make(tmp_path / "on", netns, mode="on")
    assert svc.enforcing and table(netns)
    await in_force(svc)
    await stop(svc, store)
    svc, store, _ = await make(tmp_path / "on", netns)  # auto, restarted: the table is its own, kept in force
    assert svc.enforcing
    await stop(svc, store)
    svc, store, _ = await make(tmp_path / "auto", netns)  # auto, another router's table (Kubernetes' controller?)
    assert not svc.enforcing
    assert svc.status().not_enforcing_because == "the policy table on this host is another controller's (left alone)"
    await stop(svc, store)
    Enforcer(netns).reset()
    svc, store, _ = await make(tmp_path / "off", netns, mode="off")
    await svc.apply(DENY)
    await asyncio.sleep(0.3)
    assert not svc.enforcing and not table(netns)
    assert "Status: not enforced: off on this host (--network-policy off)" in render_status(
        WeaveStatus(network_policy=svc.status())
    )
    await stop(svc, store)


async def test_routes_refuse_bad_input_and_change_nothing(tmp_path: Path, netns: str) -> None:
    svc, store, _ = await make(tmp_path, netns)
    routes = web.RouteTableDef()
    add_policy_routes(routes, svc)
    app = web.Application()
    app.add_routes(routes)
    async with TestClient(TestServer(app)) as client:
        r = await client.post("/policy", data=DENY)
        assert r.status == 200 and (await r.json())["Lines"] == ["networkpolicy.networking.k8s.io/deny created"]
        bad = DENY.replace("spec: {podSelector: {}}", "spec: {podSelector: {matchLabels: {'a b': c}}}")
        r = await client.post("/policy", data=bad)
        assert r.status == 400
        assert (await r.text()).startswith('The NetworkPolicy "deny" is invalid: spec.podSelector.matchLabels: ')
        r = await client.post("/policy", data=b"\xff")
        assert (r.status, await r.text()) == (400, "error: the manifest is not UTF-8 text\n")
        r = await client.put(
            "/policy/pods/%2Frun%2Fnetns%2Fa", data={"label": "weave.works/ports=http", "ip": "10.0.0.1"}
        )
        assert r.status == 400 and "expected NAME=PORT[/PROTOCOL]" in await r.text()
        r = await client.put("/policy/pods/%2Frun%2Fnetns%2Fa", data={"label": "nolabel", "ip": "10.0.0.1"})
        assert (r.status, await r.text()) == (400, "invalid label 'nolabel': expected KEY=VALUE\n")
        r = await client.put("/policy/pods//run/netns/a", data={"label": ["pod=a", "weave.works/ports=http=80"],
                                                                 "ip": "10.0.0.1", "name": "a"})  # fmt: skip
        assert r.status == 204
        r = await client.get("/policy/test", params={"src": "10.9.9.9", "dst": "a", "port": "80"})
        d = await r.json()
        assert not d["Allowed"] and d["Destination"] == {"IP": "10.0.0.1", "Pod": "default/a"}
        r = await client.get("/policy/test", params={"src": "nobody", "dst": "a", "port": "80"})
        assert (r.status, await r.text()) == (
            400,
            "nobody: not an IP address nor a container known to network policy\n",
        )
        r = await client.get("/policy/test", params={"src": "a", "dst": "a", "port": "0"})
        assert r.status == 400
        r = await client.delete("/policy/networkpolicies/default/nope")
        assert (r.status, await r.text()) == (
            404,
            'Error from server (NotFound): networkpolicies.networking.k8s.io "nope" not found\n',
        )
        listing = await (await client.get("/policy")).json()
        assert [o["Name"] for o in listing["Objects"]] == ["deny"]
        assert listing["Pods"][0]["Ports"] == ["http=80/TCP"] and listing["Pods"][0]["Ident"] == "/run/netns/a"
    with pytest.raises(PolicyInvalid):
        await svc.apply("kind: NetworkPolicy\n")
    await stop(svc, store)


async def test_a_full_disk_is_said_and_the_policies_saved_once_there_is_room(
    tmp_path: Path, netns: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(policy_service, "SAVE_RETRY", 0.2)
    state = tmp_path / "state"
    state.mkdir()
    subprocess.run(["mount", "-t", "tmpfs", "-o", "size=1m", "npcstate", str(state)], check=True)
    try:
        unsaved: dict[str, str] = {}
        svc, store, _ = await make(tmp_path, netns, unsaved=unsaved)
        await svc.apply(DENY)
        subprocess.run(["sh", "-c", f"dd if=/dev/zero of={state}/fill bs=4k 2>/dev/null; sync"], check=False)
        lines, warning = await svc.apply(DENY.replace("name: deny", "name: deny2"))
        assert lines == ["networkpolicy.networking.k8s.io/deny2 created"]
        assert warning.startswith("not saved here yet: network policies and pods: ") and "full" in warning, warning
        assert "full" in unsaved["network policy"]
        (state / "fill").unlink()
        for _ in range(50):
            if not unsaved:
                break
            await asyncio.sleep(0.1)
        assert unsaved == {}
        await stop(svc, store)
        svc, store, _ = await make(tmp_path, netns)
        assert [o["Name"] for o in svc.listing()["Objects"]] == ["deny", "deny2"]
        await stop(svc, store)
    finally:
        subprocess.run(["umount", str(state)], check=False)
