"""NetworkPolicy and Namespace objects from YAML or JSON, checked as the API server checks them.

The checks follow ``ValidateNetworkPolicy`` (object meta, pod selector, each rule's ports then peers, ingress
before egress, then ``policyTypes``) and report every error found, each with its field path. Fields the API does
not define are refused as the API server's strict decoding refuses them: a misspelt ``form:`` would otherwise read
as an absent ``from:`` and open the pod to everyone.

Defaulting is done here, once, as the API server does it: ``protocol`` TCP, and ``policyTypes`` (when absent or
empty) Ingress plus Egress if ``egress`` has any rule.
"""

from __future__ import annotations

import ipaddress
from collections.abc import Iterator
from typing import Any

import yaml

from weavenet.policy.model import (
    EGRESS,
    INGRESS,
    PROTOCOLS,
    IPBlock,
    LabelSelector,
    Namespace,
    NetworkPolicy,
    Peer,
    PolicyPort,
    PolicyRule,
    Requirement,
)
from weavenet.policy.validation import (
    FORBIDDEN,
    INVALID,
    REQUIRED,
    UNSUPPORTED,
    FieldError,
    PolicyInvalid,
    dns1123_label,
    dns1123_subdomain,
    label_value,
    port_name,
    port_number,
    qualified_name,
)

POLICY_API = "networking.k8s.io/v1"
OPERATORS = ("In", "NotIn", "Exists", "DoesNotExist")
_META_FIELDS = {
    "name", "generateName", "namespace", "labels", "annotations", "uid", "resourceVersion", "generation",
    "creationTimestamp", "deletionTimestamp", "deletionGracePeriodSeconds", "ownerReferences", "finalizers",
    "managedFields", "selfLink",
}  # fmt: skip
MAX_VALUES = 100_000  # values of one document, aliases expanded (see load_documents)
_NO_VALUES = "may not be specified when `operator` is 'Exists' or 'DoesNotExist'"
_CIDR_MSG = "must be a valid CIDR value, (e.g. 10.9.8.0/24 or 2001:db8::/64)"


class _Errors:
    """Collects field errors while walking an object; type mismatches become errors, never exceptions."""

    def __init__(self) -> None:
        self.list: list[FieldError] = []

    def add(self, path: str, kind: str, detail: str = "", value: object = None) -> None:
        self.list.append(FieldError(path, kind, detail, value))

    def mapping(self, obj: object, path: str, known: set[str] | None = None) -> dict[str, Any] | None:
        """``obj`` as a mapping (None if null); unknown keys are refused."""
        if obj is None:
            return None
        if not isinstance(obj, dict):
            self.add(path, INVALID, "must be an object", obj)
            return None
        out = {}
        for k, v in obj.items():
            if not isinstance(k, str):
                self.add(path, INVALID, "field names must be strings", k)
                continue
            if known is not None and k not in known:
                # the name goes in quoted as the value, never into the path: it may hold anything, newlines too
                self.add(path or "<object>", INVALID, "unknown field", k)
                continue
            out[k] = v
        return out

    def items(self, obj: object, path: str) -> Iterator[tuple[str, Any]]:
        """The entries of a list (none if null)."""
        if obj is None:
            return
        if not isinstance(obj, list):
            self.add(path, INVALID, "must be a list", obj)
            return
        for i, v in enumerate(obj):
            yield f"{path}[{i}]", v

    def string(self, obj: object, path: str) -> str | None:
        if obj is None:
            return None
        if not isinstance(obj, str):
            self.add(path, INVALID, "must be a string", obj)
            return None
        return obj


def _labels(e: _Errors, obj: object, path: str) -> tuple[tuple[str, str], ...]:
    m = e.mapping(obj, path)
    out = []
    for k, v in (m or {}).items():
        for msg in qualified_name(k):
            e.add(path, INVALID, msg, k)
        if not isinstance(v, str):
            e.add(path, INVALID, "label values must be strings", v)
            continue
        for msg in label_value(v):
            e.add(path, INVALID, msg, v)
        out.append((k, v))
    return tuple(sorted(out))


