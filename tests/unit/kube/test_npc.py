"""The policy controller (``weavenet.kube.npc``): its watches against a stand-in API server on loopback serving
recorded objects (no API server can run here), and its feed to a router stand-in that keeps the state in the
router's own :class:`~weavenet.policy.kube_source.KubeSource` behind the router's routes' answers."""

from __future__ import annotations

import asyncio
import contextlib
import copy
import json
from collections.abc import AsyncIterator, Callable
from typing import Any

import pytest
from aiohttp import web

from weavenet.kube.api import KubeAPI
from weavenet.kube.npc import Controller, parser, pod_entry
from weavenet.policy.kube_source import FeedError, KubeSource
from weavenet.testbed.kube_api import FakeKubeAPI

from .conftest import recorded

MakeAPI = Callable[[], KubeAPI]


class RouterStandIn:
    """``PUT``/``PATCH /policy/kubernetes`` as the router answers them, over a real KubeSource; ``down`` makes it
    answer 503, ``restart()`` forgets everything (a new router process)."""

    def __init__(self) -> None:
        self.source = KubeSource("aa:00:00:00:00:01")
        self.down = False
        self.calls: list[tuple[str, dict[str, Any]]] = []

    def restart(self) -> None:
        self.source = KubeSource("aa:00:00:00:00:01")

    async def handle(self, request: web.Request) -> web.Response:
        body = json.loads(await request.read())
        self.calls.append((request.method, body))
        if self.down:
            return web.Response(status=503, text="router restarting")
        try:
            if request.method == "PUT":
                self.source.replace(body)
            elif not self.source.patch(body):
                return web.Response(status=409, text="out of step: send the whole state\n")
        except FeedError as e:
            return web.Response(status=400, text=str(e))
        return web.json_response({"InForce": True, "Problem": ""})


@pytest.fixture
async def router() -> AsyncIterator[tuple[RouterStandIn, str]]:
    r = RouterStandIn()
    app = web.Application(client_max_size=1024 * 1024)
    app.router.add_route("*", "/policy/kubernetes", r.handle)
    runner = web.AppRunner(app, access_log=None, shutdown_timeout=1.0)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    port = site._server.sockets[0].getsockname()[1]  # type: ignore[union-attr]
    try:
        yield r, f"http://127.0.0.1:{port}"
    finally:
        await runner.cleanup()


async def until(pred: Callable[[], bool], timeout: float = 20.0) -> None:
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    while not pred():
        if loop.time() > deadline:
            raise AssertionError("timed out")
        await asyncio.sleep(0.02)


@contextlib.asynccontextmanager
async def running(c: Controller) -> AsyncIterator[Controller]:
    task = asyncio.create_task(c.run())
    try:
        yield c
    finally:
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task


def named(obj: dict[str, Any], name: str, **changes: Any) -> dict[str, Any]:
    out = copy.deepcopy(obj)
    out["metadata"]["name"] = name
    for k, v in changes.items():
        out[k] = v
    return out


def test_pod_entries_are_what_weave_npc_polices() -> None:
    from lightkube.core import decoders
    from lightkube.resources.core_v1 import Pod

    def decode(obj: dict[str, Any]) -> Any:
        return decoders.decode_object(json.dumps(obj).encode(), Pod)

    raw = recorded("pod.json")
    assert pod_entry(decode(raw)) == {
        "Namespace": "x",
        "Name": "a",
        "Labels": {"pod": "a", "app": "web"},
        "IPs": ["10.32.0.4"],
        "Ports": [{"Name": "serve-80-tcp", "Port": 80, "Protocol": "TCP"},
                  {"Name": "serve-81-udp", "Port": 81, "Protocol": "UDP"}],
        "Node": "node-1",
    }  # fmt: skip
    for phase in ("Succeeded", "Failed"):
        assert pod_entry(decode({**raw, "status": {**raw["status"], "phase": phase}})) is None
    assert pod_entry(decode({**raw, "status": {"phase": "Pending"}})) is None  # no address yet
    assert pod_entry(decode({**raw, "spec": {**raw["spec"], "hostNetwork": True}})) is None


