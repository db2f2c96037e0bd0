"""Parsing NetworkPolicy and Namespace objects: the API server's defaulting, and its refusals word for word."""

from __future__ import annotations

import pytest

from weavenet.policy import (
    IPBlock,
    LabelSelector,
    Namespace,
    Peer,
    PolicyInvalid,
    PolicyPort,
    Requirement,
    parse_documents,
    parse_policy,
)


def policy(spec: object, name: str = "p", namespace: str | None = "x") -> dict:
    meta: dict = {"name": name}
    if namespace is not None:
        meta["namespace"] = namespace
    return {"apiVersion": "networking.k8s.io/v1", "kind": "NetworkPolicy", "metadata": meta, "spec": spec}


def refusal(spec: object, **kw: object) -> str:
    with pytest.raises(PolicyInvalid) as err:
        parse_policy(policy(spec, **kw))  # type: ignore[arg-type]
    return str(err.value)


def test_policy_types_default_from_the_egress_rules() -> None:
    assert parse_policy(policy({"podSelector": {}})).policy_types == {"Ingress"}
    assert parse_policy(policy({"podSelector": {}, "egress": []})).policy_types == {"Ingress"}
    assert parse_policy(policy({"podSelector": {}, "egress": [{}]})).policy_types == {"Ingress", "Egress"}
    assert parse_policy(policy({"podSelector": {}, "policyTypes": []})).policy_types == {"Ingress"}
    assert parse_policy(policy({"podSelector": {}, "policyTypes": ["Egress"]})).policy_types == {"Egress"}


def test_absent_and_empty_fields() -> None:
    p = parse_policy(policy({}))  # no podSelector: the empty selector, every pod of the namespace
    assert p.pod_selector == LabelSelector() and p.ingress == () and p.namespace == "x"
    assert parse_policy(policy({"podSelector": {}}, namespace=None)).namespace == "default"
    p = parse_policy(policy({"podSelector": {}, "ingress": [{}, {"from": [], "ports": []}]}))
    assert [(r.peers, r.ports) for r in p.ingress] == [((), ()), ((), ())]
    p = parse_policy(
        policy(
            {
                "ingress": [
                    {
                        "from": [
                            {"podSelector": {}},
                            {"namespaceSelector": {}},
                            {"podSelector": {"matchLabels": {"a": "b"}}, "namespaceSelector": None},
                            {"ipBlock": {"cidr": "10.0.0.1/8", "except": ["10.1.0.0/16"]}},
                        ],
                        "ports": [{}, {"protocol": "UDP", "port": "dns"}, {"port": 80, "endPort": 90}],
                    }
                ]
            }
        )
    )
    r = p.ingress[0]
    assert r.peers == (
        Peer(LabelSelector(), None),
        Peer(None, LabelSelector()),
        Peer(LabelSelector((("a", "b"),)), None),
        Peer(ip_block=IPBlock("10.0.0.0/8", ("10.1.0.0/16",))),
    )
    assert r.ports == (PolicyPort("TCP"), PolicyPort("UDP", "dns"), PolicyPort("TCP", 80, 90))


def test_match_expressions() -> None:
    sel = {
        "matchExpressions": [{"key": "a", "operator": "In", "values": ["1", "2"]}, {"key": "b", "operator": "Exists"}]
    }
    p = parse_policy(policy({"podSelector": sel}))
    assert p.pod_selector.match_expressions == (Requirement("a", "In", ("1", "2")), Requirement("b", "Exists"))
    assert p.pod_selector.matches({"a": "2", "b": ""}) and not p.pod_selector.matches({"a": "3", "b": "x"})
    assert Requirement("a", "NotIn", ("1",)).matches({}) and not Requirement("a", "DoesNotExist").matches({"a": ""})


