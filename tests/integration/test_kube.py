"""Kubernetes mode on simulated hosts: the DaemonSet's containers as processes on three nodes, against a stand-in
API server that serves recorded API objects from a fourth host (no API server can run here; see
``kube_cluster``). Everything below the API runs for real: the routers and their mesh, IPAM and ``rmpeer``, the
CNI plugins executed as kubelet executes them, nftables."""

from __future__ import annotations

import ipaddress
import json
import re
import secrets
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from typing import Any

import pytest

from weavenet.kube import peers as p
from weavenet.testbed import Host
from weavenet.testbed.cni import Pod, Runtime

from .kube_cluster import KubeCluster, recorded, wait_until

pytestmark = [pytest.mark.netns, pytest.mark.slow]

WEAVE_NPC_LEFTOVERS = """
set -e
ipset create 'weave-k?Z;0pKz0bdA' hash:ip
ipset create weave-lst list:set
ipset add weave-lst 'weave-k?Z;0pKz0bdA'
for c in WEAVE-NPC WEAVE-NPC-INGRESS WEAVE-NPC-DEFAULT WEAVE-NPC-EGRESS WEAVE-NPC-EGRESS-ACCEPT \
         WEAVE-NPC-EGRESS-CUSTOM WEAVE-NPC-EGRESS-DEFAULT; do iptables -N $c; done
iptables -A WEAVE-NPC -m state --state NEW -j WEAVE-NPC-INGRESS
iptables -A WEAVE-NPC-INGRESS -m set --match-set weave-lst src -j ACCEPT
iptables -A FORWARD -i weave -m comment --comment "NOTE: this must go before '-j KUBE-FORWARD'" -j WEAVE-NPC-EGRESS
iptables -A FORWARD -o weave -m comment --comment "NOTE: this must go before '-j KUBE-FORWARD'" -j WEAVE-NPC
iptables -A FORWARD -o weave -m state --state NEW -j NFLOG --nflog-group 86
iptables -A FORWARD -o weave -j DROP
iptables -A INPUT -i weave -j WEAVE-NPC-EGRESS
"""
PEER_SERVER = """
import socket
s = socket.socket(); s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1); s.bind(("0.0.0.0", 8080)); s.listen(1)
print("ready", flush=True)
c, peer = s.accept()
print(peer[0], flush=True)
"""
METRICS = "import urllib.request as u; print(u.urlopen('http://127.0.0.1:6781/metrics', timeout=10).read().decode())"


@pytest.fixture
def cluster(make_testbed: Callable[..., Any]) -> Iterator[KubeCluster]:
    tb = make_testbed(4)
    kc = KubeCluster(tb, tb.hosts[3], tb.hosts[:3])
    try:
        yield kc
    finally:
        kc.close()


def peer_list(kc: KubeCluster) -> p.PeerList:
    cm = kc.api.get("ConfigMap", "weave-net", "kube-system")
    return p.decode_peer_list(((cm or {}).get("metadata", {}).get("annotations") or {}).get(p.PEERS_KEY))


def condition(kc: KubeCluster, node: str) -> dict[str, Any]:
    obj = kc.api.get("Node", node) or {}
    return next((c for c in obj.get("status", {}).get("conditions", []) if c["type"] == "NetworkUnavailable"), {})


def ring_owners(kc: KubeCluster, h: Host) -> set[str]:
    """The peers owning ranges, as this router's ring has them (``/ipinfo`` is Weave's; the report has it)."""
    entries = kc.report(h)["IPAM"]["Entries"] or []
    return {e["Peer"] for e in entries if e["Size"] > 0}


def cni_pod(kc: KubeCluster, h: Host, name: str) -> tuple[Pod, str]:
    """A pod on ``h`` attached by the installed plugins from the installed conflist, as kubelet's runtime does."""
    root = kc.host_root(h)
    rt = Runtime.from_file(str(root / "etc/cni/net.d/10-weave.conflist"), [str(root / "opt/cni/bin"), "/usr/lib/cni"],
                           enter=h.enter("/"))  # fmt: skip
    c = h.container(name)
    pod = Pod(secrets.token_hex(32), c.netns_path, namespace="x", name=name)
    result = rt.add(pod)
    ip = result["ips"][0]["address"].split("/")[0]
    return pod, ip


