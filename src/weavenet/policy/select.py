"""Which pods a policy selects and which pods or addresses a peer stands for: the semantics shared by the
reference decision (:mod:`weavenet.policy.decide`) and the kernel state (:mod:`weavenet.policy.compile`)."""

from __future__ import annotations

import ipaddress
from collections.abc import Iterable
from dataclasses import dataclass

from weavenet.policy.model import LabelSelector, NetworkPolicy, Peer, Pod, Snapshot


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
        self.ip_int: dict[str, int] = {}
        self._addrs: dict[str, list[str]] = {}
        self._matching: dict[tuple[str, LabelSelector | None], list[Pod]] = {}
        for pod in sorted(self.snapshot.pods, key=lambda p: p.key):
            self.by_ns.setdefault(pod.namespace, []).append(pod)
            self._addrs[pod.key] = ipv4s(pod.ips)
            for ip in self._addrs[pod.key]:
                self.by_ip.setdefault(ip, pod)
                self.ip_int[ip] = int(ipaddress.IPv4Address(ip))

    def addrs(self, pod: Pod) -> list[str]:
        """The pod's IPv4 addresses (parsed once per snapshot)."""
        return self._addrs[pod.key]

    def pods_matching(self, namespace: str, selector: LabelSelector | None) -> list[Pod]:
        """A namespace's pods that ``selector`` matches (all of them for None); remembered, as policies share
        selectors."""
        key = (namespace, selector)
        if key not in self._matching:
            pods = self.by_ns.get(namespace, [])
            self._matching[key] = pods if selector is None else [p for p in pods if selector.matches(p.labels)]
        return self._matching[key]

    def selected(self, policy: NetworkPolicy) -> list[Pod]:
        """The pods the policy applies to: its namespace's pods matching ``podSelector``."""
        return self.pods_matching(policy.namespace, policy.pod_selector)

    def peer_pods(self, policy: NetworkPolicy, peer: Peer) -> list[Pod]:
        """The pods a selector peer stands for (none for an ``ipBlock`` peer)."""
        if peer.ip_block is not None:
            return []
        if peer.namespace_selector is None:
            namespaces = [policy.namespace]
        else:
            sel = peer.namespace_selector
            namespaces = sorted(ns for ns, labels in self.ns_labels.items() if sel.matches(labels))
        return [p for ns in namespaces for p in self.pods_matching(ns, peer.pod_selector)]

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
