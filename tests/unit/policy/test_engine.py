"""The engine's meaning (``decide``) on hand-written cases, and the kernel state it compiles checked against it on
generated clusters: every host's chains together must allow exactly what ``decide`` allows."""

from __future__ import annotations

from hypothesis import given, settings
from hypothesis import strategies as st

from tests.unit.policy.kernel_model import passes
from weavenet.policy import (
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
    compile_state,
    decide,
)
from weavenet.policy import nft as nftmod
from weavenet.policy.compile import KernelState, Options

NS = (Namespace("x", {"ns": "x"}), Namespace("y", {"ns": "y", "team": "blue"}))
PORTS = (ContainerPort("web", 80), ContainerPort("alt", 81), ContainerPort("dns", 53, "UDP"))


def pod(ns: str, name: str, ip: str, host: str = "h1", **labels: str) -> Pod:
    return Pod(ns, name, {"pod": name, **labels}, (ip,), PORTS, host)


PODS = (pod("x", "a", "10.0.1.1"), pod("x", "b", "10.0.1.2", "h2"), pod("y", "a", "10.0.2.1", "h2"))


def sel(**labels: str) -> LabelSelector:
    return LabelSelector(tuple(sorted(labels.items())))


def allowed(policies: tuple[NetworkPolicy, ...], src: str, dst: str, proto: str = "TCP", port: int = 80) -> bool:
    return decide(Snapshot(NS, PODS, policies), src, dst, proto, port).allowed


def test_default_allow_until_selected_and_union_of_policies() -> None:
    assert allowed((), "10.0.1.2", "10.0.1.1")
    deny = NetworkPolicy("x", "deny", sel(pod="a"))
    assert not allowed((deny,), "10.0.1.2", "10.0.1.1")
    assert allowed((deny,), "10.0.1.1", "10.0.1.2")  # only a is isolated, and only for ingress
    from_b = NetworkPolicy("x", "from-b", sel(pod="a"), (PolicyRule((Peer(sel(pod="b")),)),))
    assert allowed((deny, from_b), "10.0.1.2", "10.0.1.1")
    assert not allowed((deny, from_b), "10.0.2.1", "10.0.1.1")  # podSelector alone: the policy's namespace only
    d = decide(Snapshot(NS, PODS, (deny, from_b)), "10.0.2.1", "10.0.1.1", "TCP", 80)
    assert str(d) == (
        "denied: egress y/a is selected by no egress policy (default allow); "
        "ingress x/a is isolated by x/deny, x/from-b and no ingress rule allows it"
    )


def test_peers_namespace_selector_both_and_ip_block() -> None:
    def rule_from(*peers: Peer) -> tuple[NetworkPolicy, ...]:
        return (NetworkPolicy("x", "p", sel(pod="a"), (PolicyRule(peers),)),)

    assert allowed(rule_from(Peer(None, sel(team="blue"))), "10.0.2.1", "10.0.1.1")
    assert not allowed(rule_from(Peer(None, sel(team="blue"))), "10.0.1.2", "10.0.1.1")
    assert allowed(rule_from(Peer(None, LabelSelector())), "10.0.1.2", "10.0.1.1")  # {}: every namespace
    both = Peer(sel(pod="a"), sel(**{"kubernetes.io/metadata.name": "y"}))
    assert allowed(rule_from(both), "10.0.2.1", "10.0.1.1") and not allowed(rule_from(both), "10.0.1.2", "10.0.1.1")
    block = Peer(ip_block=IPBlock("10.0.0.0/16", ("10.0.2.0/24",)))
    assert allowed(rule_from(block), "10.0.1.2", "10.0.1.1") and not allowed(rule_from(block), "10.0.2.1", "10.0.1.1")
    assert allowed(rule_from(block), "10.0.9.9", "10.0.1.1")  # not a pod: ipBlock still matches it


def test_ports_named_ranges_and_protocols() -> None:
    def ports(*ps: PolicyPort) -> tuple[NetworkPolicy, ...]:
        return (NetworkPolicy("x", "p", sel(pod="a"), (PolicyRule((), ps),)),)

    assert allowed(ports(PolicyPort("TCP", "alt")), "10.0.1.2", "10.0.1.1", port=81)
    assert not allowed(ports(PolicyPort("UDP", "alt")), "10.0.1.2", "10.0.1.1", "UDP", 81)  # alt is TCP
    assert allowed(ports(PolicyPort("TCP", 80, 90)), "10.0.1.2", "10.0.1.1", port=85)
    assert not allowed(ports(PolicyPort("TCP", 80, 90)), "10.0.1.2", "10.0.1.1", "UDP", 85)
    assert allowed(ports(PolicyPort("UDP")), "10.0.1.2", "10.0.1.1", "UDP", 9)


def test_egress_and_policy_types() -> None:
    eg = NetworkPolicy("x", "eg", sel(pod="a"), (), (PolicyRule((Peer(sel(pod="b")),)),), frozenset({"Egress"}))
    assert allowed((eg,), "10.0.1.1", "10.0.1.2") and not allowed((eg,), "10.0.1.1", "10.0.2.1")
    assert allowed((eg,), "10.0.2.1", "10.0.1.1")  # Egress only: a's ingress stays open
    named = NetworkPolicy(
        "x", "n", sel(pod="a"), (), (PolicyRule((), (PolicyPort("UDP", "dns"),)),), frozenset({"Egress"})
    )
    assert allowed((named,), "10.0.1.1", "10.0.2.1", "UDP", 53)
    assert not allowed((named,), "10.0.1.1", "10.0.2.1", "UDP", 54)
    assert not allowed((named,), "10.0.1.1", "10.9.9.9", "UDP", 53)  # not a pod: the name means nothing there


