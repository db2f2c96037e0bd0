"""The router's copy of the Kubernetes policy controller's state (``weavenet.policy.kube_source``)."""

from __future__ import annotations

from typing import Any

import pytest

from weavenet.policy import compile_state, decide
from weavenet.policy.kube_source import FeedError, KubeSource

ME = "aa:bb:cc:dd:ee:01"


def ns(name: str, **labels: str) -> dict[str, Any]:
    return {"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": name, "labels": labels}}


def policy(name: str, spec: dict[str, Any], namespace: str = "x") -> dict[str, Any]:
    return {
        "apiVersion": "networking.k8s.io/v1",
        "kind": "NetworkPolicy",
        "metadata": {"name": name, "namespace": namespace},
        "spec": spec,
    }


def pod(name: str, ip: str, node: str, namespace: str = "x", **labels: str) -> dict[str, Any]:
    return {"Namespace": namespace, "Name": name, "Labels": labels, "IPs": [ip], "Node": node,
            "Ports": [{"Name": "http", "Port": 80, "Protocol": "TCP"}]}  # fmt: skip


DENY_A = policy("deny-a", {"podSelector": {"matchLabels": {"pod": "a"}}, "policyTypes": ["Ingress"]})


def whole(seq: int = 0, session: str = "s1", **kw: Any) -> dict[str, Any]:
    body: dict[str, Any] = {
        "Session": session,
        "Seq": seq,
        "Node": "node-1",
        "Namespaces": [ns("x", team="blue")],
        "NetworkPolicies": [DENY_A],
        "Pods": [pod("a", "10.32.0.2", "node-1", pod="a"), pod("b", "10.44.0.2", "node-2", pod="b")],
    }
    return {**body, **kw}


def test_a_whole_state_and_this_nodes_pods() -> None:
    k = KubeSource(ME)
    assert not k.synced and k.snapshot().pods == ()
    assert k.replace(whole())
    assert k.synced and k.generation == 1 and k.local_pods() == 1
    snap = k.snapshot()
    assert {(p.name, p.host) for p in snap.pods} == {("a", ME), ("b", "node-2")}  # ours by the router's name
    assert [n.name for n in snap.namespaces] == ["x"] and [p.name for p in snap.policies] == ["deny-a"]
    assert not decide(snap, "10.44.0.2", "10.32.0.2", "TCP", 80).allowed
    assert decide(snap, "10.32.0.2", "10.44.0.2", "TCP", 80).allowed
    assert compile_state(snap, ME).sets["ingress-isolated"].elements == {"10.32.0.2"}  # a is isolated here
    assert not compile_state(snap, "node-2").sets["ingress-isolated"].elements  # node-2 has b, not isolated


def test_changes_in_step_and_out_of_step() -> None:
    k = KubeSource(ME)
    assert not k.patch({"Session": "s1", "Seq": 1})  # no whole state yet
    k.replace(whole(seq=3))
    assert not k.patch({"Session": "s1", "Seq": 5})  # one went missing
    assert not k.patch({"Session": "s2", "Seq": 4})  # another run of the controller
    assert k.generation == 1
    assert k.patch({"Session": "s1", "Seq": 4, "Set": {"Pods": [pod("c", "10.32.0.3", "node-1", pod="c")]},
                    "Delete": {"Pods": ["x/b"], "NetworkPolicies": ["x/deny-a"]}})  # fmt: skip
    snap = k.snapshot()
    assert sorted(p.name for p in snap.pods) == ["a", "c"] and snap.policies == ()
    assert k.generation == 2 and k.seq == 4
    assert k.patch({"Session": "s1", "Seq": 5})  # an empty change (the heartbeat)
    assert not k.patch({"Session": "s1", "Seq": 5})  # replayed


def test_a_policy_this_version_cannot_use_is_said_and_not_enforced() -> None:
    odd = policy("odd", {"podSelector": {}, "futureField": {}})
    k = KubeSource(ME)
    k.replace(whole(NetworkPolicies=[DENY_A, odd]))
    assert [p.name for p in k.snapshot().policies] == ["deny-a"]
    assert "x/odd" in k.unusable and "futureField" in k.unusable["x/odd"]
    # deny-a changed into something unusable: the old version goes too (not enforced stale), and back again
    assert k.patch({"Session": "s1", "Seq": 1, "Set": {"NetworkPolicies": [policy("deny-a", {"bogus": 1})]}})
    assert k.snapshot().policies == () and "x/deny-a" in k.unusable
    assert k.patch({"Session": "s1", "Seq": 2, "Set": {"NetworkPolicies": [DENY_A]}})
    assert [p.name for p in k.snapshot().policies] == ["deny-a"] and "x/deny-a" not in k.unusable