REFUSED = [
    (
        {"ingress": [{"ports": [{"port": 0}]}]},
        "spec.ingress[0].ports[0].port: Invalid value: 0: must be between 1 and 65535, inclusive",
    ),
    (
        {"ingress": [{"ports": [{"port": 70000}]}]},
        "spec.ingress[0].ports[0].port: Invalid value: 70000: must be between 1 and 65535, inclusive",
    ),
    (
        {"egress": [{"ports": [{"protocol": "ICMP"}]}]},
        'spec.egress[0].ports[0].protocol: Unsupported value: "ICMP": supported values: "TCP", "UDP", "SCTP"',
    ),
    (
        {"ingress": [{"ports": [{"port": "Http"}]}]},
        'spec.ingress[0].ports[0].port: Invalid value: "Http": must contain only alpha-numeric characters '
        "(a-z, 0-9), and hyphens (-)",
    ),
    (
        {"ingress": [{"ports": [{"port": "80"}]}]},
        'spec.ingress[0].ports[0].port: Invalid value: "80": must contain at least one letter (a-z)',
    ),
    (
        {"ingress": [{"ports": [{"port": 90, "endPort": 80}]}]},
        "spec.ingress[0].ports[0].endPort: Invalid value: 90: must be greater than or equal to `port`",
    ),
    (
        {"ingress": [{"ports": [{"port": "web", "endPort": 80}]}]},
        "spec.ingress[0].ports[0].endPort: Invalid value: 80: may not be specified when `port` is non-numeric",
    ),
    (
        {"ingress": [{"ports": [{"endPort": 80}]}]},
        "spec.ingress[0].ports[0].endPort: Invalid value: 80: may not be specified when `port` is not specified",
    ),
    ({"ingress": [{"from": [{}]}]}, "spec.ingress[0].from[0]: Required value: must specify a peer"),
    (
        {"egress": [{"to": [{"ipBlock": {"cidr": "10.0.0.0/8"}, "podSelector": {}}]}]},
        "spec.egress[0].to[0]: Forbidden: may not specify both ipBlock and another peer",
    ),
    ({"ingress": [{"from": [{"ipBlock": {}}]}]}, "spec.ingress[0].from[0].ipBlock.cidr: Required value"),
    (
        {"ingress": [{"from": [{"ipBlock": {"cidr": "10.0.0.0"}}]}]},
        'spec.ingress[0].from[0].ipBlock.cidr: Invalid value: "10.0.0.0": must be a valid CIDR value, '
        "(e.g. 10.9.8.0/24 or 2001:db8::/64)",
    ),
    (
        {"ingress": [{"from": [{"ipBlock": {"cidr": "10.0.0.0/24", "except": ["10.0.0.0/24"]}}]}]},
        'spec.ingress[0].from[0].ipBlock.except[0]: Invalid value: "10.0.0.0/24": must be a strict subset of `cidr`',
    ),
    (
        {"ingress": [{"from": [{"ipBlock": {"cidr": "10.0.0.0/24", "except": ["10.9.0.0/28"]}}]}]},
        'spec.ingress[0].from[0].ipBlock.except[0]: Invalid value: "10.9.0.0/28": must be a strict subset of `cidr`',
    ),
    (
        {"podSelector": {"matchExpressions": [{"key": "a", "operator": "In"}]}},
        "spec.podSelector.matchExpressions[0].values: Required value: must be specified when `operator` is 'In' or "
        "'NotIn'",
    ),
    (
        {"podSelector": {"matchExpressions": [{"key": "a", "operator": "Exists", "values": ["x"]}]}},
        "spec.podSelector.matchExpressions[0].values: Forbidden: may not be specified when `operator` is 'Exists' or "
        "'DoesNotExist'",
    ),
    (
        {"podSelector": {"matchExpressions": [{"key": "a", "operator": "Has"}]}},
        'spec.podSelector.matchExpressions[0].operator: Invalid value: "Has": not a valid selector operator',
    ),
    (
        {"podSelector": {"matchLabels": {"a b": "c"}}},
        'spec.podSelector.matchLabels: Invalid value: "a b": name part must consist of alphanumeric characters, '
        "'-', '_' or '.', and must start and end with an alphanumeric character (e.g. 'MyName',  or 'my.name',  or "
        "'123-abc', regex used for validation is '([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9]')",
    ),
    (
        {"ingress": [{"from": [{"namespaceSelector": {"matchLabels": {"a": "-x"}}}]}]},
        'spec.ingress[0].from[0].namespaceSelector.matchLabels: Invalid value: "-x": a valid label must be an empty '
        "string or consist of alphanumeric characters, '-', '_' or '.', and must start and end with an alphanumeric "
        "character (e.g. 'MyValue',  or 'my_value',  or '12345', regex used for validation is "
        "'(([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9])?')",
    ),
    (
        {"policyTypes": ["Ingress", "Sideways"]},
        'spec.policyTypes[1]: Unsupported value: "Sideways": supported values: "Ingress", "Egress"',
    ),
    (
        {"policyTypes": ["Ingress", "Egress", "Ingress"]},
        'spec.policyTypes: Invalid value: ["Ingress","Egress","Ingress"]: may not specify more than two policyTypes',
    ),
    # a misspelt field is refused, not read as absent (``form`` would open the pod to every peer)
    ({"ingress": [{"form": []}]}, 'spec.ingress[0]: Invalid value: "form": unknown field'),
    # found by the fuzz suite: a field name with a newline went into the path, and the message had two lines
    ({"podSelector": {"matchLabels": {}, "\n": None}}, 'spec.podSelector: Invalid value: "\\n": unknown field'),
    ({"ingress": {"from": []}}, 'spec.ingress: Invalid value: {"from":[]}: must be a list'),
]


