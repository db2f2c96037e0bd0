"""Network policy for Docker containers: their Docker labels select them, on two hosts with real engines.

``web`` runs on host 1 with label ``app=web``; on host 2 ``client`` (``app=client``) and ``other`` (no label)
through the proxy, ``plugged`` (``app=client``) on the plugin's network, and ``plain``, attached by ``weave attach
--label app=client``. A policy applied on host 2 lets only ``app=client`` reach ``web``; the containers' pods
come from host 2's router, the policy from its CLI, the enforcement from host 1's router.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from collections.abc import Iterator

import pytest

from tests.integration.conftest import PREFIXES, netns_unavailable
from tests.integration.test_docker import DEFAULT_SUBNET, RANGE, dk, ethwe, pings, wait_until, weave
from weavenet.testbed import Host, Testbed, TestbedBusy
from weavenet.testbed.docker_engine import IMAGE, EngineUnavailable, engine_unavailable, start_engines

pytestmark = [pytest.mark.netns, pytest.mark.docker, pytest.mark.slow]

ONLY_CLIENTS = """apiVersion: networking.k8s.io/v1
kind: NetworkPolicy
metadata: {name: web-from-clients}
spec:
  podSelector: {matchLabels: {app: web}}
  ingress: [{from: [{podSelector: {matchLabels: {app: client}}}]}]
"""


@pytest.fixture(scope="module")
def hosts() -> Iterator[tuple[Host, Host]]:
    reason = netns_unavailable() or engine_unavailable()
    if reason:
        pytest.skip(reason)
    tb: Testbed | None = None
    for prefix in PREFIXES:
        try:
            tb = Testbed(2, prefix=prefix)
            break
        except TestbedBusy:
            continue
    if tb is None:
        pytest.skip("every test bed prefix is in use")
    try:
        try:
            start_engines(tb.hosts)
        except EngineUnavailable as e:
            pytest.skip(f"no Docker engine could be started: {e}")
        h1, h2 = tb.hosts
        opts = ("--ipalloc-range", RANGE, "--ipalloc-default-subnet", DEFAULT_SUBNET)
        weave(h1, "launch", *opts)
        weave(h2, "launch", *opts, h1.ip)
        wait_until(lambda: "1 established" in weave(h1, "status").stdout, 30, "h1 and h2 connected")
        yield h1, h2
    finally:
        tb.close()


def pods(host: Host) -> dict[str, dict]:
    return {p["Name"]: p for p in json.loads(weave(host, "policy", "ls", "-o", "json").stdout)["Pods"]}


def ip(host: Host, name: str) -> str:
    (cidr,) = ethwe(host, name)
    return cidr.split("/")[0]


def test_docker_labels_select_containers(hosts: tuple[Host, Host]) -> None:
    h1, h2 = hosts
    dk(h1, "run", "-d", "--name", "web", "--label", "app=web", IMAGE, "sleep", "3600")
    dk(h2, "run", "-d", "--name", "client", "--label", "app=client", IMAGE, "sleep", "3600")
    dk(h2, "run", "-d", "--name", "other", IMAGE, "sleep", "3600")
    web = ip(h1, "web")
    wait_until(lambda: {"web", "client", "other"} <= set(pods(h2)), 10, "h2 knows the pods of both hosts")
    known = pods(h2)
    assert known["web"]["Labels"] == {"app": "web"} and known["web"]["IPs"] == [web]
    assert known["client"]["Namespace"] == "default" and known["client"]["Local"] is True
    wait_until(lambda: pings(h2, "other", web), 30, "other reaches web before any policy")
    out = weave(h2, "policy", "apply", "-f", "-", check=False)  # nothing on stdin: nothing to apply
    assert out.returncode == 0 and out.stdout == ""
    res = h2.run([sys.executable, "-m", "weavenet.cli", "policy", "apply", "-f", "-"], input=ONLY_CLIENTS, check=False)
    assert res.stdout == "networkpolicy.networking.k8s.io/web-from-clients created\n", res.stderr
    wait_until(lambda: not pings(h2, "other", web), 10, "web refuses other (enforced on h1)")
    assert pings(h2, "client", web)
    test = weave(h2, "policy", "test", "other", "web", "80", check=False)
    assert test.returncode == 2 and "default/web is isolated by default/web-from-clients" in test.stdout


def test_weave_attach_labels_and_the_plugin_network(hosts: tuple[Host, Host]) -> None:
    h1, h2 = hosts
    web = ip(h1, "web")
    dk(h2, "run", "-d", "--name", "plain", "-e", "WEAVE_CIDR=none", IMAGE, "sleep", "3600")
    assert weave(h2, "attach", "--label", "app=client", "10.2.3.200/24", "plain").stdout.strip() == "10.2.3.200"
    # in force when attach returns: on h2 at once, on h1 (web's host) within the gossip's second
    wait_until(lambda: pings(h2, "plain", web), 10, "plain (app=client by weave attach) reaches web")
    assert pods(h2)["plain"]["Labels"] == {"app": "client"}
    dk(h2, "run", "-d", "--name", "plugged", "--net=weave", "--label", "app=client", IMAGE, "sleep", "3600",
       proxy=False)  # fmt: skip
    wait_until(lambda: "plugged" in pods(h1), 15, "the plugin's container is a pod")
    wait_until(lambda: pings(h2, "plugged", web), 15, "plugged (plugin network, app=client) reaches web")
    dk(h2, "rm", "-f", "client")
    wait_until(lambda: "client" not in pods(h1), 15, "a removed container is no pod any more")


def test_policy_survives_router_restart_and_rm_ends_it(hosts: tuple[Host, Host]) -> None:
    """web's router restarts: other keeps trying to reach web all along and never does (web was attached by the
    proxy; the restarted router knows it from its store before Docker's events name it again)."""
    h1, h2 = hosts
    web = ip(h1, "web")
    assert h2.docker is not None
    tries = "i=0; while [ $i -lt 15 ]; do ping -c 1 -W 1 %s >/dev/null 2>&1 && echo ok || echo no; i=$((i+1)); done"
    watcher = h2.popen(["docker", "exec", "other", "sh", "-c", tries % web], env={**os.environ, **h2.docker.env(None)},
                       stdout=subprocess.PIPE, stderr=subprocess.DEVNULL)  # fmt: skip
    time.sleep(1)
    weave(h1, "stop")
    time.sleep(1)
    weave(h1, "launch", "--ipalloc-range", RANGE, "--ipalloc-default-subnet", DEFAULT_SUBNET, h2.ip)
    assert "web-from-clients" in weave(h1, "policy", "ls").stdout  # from its store
    wait_until(lambda: "web" in pods(h1) and pods(h1)["web"]["Local"], 20, "web registered again after the restart")
    out = watcher.communicate(timeout=60)[0].split()
    assert len(out) >= 10 and "ok" not in out, out
    wait_until(lambda: pings(h2, "plain", web), 20, "plain reaches web again")
    assert weave(h1, "policy", "rm", "web-from-clients").stdout == (
        'networkpolicy.networking.k8s.io "web-from-clients" deleted\n'
    )
    wait_until(lambda: pings(h2, "other", web), 10, "no policy: other reaches web again")