def test_weave_npc_flags() -> None:
    a = parser().parse_args(["--metrics-addr=:16781", "--allow-mcast=false", "--node-name", "n1",
                             "--max-list-size=9", "--log-level=debug", "--bridge-port-name=x"])  # fmt: skip
    assert (a.metrics_addr, a.allow_mcast, a.node_name, a.log_level) == (":16781", False, "n1", "debug")
    d = parser().parse_args([])
    assert (d.metrics_addr, d.allow_mcast, d.node_name) == (":6781", True, "")
    assert parser().parse_args(["--allow-mcast"]).allow_mcast is True


async def test_the_state_reaches_the_router_and_follows_the_api(
    server: FakeKubeAPI, make_api: MakeAPI, router: tuple[RouterStandIn, str]
) -> None:
    r, url = router
    server.put(recorded("namespace.json"))
    server.put(recorded("networkpolicy.json"))
    server.put(recorded("pod.json"))
    c = Controller(make_api(), url, "node-1", allow_mcast=False, heartbeat=0.3)
    async with running(c):
        await until(lambda: r.source.synced)
        k = r.source
        assert (k.node, k.allow_mcast) == ("node-1", False)
        assert list(k.namespaces) == ["x"] and dict(k.namespaces["x"].labels)["team"] == "blue"
        assert list(k.policies) == [("x", "allow-from-b")] and list(k.pods) == [("x", "a")]
        assert k.snapshot().pods[0].host == "aa:00:00:00:00:01"  # node-1 is this router's node
        # a pod comes, the policy goes, a namespace's labels change: changes, not whole states
        b = named(recorded("pod.json"), "b")
        b["metadata"]["labels"] = {"pod": "b"}
        b["status"]["podIP"], b["status"]["podIPs"] = "10.44.0.3", [{"ip": "10.44.0.3"}]
        b["spec"]["nodeName"] = "node-2"
        server.put(b)
        server.delete("NetworkPolicy", "allow-from-b", "x")
        ns = recorded("namespace.json")
        ns["metadata"]["labels"]["team"] = "red"
        server.put(ns)
        await until(lambda: ("x", "b") in k.pods and not k.policies and k.namespaces["x"].labels["team"] == "red")
        assert c.stats.wholes == 1 and c.stats.patches >= 1
        # a status change policy does not see sends nothing new
        before = len(r.calls)
        b["status"]["conditions"] = []
        server.put(b)
        await asyncio.sleep(0.2)
        assert all(m == "PATCH" and not any(body.get("Set", {}).values()) for m, body in r.calls[before:])


async def test_a_restarted_or_unreachable_router_gets_the_whole_state(
    server: FakeKubeAPI, make_api: MakeAPI, router: tuple[RouterStandIn, str]
) -> None:
    r, url = router
    server.put(recorded("pod.json"))
    c = Controller(make_api(), url, "node-1", heartbeat=0.2, retry=(0.05, 0.2))
    async with running(c):
        await until(lambda: r.source.synced)
        r.restart()  # a new router: the heartbeat's change is refused, the whole state follows
        await until(lambda: r.source.synced)
        assert c.stats.refused >= 1 and c.stats.wholes == 2
        r.down = True
        p2 = named(recorded("pod.json"), "p2")
        server.put(p2)
        await until(lambda: c.stats.push_errors >= 2)
        r.down = False
        await until(lambda: ("x", "p2") in r.source.pods)
        assert "503" in c.stats.last_error


async def test_a_large_state_goes_in_parts(
    server: FakeKubeAPI, make_api: MakeAPI, router: tuple[RouterStandIn, str]
) -> None:
    r, url = router
    for i in range(40):
        p = named(recorded("pod.json"), f"p{i}")
        p["status"]["podIP"], p["status"]["podIPs"] = f"10.32.1.{i}", [{"ip": f"10.32.1.{i}"}]
        server.put(p)
    c = Controller(make_api(), url, "node-1", part_bytes=2000)
    async with running(c):
        await until(lambda: r.source.synced)
        puts = [b for m, b in r.calls if m == "PUT"]
        assert len(puts) > 3 and [b["Final"] for b in puts] == [False] * (len(puts) - 1) + [True]
        assert len({(b["Session"], b["Seq"]) for b in puts}) == 1
        assert len(r.source.pods) == 40
