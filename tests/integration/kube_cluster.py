"""A Kubernetes cluster on the test bed, as far as one can be had here: no API server can run on these machines,
so the stand-in of ``weavenet.testbed.kube_api`` serves recorded API objects from a simulated host of its own
(the control plane), over HTTPS on the underlay, and every other host is a node running the DaemonSet's
containers as their processes: ``python -m weavenet.kube launch`` (the router) and ``... npc`` (the policy
controller), with the pod's environment, service account (``/var/run/secrets/kubernetes.io/serviceaccount``)
and host mounts (``HOST_ROOT``). Everything below the API is real: routers, CNI plugins, IPAM, nftables."""

from __future__ import annotations

import copy
import json
import os
import shutil
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from weavenet.host.netns import in_netns
from weavenet.testbed import Host, Testbed
from weavenet.testbed.kube_api import FakeKubeAPI, listening_socket, make_tls, write_service_account

RECORDED = Path(__file__).resolve().parents[1] / "fixtures" / "kube"
PORT = 6443
TOKEN = "node-sa-token"


def recorded(name: str) -> dict[str, Any]:
    return json.loads((RECORDED / name).read_text())


def node_object(host: Host) -> dict[str, Any]:
    obj = copy.deepcopy(recorded("node.json"))
    obj["metadata"]["name"] = host.name
    obj["metadata"]["labels"]["kubernetes.io/hostname"] = host.name
    obj["status"]["addresses"] = [
        {"type": "InternalIP", "address": host.ip},
        {"type": "Hostname", "address": host.name},
    ]
    return obj


def wait_until(pred: Callable[[], bool], timeout: float, what: str, interval: float = 0.3) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            if pred():
                return
        except Exception:
            pass
        time.sleep(interval)
    raise AssertionError(f"timed out after {timeout:.0f}s waiting for {what}")


class KubeCluster:
    """The API on ``control`` and the nodes (see the module docstring)."""

    def __init__(self, bed: Testbed, control: Host, nodes: list[Host]) -> None:
        self.bed = bed
        self.control = control
        self.nodes = nodes
        self.api = FakeKubeAPI(token=TOKEN)
        tls = make_tls(bed.workdir / "kube-tls", [control.ip])
        sock = in_netns(control.netns_path, lambda: listening_socket(control.ip, PORT))
        self.api.start(sock, tls.server_context())
        self.procs: dict[tuple[str, str], subprocess.Popen[str]] = {}
        for h in nodes:
            write_service_account(h.dir / "run" / "secrets" / "kubernetes.io" / "serviceaccount", TOKEN, tls.ca)
            root = self.host_root(h)
            (root / "etc").mkdir(parents=True, exist_ok=True)
            shutil.copy(h.dir / "machine-id", root / "etc" / "machine-id")  # the manifest mounts it read-only

    def host_root(self, h: Host) -> Path:
        """The pod's ``/host``: the node's directories the manifest mounts (CNI binaries and configuration)."""
        return h.dir / "root"

    def env(self, h: Host, **extra: str) -> dict[str, str]:
        return {
            "KUBERNETES_SERVICE_HOST": self.control.ip,
            "KUBERNETES_SERVICE_PORT": str(PORT),
            "HOSTNAME": h.name,
            "HOST_ROOT": str(self.host_root(h)),
            "DB_PREFIX": "/var/lib/weave/weave-net",
            "IPTABLES_BACKEND": "nft",
            **extra,
        }

    def add_nodes(self, hosts: list[Host] | None = None) -> None:
        for h in hosts or self.nodes:
            self.api.put(node_object(h))

    def start(self, h: Host, what: str = "launch", *args: str, **env: str) -> subprocess.Popen[str]:
        with open(h.dir / f"kube-{what}.log", "a") as log:  # the process has its own copy
            proc = h.popen(
                [sys.executable, "-m", "weavenet.kube", what, *args],
                env={**self._base_env(), **self.env(h, **env)},
                stdout=log,
                stderr=subprocess.STDOUT,
                stdin=subprocess.DEVNULL,
            )
        self.procs[(h.name, what)] = proc
        return proc

    def _base_env(self) -> dict[str, str]:
        return {k: v for k, v in os.environ.items() if not k.startswith(("KUBERNETES_", "WEAVE_"))}

    def log(self, h: Host, what: str = "launch") -> str:
        path = h.dir / f"kube-{what}.log"
        return path.read_text() if path.exists() else ""

    def stop(self, h: Host, what: str = "launch", timeout: float = 30) -> int | None:
        proc = self.procs.pop((h.name, what), None)
        if proc is None:
            return None
        proc.terminate()
        try:
            return proc.wait(timeout)
        except subprocess.TimeoutExpired:
            proc.kill()
            return proc.wait(10)

    def kill(self, h: Host, what: str = "launch") -> None:
        proc = self.procs.pop((h.name, what), None)
        if proc is not None:
            proc.kill()
            proc.wait(10)

    def close(self) -> None:
        for name, what in list(self.procs):
            self.stop(self.bed.host(name), what, timeout=15)
        self.api.close()
        keep = os.environ.get("WEAVENET_TEST_LOGS")  # where to keep the nodes' logs (the bed is removed)
        if keep:
            Path(keep).mkdir(parents=True, exist_ok=True)
            for h in self.nodes:
                for log in h.dir.glob("kube-*.log"):
                    shutil.copy(log, Path(keep) / f"{h.name}-{log.name}")

    def report(self, h: Host) -> dict[str, Any]:
        res = h.weave("report")
        if res.returncode != 0:
            raise AssertionError(f"{h.name}: weave report: {res.stderr}")
        return dict(json.loads(res.stdout))

    def established(self, h: Host) -> int:
        conns = self.report(h)["Router"]["Connections"] or []
        return sum(1 for c in conns if c["State"] == "established")

    def peer_name(self, h: Host) -> str:
        return str(self.report(h)["Router"]["Name"])