def _selector(e: _Errors, obj: object, path: str) -> LabelSelector | None:
    m = e.mapping(obj, path, {"matchLabels", "matchExpressions"})
    if m is None:
        return None
    match_labels = _labels(e, m.get("matchLabels"), f"{path}.matchLabels")
    reqs = []
    for rpath, robj in e.items(m.get("matchExpressions"), f"{path}.matchExpressions"):
        r = e.mapping(robj, rpath, {"key", "operator", "values"})
        if r is None:
            continue
        key = e.string(r.get("key"), f"{rpath}.key") or ""
        op = e.string(r.get("operator"), f"{rpath}.operator") or ""
        values = [v for _, v in e.items(r.get("values"), f"{rpath}.values")]
        if op in ("In", "NotIn"):
            if not values:
                e.add(f"{rpath}.values", REQUIRED, "must be specified when `operator` is 'In' or 'NotIn'")
        elif op in ("Exists", "DoesNotExist"):
            if values:
                e.add(f"{rpath}.values", FORBIDDEN, _NO_VALUES)
        else:
            e.add(f"{rpath}.operator", INVALID, "not a valid selector operator", op)
        for msg in qualified_name(key):
            e.add(f"{rpath}.key", INVALID, msg, key)
        good = []
        for i, v in enumerate(values):
            if not isinstance(v, str):
                e.add(f"{rpath}.values[{i}]", INVALID, "must be a string", v)
                continue
            for msg in label_value(v):
                e.add(f"{rpath}.values[{i}]", INVALID, msg, v)
            good.append(v)
        reqs.append(Requirement(key, op, tuple(good)))
    return LabelSelector(match_labels, tuple(reqs))


def _cidr(text: str) -> ipaddress.IPv4Network | ipaddress.IPv6Network | None:
    """Go's ParseCIDR: an address, '/', a prefix length; host bits may be set (they are masked off)."""
    if "/" not in text:
        return None
    addr, _, plen = text.partition("/")
    if not plen.isascii() or not plen.isdigit() or (len(plen) > 1 and plen[0] == "0"):
        return None
    try:
        ip = ipaddress.ip_address(addr)
        return ipaddress.ip_network(f"{ip}/{int(plen)}", strict=False)
    except ValueError:
        return None


def _ip_block(e: _Errors, obj: object, path: str) -> IPBlock | None:
    m = e.mapping(obj, path, {"cidr", "except"})
    if m is None:
        return None
    cidr = e.string(m.get("cidr"), f"{path}.cidr") or ""
    excepts = []
    for epath, ex in e.items(m.get("except"), f"{path}.except"):
        s = e.string(ex, epath)
        if s is not None:
            excepts.append((epath, s))
    if not cidr:
        e.add(f"{path}.cidr", REQUIRED)
        return IPBlock("0.0.0.0/32")
    net = _cidr(cidr)
    if net is None:
        e.add(f"{path}.cidr", INVALID, _CIDR_MSG, cidr)
        return IPBlock("0.0.0.0/32")
    good = []
    for epath, s in excepts:
        ex_net = _cidr(s)
        if ex_net is None:
            e.add(epath, INVALID, _CIDR_MSG, s)
            continue
        if ex_net.version != net.version or ex_net.network_address not in net or net.prefixlen >= ex_net.prefixlen:
            e.add(epath, INVALID, "must be a strict subset of `cidr`", s)
            continue
        good.append(str(ex_net))
    return IPBlock(str(net), tuple(good))


def _peer(e: _Errors, obj: object, path: str) -> Peer:
    m = e.mapping(obj, path, {"podSelector", "namespaceSelector", "ipBlock"}) or {}
    pods = _selector(e, m.get("podSelector"), f"{path}.podSelector")
    nss = _selector(e, m.get("namespaceSelector"), f"{path}.namespaceSelector")
    block = _ip_block(e, m.get("ipBlock"), f"{path}.ipBlock")
    n = sum(x is not None for x in (pods, nss, block))
    if n == 0:
        e.add(path, REQUIRED, "must specify a peer")
    elif n > 1 and block is not None:
        e.add(path, FORBIDDEN, "may not specify both ipBlock and another peer")
    return Peer(pods, nss, block)