def test_pod_changes_are_set_member_diffs_only() -> None:
    pol = NetworkPolicy("x", "p", sel(pod="a"), (PolicyRule((Peer(None, sel(team="blue")),)),))
    before = compile_state(Snapshot(NS, PODS, (pol,)), "h1")
    more = (*PODS, pod("y", "c", "10.0.2.3", "h2"))
    after = compile_state(Snapshot(NS, more, (pol,)), "h1")
    script = nftmod.diff_script(before, after)
    assert script is not None and script.splitlines() == [
        next(f"add element inet weavenet-npc {n} {{ 10.0.2.3 }}" for n in after.sets if n.startswith("peer-"))
    ]
    assert nftmod.diff_script(after, after) == ""
    assert "flush chain inet weavenet-npc ingress" in (
        nftmod.diff_script(after, compile_state(Snapshot(NS, more), "h1")) or ""
    )


# -- generated clusters: the compiled chains of every host agree with decide() --------------------------------------

LABELS = st.dictionaries(st.sampled_from(["app", "tier"]), st.sampled_from(["1", "2"]), max_size=2)
HOSTS = ("h1", "h2")


@st.composite
def selectors(draw: st.DrawFn) -> LabelSelector:
    ml = draw(st.dictionaries(st.sampled_from(["app", "tier", "ns"]), st.sampled_from(["1", "2", "x"]), max_size=1))
    exprs = draw(
        st.lists(
            st.builds(
                lambda k, op, vs: Requirement(k, op, tuple(vs) if op in ("In", "NotIn") else ()),
                st.sampled_from(["app", "tier"]),
                st.sampled_from(["In", "NotIn", "Exists", "DoesNotExist"]),
                st.lists(st.sampled_from(["1", "2"]), min_size=1, max_size=2),
            ),
            max_size=1,
        )
    )
    return LabelSelector(tuple(sorted(ml.items())), tuple(exprs))


PEERS = st.one_of(
    st.builds(Peer, st.none() | selectors(), selectors()),
    st.builds(Peer, selectors(), st.none()),
    st.builds(
        lambda c, ex: Peer(ip_block=IPBlock(c, ex)),
        st.sampled_from(["10.0.0.0/16", "10.0.1.0/24", "0.0.0.0/0"]),
        st.sampled_from([(), ("10.0.1.0/30",), ("10.0.2.0/24", "10.0.1.2/32")]),
    ),
)
PPORTS = st.one_of(
    st.builds(PolicyPort, st.sampled_from(["TCP", "UDP"]), st.sampled_from([None, 80, 81, "web", "alt", "dns"])),
    st.builds(lambda lo: PolicyPort("TCP", lo, lo + 1), st.sampled_from([79, 80])),
)
RULES = st.builds(PolicyRule, st.lists(PEERS, max_size=2).map(tuple), st.lists(PPORTS, max_size=2).map(tuple))


@st.composite
def clusters(draw: st.DrawFn) -> Snapshot:
    namespaces = (Namespace("x", draw(LABELS)), Namespace("y", draw(LABELS)))
    pods = []
    for i in range(draw(st.integers(2, 6))):
        ns = draw(st.sampled_from(["x", "y"]))
        ports = draw(
            st.lists(st.sampled_from((*PORTS, ContainerPort("web", 81))), max_size=2, unique_by=lambda p: p.name)
        )
        pods.append(
            Pod(ns, f"p{i}", draw(LABELS), (f"10.0.{1 + i % 2}.{i + 1}",), tuple(ports), draw(st.sampled_from(HOSTS)))
        )
    policies = []
    for i in range(draw(st.integers(0, 3))):
        types = draw(st.sampled_from([{"Ingress"}, {"Egress"}, {"Ingress", "Egress"}]))
        policies.append(
            NetworkPolicy(
                draw(st.sampled_from(["x", "y"])),
                f"np{i}",
                draw(selectors()),
                tuple(draw(st.lists(RULES, max_size=2))),
                tuple(draw(st.lists(RULES, max_size=2))),
                frozenset(types),
            )
        )
    return Snapshot(namespaces, tuple(pods), tuple(policies))


def kernel_allows(states: dict[str, KernelState], snap: Snapshot, src: str, dst: str, proto: str, port: int) -> bool:
    hosts = {p.host for p in snap.pods if src in p.ips or dst in p.ips}
    return all(passes(states[h], src, dst, proto, port) for h in hosts)


@settings(max_examples=200, deadline=None)
@given(clusters())
def test_compiled_chains_agree_with_decide(snap: Snapshot) -> None:
    states = {h: compile_state(snap, h, Options()) for h in HOSTS}
    for s in states.values():  # every state renders, and a diff to itself is empty
        assert nftmod.full_script(s) and nftmod.diff_script(s, s) == ""
    ips = [ip for p in snap.pods for ip in p.ips] + ["10.0.9.9"]
    for src in ips:
        for dst in ips:
            if src == dst or (src == "10.0.9.9" and dst == "10.0.9.9"):
                continue
            for proto, port in (("TCP", 80), ("TCP", 81), ("UDP", 53), ("UDP", 81)):
                want = decide(snap, src, dst, proto, port).allowed
                assert kernel_allows(states, snap, src, dst, proto, port) == want, (src, dst, proto, port)
