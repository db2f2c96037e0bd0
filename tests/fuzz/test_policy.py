"""Fuzz the NetworkPolicy parser (what ``weave policy apply -f`` and the Kubernetes watch hand it): any text, and
valid policies with fields replaced by values of every type. It accepts or refuses with ``PolicyInvalid`` and
nothing else; every refusal names a field path (or the document) and a reason; what it accepts compiles and
renders into an nftables script."""

from __future__ import annotations

import copy
from typing import Any

import yaml
from hypothesis import given
from hypothesis import strategies as st

from tests.fuzz.budget import fuzz
from weavenet.policy import (
    ContainerPort,
    Namespace,
    NetworkPolicy,
    Pod,
    PolicyInvalid,
    Snapshot,
    compile_state,
    nft,
    parse_documents,
    parse_policy,
)

SEED = {
    "apiVersion": "networking.k8s.io/v1",
    "kind": "NetworkPolicy",
    "metadata": {"name": "p", "namespace": "x", "labels": {"a": "b"}},
    "spec": {
        "podSelector": {
            "matchLabels": {"pod": "a"},
            "matchExpressions": [{"key": "k", "operator": "In", "values": ["v"]}],
        },
        "policyTypes": ["Ingress", "Egress"],
        "ingress": [
            {
                "from": [
                    {"podSelector": {}, "namespaceSelector": {"matchLabels": {"ns": "y"}}},
                    {"ipBlock": {"cidr": "10.0.0.0/8", "except": ["10.1.0.0/16"]}},
                ],
                "ports": [{"protocol": "TCP", "port": 80, "endPort": 90}, {"port": "web"}],
            }
        ],
        "egress": [{"to": [{"namespaceSelector": {}}], "ports": [{"protocol": "UDP", "port": 53}]}],
    },
}
SNAP_PODS = (
    Pod("x", "a", {"pod": "a", "k": "v"}, ("10.1.0.1",), (ContainerPort("web", 8080),), "h"),
    Pod("y", "b", {"pod": "b"}, ("10.2.0.1",), (), "h2"),
)


def paths(obj: Any, prefix: tuple = ()) -> list[tuple]:
    out = [prefix]
    if isinstance(obj, dict):
        for k, v in obj.items():
            out += paths(v, (*prefix, k))
    elif isinstance(obj, list):
        for i, v in enumerate(obj):
            out += paths(v, (*prefix, i))
    return out


ALL_PATHS = [p for p in paths(SEED) if p]
VALUES = st.recursive(
    st.none()
    | st.booleans()
    | st.integers(-(2**40), 2**40)
    | st.floats(allow_nan=True)
    | st.text(max_size=20)
    | st.sampled_from(["", "Ingress", "TCP", "In", "10.0.0.0/33", "::/0", "web", "-", "a/b/c", "0", "80"]),
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=8) | st.integers(), inner, max_size=3),
    max_leaves=6,
)


def check_accepted(pol: NetworkPolicy) -> None:
    snap = Snapshot((Namespace("y", {"ns": "y"}),), SNAP_PODS, (pol,))
    state = compile_state(snap, "h")
    assert nft.full_script(state).startswith("add table inet weavenet-npc")


def check_refused(err: PolicyInvalid) -> None:
    assert err.errors and str(err).startswith(f"The {err.kind} ")
    for e in err.errors:
        assert e and "\n" not in e and e.strip() == e
        if e.startswith(("spec", "metadata")):
            assert ": " in e  # a field path, then the reason


@fuzz(400)
@given(st.lists(st.tuples(st.sampled_from(ALL_PATHS), VALUES), min_size=1, max_size=3))
def test_mutated_policies_are_accepted_or_refused_with_a_field(changes: list[tuple[tuple, Any]]) -> None:
    obj = copy.deepcopy(SEED)
    for path, value in changes:
        node: Any = obj
        try:
            for k in path[:-1]:
                node = node[k]
            node[path[-1]] = value
        except (KeyError, IndexError, TypeError):
            continue
    try:
        pol = parse_policy(obj)
    except PolicyInvalid as err:
        check_refused(err)
        return
    check_accepted(pol)


@fuzz(300)
@given(st.text(max_size=300) | st.builds(lambda v: yaml.safe_dump(v), VALUES))
def test_any_text(text: str) -> None:
    try:
        objs = parse_documents(text)
    except PolicyInvalid as err:
        check_refused(err)
        return
    for o in objs:
        if isinstance(o, NetworkPolicy):
            check_accepted(o)
