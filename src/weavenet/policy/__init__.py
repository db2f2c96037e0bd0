"""Kubernetes NetworkPolicy for weave's containers and pods: a pure engine (no I/O).

Inputs are a :class:`Snapshot` of namespaces, pods and policies from any source; outputs are the kernel state one
host should have (:func:`compile_state`, rendered for nftables by :mod:`weavenet.policy.nft` and applied by
:class:`weavenet.host.npc.Enforcer`), and the reference answer for one connection (:func:`decide`).
"""

from weavenet.policy.compile import KernelState, Options, compile_state
from weavenet.policy.decide import Decision, decide
from weavenet.policy.model import (
    ContainerPort,
    IPBlock,
    LabelSelector,
    Namespace,
    NetworkPolicy,
    Peer,
    Pod,
    PolicyPort,
    PolicyRule,
    Requirement,
    Snapshot,
)
from weavenet.policy.parse import load_documents, parse_documents, parse_namespace, parse_object, parse_policy
from weavenet.policy.validation import PolicyInvalid

__all__ = [
    "ContainerPort",
    "Decision",
    "IPBlock",
    "KernelState",
    "LabelSelector",
    "Namespace",
    "NetworkPolicy",
    "Options",
    "Peer",
    "Pod",
    "PolicyInvalid",
    "PolicyPort",
    "PolicyRule",
    "Requirement",
    "Snapshot",
    "compile_state",
    "decide",
    "load_documents",
    "parse_documents",
    "parse_namespace",
    "parse_object",
    "parse_policy",
]
