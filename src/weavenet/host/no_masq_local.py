"""``--no-masq-local`` (Weave's ``net/bridge.go``: ``NoMasqLocal`` and its ``NoMasqLocalTracker``): traffic from
outside the weave network to this host's containers is not masqueraded, so they see the client's address (what
a Kubernetes Service with ``externalTrafficPolicy: Local`` promises; Weave's Kubernetes script turns it on unless
``NO_MASQ_LOCAL=0``).

The ipset ``weaver-no-masq-local`` (``hash:net``) holds the ranges this peer owns in the IPAM ring, and the first
rule of the ``nat WEAVE`` chain returns before the exposed networks' ``MASQUERADE`` for traffic to them. The set
is made anew at every start (as Weave's), then kept in step with the ring by :func:`update`.
"""

from __future__ import annotations

from collections.abc import Iterable

from weavenet.host.iptables import Rule, delete, exists
from weavenet.host.run import ok, run

IPSET = "weaver-no-masq-local"
RULE = Rule(
    "nat",
    "WEAVE",
    ("-m", "set", "--match-set", IPSET, "dst", "-m", "comment", "--comment",
     "Prevent SNAT to locally running containers", "-j", "RETURN"),
)  # fmt: skip


def setup() -> None:
    """The set, empty, and the rule first in ``nat WEAVE`` (the chain exists: ``ensure_iptables`` ran)."""
    delete(RULE)  # a set in use cannot be destroyed
    run(["ipset", "destroy", IPSET], check=False)
    run(["ipset", "create", IPSET, "hash:net"])
    run(["iptables", "-w", "-t", "nat", "-I", "WEAVE", "1", *RULE.spec])


def ensure_rule() -> None:
    """After a firewall reload flushed the rules (the canary): the rule again, first."""
    if not exists(RULE) and ok(["ipset", "list", "-n", IPSET]):
        run(["iptables", "-w", "-t", "nat", "-I", "WEAVE", "1", *RULE.spec])


def update(add: Iterable[str], remove: Iterable[str]) -> None:
    """Put ranges (CIDRs) in the set and take others out, in one ``ipset restore``."""
    lines = [f"del {IPSET} {c} -exist" for c in sorted(remove)] + [f"add {IPSET} {c} -exist" for c in sorted(add)]
    if lines:
        run(["ipset", "restore"], input="\n".join(lines) + "\n")


def members() -> list[str]:
    out = run(["ipset", "list", IPSET], check=False)
    body = out.split("Members:", 1)[1] if "Members:" in out else ""
    return sorted(line.strip() for line in body.splitlines() if line.strip())


def remove() -> None:
    """``weave reset``, or a launch that failed: the rule and the set."""
    delete(RULE)
    run(["ipset", "destroy", IPSET], check=False)
