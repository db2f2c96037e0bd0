"""Network policy for podman containers (CNI plugin): their podman labels select them, on two hosts.

Podman tells the CNI plugin nothing of a container's labels; each router reads them from podman's API (``podman
system service``, ``--podman-api``). On host 1 ``db`` (``app=db``, namespace ``prod`` by its
``weave.works/namespace`` label) serves TCP 8080 and 8081; on host 2 ``web`` (``app=web``, namespace ``prod``),
``plain`` (no labels) and ``stray`` (``app=web`` in namespace ``default``). A policy of namespace ``prod`` applied on
host 2 lets only ``app=web`` of ``prod`` reach ``db`` on TCP 8080.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from collections.abc import Callable
from typing import Any

import pytest

from weavenet.testbed import Host
from weavenet.testbed.podman_engine import PodmanEngine, podman_unavailable

pytestmark = [
    pytest.mark.netns,
    pytest.mark.slow,
    pytest.mark.skipif(podman_unavailable() is not None, reason=podman_unavailable() or ""),
]

DB_FROM_WEB = """apiVersion: networking.k8s.io/v1
kind: NetworkPolicy
metadata: {name: db-from-web, namespace: prod}
spec:
  podSelector: {matchLabels: {app: db}}
  ingress: [{from: [{podSelector: {matchLabels: {app: web}}}], ports: [{protocol: TCP, port: 8080}]}]
