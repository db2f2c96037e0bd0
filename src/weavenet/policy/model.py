"""The policy engine's inputs: namespaces, pods and NetworkPolicies as plain values.

Every source (the Kubernetes API watch, ``weave policy apply`` for Docker and podman containers, a test driver)
fills in the same :class:`Snapshot`, so one engine computes the kernel state for all of them. A pod is whatever
has addresses on the weave network: a Kubernetes pod, or a container whose labels stand in for a pod's.

The policy types hold a NetworkPolicy *after* the API server's defaulting (``policyTypes`` filled in, protocol
TCP), so the engine never re-derives it; absent and empty are kept apart only where Kubernetes gives them different
meanings (a peer's selectors, ``ipBlock``).
"""

from __future__ import annotations

import ipaddress
from collections.abc import Mapping
from dataclasses import dataclass, field

PROTOCOLS = ("TCP", "UDP", "SCTP")
INGRESS, EGRESS = "Ingress", "Egress"
# The API server labels every namespace with its own name (Kubernetes 1.21+), so selectors can name one.
NAME_LABEL = "kubernetes.io/metadata.name"


@dataclass(frozen=True, slots=True)
class ContainerPort:
    """A named port a pod declares (``containers[].ports[]``): what a policy's named port resolves to."""

    name: str
    port: int
    protocol: str = "TCP"


@dataclass(frozen=True, slots=True)
class Pod:
    """Something with addresses on the weave network, on ``host`` (the node name or weave host name)."""

    namespace: str
    name: str
    labels: Mapping[str, str] = field(default_factory=dict)
    ips: tuple[str, ...] = ()
    ports: tuple[ContainerPort, ...] = ()
    host: str = ""

    @property
    def key(self) -> str:
        return f"{self.namespace}/{self.name}"


@dataclass(frozen=True, slots=True)
class Namespace:
    name: str
    labels: Mapping[str, str] = field(default_factory=dict)

    def all_labels(self) -> dict[str, str]:
        """Its labels with the one the API server always adds."""
        return {**self.labels, NAME_LABEL: self.name}


@dataclass(frozen=True, slots=True)
class Requirement:
    """One ``matchExpressions`` entry."""

    key: str
    operator: str  # In, NotIn, Exists, DoesNotExist
    values: tuple[str, ...] = ()

    def matches(self, labels: Mapping[str, str]) -> bool:
        has = self.key in labels
        if self.operator == "In":
            return has and labels[self.key] in self.values
        if self.operator == "NotIn":
            return not has or labels[self.key] not in self.values
        if self.operator == "Exists":
            return has
        return not has  # DoesNotExist


@dataclass(frozen=True, slots=True)
class LabelSelector:
    """``matchLabels`` and ``matchExpressions``, ANDed; the empty selector matches everything."""

    match_labels: tuple[tuple[str, str], ...] = ()
    match_expressions: tuple[Requirement, ...] = ()

    def matches(self, labels: Mapping[str, str]) -> bool:
        return all(labels.get(k) == v for k, v in self.match_labels) and all(
            r.matches(labels) for r in self.match_expressions
        )

    @property
    def empty(self) -> bool:
        return not self.match_labels and not self.match_expressions

    def __str__(self) -> str:
        parts = [f"{k}={v}" for k, v in self.match_labels]
        for r in self.match_expressions:
            if r.operator in ("In", "NotIn"):
                parts.append(f"{r.key} {r.operator.lower()} ({','.join(r.values)})")
            else:
                parts.append(r.key if r.operator == "Exists" else f"!{r.key}")
        return ",".join(parts) or "<all>"


IPNetwork = ipaddress.IPv4Network | ipaddress.IPv6Network


@dataclass(frozen=True, slots=True)
class IPBlock:
    cidr: str
    excepts: tuple[str, ...] = ()

    def networks(self) -> tuple[IPNetwork, tuple[IPNetwork, ...]]:
        return (
            ipaddress.ip_network(self.cidr, strict=False),
            tuple(ipaddress.ip_network(e, strict=False) for e in self.excepts),
        )

    def contains(self, ip: str) -> bool:
        addr = ipaddress.ip_address(ip)
        net, excepts = self.networks()
        return addr in net and not any(addr in e for e in excepts)


@dataclass(frozen=True, slots=True)
class Peer:
    """One ``from``/``to`` entry. A ``None`` selector is *absent* (not "match all"): a peer with only a
    ``podSelector`` means pods of the policy's own namespace; with only a ``namespaceSelector``, every pod of the
    selected namespaces; with both, the selected pods of the selected namespaces."""

    pod_selector: LabelSelector | None = None
    namespace_selector: LabelSelector | None = None
    ip_block: IPBlock | None = None

    def __str__(self) -> str:
        if self.ip_block is not None:
            ex = f" except {','.join(self.ip_block.excepts)}" if self.ip_block.excepts else ""
            return f"ipBlock {self.ip_block.cidr}{ex}"
        parts = []
        if self.namespace_selector is not None:
            parts.append(f"namespaces[{self.namespace_selector}]")
        if self.pod_selector is not None:
            parts.append(f"pods[{self.pod_selector}]")
        return " ".join(parts)


@dataclass(frozen=True, slots=True)
class PolicyPort:
    """One ``ports`` entry: ``port`` is a number, a port name, or None (every port of the protocol)."""

    protocol: str = "TCP"
    port: int | str | None = None
    end_port: int | None = None

    def __str__(self) -> str:
        if self.port is None:
            return f"{self.protocol.lower()}/*"
        if self.end_port is not None:
            return f"{self.protocol.lower()}/{self.port}-{self.end_port}"
        return f"{self.protocol.lower()}/{self.port}"


@dataclass(frozen=True, slots=True)
class PolicyRule:
    """One ingress or egress rule. No peers: every peer; no ports: every port and protocol."""

    peers: tuple[Peer, ...] = ()
    ports: tuple[PolicyPort, ...] = ()


@dataclass(frozen=True, slots=True)
class NetworkPolicy:
    namespace: str
    name: str
    pod_selector: LabelSelector = LabelSelector()
    ingress: tuple[PolicyRule, ...] = ()
    egress: tuple[PolicyRule, ...] = ()
    policy_types: frozenset[str] = frozenset({INGRESS})

    @property
    def key(self) -> str:
        return f"{self.namespace}/{self.name}"

    @property
    def affects_ingress(self) -> bool:
        return INGRESS in self.policy_types

    @property
    def affects_egress(self) -> bool:
        return EGRESS in self.policy_types


@dataclass(frozen=True, slots=True)
class Snapshot:
    """Everything the engine needs, from whatever source. Namespaces a pod or policy names but that are not
    listed exist with no labels (a Docker container's namespace needs no Namespace object)."""

    namespaces: tuple[Namespace, ...] = ()
    pods: tuple[Pod, ...] = ()
    policies: tuple[NetworkPolicy, ...] = ()

    def namespace_labels(self) -> dict[str, dict[str, str]]:
        labels = {ns.name: ns.all_labels() for ns in self.namespaces}
        for name in {p.namespace for p in self.pods} | {p.namespace for p in self.policies}:
            labels.setdefault(name, Namespace(name).all_labels())
        return labels
