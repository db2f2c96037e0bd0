"""Kernel states as nftables scripts: a full replacement, or the diff from one state to the next.

Everything lives in one table, ``inet weavenet-npc``, hooked at ``forward`` before iptables' filter chains. A
packet must pass every hook, so the table polices whatever weave's own FORWARD rules (or Docker's, or a
firewall's) accept, and a reload of those leaves it alone. With ``br_netfilter`` (bridge-nf-call-iptables=1)
frames bridged between ports of the weave bridge, a container's veth, the sleeve's TAP or a VXLAN device, are
seen there as IPv4 packets too, so the same rules police local, sleeve and fastdp traffic.

A script is one ``nft -f`` run, which the kernel commits as one transaction: set members and rules change
together, and a packet sees the old state or the new one, never a mix. That is why nftables rather than ipset +
iptables: an ipset change and an ``iptables-restore`` are two commits, with a moment in between.

Chains (``forward-hook`` is the only base chain):

* ``forward-hook``: established and related traffic is accepted first (a policy never cuts a connection it
  would refuse as new); multicast per ``allow_mcast``; a local pod isolated for egress jumps to ``egress``, then
  one isolated for ingress to ``ingress``.
* ``egress``: one rule per policy rule, ``return`` (on to the ingress check) when it matches; then the drop.
* ``ingress``: the same, ``accept``; then the drop.

A drop is logged to NFLOG group 86 (as weave-npc) and counted per protocol and destination port in the dynamic set
``blocked`` (TCP SYNs without ACK and UDP/SCTP packets, as weave-npc's ``weavenpc_blocked_connections_total``).
"""

from __future__ import annotations

from collections.abc import Iterable

from weavenet.policy.compile import (
    ADDR,
    DADDR,
    DADDR_L4PORT,
    EGRESS_ISOLATED,
    INGRESS_ISOLATED,
    L4PORT,
    NAMED,
    NET,
    PORTS,
    SADDR,
    KernelState,
    Options,
    RuleState,
    SetState,
)

FAMILY = "inet"
TABLE = "weavenet-npc"
HOOK_CHAIN, INGRESS_CHAIN, EGRESS_CHAIN = "forward-hook", "ingress", "egress"
BLOCKED = "blocked"
NFLOG_GROUP = 86
# Before iptables' filter FORWARD (priority 0): the order only matters for who counts a drop.
PRIORITY = "filter - 10"
MCAST = "224.0.0.0/4"
_CHUNK = 500  # elements per ``add element`` line

_TYPES = {
    ADDR: "type ipv4_addr;",
    NET: "type ipv4_addr; flags interval;",
    PORTS: "type inet_proto . inet_service; flags interval;",
    NAMED: "type ipv4_addr . inet_proto . inet_service;",
}
_FIELDS = {
    SADDR: "ip saddr",
    DADDR: "ip daddr",
    L4PORT: "meta l4proto . th dport",
    DADDR_L4PORT: "ip daddr . meta l4proto . th dport",
}


def _t(rest: str) -> str:
    return f"{FAMILY} {TABLE} {rest}"


def _quote(comment: str) -> str:
    clean = "".join(ch if ch.isprintable() and ch not in '"\\' else "?" for ch in comment)
    return '"' + clean[:120] + '"'


def drop_rules(chain: str) -> list[str]:
    """Count what is refused (weave-npc counts plain SYNs and UDP), log it to NFLOG 86, drop it."""
    counted = f"update @{BLOCKED} {{ meta l4proto . th dport }}"
    return [
        f"add rule {_t(chain)} tcp flags & (syn | ack) == syn {counted}",
        f"add rule {_t(chain)} meta l4proto {{ udp, sctp }} {counted}",
        f"add rule {_t(chain)} log group {NFLOG_GROUP} drop",
    ]


def hook_rules(options: Options) -> list[str]:
    c = _t(HOOK_CHAIN)
    out = [f"add rule {c} ct state established,related accept"]
    if options.allow_mcast:
        out.append(f"add rule {c} ip daddr {MCAST} accept")
    else:
        out.append(f'add rule {c} oifname "{options.bridge}" ip daddr {MCAST} log group {NFLOG_GROUP} drop')
    out.append(f"add rule {c} ip saddr @{EGRESS_ISOLATED} jump {EGRESS_CHAIN}")
    out.append(f"add rule {c} ip daddr @{INGRESS_ISOLATED} jump {INGRESS_CHAIN}")
    return out


def rule_line(chain: str, rule: RuleState, verdict: str) -> str:
    matches = " ".join(f"{_FIELDS[f]} @{s}" for f, s in rule.matches)
    return f"add rule {_t(chain)} {matches} {verdict} comment {_quote(rule.comment)}".replace("  ", " ")