def _port(e: _Errors, obj: object, path: str) -> PolicyPort:
    m = e.mapping(obj, path, {"protocol", "port", "endPort"}) or {}
    proto = m.get("protocol")
    if proto is None:
        proto = "TCP"
    elif proto not in PROTOCOLS:
        e.add(f"{path}.protocol", UNSUPPORTED, 'supported values: "TCP", "UDP", "SCTP"', proto)
        proto = "TCP"
    port = m.get("port")
    end = m.get("endPort")
    if end is not None and (isinstance(end, bool) or not isinstance(end, int)):
        e.add(f"{path}.endPort", INVALID, "must be an integer", end)
        end = None
    if port is None:
        if end is not None:
            e.add(f"{path}.endPort", INVALID, "may not be specified when `port` is not specified", end)
        return PolicyPort(proto, None, None)
    if isinstance(port, int) and not isinstance(port, bool):
        for msg in port_number(port):
            e.add(f"{path}.port", INVALID, msg, port)
        if end is not None:
            if end < port:
                e.add(f"{path}.endPort", INVALID, "must be greater than or equal to `port`", port)
            for msg in port_number(end):
                e.add(f"{path}.endPort", INVALID, msg, end)
        return PolicyPort(proto, port, end)
    if isinstance(port, str):
        if end is not None:
            e.add(f"{path}.endPort", INVALID, "may not be specified when `port` is non-numeric", end)
        for msg in port_name(port):
            e.add(f"{path}.port", INVALID, msg, port)
        return PolicyPort(proto, port, None)
    e.add(f"{path}.port", INVALID, "must be an integer or a string", port)
    return PolicyPort(proto, None, None)


def _rules(e: _Errors, obj: object, path: str, peers_field: str) -> tuple[PolicyRule, ...] | None:
    if obj is None:
        return None
    rules = []
    for rpath, robj in e.items(obj, path):
        m = e.mapping(robj, rpath, {"ports", peers_field}) or {}
        ports = tuple(_port(e, p, pp) for pp, p in e.items(m.get("ports"), f"{rpath}.ports"))
        peers = tuple(_peer(e, p, pp) for pp, p in e.items(m.get(peers_field), f"{rpath}.{peers_field}"))
        rules.append(PolicyRule(peers, ports))
    return tuple(rules)


def _meta(
    e: _Errors, obj: dict[str, Any], namespaced: bool, default_namespace: str
) -> tuple[str, str, dict[str, str]]:
    m = e.mapping(obj.get("metadata"), "metadata", _META_FIELDS) or {}
    name = e.string(m.get("name"), "metadata.name") or ""
    if not name:
        e.add("metadata.name", REQUIRED, "name or generateName is required")
    else:
        check = dns1123_subdomain if namespaced else dns1123_label
        for msg in check(name):
            e.add("metadata.name", INVALID, msg, name)
    namespace = ""
    if namespaced:
        namespace = e.string(m.get("namespace"), "metadata.namespace") or default_namespace
        for msg in dns1123_label(namespace):
            e.add("metadata.namespace", INVALID, msg, namespace)
    labels = dict(_labels(e, m.get("labels"), "metadata.labels"))
    return name, namespace, labels


def _kind_of(obj: object) -> tuple[str, str]:
    if not isinstance(obj, dict):
        raise PolicyInvalid("object", "", ["an object is required (a mapping with apiVersion, kind and metadata)"])
    kind, api = obj.get("kind"), obj.get("apiVersion")
    if not isinstance(kind, str) or not kind:
        raise PolicyInvalid("object", _name_of(obj), ["Object 'Kind' is missing"])
    if not isinstance(api, str) or not api:
        raise PolicyInvalid(kind, _name_of(obj), ["Object 'apiVersion' is missing"])
    return kind, api


def _name_of(obj: dict[str, Any]) -> str:
    meta = obj.get("metadata")
    name = meta.get("name") if isinstance(meta, dict) else None
    return name if isinstance(name, str) else ""