def test_nodes_mesh_reclaim(cluster: KubeCluster) -> None:
    """Peers from the node list, the mesh on three nodes, NetworkUnavailable=false, the CNI plugin installed and
    pods pinging across nodes; then a node removed: exactly one peer takes its ranges over."""
    kc = cluster
    kc.add_nodes()
    kc.api.put(recorded("configmap-weave-net-go.json"))  # Go's kube-utils ran here before: three peers of old nodes
    for h in kc.nodes:
        kc.start(h)
        kc.start(h, "npc", "--metrics-addr=")
    h1, h2, h3 = kc.nodes
    wait_until(lambda: all(kc.established(h) == 2 for h in kc.nodes), 90, "a full mesh from the node list")
    names = {h.name: kc.peer_name(h) for h in kc.nodes}
    wait_until(lambda: all(condition(kc, h.name).get("status") == "False" for h in kc.nodes), 60, "node conditions")
    c = condition(kc, "h1")
    assert (c["reason"], c["message"]) == ("WeaveIsUp", "Weave pod has set this")
    # the old nodes' peers (Go's list) were reclaimed by exactly one of us each, and we are listed
    wait_until(lambda: sorted(peer_list(kc).names()) == sorted(names.values()), 60, "the peer list of the nodes")
    logs = {h.name: kc.log(h) for h in kc.nodes}
    for old in ("62:43:bd:0e:6f:11", "ae:1f:32:9b:70:12", "86:fd:0c:55:21:13"):
        assert sum(log.count(f"rmpeer of {old}") for log in logs.values()) == 1, logs
    ann = kc.api.get("ConfigMap", "weave-net", "kube-system")["metadata"]["annotations"]
    assert ann[p.PEERS_KEY] == p.encode_peer_list(peer_list(kc))  # Go's json.Marshal, byte for byte
    assert not [k for k in ann if k != p.PEERS_KEY]  # no lock left
    # the consensus was over the node count: every node owns a part of the ring
    wait_until(lambda: ring_owners(kc, h1) == set(names.values()), 60, "the ring split among the three")
    # CNI: the plugins the init step installed, run as kubelet does; pods on two nodes reach each other
    p1, ip1 = cni_pod(kc, h1, "a")
    p2, ip2 = cni_pod(kc, h2, "b")
    a, b = h1.containers[-1], h2.containers[-1]
    wait_until(lambda: a.run(["ping", "-c1", "-W1", ip2], check=False).returncode == 0, 30, "a -> b across nodes")
    assert b.run(["ping", "-c1", "-W1", ip1], check=False).returncode == 0
    # the bridge was exposed (weave expose): the host reaches its pods
    assert h1.run(["ping", "-c1", "-W2", ip1], check=False).returncode == 0
    # NO_MASQ_LOCAL (on by default): h1's ranges in the set whose rule comes first in nat WEAVE, so a client
    # outside the weave network (the control host, routing the range through h1) is seen by its own address
    ours = [e for e in kc.report(h1)["IPAM"]["Entries"] or [] if e["Peer"] == names["h1"]]
    members = h1.run(["ipset", "list", "weaver-no-masq-local"]).stdout.split("Members:")[1].split()
    nets = [ipaddress.ip_network(m) for m in members]
    assert nets and sum(n.num_addresses for n in nets) == sum(e["Size"] for e in ours), (members, ours)
    assert all(any(ipaddress.ip_address(e["Token"]) in n for n in nets) for e in ours)
    assert (
        "Prevent SNAT to locally running containers"
        in h1.run(["iptables", "-t", "nat", "-S", "WEAVE"]).stdout.splitlines()[1]
    )
    kc.control.run(["ip", "route", "add", "10.32.0.0/12", "via", h1.ip])
    server = subprocess.Popen(
        ["ip", "netns", "exec", a.netns, sys.executable, "-c", PEER_SERVER], stdout=subprocess.PIPE, text=True
    )
    try:
        assert server.stdout is not None and server.stdout.readline().strip() == "ready"
        kc.control.run(
            [sys.executable, "-c", f"import socket; socket.create_connection(('{ip1}', 8080), timeout=10).close()"]
        )
        assert server.stdout.readline().strip() == kc.control.ip  # not h1's bridge address
    finally:
        server.kill()
        server.wait()
        if server.stdout is not None:
            server.stdout.close()

    # node h3 goes: its pod dies with it, then the node is deleted from the API
    kc.kill(h3)
    wait_until(lambda: kc.established(h1) == 1 and kc.established(h2) == 1, 60, "h3's connections gone")
    kc.api.delete("Node", "h3")
    wait_until(lambda: names["h3"] not in peer_list(kc).names(), 60, "h3's peer reclaimed")
    wait_until(lambda: names["h3"] not in ring_owners(kc, h1), 30, "h3's ranges taken over (h1's ring)")
    wait_until(lambda: names["h3"] not in ring_owners(kc, h2), 30, "h3's ranges taken over (h2's ring)")
    took = [h.name for h in (h1, h2) if f"rmpeer of {names['h3']}" in kc.log(h)]
    assert len(took) == 1, {h.name: kc.log(h)[-3000:] for h in (h1, h2)}
    assert sum(kc.log(h).count(f"[allocator] 1048576 IPs taken over from {names['h3']}") for h in (h1, h2)) <= 1
    ann = kc.api.get("ConfigMap", "weave-net", "kube-system")["metadata"]["annotations"]
    assert list(ann) == [p.PEERS_KEY]
    # the peers were replaced by the node list
    wait_until(lambda: "peers replaced by the node list" in kc.log(h1) + kc.log(h2), 30, "peers reset")
    # the routers kept running through it all
    assert all(kc.procs[(h.name, "launch")].poll() is None for h in (h1, h2))
    del p1, p2


