"""Fuzz what Kubernetes mode reads from outside: Weave's peer list annotation (any pod of the cluster, Go's or
ours, writes it) and the policy controller's states and changes (``PUT``/``PATCH /policy/kubernetes``). The
peer list decoder accepts or refuses with ``PeerListError`` and nothing else, and what it accepts encodes and
decodes back to itself; the router's Kubernetes source takes a state or change or refuses it whole with
``FeedError``, and its snapshot always compiles."""

from __future__ import annotations

import copy
import json
from typing import Any

from hypothesis import given
from hypothesis import strategies as st

from tests.fuzz.budget import fuzz
from weavenet.kube.peers import PeerListError, decode_peer_list, encode_peer_list
from weavenet.policy import compile_state
from weavenet.policy.kube_source import FeedError, KubeSource

JSONISH = st.recursive(
    st.none() | st.booleans() | st.integers(-(2**40), 2**40) | st.floats(allow_nan=False) | st.text(max_size=20),
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=12), inner, max_size=4),
    max_leaves=20,
)
PEERS = st.lists(
    st.fixed_dictionaries({"PeerName": st.text(max_size=20), "NodeName": st.text(max_size=20)}), max_size=5
)


@fuzz(600)
@given(st.one_of(st.text(max_size=200), JSONISH.map(json.dumps), PEERS.map(lambda p: json.dumps({"Peers": p}))))
def test_peer_list_annotation(text: str) -> None:
    try:
        pl = decode_peer_list(text)
    except PeerListError as e:
        assert str(e)
        return
    assert decode_peer_list(encode_peer_list(pl)) == pl


POD = {"Namespace": "x", "Name": "a", "Labels": {"pod": "a"}, "IPs": ["10.32.0.2"], "Node": "n1",
       "Ports": [{"Name": "http", "Port": 80, "Protocol": "TCP"}]}  # fmt: skip
POLICY = {
    "apiVersion": "networking.k8s.io/v1",
    "kind": "NetworkPolicy",
    "metadata": {"name": "p", "namespace": "x"},
    "spec": {"podSelector": {"matchLabels": {"pod": "a"}}, "ingress": [{"ports": [{"port": "http"}]}]},
}
STATE = {"Session": "s", "Seq": 0, "Node": "n1", "Namespaces": [{"apiVersion": "v1", "kind": "Namespace",
         "metadata": {"name": "x", "labels": {"t": "b"}}}], "NetworkPolicies": [POLICY], "Pods": [POD]}  # fmt: skip


def paths(obj: Any, prefix: tuple[Any, ...] = ()) -> list[tuple[Any, ...]]:
    out = [prefix]
    if isinstance(obj, dict):
        for k, v in obj.items():
            out += paths(v, (*prefix, k))
    elif isinstance(obj, list):
        for i, v in enumerate(obj):
            out += paths(v, (*prefix, i))
    return out


def replaced(doc: Any, path: tuple[Any, ...], value: Any) -> Any:
    if not path:
        return value
    out = copy.deepcopy(doc)
    cur = out
    for k in path[:-1]:
        cur = cur[k]
    cur[path[-1]] = value
    return out


@fuzz(600)
@given(st.sampled_from(paths(STATE)), JSONISH, st.booleans())
def test_policy_controller_states(path: tuple[Any, ...], value: Any, as_change: bool) -> None:
    k = KubeSource("aa:00:00:00:00:01")
    k.replace(STATE)
    before = (k.generation, k.seq, dict(k.pods), dict(k.policies), dict(k.namespaces))
    body = replaced(STATE, path, value)
    try:
        if as_change:
            change = {"Session": "s", "Seq": 1, "Set": {kind: body.get(kind, []) for kind in ("Pods",
                      "NetworkPolicies", "Namespaces")} if isinstance(body, dict) else body}  # fmt: skip
            k.patch(change)
        else:
            k.replace(body)
    except FeedError as e:
        assert str(e)
        assert (k.generation, k.seq, dict(k.pods), dict(k.policies), dict(k.namespaces)) == before
        return
    compile_state(k.snapshot(), "aa:00:00:00:00:01")
