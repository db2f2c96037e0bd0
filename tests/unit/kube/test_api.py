"""The Kubernetes API client (``weavenet.kube.api``) against a stand-in API server on loopback that serves
recorded API objects (no API server can run here): the in-cluster configuration, the calls Kubernetes mode makes,
and the list+watch loop under bad answers."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from weavenet.errors import ConfigError
from weavenet.kube.api import KubeAPI, KubeError, Reflector
from weavenet.testbed.kube_api import FakeKubeAPI, make_tls, write_service_account

from .conftest import node, recorded

MakeAPI = Callable[[], KubeAPI]


async def test_in_cluster_service_account_over_tls(server: FakeKubeAPI, make_api: MakeAPI) -> None:
    server.put(node("node-1", "192.0.2.11"))
    server.put(node("node-2", "192.0.2.12"))
    api = make_api()
    assert await api.nodes() == [
        ("node-1", [("InternalIP", "192.0.2.11"), ("Hostname", "node-1")]),
        ("node-2", [("InternalIP", "192.0.2.12"), ("Hostname", "node-2")]),
    ]
    assert server.calls("GET", "^/api/v1/nodes$")


async def test_a_wrong_token_or_ca_is_a_clear_error(
    server: FakeKubeAPI, service_account: Path, tmp_path: Path, make_api: MakeAPI
) -> None:
    (service_account / "token").write_text("stale")
    with pytest.raises(KubeError, match="listing the nodes: 401 Unauthorized") as e:
        await make_api().nodes()
    assert e.value.code == 401
    other = make_tls(tmp_path / "other", ["127.0.0.1"])
    write_service_account(service_account, "sa-token", other.ca)
    with pytest.raises(KubeError, match=r"listing the nodes: ConnectError: .*CERTIFICATE_VERIFY_FAILED") as e:
        await make_api().nodes()
    assert e.value.code == 0


def test_outside_a_pod(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.delenv("KUBERNETES_SERVICE_HOST", raising=False)
    with pytest.raises(ConfigError, match="not running in a Kubernetes pod: KUBERNETES_SERVICE_HOST is not set"):
        KubeAPI.in_cluster(str(tmp_path))
    monkeypatch.setenv("KUBERNETES_SERVICE_HOST", "127.0.0.1")
    monkeypatch.setenv("KUBERNETES_SERVICE_PORT", "443")
    with pytest.raises(ConfigError, match=r"service account in .* cannot be read"):
        KubeAPI.in_cluster(str(tmp_path / "none"))


async def test_network_available_is_patched_as_weave_does(server: FakeKubeAPI, make_api: MakeAPI) -> None:
    server.put(node("node-1", "192.0.2.11"))
    await make_api().set_network_available("node-1", now=1709625600.0)
    (patch,) = server.calls("PATCH", "^/api/v1/nodes/node-1/status$")
    assert patch.body == {
        "status": {
            "conditions": [
                {
                    "type": "NetworkUnavailable",
                    "status": "False",
                    "lastHeartbeatTime": "2024-03-05T08:00:00Z",
                    "lastTransitionTime": "2024-03-05T08:00:00Z",
                    "reason": "WeaveIsUp",
                    "message": "Weave pod has set this",
                }
            ]
        }
    }
    conditions = {c["type"]: c for c in server.get("Node", "node-1")["status"]["conditions"]}
    assert conditions["NetworkUnavailable"]["status"] == "False"
    assert conditions["Ready"]["status"] == "True"  # merged by type, the others kept
    with pytest.raises(KubeError, match="404") as e:
        await make_api().set_network_available("node-9")
    assert e.value.code == 404


async def test_configmap_calls(server: FakeKubeAPI, make_api: MakeAPI) -> None:
    api = make_api()
    assert await api.get_configmap("kube-system", "weave-net") is None
    made = await api.create_configmap("kube-system", "weave-net")
    with pytest.raises(KubeError, match="409") as e:
        await api.create_configmap("kube-system", "weave-net")
    assert e.value.code == 409
    written = await api.replace_configmap(made, {"a": "1"})
    assert written.metadata.annotations == {"a": "1"}
    with pytest.raises(KubeError, match="the object has been modified") as e:
        await api.replace_configmap(made, {"a": "2"})  # at the version first read: a conflict
    assert e.value.code == 409
    assert server.get("ConfigMap", "weave-net", "kube-system")["metadata"]["annotations"] == {"a": "1"}
    (put,) = [c for c in server.calls("PUT", "configmaps/weave-net") if c.body["metadata"]["annotations"] == {"a": "1"}]
    assert put.query.get("fieldManager") == "kube-peers.weave.works"


class Seen:
    """What a reflector handed over, kept as an informer's store would keep it."""

    def __init__(self) -> None:
        self.objects: dict[str, Any] = {}
        self.lists = 0

    def on_list(self, objs: list[Any]) -> None:
        self.lists += 1
        self.objects = {o.metadata.name: o for o in objs}

    def on_event(self, kind: str, obj: Any) -> None:
        if kind == "DELETED":
            self.objects.pop(obj.metadata.name, None)
        else:
            self.objects[obj.metadata.name] = obj