"""
SERVE = "httpd -p 8080 -h /etc && httpd -p 8081 -h /etc && exec sleep 100000"
PROD = ["--label", "weave.works/namespace=prod"]


def wait_until(pred: Callable[[], bool], timeout: float, what: str, interval: float = 0.3) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if pred():
            return
        time.sleep(interval)
    raise AssertionError(f"timed out after {timeout:.0f}s waiting for {what}")


def weave(host: Host, *args: str, check: bool = True) -> subprocess.CompletedProcess[str]:
    res = host.weave(*args)
    if check and res.returncode != 0:
        raise AssertionError(f"{host.name}: weave {' '.join(args)} -> rc {res.returncode}\n{res.stdout}{res.stderr}")
    return res


def pods(host: Host) -> dict[str, dict[str, Any]]:
    return {p["Name"]: p for p in json.loads(weave(host, "policy", "ls", "-o", "json").stdout)["Pods"]}


def address(pm: PodmanEngine, name: str) -> str:
    return pm.podman("exec", name, "ip", "-4", "-o", "addr", "show", "eth0").stdout.split()[3].split("/")[0]


def get(ip: str, port: int, wait: int = 2) -> str:
    """A shell command that fetches db's /hosts with busybox's nc (its wget crashes here given a timeout)."""
    return f"printf 'GET /hosts HTTP/1.0\\r\\n\\r\\n' | nc -w {wait} {ip} {port}"


def reaches(pm: PodmanEngine, name: str, ip: str, port: int) -> bool:
    return " 200 OK" in pm.podman("exec", name, "sh", "-c", get(ip, port), check=False).stdout


def launch(host: Host, api: str, *peers: str) -> None:
    weave(host, "launch", "--podman-api", api, *peers)


def test_podman_labels_select_cni_containers(make_testbed: Callable[..., Any]) -> None:
    tb = make_testbed(2)
    h1, h2 = tb.hosts
    pms = {h.name: h.start_podman() for h in tb.hosts}
    apis = {name: pm.start_service() for name, pm in pms.items()}
    launch(h1, apis["h1"])
    launch(h2, apis["h2"], h1.ip)
    for h in tb.hosts:
        pm = pms[h.name]
        weave(h, "setup-cni", "--plugin-dir", str(pm.plugin_dir), "--conf-dir", str(pm.conf_dir))
    pm1, pm2 = pms["h1"], pms["h2"]
    pm1.run("db", "sh", "-c", SERVE, extra=["--label", "app=db", *PROD])
    pm2.run("web", extra=["--label", "app=web", *PROD])
    pm2.run("plain")
    pm2.run("stray", extra=["--label", "app=web"])
    db = address(pm1, "db")
    wait_until(lambda: {"db", "web", "plain", "stray"} <= set(pods(h2)), 20, "podman's containers registered")
    known = pods(h2)
    assert known["db"]["Labels"] == {"app": "db", "weave.works/namespace": "prod"} and known["db"]["IPs"] == [db]
    assert known["db"]["Namespace"] == "prod" and known["web"]["Namespace"] == "prod"
    assert known["plain"]["Labels"] == {} and known["plain"]["Namespace"] == "default" and known["plain"]["Local"]
    assert known["stray"]["Namespace"] == "default"
    wait_until(lambda: reaches(pm2, "plain", db, 8080), 60, "plain reaches db before any policy")

    res = h2.run([sys.executable, "-m", "weavenet.cli", "policy", "apply", "-f", "-"], input=DB_FROM_WEB, check=False)
    assert res.stdout == "networkpolicy.networking.k8s.io/db-from-web created\n", res.stderr
    wait_until(lambda: not reaches(pm2, "plain", db, 8080), 10, "db refuses plain (enforced on h1)")
    assert reaches(pm2, "web", db, 8080)
    assert not reaches(pm2, "web", db, 8081)  # the policy allows port 8080 only
    assert not reaches(pm2, "stray", db, 8080)  # app=web, but of namespace default
    allowed = weave(h2, "policy", "test", "web", "prod/db", "8080")
    assert "allowed by prod/db-from-web ingress[0]" in allowed.stdout, allowed.stdout
    denied = weave(h2, "policy", "test", "plain", "prod/db", "8080", check=False)
    assert denied.returncode == 2 and "prod/db is isolated by prod/db-from-web" in denied.stdout, denied.stdout
    status = weave(h1, "status").stdout
    assert f"Podman: labels from {apis['h1']}; containers on weave: 1" in status, status

    # db's router restarts: plain keeps trying and never gets through; db is registered again with its labels
    once = f"{get(db, 8080, 1)} | grep -q ' 200 OK' && echo ok || echo no"
    tries = f"i=0; while [ $i -lt 15 ]; do {once}; i=$((i+1)); done"
    watcher = subprocess.Popen(pm2.argv("exec", "plain", "sh", "-c", tries), env={**os.environ, **pm2.env()},
                               stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True)  # fmt: skip
    time.sleep(1)
    weave(h1, "stop")
    time.sleep(1)
    launch(h1, apis["h1"], h2.ip)
    wait_until(lambda: pods(h1).get("db", {}).get("Local") is True, 20, "db registered again after the restart")
    assert pods(h1)["db"]["Labels"] == {"app": "db", "weave.works/namespace": "prod"}
    out = watcher.communicate(timeout=90)[0].split()
    assert len(out) >= 10 and "ok" not in out, out
    wait_until(lambda: reaches(pm2, "web", db, 8080), 20, "web reaches db again")
    assert not reaches(pm2, "plain", db, 8080)

    # a restarted container is registered again; a removed or disconnected one is no pod any more; a connected
    # one is
    pm2.podman("restart", "-t", "0", "web")
    wait_until(lambda: reaches(pm2, "web", db, 8080), 30, "the restarted web reaches db")
    pm2.podman("rm", "-f", "-t", "0", "plain")
    wait_until(lambda: "plain" not in pods(h1), 15, "the removed container is gone from the cluster's pods")
    pm2.podman("network", "disconnect", "weave", "stray")  # the CNI plugin's DEL, the container runs on
    wait_until(lambda: "stray" not in pods(h1), 15, "the disconnected container is gone from the cluster's pods")
    assert "web" in pods(h1)

    # a container started on another network and connected to weave afterwards (no start event then)
    side = {"cniVersion": "0.4.0", "name": "side", "plugins": [
        {"type": "bridge", "bridge": "wpside0", "ipam": {"type": "host-local", "subnet": "10.99.0.0/24"}}]}  # fmt: skip
    (pm2.conf_dir / "30-side.conflist").write_text(json.dumps(side))
    pm2.run("late", network="side", extra=["--label", "app=web", *PROD])
    pm2.podman("network", "connect", "weave", "late")
    wait_until(lambda: pods(h1).get("late", {}).get("Labels", {}).get("app") == "web", 15, "late registered")
    wait_until(lambda: reaches(pm2, "late", db, 8080), 15, "late (app=web of prod) reaches db")