@pytest.mark.parametrize(("spec", "message"), REFUSED)
def test_refusals_say_field_and_reason_as_kubectl(spec: dict, message: str) -> None:
    assert refusal(spec) == f'The NetworkPolicy "p" is invalid: {message}'


def test_several_errors_are_listed_together_and_metadata_is_checked() -> None:
    msg = refusal({"ingress": [{"ports": [{"port": 0}, {"protocol": "X"}]}]}, name="Bad_Name")
    assert msg.startswith('The NetworkPolicy "Bad_Name" is invalid: [metadata.name: Invalid value: "Bad_Name": a ')
    assert "spec.ingress[0].ports[0].port: Invalid value: 0" in msg
    assert 'spec.ingress[0].ports[1].protocol: Unsupported value: "X"' in msg and msg.endswith("]")
    assert (
        refusal({}, name="")
        == 'The NetworkPolicy "" is invalid: metadata.name: Required value: name or generateName is required'
    )


def test_documents_namespaces_lists_and_wrong_kinds() -> None:
    text = """
apiVersion: v1
kind: Namespace
metadata: {name: y, labels: {team: blue}}
---
apiVersion: v1
kind: List
items:
- {apiVersion: networking.k8s.io/v1, kind: NetworkPolicy, metadata: {name: deny, namespace: y}, spec: {}}
---
"""
    objs = parse_documents(text)
    assert objs[0] == Namespace("y", {"team": "blue"}) and objs[1].name == "deny"  # type: ignore[union-attr]
    with pytest.raises(PolicyInvalid, match='no matches for kind "NetworkPolicy" in version "extensions/v1beta1"'):
        parse_documents("apiVersion: extensions/v1beta1\nkind: NetworkPolicy\nmetadata: {name: a}\n")
    with pytest.raises(PolicyInvalid, match="error converting YAML to JSON: yaml: line 2"):
        parse_documents("a: b\n  c: : d\n")
    with pytest.raises(PolicyInvalid, match="Object 'Kind' is missing"):
        parse_documents("metadata: {name: a}\n")


def test_yaml_aliases_cannot_make_a_document_grow_without_bound() -> None:
    """YAML anchors and aliases share nodes: ten levels of ten aliases are 10^10 values once walked (in an error
    message, or the stored JSON), which a kilobyte of manifest must not cost; kubectl's YAML refuses it too."""
    import time

    levels = ["a0: &a0 [x, x, x, x, x, x, x, x, x, x]"]
    levels += [f"a{i}: &a{i} [" + ", ".join([f"*a{i - 1}"] * 10) + "]" for i in range(1, 10)]
    text = (
        "apiVersion: networking.k8s.io/v1\nkind: NetworkPolicy\nmetadata:\n  name: p\n  annotations:\n"
        + "\n".join("    " + line for line in levels)
        + "\nspec:\n  podSelector: {}\n  policyTypes: *a9\n"
    )
    start = time.monotonic()
    with pytest.raises(PolicyInvalid) as e:
        parse_documents(text)
    assert time.monotonic() - start < 5
    assert str(e.value) == (
        'The document "" is invalid: error converting YAML to JSON: yaml: document contains excessive aliasing'
    )
    shared = "metadata:\n  name: p\n  labels: &l {a: b}\n  annotations: *l\nspec: {podSelector: {matchLabels: *l}}\n"
    (policy,) = parse_documents("apiVersion: networking.k8s.io/v1\nkind: NetworkPolicy\n" + shared)
    assert policy.pod_selector.match_labels == (("a", "b"),)  # a few aliases are fine
