"""What Weave 2.8's weave-npc and its router's ``--expect-npc`` left in iptables and ipset, removed once weavenet
polices the node (Kubernetes mode, after an in-place move from Weave).

Weave's router with ``--expect-npc`` put in FORWARD ``-i weave -j WEAVE-NPC-EGRESS``, ``-o weave -j WEAVE-NPC``,
``-o weave -m state --state NEW -j NFLOG --nflog-group 86`` and ``-o weave -j DROP``, and in INPUT ``-i weave -j
WEAVE-NPC-EGRESS``; weave-npc filled chains ``WEAVE-NPC*`` and ipsets ``weave-<hash>``. None of it is removed when
Weave's pod goes, and weavenet's rules only shadow it (its FORWARD block comes first), so stale policies would
still decide traffic weavenet's rules do not accept. The policy controller removes it once the router enforces
the node's policies (its nftables table is in force), so no moment is left unpoliced: the rules referring to
those chains, then the chains, then the sets (weavenet's own sets are named ``weaver-``, never ``weave-``).
"""

from __future__ import annotations

import logging
import shlex

from weavenet.errors import HostError
from weavenet.host.run import ok, run

log = logging.getLogger("weavenet.npc")

CHAINS = (
    "WEAVE-NPC",
    "WEAVE-NPC-INGRESS",
    "WEAVE-NPC-DEFAULT",
    "WEAVE-NPC-EGRESS",
    "WEAVE-NPC-EGRESS-ACCEPT",
    "WEAVE-NPC-EGRESS-CUSTOM",
    "WEAVE-NPC-EGRESS-DEFAULT",
)
SET_PREFIX = "weave-"  # weave-npc's sets; weavenet's are weaver-*


def _words(line: str) -> list[str]:
    """An ``iptables -S`` line as arguments: its quoting is the shell's but for ``\'`` inside double quotes
    (Weave's comment ``"NOTE: this must go before \'-j KUBE-FORWARD\'"``), which the shell would keep."""
    return shlex.split(line.replace("\\'", "'"))


def _leftover_rule(line: str, bridge: str) -> bool:
    """A rule of Weave's ``--expect-npc`` block (``iptables -S`` form) in FORWARD or INPUT."""
    try:
        words = _words(line)
    except ValueError:
        return False
    if "-j" not in words:
        return False
    target = words[words.index("-j") + 1]
    if target in CHAINS:
        return True
    out = "-o" in words and words[words.index("-o") + 1] == bridge and "-i" not in words
    nflog = target == "NFLOG" and "86" in words and "NEW" in words
    return out and ((target == "DROP" and len(words) == 6) or nflog)


def remove_leftovers(bridge: str = "weave") -> list[str]:
    """Remove weave-npc's rules, chains and sets (see the module docstring); what was removed, for the log."""
    removed: list[str] = []
    try:
        for chain in ("FORWARD", "INPUT"):
            for line in run(["iptables", "-w", "-S", chain], check=False).splitlines():
                if (
                    line.startswith(f"-A {chain} ")
                    and _leftover_rule(line, bridge)
                    and ok(["iptables", "-w", "-D", chain, *_words(line)[2:]])
                ):
                    removed.append(line)
        for chain in CHAINS:
            if ok(["iptables", "-w", "-n", "-L", chain]):
                run(["iptables", "-w", "-F", chain], check=False)
        for chain in CHAINS:
            if ok(["iptables", "-w", "-X", chain]):
                removed.append(f"chain {chain}")
        sets = [s for s in run(["ipset", "list", "-n"], check=False).split() if s.startswith(SET_PREFIX)]
        for s in sets:
            run(["ipset", "flush", s], check=False)  # list:set members refer to others: empty them all first
        for s in sets:
            if ok(["ipset", "destroy", s]):
                removed.append(f"ipset {s}")
    except HostError as e:  # no iptables or ipset here: nothing of Weave's can be either
        log.debug("looking for Weave's weave-npc leftovers: %s", e)
    return removed
