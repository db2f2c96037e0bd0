"""What the rendered nftables chains do with a new connection, computed from a :class:`KernelState` in Python.

It reads the state the way ``weavenet.policy.nft`` writes it into chains (``forward-hook`` -> ``egress`` ->
``ingress``), so checking it against :func:`weavenet.policy.decide` checks the compiler; the integration tests
check the same chains in a real kernel."""

from __future__ import annotations

import ipaddress

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
    RuleState,
)


def member(state: KernelState, name: str, key: tuple[str, ...]) -> bool:
    s = state.sets[name]
    if s.kind == ADDR:
        return key[0] in s.elements
    if s.kind == NET:
        ip = ipaddress.IPv4Address(key[0])
        for e in s.elements:
            lo, _, hi = e.partition("-")
            if ipaddress.IPv4Address(lo) <= ip <= ipaddress.IPv4Address(hi or lo):
                return True
        return False
    if s.kind == PORTS:
        proto, port = key[0], int(key[1])
        for e in s.elements:
            p, _, rng = e.partition(" . ")
            lo, _, hi = rng.partition("-")
            if p == proto and int(lo) <= port <= int(hi or lo):
                return True
        return False
    assert s.kind == NAMED
    return " . ".join(key) in s.elements


def _rule(state: KernelState, rule: RuleState, src: str, dst: str, proto: str, port: int) -> bool:
    keys = {
        SADDR: (src,),
        DADDR: (dst,),
        L4PORT: (proto, str(port)),
        DADDR_L4PORT: (dst, proto, str(port)),
    }
    return all(member(state, name, keys[field]) for field, name in rule.matches)


def passes(state: KernelState, src: str, dst: str, protocol: str, port: int) -> bool:
    """Whether one host's forward hook lets a new connection's first packet through."""
    proto = protocol.lower()
    if ipaddress.IPv4Address(dst) in ipaddress.IPv4Network("224.0.0.0/4"):
        return state.options.allow_mcast
    if member(state, EGRESS_ISOLATED, (src,)) and not any(_rule(state, r, src, dst, proto, port) for r in state.egress):
        return False
    return not member(state, INGRESS_ISOLATED, (dst,)) or any(
        _rule(state, r, src, dst, proto, port) for r in state.ingress
    )