async def until(pred: Callable[[], bool], timeout: float = 20.0) -> None:
    deadline = asyncio.get_running_loop().time() + timeout
    while not pred():
        if asyncio.get_running_loop().time() > deadline:
            raise AssertionError("timed out")
        await asyncio.sleep(0.05)


@contextlib.asynccontextmanager
async def reflecting(api: KubeAPI, resource: Any, seen: Seen, **kw: Any) -> Any:
    r = Reflector(api, resource, seen.on_list, seen.on_event, backoff=(0.05, 0.2), **kw)
    task = asyncio.create_task(r.run())
    try:
        yield r
    finally:
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task


async def test_reflector_lists_then_watches(server: FakeKubeAPI, make_api: MakeAPI) -> None:
    from lightkube.resources.core_v1 import Pod

    server.put(recorded("pod.json"))
    seen = Seen()
    async with reflecting(make_api(), Pod, seen) as r:
        await until(lambda: "a" in seen.objects)
        b = recorded("pod.json")
        b["metadata"]["name"] = "b"
        server.put(b)
        await until(lambda: "b" in seen.objects)
        b["metadata"]["labels"] = {"pod": "b2"}
        server.put(b)
        await until(lambda: seen.objects["b"].metadata.labels == {"pod": "b2"})
        server.delete("Pod", "a", "x")
        await until(lambda: "a" not in seen.objects)
        assert (r.stats.lists, r.stats.errors, r.stats.relists) == (1, 0, 0)
        assert r.stats.events == 3
        watch = server.calls("GET", "^/api/v1/pods$")[-1]
        assert watch.query["watch"] == "true" and watch.query["resourceVersion"]


async def test_reflector_relists_on_410(server: FakeKubeAPI, make_api: MakeAPI) -> None:
    """A watch that starts from a version the server no longer has (etcd compacted it, or the watch was down
    too long) is answered by an ERROR event with 410: the reflector lists again and misses nothing."""
    from lightkube.resources.core_v1 import Namespace

    server.put(recorded("namespace.json"))
    server.fault("WATCH", "namespaces", "gone")
    seen = Seen()
    async with reflecting(make_api(), Namespace, seen) as r:
        await until(lambda: r.stats.relists == 1 and seen.lists == 2)
        server.compact()  # the current watch keeps going; its next reconnection would get 410
        server.put({"kind": "Namespace", "metadata": {"name": "y"}})
        await until(lambda: "y" in seen.objects)
        assert r.stats.errors == 0


async def test_bad_answers_are_counted_and_retried(server: FakeKubeAPI, make_api: MakeAPI) -> None:
    """500s, a body that is not JSON, an error with no Status, a watch event that is not JSON, a connection
    dropped: each is logged, counted and retried after a back-off; the set converges, nothing raises."""
    from lightkube.resources.networking_v1 import NetworkPolicy

    server.put(recorded("networkpolicy.json"))
    server.fault("GET", "^/apis/networking.k8s.io/v1/networkpolicies$", "status", 500, times=2)
    server.fault("GET", "^/apis/networking.k8s.io/v1/networkpolicies$", "garbage")
    server.fault("GET", "^/apis/networking.k8s.io/v1/networkpolicies$", "plain", 503)
    server.fault("GET", "^/apis/networking.k8s.io/v1/networkpolicies$", "drop")
    server.fault("WATCH", "networkpolicies", "garbage-event")
    seen = Seen()
    async with reflecting(make_api(), NetworkPolicy, seen) as r:
        await until(lambda: server.faults_left() == 0 and "allow-from-b" in seen.objects)
        other = recorded("networkpolicy.json")
        other["metadata"]["name"] = "other"
        server.put(other)
        await until(lambda: "other" in seen.objects)
        assert r.stats.errors == 6
        assert r.stats.by_code == {500: 2, 0: 3, 503: 1}
        assert r.stats.last_error == "watching NetworkPolicy: DecodeError: Input data was truncated"


async def test_a_failing_callback_is_an_error_like_a_bad_answer(server: FakeKubeAPI, make_api: MakeAPI) -> None:
    from lightkube.resources.core_v1 import Namespace

    server.put(recorded("namespace.json"))
    calls: list[int] = []

    def on_list(objs: list[Any]) -> None:
        calls.append(len(objs))
        if len(calls) == 1:
            raise ValueError("boom")

    r = Reflector(make_api(), Namespace, on_list, lambda k, o: None, backoff=(0.05, 0.1))
    task = asyncio.create_task(r.run())
    try:
        await until(lambda: len(calls) >= 2)
        assert r.stats.errors == 1 and "ValueError: boom" in r.stats.last_error
    finally:
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task