def test_bad_api_answers_are_survived(cluster: KubeCluster) -> None:
    """500s, bodies that are not JSON, a watch that ends in 410 and a dropped connection while the routers run:
    logged, counted, retried; the routers keep running and still do their work."""
    kc = cluster
    kc.add_nodes()
    api = kc.api
    api.fault("GET", "^/api/v1/nodes$", "status", 500)  # the first peer listing: retried
    api.fault("GET", "configmaps/weave-net", "garbage", times=2)
    api.fault("PATCH", "/status", "status", 503, times=2)
    api.fault("WATCH", "^/api/v1/nodes", "gone")
    api.fault("WATCH", "^/api/v1/nodes", "garbage-event")
    h1, h2, _ = kc.nodes
    for h in (h1, h2):
        kc.start(h)
    wait_until(lambda: kc.established(h1) == 1 and kc.established(h2) == 1, 90, "h1-h2 mesh")
    wait_until(lambda: all(condition(kc, h.name).get("status") == "False" for h in (h1, h2)), 90, "conditions")
    wait_until(lambda: api.faults_left() == 0, 60, "every fault served")
    logs = kc.log(h1) + kc.log(h2)
    assert "Failed to get peers (retrying in" in logs and "Traceback" not in logs, logs
    assert "watching nodes: 410 too old resource version" in logs and "DecodeError" in logs
    assert all(kc.procs[(h.name, "launch")].poll() is None for h in (h1, h2))
    # counted on the router's /metrics (WEAVE_METRICS_ADDR)
    metrics = (
        h1.run([sys.executable, "-c", METRICS.replace("6781", "6782")]).stdout
        + h2.run([sys.executable, "-c", METRICS.replace("6781", "6782")]).stdout
    )
    failures = [float(v) for v in re.findall(r"^weavenet_kube_api_failures_total (\S+)", metrics, re.M)]
    watch = [float(v) for v in re.findall(r"^weavenet_kube_node_watch_errors_total (\S+)", metrics, re.M)]
    assert len(failures) == 2 and sum(failures) >= 4 and sum(watch) >= 1, metrics
    assert re.findall(r"^weavenet_kube_node_status_set (\S+)", metrics, re.M) == ["1.0", "1.0"]
    # the node watch still works: a node that never ran a router, deleted, is handled
    kc.api.put({"kind": "ConfigMap", "apiVersion": "v1", "metadata": {"name": "x", "namespace": "default"}})
    api.delete("Node", "h3")
    wait_until(lambda: "peers replaced by the node list" in kc.log(h1) + kc.log(h2), 60, "the node watch")
    assert json.loads(api.get("ConfigMap", "weave-net", "kube-system")["metadata"]["annotations"][p.PEERS_KEY])


def pod_object(name: str, node: str, ip: str, labels: dict[str, str]) -> dict[str, Any]:
    """The recorded pod, as kubelet reports it once the CNI plugin gave it its address."""
    obj = recorded("pod.json")
    obj["metadata"].update(name=name, labels=labels)
    obj["metadata"].pop("uid", None)
    obj["spec"]["nodeName"] = node
    obj["status"].update(podIP=ip, podIPs=[{"ip": ip}])
    return obj


