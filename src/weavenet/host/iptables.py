"""Weave's iptables rules (net/bridge.go ConfigureIPTables, net/expose.go), planned as data, applied idempotently.

The FORWARD rules must stay at the top and in this order, or Docker's and other tools' rules shadow them; if any
is missing (a firewall reload, a ``docker`` restart) the whole block is removed and re-inserted at 1..n. A canary
chain in three tables tells the router when a firewall flushed everything, so it can re-apply.

``ensure_iptables`` can *record* what it created (an :class:`Undo`), so a launch that fails removes exactly that
and leaves rules and chains that were there before it (a killed router's, which containers still rely on).
"""

from __future__ import annotations

import contextlib
from dataclasses import dataclass, field

from weavenet.errors import HostError
from weavenet.host.run import ok, run

CANARY = "WEAVE-CANARY"
CANARY_TABLES = ("mangle", "nat", "filter")


@dataclass(frozen=True, slots=True)
class Rule:
    table: str
    chain: str
    spec: tuple[str, ...]


@dataclass
class Undo:
    """What an ``ensure_iptables`` created, newest last: rules inserted or appended, chains created."""

    rules: list[Rule] = field(default_factory=list)
    chains: list[tuple[str, str]] = field(default_factory=list)

    def apply(self) -> None:
        """Remove it all again (rules first: a chain can only go once nothing jumps to it)."""
        for rule in reversed(self.rules):
            delete(rule)
        for table, chain in reversed(self.chains):
            if ok(_ipt(table, "-n", "-L", chain)):
                run(_ipt(table, "-F", chain), check=False)
                run(_ipt(table, "-X", chain), check=False)
        self.rules.clear()
        self.chains.clear()


def forward_rules(bridge: str = "weave", docker_bridge: str | None = None) -> list[Rule]:
    rules = []
    if docker_bridge:
        rules.append(Rule("filter", "FORWARD", ("-i", docker_bridge, "-o", bridge, "-j", "DROP")))
    rules += [
        Rule("filter", "FORWARD", ("-i", bridge, "-o", bridge, "-j", "ACCEPT")),
        Rule("filter", "FORWARD", ("-o", bridge, "-j", "WEAVE-EXPOSE")),
        Rule("filter", "FORWARD", ("-i", bridge, "!", "-o", bridge, "-j", "ACCEPT")),
        Rule(
            "filter", "FORWARD", ("-o", bridge, "-m", "conntrack", "--ctstate", "RELATED,ESTABLISHED", "-j", "ACCEPT")
        ),
    ]
    return rules


def input_rules(
    docker_bridge: str | None, docker_ip: str | None, port: int = 6783, http_port: int = 6784
) -> list[Rule]:
    rules = []
    if docker_bridge and docker_ip:
        for proto, p in (("tcp", port), ("udp", port), ("udp", port + 1)):
            rules.append(
                Rule(
                    "filter",
                    "INPUT",
                    ("-i", docker_bridge, "-p", proto, "--dst", docker_ip, "--dport", str(p), "-j", "DROP"),
                )
            )
        for proto in ("udp", "tcp"):
            rules.append(Rule("filter", "INPUT", ("-i", docker_bridge, "-p", proto, "--dport", "53", "-j", "ACCEPT")))
    rules.append(
        Rule(
            "filter",
            "INPUT",
            (
                "-p",
                "tcp",
                "--dst",
                "127.0.0.1",
                "--dport",
                str(http_port),
                "-m",
                "addrtype",
                "!",
                "--src-type",
                "LOCAL",
                "-m",
                "conntrack",
                "!",
                "--ctstate",
                "RELATED,ESTABLISHED",
                "-m",
                "comment",
                "--comment",
                "Block non-local access to Weave Net control port",
                "-j",
                "DROP",
            ),
        )
    )
    return rules


def expose_rules(cidr: str, skip_nat: bool = False) -> list[Rule]:
    rules = [Rule("filter", "WEAVE-EXPOSE", ("-d", cidr, "-j", "ACCEPT"))]
    if not skip_nat:
        rules += [
            Rule("nat", "WEAVE", ("-s", cidr, "-d", "224.0.0.0/4", "-j", "RETURN")),
            Rule("nat", "WEAVE", ("-d", cidr, "!", "-s", cidr, "-j", "MASQUERADE")),
            Rule("nat", "WEAVE", ("-s", cidr, "!", "-d", cidr, "-j", "MASQUERADE")),
        ]
    return rules


