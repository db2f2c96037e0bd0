"""Which rules of ``iptables -S`` are Weave 2.8's weave-npc leftovers (``weavenet.host.weave_npc``)."""

from __future__ import annotations

import pytest

from weavenet.host.weave_npc import _leftover_rule, _words

NOTE = '-m comment --comment "NOTE: this must go before \\\'-j KUBE-FORWARD\\\'"'


@pytest.mark.parametrize(
    ("line", "leftover"),
    [
        (f"-A FORWARD -i weave {NOTE} -j WEAVE-NPC-EGRESS", True),
        (f"-A FORWARD -o weave {NOTE} -j WEAVE-NPC", True),
        ("-A FORWARD -o weave -m state --state NEW -j NFLOG --nflog-group 86", True),
        ("-A FORWARD -o weave -j DROP", True),
        ("-A INPUT -i weave -j WEAVE-NPC-EGRESS", True),
        # weavenet's and Docker's own, and others' rules, stay
        ("-A FORWARD -i docker0 -o weave -j DROP", False),
        ("-A FORWARD -i weave -o weave -j ACCEPT", False),
        ("-A FORWARD -o weave -j WEAVE-EXPOSE", False),
        ("-A FORWARD -o weave -m conntrack --ctstate RELATED,ESTABLISHED -j ACCEPT", False),
        ("-A FORWARD -o other -j DROP", False),
        ("-A FORWARD -o weave -p tcp -j DROP", False),
        ("-A FORWARD -m comment --comment \"unbalanced -j WEAVE-NPC", False),
    ],
)
def test_leftover_rules(line: str, leftover: bool) -> None:
    assert _leftover_rule(line, "weave") is leftover


def test_iptables_quoting_is_undone() -> None:
    words = _words(f"-A FORWARD -o weave {NOTE} -j WEAVE-NPC")
    assert words[7] == "NOTE: this must go before '-j KUBE-FORWARD'"
