"""A stand-in Kubernetes API server on loopback (``weavenet.testbed.kube_api``: no API server can run here),
serving recorded API objects over HTTPS with a service account's token, and clients made as in a pod."""

from __future__ import annotations

import copy
import json
from collections.abc import AsyncIterator, Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from weavenet.kube.api import KubeAPI
from weavenet.testbed.kube_api import FakeKubeAPI, Tls, listening_socket, make_tls, write_service_account

RECORDED = Path(__file__).resolve().parents[2] / "fixtures" / "kube"


def recorded(name: str) -> dict[str, Any]:
    return json.loads((RECORDED / name).read_text())


def node(name: str, ip: str) -> dict[str, Any]:
    """The recorded node, renamed, with this InternalIP."""
    obj = copy.deepcopy(recorded("node.json"))
    obj["metadata"]["name"] = name
    obj["metadata"]["labels"]["kubernetes.io/hostname"] = name
    obj["status"]["addresses"] = [{"type": "InternalIP", "address": ip}, {"type": "Hostname", "address": name}]
    return obj


@pytest.fixture(scope="session")
def tls(tmp_path_factory: pytest.TempPathFactory) -> Tls:
    return make_tls(tmp_path_factory.mktemp("tls"), ["127.0.0.1"])


@pytest.fixture
def server(tls: Tls) -> Iterator[FakeKubeAPI]:
    srv = FakeKubeAPI(token="sa-token")
    srv.start(listening_socket(), tls.server_context())
    try:
        yield srv
    finally:
        srv.close()


@pytest.fixture
def service_account(tmp_path: Path, tls: Tls, server: FakeKubeAPI, monkeypatch: pytest.MonkeyPatch) -> Path:
    """The pod's view: the token and CA kubelet mounts, and the service's address in the environment."""
    port = server.url.rsplit(":", 1)[1]
    monkeypatch.setenv("KUBERNETES_SERVICE_HOST", "127.0.0.1")
    monkeypatch.setenv("KUBERNETES_SERVICE_PORT", port)
    return write_service_account(tmp_path / "serviceaccount", "sa-token", tls.ca)


@pytest.fixture
async def make_api(service_account: Path) -> AsyncIterator[Callable[[], KubeAPI]]:
    made: list[KubeAPI] = []

    def make() -> KubeAPI:
        api = KubeAPI.in_cluster(str(service_account))
        made.append(api)
        return api

    yield make
    for api in made:
        await api.close()
