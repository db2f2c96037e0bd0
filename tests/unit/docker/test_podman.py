"""Podman's containers' labels for network policy: the event and inspect parsing, and the watch against an API
served on a unix socket (the answers are podman 4.3's, recorded from its system service)."""

from __future__ import annotations

import asyncio
import json
from pathlib import Path
from typing import Any

import pytest
from aiohttp import web
from hypothesis import given
from hypothesis import strategies as st

from weavenet.docker import podman
from weavenet.docker.podman import PodmanWatch, container_of, event_action

CID = "f9888a7ba72a3a93c695a09dddad0b8b5ba381cef38c85983204806c47552fa3"
ATTRS = {"app": "db", "containerExitCode": "0", "image": "localhost/weavenet/busybox:latest", "name": "c1",
         "podId": "", "weave.works/namespace": "x"}  # fmt: skip


def event(action: str, ident: str = CID) -> dict[str, Any]:
    """A message of podman's Docker-compatible event stream (as podman 4.3 sends it)."""
    return {"status": action, "id": ident, "from": "localhost/weavenet/busybox:latest", "Type": "container",
            "Action": action, "Actor": {"ID": ident, "Attributes": ATTRS}, "scope": "local",
            "time": 1796696050, "timeNano": 1796696050239952722}  # fmt: skip


def inspect(ident: str = CID, labels: Any = None, running: bool = True, pid: int = 4242) -> dict[str, Any]:
    return {"Id": ident, "Name": "/c1", "Config": {"Labels": labels if labels is not None else {"app": "db"}},
            "State": {"Running": running, "Pid": pid if running else 0}}  # fmt: skip


def test_events_that_register_and_forget() -> None:
    assert event_action(event("start")) == ("register", CID)
    assert event_action(event("init")) == ("register", CID)
    assert event_action(event("die")) == ("forget", CID)
    assert event_action(event("remove")) == ("forget", CID)
    assert event_action({**event("died"), "id": ""}) == ("forget", CID)  # libpod's name; ID from the actor
    for other in ("create", "stop", "exec", "attach", "health_status"):
        assert event_action(event(other)) is None
    assert event_action({**event("start"), "Type": "image"}) is None
    assert event_action({"Action": "start"}) is None
    for action in ("connect", "disconnect"):  # podman network connect/disconnect: looked at again
        assert event_action({**event(action), "Type": "network"}) == ("register", CID)
    assert event_action({**event("remove"), "Type": "network"}) is None


JSON = st.recursive(
    st.none() | st.booleans() | st.integers() | st.text(max_size=8),
    lambda c: st.lists(c, max_size=3) | st.dictionaries(st.text(max_size=8), c, max_size=4),
)


@given(JSON)
def test_malformed_messages_are_ignored(msg: object) -> None:
    got = event_action(msg)
    assert got is None or got[0] in ("register", "forget")
    c = container_of(msg)
    assert c is None or isinstance(c.labels, dict)


def test_inspect_gives_labels_name_and_process() -> None:
    c = container_of(inspect(labels={"app": "db", "n": 1}))
    assert c is not None and (c.ident, c.name, c.labels, c.pid, c.running) == (CID, "c1", {"app": "db", "n": "1"},
                                                                               4242, True)  # fmt: skip
    none = container_of({"Id": CID, "Config": {"Labels": None}, "State": None})
    assert none is not None and none.labels == {} and none.pid == 0 and not none.running
    assert container_of({"Name": "x"}) is None


class FakePodman:
    """Podman's API as the watch uses it, on a unix socket: the running containers, inspect, the event stream."""

    def __init__(self) -> None:
        self.containers: dict[str, dict[str, Any]] = {}
        self.events: asyncio.Queue[dict[str, Any] | None] = asyncio.Queue()  # None ends the stream
        self.inspect_gate = asyncio.Event()
        self.inspect_gate.set()
        app = web.Application()
        app.router.add_get("/v1.24/containers/json", self.list)
        app.router.add_get("/v1.24/containers/{id}/json", self.inspect)
        app.router.add_get("/v1.24/events", self.stream)
        self.runner = web.AppRunner(app)

    async def list(self, request: web.Request) -> web.Response:
        return web.json_response([{"Id": i} for i, c in self.containers.items() if c["State"]["Running"]])

    async def inspect(self, request: web.Request) -> web.Response:
        await self.inspect_gate.wait()  # podman answers once the start holding the container's lock is over
        c = self.containers.get(request.match_info["id"])
        if c is None:
            return web.json_response({"message": "no such container"}, status=404)
        return web.json_response(c)

    async def stream(self, request: web.Request) -> web.StreamResponse:
        resp = web.StreamResponse()
        await resp.prepare(request)
        while (msg := await self.events.get()) is not None:
            await resp.write(json.dumps(msg).encode() + b"\n")
        return resp