def test_a_whole_state_in_parts_is_taken_at_its_last() -> None:
    k = KubeSource(ME)
    k.replace(whole(seq=0))
    first = whole(seq=1, Final=False, Pods=[pod("p1", "10.32.0.9", "node-1")])
    assert not k.replace(first)
    assert k.generation == 1 and len(k.pods) == 2  # the state in force is still the old one
    assert k.replace({"Session": "s1", "Seq": 1, "Node": "node-1", "Pods": [pod("p2", "10.32.0.10", "node-3")]})
    assert sorted(k.pods) == [("x", "p1"), ("x", "p2")] and [n.name for n in k.snapshot().namespaces] == ["x"]
    # a part of another state is not mixed in
    k.replace(whole(seq=2, Final=False, Pods=[pod("q", "10.32.0.11", "node-1")]))
    assert k.replace(whole(seq=3, Pods=[]))
    assert k.pods == {}


@pytest.mark.parametrize(
    ("body", "words"),
    [
        ([], "the state: an object"),
        ({"Seq": 0, "Node": "n"}, "Session"),
        ({"Session": "s", "Seq": -1, "Node": "n"}, "Seq"),
        ({"Session": "s", "Seq": True, "Node": "n"}, "Seq"),
        ({"Session": "s", "Seq": 0}, "Node"),
        ({"Session": "s", "Seq": 0, "Node": "n", "AllowMcast": "yes"}, "AllowMcast"),
        ({"Session": "s", "Seq": 0, "Node": "n", "Pods": {}}, "Pods: a list"),
        ({"Session": "s", "Seq": 0, "Node": "n", "Pods": [{"Namespace": "x"}]}, r"Pods\[0\]: Namespace and Name"),
        ({"Session": "s", "Seq": 0, "Node": "n", "Pods": [{"Namespace": "x", "Name": "a", "IPs": ["nope"]}]}, "IPs"),
        ({"Session": "s", "Seq": 0, "Node": "n", "Pods": [{"Namespace": "x", "Name": "a", "Labels": {"a": 1}}]},
         "Labels"),
        ({"Session": "s", "Seq": 0, "Node": "n", "Pods": [{"Namespace": "x", "Name": "a",
          "Ports": [{"Name": "p", "Port": 1, "Protocol": "ICMP"}]}]}, "Protocol"),
        ({"Session": "s", "Seq": 0, "Node": "n", "Namespaces": [ns("Bad_Name")]}, r"Namespaces\[0\]"),
        # found by tests/fuzz/test_kube.py: a TypeError, and an int taken for an address
        ({"Session": "s", "Seq": 0, "Node": "n", "Pods": [{"Namespace": "x", "Name": "a", "Ports": True}]}, "Ports"),
        ({"Session": "s", "Seq": 0, "Node": "n", "Pods": [{"Namespace": "x", "Name": "a", "IPs": [5]}]}, "IPs"),
    ],
)  # fmt: skip
def test_malformed_states_are_refused_whole(body: object, words: str) -> None:
    k = KubeSource(ME)
    k.replace(whole())
    with pytest.raises(FeedError, match=words):
        k.replace(body)
    assert k.synced and k.generation == 1 and len(k.pods) == 2  # nothing changed


def test_malformed_changes_are_refused_whole() -> None:
    k = KubeSource(ME)
    k.replace(whole())
    with pytest.raises(FeedError, match=r"Delete\.Pods"):
        k.patch({"Session": "s1", "Seq": 1, "Delete": {"Pods": "x/a"}})
    with pytest.raises(FeedError, match=r"Set\.Pods"):
        k.patch({"Session": "s1", "Seq": 1, "Set": {"Pods": [1]}})
    assert k.seq == 0 and k.generation == 1


def test_ipv6_addresses_are_left_out() -> None:
    k = KubeSource(ME)
    p = pod("a", "10.32.0.2", "node-1")
    p["IPs"] = ["10.32.0.2", "fd00::2"]
    k.replace(whole(Pods=[p]))
    assert k.snapshot().pods[0].ips == ("10.32.0.2",)
