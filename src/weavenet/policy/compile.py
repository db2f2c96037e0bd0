"""The kernel state one host should have for a snapshot: address and port sets, and the rules over them.

Policing happens where weave-npc does it: a pod's ingress on the host the pod runs on, its egress on the same
host, as the packet leaves the pod. So a host's state isolates only its *local* pods (``ingress-isolated``,
``egress-isolated``) but its rules name peers anywhere in the cluster.

Rules are one per policy rule (two when a rule mixes numbered and named ports), never one per peer or per port:
a rule's peers are ORed, so they are one address set; its ports are one ``protocol . port-range`` set; a named
port, which can mean a different number on every pod, is a set of ``address . protocol . port`` for the pods it
resolves on. ``ipBlock``'s ``except`` is subtracted here, so no set is ever used negatively and every set only
widens what its rule allows.

Set names come from what a set *means* (a selector in a namespace, a list of peers), not from its members: when
pods come and go only members change, and the kernel gets a diff of members with its rules left alone.
"""

from __future__ import annotations

import hashlib
import ipaddress
from collections.abc import Iterable
from dataclasses import dataclass, field

from weavenet.policy.model import NetworkPolicy, Peer, Pod, PolicyPort, PolicyRule, Snapshot
from weavenet.policy.select import Index, named_port

# Set kinds: what their members are (the nft renderer gives each its type).
ADDR = "addr"  # ipv4 addresses
NET = "net"  # ipv4 addresses and ranges (interval set)
PORTS = "ports"  # protocol . port range (interval set)
NAMED = "named"  # ipv4 address . protocol . port

INGRESS_ISOLATED = "ingress-isolated"
EGRESS_ISOLATED = "egress-isolated"

# A match: which packet field is looked up in which set.
SADDR, DADDR, L4PORT, DADDR_L4PORT = "saddr", "daddr", "l4port", "daddr_l4port"


@dataclass(frozen=True, slots=True)
class SetState:
    kind: str
    elements: frozenset[str]


@dataclass(frozen=True, slots=True)
class RuleState:
    """Allow a new connection when every match holds (empty matches: always)."""

    matches: tuple[tuple[str, str], ...]
    comment: str


@dataclass(frozen=True, slots=True)
class Options:
    allow_mcast: bool = True
    bridge: str = "weave"


@dataclass(frozen=True)
class KernelState:
    """What one host's kernel should hold. Two states compare equal exactly when the kernel needs no change."""

    sets: dict[str, SetState] = field(default_factory=dict)
    ingress: tuple[RuleState, ...] = ()
    egress: tuple[RuleState, ...] = ()
    options: Options = Options()

    def rule_count(self) -> int:
        return len(self.ingress) + len(self.egress)

    def element_count(self) -> int:
        return sum(len(s.elements) for s in self.sets.values())


def _short(*parts: object) -> str:
    return hashlib.sha1(repr(parts).encode()).hexdigest()[:12]


def addr_ranges(ips: Iterable[int], networks: Iterable[ipaddress.IPv4Network]) -> frozenset[str]:
    """Addresses (as integers) and networks as the fewest non-overlapping ranges (an interval set refuses
    overlaps): ``a.b.c.d`` or ``a.b.c.d-e.f.g.h``."""
    spans = sorted([(i, i) for i in ips] + [(int(n.network_address), int(n.broadcast_address)) for n in networks])
    merged: list[list[int]] = []
    for lo, hi in spans:
        if merged and lo <= merged[-1][1] + 1:
            merged[-1][1] = max(merged[-1][1], hi)
        else:
            merged.append([lo, hi])
    v4 = ipaddress.IPv4Address
    return frozenset(str(v4(lo)) if lo == hi else f"{v4(lo)}-{v4(hi)}" for lo, hi in merged)


def block_networks(peer: Peer) -> list[ipaddress.IPv4Network]:
    """An ``ipBlock``'s CIDR less its excepts, as networks (IPv6 blocks: none, weave is IPv4)."""
    assert peer.ip_block is not None
    net, excepts = peer.ip_block.networks()
    if not isinstance(net, ipaddress.IPv4Network):
        return []
    parts = [net]
    for ex in excepts:
        if not isinstance(ex, ipaddress.IPv4Network):
            continue
        nxt: list[ipaddress.IPv4Network] = []
        for p in parts:
            if ex.subnet_of(p):
                nxt.extend(p.address_exclude(ex))
            elif not p.subnet_of(ex):
                nxt.append(p)
        parts = nxt
    return parts


def port_ranges(ports: Iterable[PolicyPort]) -> frozenset[str]:
    """Numbered ports (and "every port") as ``proto . lo-hi``, overlaps merged per protocol."""
    by_proto: dict[str, list[tuple[int, int]]] = {}
    for p in ports:
        if p.port is None:
            lo, hi = 0, 65535
        elif isinstance(p.port, int):
            lo, hi = p.port, p.end_port if p.end_port is not None else p.port
        else:
            continue
        by_proto.setdefault(p.protocol.lower(), []).append((lo, hi))
    out = set()
    for proto, ranges in by_proto.items():
        merged: list[list[int]] = []
        for lo, hi in sorted(ranges):
            if merged and lo <= merged[-1][1] + 1:
                merged[-1][1] = max(merged[-1][1], hi)
            else:
                merged.append([lo, hi])
        for lo, hi in merged:
            out.add(f"{proto} . {lo}" if lo == hi else f"{proto} . {lo}-{hi}")
    return frozenset(out)