@pytest.fixture
def on_bridge(monkeypatch: pytest.MonkeyPatch) -> dict[int, list[str]]:
    """Which process's namespace has which addresses on the bridge (the host side, tested on real hosts)."""
    addrs: dict[int, list[str]] = {}
    monkeypatch.setattr(podman, "_bridge_addresses", lambda bridge, pid: addrs.get(pid, []))
    return addrs


async def until(pred: Any, what: str) -> None:
    for _ in range(200):
        if pred():
            return
        await asyncio.sleep(0.01)
    raise AssertionError(f"timed out waiting for {what}")


async def test_watch_registers_and_forgets(tmp_path: Path, on_bridge: dict[int, list[str]]) -> None:
    api = FakePodman()
    api.containers[CID] = inspect()
    api.containers["b" * 64] = inspect("b" * 64, pid=99)  # running, but not on weave
    on_bridge[4242] = ["10.32.0.5"]
    await api.runner.setup()
    sock = tmp_path / "podman.sock"
    await web.UnixSite(api.runner, str(sock)).start()
    pods: dict[str, tuple[str, dict[str, str], list[str]]] = {}

    async def on_pod(ident: str, name: str, labels: dict[str, str], ips: list[str], wait: bool = True) -> None:
        assert wait is False
        pods[ident] = (name, labels, ips)

    async def on_gone(ident: str) -> bool:
        return pods.pop(ident, None) is not None

    watch = PodmanWatch(f"unix://{sock}", "weave", on_pod, on_gone)
    assert watch.status().startswith(f"no labels from unix://{sock} (connecting)")
    watch.start()
    try:
        await until(lambda: CID in pods, "the running container registered when the stream opens")
        assert pods == {CID: ("c1", {"app": "db"}, ["10.32.0.5"])}
        assert watch.status() == f"labels from unix://{sock}; containers on weave: 1"
        await api.events.put(event("die"))
        await until(lambda: not pods, "the dead container forgotten")
        # started again: its inspect waits for podman's start to end; a death meanwhile wins over it
        api.inspect_gate.clear()
        await api.events.put(event("start"))
        await asyncio.sleep(0.05)
        await api.events.put(event("die"))
        await asyncio.sleep(0.05)
        api.inspect_gate.set()
        await asyncio.sleep(0.1)
        assert pods == {}
        api.containers[CID] = inspect(labels={"app": "web"})
        await api.events.put(event("start"))
        await until(lambda: pods.get(CID, ("", {}, []))[1] == {"app": "web"}, "registered again with its labels")
        on_bridge[4242] = []
        await api.events.put({**event("disconnect"), "Type": "network"})  # off weave, running on
        await until(lambda: not pods, "the disconnected container forgotten")
        on_bridge[4242] = ["10.32.0.9"]
        await api.events.put({**event("connect"), "Type": "network"})
        await until(lambda: pods.get(CID, ("", {}, []))[2] == ["10.32.0.9"], "the connected container registered")
        watch.released(CID)  # IPAM released its addresses: the CNI plugin's DEL
        await until(lambda: not pods, "the released container forgotten")
        assert watch.counts == {"registered": 3, "forgotten": 3, "failed": 0}
    finally:
        await watch.close()
        await api.events.put(None)
        await api.runner.cleanup()


async def test_no_api_is_said_only_where_podman_could_be(tmp_path: Path) -> None:
    async def nothing(*args: Any, **kw: Any) -> None:
        return None

    missing = f"unix://{tmp_path}/none.sock"
    assert PodmanWatch(missing, "weave", nothing, nothing, explicit=False).status() == ""  # no podman here
    watch = PodmanWatch(missing, "weave", nothing, nothing, explicit=True)
    watch.start()
    try:
        await until(lambda: watch.last_error != "", "the first attempt")
        assert watch.status().startswith(f"no labels from {missing} (")
        assert watch.status().endswith("podman's containers on weave are no pods")
    finally:
        await watch.close()


@pytest.mark.parametrize("bad", ["unix://rel/path", "ftp://x:1", "host-without-port"])
def test_a_bad_podman_api_is_refused_at_launch(bad: str) -> None:
    import dataclasses

    from weavenet.config.model import DaemonConfig
    from weavenet.config.validate import validate
    from weavenet.errors import ConfigError

    with pytest.raises(ConfigError, match=r"^--podman-api: invalid"):
        validate(dataclasses.replace(DaemonConfig(), podman_api=bad), {})
    assert validate(dataclasses.replace(DaemonConfig(), podman_api=""), {}).podman_api == ""  # off
