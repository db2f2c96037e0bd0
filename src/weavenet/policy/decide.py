"""The reference decision: would a new connection be allowed, and which rule decides.

This is NetworkPolicy's meaning written as plainly as possible, one connection at a time, for ``weave policy test
SRC DST PORT`` and as the oracle the kernel state is checked against. A connection needs both the source's egress
and the destination's ingress; each side is open until a policy of that direction selects the pod, and then
only what some rule of such a policy allows gets through (policies add up, none subtracts).
"""

from __future__ import annotations

from dataclasses import dataclass

from weavenet.policy.model import NetworkPolicy, Pod, PolicyPort, PolicyRule, Snapshot
from weavenet.policy.select import Index, named_port


@dataclass(frozen=True, slots=True)
class Side:
    """One direction's verdict and its reason."""

    allowed: bool
    reason: str


@dataclass(frozen=True, slots=True)
class Decision:
    egress: Side
    ingress: Side

    @property
    def allowed(self) -> bool:
        return self.egress.allowed and self.ingress.allowed

    def __str__(self) -> str:
        verdict = "allowed" if self.allowed else "denied"
        return f"{verdict}: egress {self.egress.reason}; ingress {self.ingress.reason}"


def _port_matches(p: PolicyPort, protocol: str, port: int, dst: Pod | None) -> bool:
    if p.protocol != protocol:
        return False
    if p.port is None:
        return True
    if isinstance(p.port, str):
        return named_port(dst, p.port, protocol) == port
    return p.port <= port <= (p.end_port if p.end_port is not None else p.port)


def _rule_matches(
    idx: Index, policy: NetworkPolicy, rule: PolicyRule, other_ip: str, protocol: str, port: int, dst: Pod | None
) -> bool:
    if rule.peers and not any(idx.peer_matches(policy, peer, other_ip) for peer in rule.peers):
        return False
    return not rule.ports or any(_port_matches(p, protocol, port, dst) for p in rule.ports)


def _side(idx: Index, pod: Pod | None, egress: bool, other_ip: str, protocol: str, port: int, dst: Pod | None) -> Side:
    what = "egress" if egress else "ingress"
    if pod is None:
        return Side(True, "not a pod here (not policed)")
    policies = [
        pol
        for pol in sorted(idx.snapshot.policies, key=lambda p: p.key)
        if pol.namespace == pod.namespace
        and (pol.affects_egress if egress else pol.affects_ingress)
        and pol.pod_selector.matches(pod.labels)
    ]
    if not policies:
        return Side(True, f"{pod.key} is selected by no {what} policy (default allow)")
    for pol in policies:
        for i, rule in enumerate(pol.egress if egress else pol.ingress):
            if _rule_matches(idx, pol, rule, other_ip, protocol, port, dst):
                return Side(True, f"allowed by {pol.key} {what}[{i}]")
    names = ", ".join(p.key for p in policies)
    return Side(False, f"{pod.key} is isolated by {names} and no {what} rule allows it")


def decide(snapshot: Snapshot | Index, src_ip: str, dst_ip: str, protocol: str, port: int) -> Decision:
    """Whether a new ``protocol`` (TCP/UDP/SCTP) connection from ``src_ip`` to ``dst_ip``:``port`` is allowed."""
    idx = snapshot if isinstance(snapshot, Index) else Index(snapshot)
    src, dst = idx.by_ip.get(src_ip), idx.by_ip.get(dst_ip)
    return Decision(
        _side(idx, src, True, dst_ip, protocol, port, dst),
        _side(idx, dst, False, src_ip, protocol, port, dst),
    )