def test_network_policy_from_the_api(cluster: KubeCluster) -> None:
    """A NetworkPolicy created through the API is enforced between pods on two nodes (the controller's watch,
    the router's engine, nftables), and stops being enforced when deleted."""
    from tests.integration.policy_agent import Agent

    kc = cluster
    h1, h2, _ = kc.nodes
    kc.add_nodes([h1, h2])
    kc.api.put(recorded("namespace.json"))
    h1.sh(WEAVE_NPC_LEFTOVERS)  # h1 ran Weave 2.8 with weave-npc before (an in-place move)
    for h in (h1, h2):
        kc.start(h)
        kc.start(h, "npc", "--metrics-addr=127.0.0.1:6781")
    wait_until(lambda: kc.established(h1) == 1, 90, "h1-h2 mesh")
    pods = {"a": h1, "b": h2, "c": h2}
    ips, agents = {}, {}
    try:
        for name, h in pods.items():
            _, ips[name] = cni_pod(kc, h, name)
            kc.api.put(pod_object(name, h.name, ips[name], {"pod": name}))
            agents[name] = Agent(h.containers[-1].netns)

        def reach(src: str, dst: str, port: int = 80) -> bool:
            return bool(agents[src].call({"probe": [[ips[dst], "tcp", port, 0]], "timeout": 1})[0])  # type: ignore[index]

        # no policy selects a pod: everything is allowed, once each router has the controller's first state
        wait_until(lambda: reach("b", "a") and reach("c", "a") and reach("a", "c"), 60, "default allow")
        # Weave's weave-npc rules and sets went once weavenet enforced h1's state; weavenet's own stay
        wait_until(lambda: "removed what Weave's weave-npc left" in kc.log(h1, "npc"), 30, "Weave's leftovers gone")
        rules = h1.run(["iptables", "-S"]).stdout
        assert "WEAVE-NPC" not in rules and "nflog-group 86" not in rules and "-o weave -j DROP" not in rules, rules
        assert "-A FORWARD -i weave -o weave -j ACCEPT" in rules and "WEAVE-EXPOSE" in rules
        assert h1.run(["ipset", "list", "-n"]).stdout.split() == ["weaver-no-masq-local"]
        for h in (h1, h2):
            status = h.weave("status").stdout
            assert "Source: the Kubernetes API (node " in status and "Status: enforced" in status, status
        created = time.monotonic()
        kc.api.put(recorded("networkpolicy.json"))  # a: ingress only from pod=b, TCP 80
        wait_until(lambda: not reach("c", "a"), 30, "c -> a refused")
        took = time.monotonic() - created
        assert reach("b", "a") and not reach("b", "a", 81) and reach("a", "c") and reach("a", "b", 81)
        listed = h2.weave("policy", "ls")
        assert re.search(r"^x +allow-from-b +pod=a +Ingress +\d", listed.stdout, re.M), listed.stdout
        tested = h2.weave("policy", "test", "x/c", "x/a", "80")
        assert tested.returncode == 2 and tested.stdout.startswith(f"denied: tcp {ips['c']} (x/c) -> {ips['a']} (x/a)")
        assert h2.weave("policy", "test", "x/b", "x/a", "80").returncode == 0
        refused = h2.weave("policy", "rm", "allow-from-b", "-n", "x")
        assert refused.returncode == 1 and "comes from the Kubernetes API" in refused.stderr, refused
        metrics = h1.run([sys.executable, "-c", METRICS]).stdout
        assert re.search(r'weavenpc_blocked_connections_total\{dport="80",protocol="tcp"\} [1-9]', metrics), metrics
        # the router and the controller of a's node restart while c keeps trying: never let through
        agents["c"].call({"watch": [ips["a"], 80]})
        kc.stop(h1)
        kc.start(h1)
        wait_until(lambda: kc.established(h1) == 1 and reach("b", "a"), 90, "h1's router back")
        kc.stop(h1, "npc")
        kc.start(h1, "npc", "--metrics-addr=127.0.0.1:6781")
        wait_until(lambda: "the whole state handed" in kc.log(h1, "npc").split("stopped")[-1], 60, "npc back")
        seen = agents["c"].call({"unwatch": True})
        assert seen["tries"] >= 5 and seen["ok"] == 0, seen  # type: ignore[index]
        assert reach("b", "a") and not reach("c", "a")
        kc.api.delete("NetworkPolicy", "allow-from-b", "x")
        wait_until(lambda: reach("c", "a") and reach("b", "a", 81), 30, "the policy gone")
        assert took < 10, took
        print(f"a NetworkPolicy created through the API was in force after {took:.2f}s")
    finally:
        for a in agents.values():
            a.close()