def chain_rules(chain: str, rules: Iterable[RuleState]) -> list[str]:
    verdict = "return" if chain == EGRESS_CHAIN else "accept"
    return [rule_line(chain, r, verdict) for r in rules] + drop_rules(chain)


def _elements(name: str, elements: Iterable[str], verb: str = "add") -> list[str]:
    elems = sorted(elements)
    return [f"{verb} element {_t(name)} {{ {', '.join(elems[i : i + _CHUNK])} }}" for i in range(0, len(elems), _CHUNK)]


def add_set(name: str, s: SetState) -> list[str]:
    return [f"add set {_t(name)} {{ {_TYPES[s.kind]} }}", *_elements(name, s.elements)]


def blocked_set(counts: dict[tuple[str, int], tuple[int, int]] | None = None) -> list[str]:
    """The counters' set; ``counts`` (packets, bytes per protocol and port) carried over a full replacement."""
    out = [f"add set {_t(BLOCKED)} {{ type inet_proto . inet_service; flags dynamic; counter; size 65535; }}"]
    elems = [
        f"{proto} . {port} counter packets {p} bytes {b}" for (proto, port), (p, b) in sorted((counts or {}).items())
    ]
    if elems:
        out += _elements(BLOCKED, elems)
    return out


def hook_chain() -> str:
    return f"add chain {_t(HOOK_CHAIN)} {{ type filter hook forward priority {PRIORITY}; policy accept; }}"


def closed_script(bridge: str = "weave") -> str:
    """What a host has before its first full state: nothing new enters the bridge (only established traffic),
    as weave-npc's FORWARD DROP does until its chains are filled. Created only where no table is."""
    return "\n".join(
        [
            f"add table {FAMILY} {TABLE}",
            *blocked_set(),
            hook_chain(),
            f"add rule {_t(HOOK_CHAIN)} ct state established,related accept",
            f'add rule {_t(HOOK_CHAIN)} oifname "{bridge}" log group {NFLOG_GROUP} drop',
            "",
        ]
    )


def full_script(
    state: KernelState,
    existing_chains: Iterable[str] = (),
    existing_sets: Iterable[str] = (),
    counts: dict[tuple[str, int], tuple[int, int]] | None = None,
) -> str:
    """Replace whatever the table holds (``existing_*``, as listed from the kernel) by ``state``, in one
    transaction: the hook chain stays registered throughout, everything else is emptied, removed and rebuilt."""
    lines = [f"add table {FAMILY} {TABLE}", hook_chain(), f"flush chain {_t(HOOK_CHAIN)}"]
    others = [c for c in existing_chains if c != HOOK_CHAIN]
    lines += [f"flush chain {_t(c)}" for c in others]
    lines += [f"delete chain {_t(c)}" for c in others]
    lines += [f"delete set {_t(s)}" for s in existing_sets]
    lines += blocked_set(counts)
    for name, s in state.sets.items():
        lines += add_set(name, s)
    for chain in (EGRESS_CHAIN, INGRESS_CHAIN):
        lines.append(f"add chain {_t(chain)}")
    lines += chain_rules(EGRESS_CHAIN, state.egress)
    lines += chain_rules(INGRESS_CHAIN, state.ingress)
    lines += hook_rules(state.options)
    return "\n".join(lines) + "\n"


def diff_script(old: KernelState, new: KernelState) -> str | None:
    """The change from ``old`` (what the kernel holds) to ``new``, as one transaction; "" if none, None if only a
    full replacement will do (a set changed its kind).

    Order inside it: new sets, then members removed and added (removed first: an interval set refuses an overlap
    with a member on its way out), then the chains whose rules changed rebuilt, then sets no rule names any more
    removed. The kernel applies it all at once."""
    lines: list[str] = []
    for name, s in new.sets.items():
        before = old.sets.get(name)
        if before is None:
            lines += add_set(name, s)
        elif before.kind != s.kind:
            return None
        else:
            lines += _elements(name, before.elements - s.elements, "delete")
            lines += _elements(name, s.elements - before.elements)
    if old.egress != new.egress:
        lines += [f"flush chain {_t(EGRESS_CHAIN)}", *chain_rules(EGRESS_CHAIN, new.egress)]
    if old.ingress != new.ingress:
        lines += [f"flush chain {_t(INGRESS_CHAIN)}", *chain_rules(INGRESS_CHAIN, new.ingress)]
    if old.options != new.options:
        lines += [f"flush chain {_t(HOOK_CHAIN)}", *hook_rules(new.options)]
    lines += [f"delete set {_t(name)}" for name in old.sets if name not in new.sets]
    return "\n".join(lines) + "\n" if lines else ""
