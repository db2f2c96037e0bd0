"""weavenet's own section of the report: network policy on this host (``weave status``' ``network policy``).

Kept on the router (Weave's report has no place for it): ``GET /policy`` gives the policies and pods themselves.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

__all__ = ["NetworkPolicyStatus"]


@dataclass
class NetworkPolicyStatus:
    """Whether this host enforces (``--network-policy`` and why not), whether the cluster's current state is in
    force here, the cluster's policies and pods, and the counters behind them."""

    mode: str = "auto"
    enforcing: bool = False
    not_enforcing_because: str = ""
    in_force: bool = False  # the state of the current snapshot is applied here
    last_error: str = ""  # the kernel refused the last state (the previous one stays in force)
    policies: int = 0
    namespaces: int = 0  # Namespace objects
    unusable: dict[str, str] = field(default_factory=dict)  # objects this version cannot use -> why
    pods: int = 0
    local_pods: int = 0
    hosts: int = 0  # hosts with pods
    tombstones: int = 0
    applies: int = 0
    apply_errors: int = 0
    last_apply: dict[str, Any] = field(default_factory=dict)
    gossip: dict[str, int] = field(default_factory=dict)
    label_problems: list[str] = field(default_factory=list)
    source: str = ""  # where the policies come from, when not from gossip (the Kubernetes API)
    podman: str = ""  # where podman's containers' labels come from (its API), or why they do not

    @classmethod
    def from_dict(cls, d: Mapping[str, Any]) -> NetworkPolicyStatus:
        return cls(
            str(d.get("Mode", "auto")),
            bool(d.get("Enforcing")),
            str(d.get("NotEnforcingBecause", "")),
            bool(d.get("InForce")),
            str(d.get("LastError", "")),
            int(d.get("Policies", 0)),
            int(d.get("Namespaces", 0)),
            dict(d.get("Unusable") or {}),
            int(d.get("Pods", 0)),
            int(d.get("LocalPods", 0)),
            int(d.get("Hosts", 0)),
            int(d.get("Tombstones", 0)),
            int(d.get("Applies", 0)),
            int(d.get("ApplyErrors", 0)),
            dict(d.get("LastApply") or {}),
            dict(d.get("Gossip") or {}),
            list(d.get("LabelProblems") or []),
            str(d.get("Source", "")),
            str(d.get("Podman", "")),
        )