def parse_policy(obj: object, default_namespace: str = "default") -> NetworkPolicy:
    """A ``networking.k8s.io/v1`` NetworkPolicy object (parsed YAML/JSON) as a defaulted :class:`NetworkPolicy`;
    :class:`PolicyInvalid` lists every error if the API server would refuse it."""
    kind, api = _kind_of(obj)
    assert isinstance(obj, dict)
    if kind != "NetworkPolicy" or api != POLICY_API:
        raise PolicyInvalid(kind, _name_of(obj), [f'no matches for kind "{kind}" in version "{api}"'])
    e = _Errors()
    e.mapping(obj, "", {"apiVersion", "kind", "metadata", "spec", "status"})
    name, namespace, _ = _meta(e, obj, True, default_namespace)
    spec = e.mapping(obj.get("spec"), "spec", {"podSelector", "ingress", "egress", "policyTypes"}) or {}
    selector = _selector(e, spec.get("podSelector"), "spec.podSelector") or LabelSelector()
    ingress = _rules(e, spec.get("ingress"), "spec.ingress", "from")
    egress = _rules(e, spec.get("egress"), "spec.egress", "to")
    types = [t for _, t in e.items(spec.get("policyTypes"), "spec.policyTypes")]
    if len(types) > 2:
        e.add("spec.policyTypes", INVALID, "may not specify more than two policyTypes", types)
    else:
        for i, t in enumerate(types):
            if t not in (INGRESS, EGRESS):
                e.add(f"spec.policyTypes[{i}]", UNSUPPORTED, 'supported values: "Ingress", "Egress"', t)
    if e.list:
        raise PolicyInvalid("NetworkPolicy", name, e.list)
    if not types:  # the API server's defaulting
        types = [INGRESS, EGRESS] if egress else [INGRESS]
    return NetworkPolicy(namespace, name, selector, ingress or (), egress or (), frozenset(types))


def parse_namespace(obj: object) -> Namespace:
    """A v1 Namespace object: its name and labels (what namespace selectors match)."""
    kind, api = _kind_of(obj)
    assert isinstance(obj, dict)
    if kind != "Namespace" or api != "v1":
        raise PolicyInvalid(kind, _name_of(obj), [f'no matches for kind "{kind}" in version "{api}"'])
    e = _Errors()
    e.mapping(obj, "", {"apiVersion", "kind", "metadata", "spec", "status"})
    name, _, labels = _meta(e, obj, False, "")
    if e.list:
        raise PolicyInvalid("Namespace", name, e.list)
    return Namespace(name, labels)


def parse_object(obj: object, default_namespace: str = "default") -> NetworkPolicy | Namespace:
    kind, _ = _kind_of(obj)
    if kind == "Namespace":
        return parse_namespace(obj)
    return parse_policy(obj, default_namespace)


def _values(doc: object) -> int:
    """How many values ``doc`` holds once YAML's aliases are expanded, counting no further than ``MAX_VALUES``:
    anchors and aliases share nodes, so a kilobyte of YAML can stand for 10^10 values, which every later walk
    (the checks, an error's message, the JSON stored and gossiped) would pay for. go-yaml, which kubectl uses,
    refuses such documents too."""
    count, stack = 0, [doc]
    while stack and count <= MAX_VALUES:
        node = stack.pop()
        count += 1
        if isinstance(node, dict):
            stack.extend(node.keys())
            stack.extend(node.values())
        elif isinstance(node, list):
            stack.extend(node)
    return count


def load_documents(text: str) -> list[object]:
    """The objects of a YAML or JSON text: several documents, and ``kind: List`` items, in order; a document whose
    aliases expand it beyond ``MAX_VALUES`` values is refused."""
    try:
        docs = list(yaml.safe_load_all(text))
    except yaml.YAMLError as err:
        mark = getattr(err, "problem_mark", None)
        where = f"line {mark.line + 1}: " if mark is not None else ""
        problem = getattr(err, "problem", None) or str(err).splitlines()[0]
        raise PolicyInvalid("document", "", [f"error converting YAML to JSON: yaml: {where}{problem}"]) from None
    out: list[object] = []
    for doc in docs:
        if doc is None:
            continue
        if _values(doc) > MAX_VALUES:
            raise PolicyInvalid(
                "document", "", ["error converting YAML to JSON: yaml: document contains excessive aliasing"]
            )
        if isinstance(doc, dict) and doc.get("kind") == "List" and isinstance(doc.get("items"), list):
            out.extend(doc["items"])
        else:
            out.append(doc)
    return out


def parse_documents(text: str, default_namespace: str = "default") -> list[NetworkPolicy | Namespace]:
    """Every object of a manifest, or :class:`PolicyInvalid` for the first one refused (nothing is taken then:
    the policies in force stay as they were)."""
    return [parse_object(obj, default_namespace) for obj in load_documents(text)]