def _ipt(table: str, *args: str) -> list[str]:
    return ["iptables", "-w", "-t", table, *args]


def exists(rule: Rule) -> bool:
    return ok(_ipt(rule.table, "-C", rule.chain, *rule.spec))


def append_unique(rule: Rule, undo: Undo | None = None) -> None:
    if not exists(rule):
        run(_ipt(rule.table, "-A", rule.chain, *rule.spec))
        if undo is not None:
            undo.rules.append(rule)


def delete(rule: Rule) -> None:
    while ok(_ipt(rule.table, "-D", rule.chain, *rule.spec)):
        pass


def ensure_chain(table: str, chain: str, undo: Undo | None = None) -> None:
    if not ok(_ipt(table, "-n", "-L", chain)):
        run(_ipt(table, "-N", chain))
        if undo is not None:
            undo.chains.append((table, chain))


def forward_block_in_place(rules: list[Rule]) -> bool:
    """True if the rules are the first ones of FORWARD, in order."""
    listing = run(_ipt("filter", "-S", "FORWARD")).splitlines()
    body = [line for line in listing if line.startswith("-A FORWARD ")]
    if len(body) < len(rules):
        return False
    for line, rule in zip(body, rules, strict=False):
        if not all(tok.strip('"') in line for tok in rule.spec if tok not in ("!",)):
            return False
    return True


def ensure_iptables(
    bridge: str = "weave",
    docker_bridge: str | None = None,
    docker_ip: str | None = None,
    port: int = 6783,
    undo: Undo | None = None,
) -> None:
    """Weave's chains and rules, idempotently; the FORWARD block re-inserted at the top if it was disturbed.
    With ``undo``, what did not exist before is recorded there (a rule that was only moved is not)."""
    ensure_chain("filter", "WEAVE-EXPOSE", undo)
    ensure_chain("nat", "WEAVE", undo)
    for rule in input_rules(docker_bridge, docker_ip, port):
        append_unique(rule, undo)
    block = forward_rules(bridge, docker_bridge)
    if not forward_block_in_place(block):
        existed = {rule for rule in block if exists(rule)}
        for rule in block:
            delete(rule)
        for pos, rule in enumerate(block, 1):
            run(_ipt(rule.table, "-I", rule.chain, str(pos), *rule.spec))
            if undo is not None and rule not in existed:
                undo.rules.append(rule)
    append_unique(Rule("nat", "POSTROUTING", ("-j", "WEAVE")), undo)
    install_canary(undo)


def install_canary(undo: Undo | None = None) -> None:
    for table in CANARY_TABLES:
        ensure_chain(table, CANARY, undo)


def canary_present() -> bool:
    return all(ok(_ipt(table, "-n", "-L", CANARY)) for table in CANARY_TABLES)


def remove_all(bridge: str = "weave", docker_bridge: str | None = None) -> None:
    """Everything ``ensure_iptables`` and ``expose`` added (``weave reset``)."""
    for rule in forward_rules(bridge, docker_bridge) + forward_rules(bridge, "docker0"):
        delete(rule)
    delete(Rule("nat", "POSTROUTING", ("-j", "WEAVE")))
    for line in run(_ipt("filter", "-S", "INPUT"), check=False).splitlines():
        if "Weave Net control port" in line or ("--dport 6783" in line or "--dport 6784" in line):
            ok(["sh", "-c", "iptables -w " + line.replace("-A INPUT", "-D INPUT", 1)])
    for table, chain in (("filter", "WEAVE-EXPOSE"), ("nat", "WEAVE"), *((t, CANARY) for t in CANARY_TABLES)):
        if ok(_ipt(table, "-n", "-L", chain)):
            run(_ipt(table, "-F", chain), check=False)
            run(_ipt(table, "-X", chain), check=False)
    with contextlib.suppress(HostError):  # --no-masq-local's set, unused once WEAVE is gone (no ipset: no set)
        run(["ipset", "destroy", "weaver-no-masq-local"], check=False)