class _Builder:
    def __init__(self, snapshot: Snapshot, node: str, options: Options) -> None:
        self.idx = Index(snapshot)
        self.node = node
        self.options = options
        self.sets: dict[str, SetState] = {}
        self.ingress: list[RuleState] = []
        self.egress: list[RuleState] = []
        self.isolated: dict[str, set[str]] = {INGRESS_ISOLATED: set(), EGRESS_ISOLATED: set()}

    def _set(self, name: str, kind: str, elements: Iterable[str]) -> str:
        self.sets[name] = SetState(kind, frozenset(elements))
        return name

    def local_ips(self, pods: Iterable[Pod]) -> list[str]:
        return [ip for p in pods if p.host == self.node for ip in self.idx.addrs(p)]

    def policy(self, pol: NetworkPolicy) -> None:
        selected = self.idx.selected(pol)
        local = self.local_ips(selected)
        target = self._set(f"sel-{_short(pol.namespace, pol.pod_selector)}", ADDR, local)
        if pol.affects_ingress:
            self.isolated[INGRESS_ISOLATED].update(local)
            for i, rule in enumerate(pol.ingress):
                self.rule(pol, i, rule, target, [p for p in selected if p.host == self.node], egress=False)
        if pol.affects_egress:
            self.isolated[EGRESS_ISOLATED].update(local)
            for i, rule in enumerate(pol.egress):
                self.rule(pol, i, rule, target, None, egress=True)

    def peers_set(self, pol: NetworkPolicy, rule: PolicyRule) -> tuple[str, list[Pod], list[ipaddress.IPv4Network]]:
        """The set of the rule's peers' addresses; the pods among them and the ``ipBlock`` networks."""
        pods: list[Pod] = []
        nets: list[ipaddress.IPv4Network] = []
        for peer in rule.peers:
            if peer.ip_block is not None:
                nets += block_networks(peer)
            else:
                pods += self.idx.peer_pods(pol, peer)
        ips = [ip for p in pods for ip in self.idx.addrs(p)]
        key = _short(pol.namespace, rule.peers)
        if nets:
            return self._set(f"peer-{key}", NET, addr_ranges((self.idx.ip_int[ip] for ip in ips), nets)), pods, nets
        return self._set(f"peer-{key}", ADDR, ips), pods, nets

    def pods_in(self, nets: list[ipaddress.IPv4Network]) -> list[Pod]:
        """Pods whose address is in one of ``nets`` (an ``ipBlock`` peer's pods, for a named port on them)."""
        ranges = [(int(n.network_address), int(n.broadcast_address)) for n in nets]
        return [p for ip, p in self.idx.by_ip.items() if any(lo <= self.idx.ip_int[ip] <= hi for lo, hi in ranges)]

    def rule(
        self, pol: NetworkPolicy, i: int, rule: PolicyRule, target: str, local_sel: list[Pod] | None, egress: bool
    ) -> None:
        what = "egress" if egress else "ingress"
        comment = f"{pol.key} {what}[{i}]"
        own = (SADDR if egress else DADDR, target)
        matches: list[tuple[str, str]] = [own]
        peer_pods: list[Pod] = []
        nets: list[ipaddress.IPv4Network] = []
        if rule.peers:
            name, peer_pods, nets = self.peers_set(pol, rule)
            matches.append((DADDR if egress else SADDR, name))
        out = self.egress if egress else self.ingress
        if not rule.ports:
            out.append(RuleState(tuple(matches), comment))
            return
        numbered = [p for p in rule.ports if not isinstance(p.port, str)]
        named = [p for p in rule.ports if isinstance(p.port, str)]
        if numbered:
            ports = port_ranges(numbered)
            pname = self._set(f"port-{_short(sorted(ports))}", PORTS, ports)
            out.append(RuleState((*matches, (L4PORT, pname)), comment))
        if named:
            # the destination resolves the name: for ingress the local selected pods, for egress the peers
            if not egress:
                dests = local_sel or []
            elif rule.peers:
                dests = peer_pods + self.pods_in(nets) if nets else peer_pods
            else:
                dests = list(self.idx.by_ip.values())
            elems: set[str] = set()
            for pod in dests:
                for p in named:
                    assert isinstance(p.port, str)
                    num = named_port(pod, p.port, p.protocol)
                    if num is not None:
                        elems.update(f"{ip} . {p.protocol.lower()} . {num}" for ip in self.idx.addrs(pod))
            key = _short(what, pol.namespace, pol.pod_selector if not egress else rule.peers, named)
            nname = self._set(f"named-{key}", NAMED, elems)
            out.append(RuleState((*matches, (DADDR_L4PORT, nname)), comment + " named"))

    def build(self) -> KernelState:
        for pol in sorted(self.idx.snapshot.policies, key=lambda p: p.key):
            self.policy(pol)
        for name, ips in self.isolated.items():
            self._set(name, ADDR, ips)
        return KernelState(dict(sorted(self.sets.items())), tuple(self.ingress), tuple(self.egress), self.options)


def compile_state(snapshot: Snapshot, node: str, options: Options | None = None) -> KernelState:
    """The kernel state for host ``node`` (pods whose ``host`` is ``node`` are policed here)."""
    return _Builder(snapshot, node, options or Options()).build()
