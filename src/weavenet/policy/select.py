"""Which pods a policy selects and which pods or addresses a peer stands for: the semantics shared by the
reference decision (:mod:`weavenet.policy.decide`) and the kernel state (:mod:`weavenet.policy.compile`)."""

from __future__ import annotations

import ipaddress
from collections.abc import Iterable
from dataclasses import dataclass

from weavenet.policy.model import NetworkPolicy, Peer, Pod, Snapshot


def ipv4s(ips: Iterable[str]) -> list[str]:
    """The IPv4 addresses among ``ips`` (weave's network is IPv4), normalized."""
    out = []
    for ip in ips:
        try:
            addr = ipaddress.ip_address(ip)
        except ValueError:
            continue
        if addr.version == 4:
            out.append(str(addr))
    return out


@dataclass
class Index:
    """A snapshot prepared for lookups: namespace labels, pods by namespace and by address."""

    snapshot: Snapshot

    def __post_init__(self) -> None:
        self.ns_labels = self.snapshot.namespace_labels()
        self.by_ns: dict[str, list[Pod]] = {}
        self.by_ip: dict[str, Pod] = {}
        for pod in sorted(self.snapshot.pods, key=lambda p: p.key):
            self.by_ns.setdefault(pod.namespace, []).append(pod)
            for ip in ipv4s(pod.ips):
                self.by_ip.setdefault(ip, pod)

    def selected(self, policy: NetworkPolicy) -> list[Pod]:
        """The pods the policy applies to: its namespace's pods matching ``podSelector``."""
        return [p for p in self.by_ns.get(policy.namespace, []) if policy.pod_selector.matches(p.labels)]

    def peer_pods(self, policy: NetworkPolicy, peer: Peer) -> list[Pod]:
        """The pods a selector peer stands for (none for an ``ipBlock`` peer)."""
        if peer.ip_block is not None:
            return []
        if peer.namespace_selector is None:
            namespaces = [policy.namespace]
        else:
            sel = peer.namespace_selector
            namespaces = sorted(ns for ns, labels in self.ns_labels.items() if sel.matches(labels))
        pods = []
        for ns in namespaces:
            for p in self.by_ns.get(ns, []):
                if peer.pod_selector is None or peer.pod_selector.matches(p.labels):
                    pods.append(p)
        return pods

    def peer_matches(self, policy: NetworkPolicy, peer: Peer, ip: str) -> bool:
        """Whether the address ``ip`` (a pod's or not) is one the peer stands for."""
        if peer.ip_block is not None:
            net, _ = peer.ip_block.networks()
            return net.version == 4 and peer.ip_block.contains(ip)
        pod = self.by_ip.get(ip)
        if pod is None:
            return False
        if peer.namespace_selector is None:
            if pod.namespace != policy.namespace:
                return False
        elif not peer.namespace_selector.matches(self.ns_labels.get(pod.namespace, {})):
            return False
        return peer.pod_selector is None or peer.pod_selector.matches(pod.labels)


def named_port(pod: Pod | None, name: str, protocol: str) -> int | None:
    """What a policy's named port means on ``pod`` (the destination): its container port of that name and
    protocol, or None (then the rule's port does not match that pod)."""
    if pod is None:
        return None
    for cp in pod.ports:
        if cp.name == name and cp.protocol == protocol:
            return cp.port
    return None
