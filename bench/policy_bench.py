"""Network policy: what it costs traffic, how fast a change is applied, and how many rules it takes.

    sudo .venv/bin/python bench/policy_bench.py --reps 4 --seconds 5

1. Throughput: two simulated hosts, weavenet on fastdp, one TCP stream (iperf3) container to container; the runs
   alternate between none (no policy table at all) and 100 policies that isolate the server (the one allowing
   the client is the last rule its first packet meets). Ratio per pair of runs. Also the rate of new connections
   (sequential TCP connects for 2 s), which is what the rules actually cost: established packets are accepted
   before any rule.
2. Applying a change with 1,000 pods (a third of them local) in 10 namespaces and 100 policies, in a network
   namespace of its own with the pods' addresses only in sets: the first full state, then a pod added, a pod's
   labels changed, a policy added, a policy deleted; compile (pure Python) and apply (one ``nft -f``) timed.
3. Rule count against Weave's weave-npc design for the same policies (one iptables rule per peer and port of a
   policy rule, egress two; default-allow rules per namespace; its static chains), and the same changes made
   its way: one ``ipset``/``iptables`` command run per member or rule changed, timed for real in the namespace.
"""

from __future__ import annotations

import argparse
import json
import os
import random
import statistics
import subprocess
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from weavenet.host.npc import Enforcer
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
)
from weavenet.policy import nft as nftmod
from weavenet.policy.select import Index
from weavenet.testbed import Testbed

NODE = "h1"


def sel(**labels: str) -> LabelSelector:
    return LabelSelector(tuple(sorted(labels.items())))


# -- a cluster of 1,000 pods and 100 policies ------------------------------------------------------------------------


def big_cluster(n_pods: int = 1000, n_policies: int = 100, seed: int = 7) -> Snapshot:
    rnd = random.Random(seed)
    namespaces = tuple(Namespace(f"ns{i}", {"team": f"t{i % 4}", "env": "prod" if i % 2 else "dev"}) for i in range(10))
    tiers = ("web", "db", "cache")
    pods = []
    for i in range(n_pods):
        ns = f"ns{i % 10}"
        labels = {"app": f"app{i % 50}", "tier": tiers[i % 3]}
        ports = (ContainerPort("http", 8080 + i % 3), ContainerPort("metrics", 9100))
        pods.append(
            Pod(ns, f"pod{i}", labels, (f"10.{32 + i // 250}.{i % 250}.{1 + i % 200}",), ports, f"h{1 + i % 3}")
        )
    policies = []
    for i in range(n_policies):
        ns = f"ns{i % 10}"
        target = sel(app=f"app{rnd.randrange(50)}") if i % 4 else sel(tier=rnd.choice(tiers))
        peers = [
            Peer(sel(tier=rnd.choice(tiers))),
            Peer(None, sel(team=f"t{rnd.randrange(4)}")),
            Peer(sel(app=f"app{rnd.randrange(50)}"), sel(env="prod")),
            Peer(ip_block=IPBlock("172.16.0.0/12", ("172.16.5.0/24",))),
            Peer(LabelSelector((), (Requirement("tier", "In", ("web", "cache")),))),
        ]
        ports = [PolicyPort("TCP", 80), PolicyPort("TCP", "http"), PolicyPort("TCP", 8000, 8100), PolicyPort("UDP", 53)]
        ingress = (PolicyRule(tuple(rnd.sample(peers, 2)), tuple(rnd.sample(ports, 2))),)
        egress = (PolicyRule(tuple(rnd.sample(peers, 1)), tuple(rnd.sample(ports, 1))),) if i % 3 == 0 else ()
        types = frozenset({"Ingress", "Egress"} if egress else {"Ingress"})
        policies.append(NetworkPolicy(ns, f"pol{i}", target, ingress, egress, types))
    return Snapshot(namespaces, tuple(pods), tuple(policies))


# -- Weave's weave-npc design, as a model: its ipsets and iptables rules for the same snapshot ---------------------


def weave_npc(snap: Snapshot) -> tuple[dict[str, frozenset[str]], list[str]]:
    """weave-npc's ipsets (name -> members) and rules (one string each) for ``snap``, cluster-wide as it keeps them:
    a hash:ip per pod selector, a list:set per namespace selector, a hash:net per ipBlock's excepts, three sets per
    namespace; per policy rule one rule per peer x port (egress: a MARK rule and a RETURN rule)."""
    idx = Index(snap)
    sets: dict[str, set[str]] = {}
    rules: list[str] = [f"static-{i}" for i in range(5 + 6 + 2 + 1)]  # WEAVE-NPC, -EGRESS, lazy tail, -ACCEPT
    namespaces = sorted(idx.ns_labels)
    for ns in namespaces:
        pods = idx.by_ns.get(ns, [])
        sets[f"all:{ns}"] = {ip for p in pods for ip in p.ips}
        for d in ("ingress", "egress"):
            isolated = {
                p.key
                for pol in snap.policies
                if pol.namespace == ns and (pol.affects_ingress if d == "ingress" else pol.affects_egress)
                for p in idx.selected(pol)
            }
            sets[f"{d}-default:{ns}"] = {ip for p in pods if p.key not in isolated for ip in p.ips}
        rules += [f"default-ingress:{ns}", f"default-egress:{ns}:mark", f"default-egress:{ns}:return"]
    seen: set[str] = set()
    for pol in snap.policies:
        target = f"pods:{pol.namespace}:{pol.pod_selector}"
        sets[target] = {ip for p in idx.selected(pol) for ip in p.ips}
        for direction, rule_list in (("ingress", pol.ingress), ("egress", pol.egress)):
            if (direction == "egress") != pol.affects_egress and direction == "egress":
                continue
            for rule in rule_list:
                peer_names = []
                for peer in rule.peers or (None,):
                    if peer is None:
                        peer_names.append("any")
                    elif peer.ip_block is not None:
                        name = f"except:{pol.namespace}:{peer.ip_block.excepts}"
                        sets[name] = set(peer.ip_block.excepts)
                        peer_names.append(f"{peer.ip_block.cidr}!{name}")
                    elif peer.namespace_selector is not None and peer.pod_selector is None:
                        name = f"ns:{peer.namespace_selector}"
                        sets[name] = {
                            f"all:{ns}" for ns in namespaces if peer.namespace_selector.matches(idx.ns_labels[ns])
                        }
                        peer_names.append(name)
                    else:
                        name = f"pods:{pol.namespace}:{peer}"
                        sets[name] = {ip for p in idx.peer_pods(pol, peer) for ip in p.ips}
                        peer_names.append(name)
                for peer_name in peer_names:
                    for port in rule.ports or (None,):
                        spec = f"{direction}:{target}:{peer_name}:{port}"
                        if spec in seen:
                            continue
                        seen.add(spec)
                        rules += [spec] if direction == "ingress" else [spec + ":mark", spec + ":return"]
    return {k: frozenset(v) for k, v in sets.items()}, rules


def npc_ops(old: Snapshot, new: Snapshot) -> tuple[int, int]:
    """(ipset member or set operations, iptables rule operations) weave-npc makes for the change."""
    s0, r0 = weave_npc(old)
    s1, r1 = weave_npc(new)
    members = sum(len(s0.get(k, frozenset()) ^ s1.get(k, frozenset())) for k in set(s0) | set(s1))
    members += len(set(s0) ^ set(s1))  # sets created or destroyed
    return members, len(set(r0) ^ set(r1))


# -- measurements --------------------------------------------------------------------------------------------------


def sh(netns: str, cmd: str) -> None:
    subprocess.run(["ip", "netns", "exec", netns, "sh", "-c", cmd], check=True, capture_output=True)


def time_npc_ops(netns: str, members: int, rules: int) -> float:
    """Run as many ``ipset add`` and ``iptables -A`` commands as weave-npc would (it runs one per operation)."""
    sh(netns, "ipset create wnpc-bench hash:ip -exist; iptables -N WNPC-BENCH 2>/dev/null || true")
    start = time.monotonic()
    for i in range(members):
        ip = f"10.99.{i // 250}.{i % 250}"
        subprocess.run(["ip", "netns", "exec", netns, "ipset", "add", "-exist", "wnpc-bench", ip], check=True)
    for i in range(rules):
        spec = ["-m", "set", "--match-set", "wnpc-bench", "src", "-p", "tcp", "--dport", str(1000 + i), "-j", "ACCEPT"]
        subprocess.run(["ip", "netns", "exec", netns, "iptables", "-w", "-A", "WNPC-BENCH", *spec], check=True)
    took = time.monotonic() - start
    sh(netns, "iptables -F WNPC-BENCH; ipset flush wnpc-bench")
    return took


def changes(snap: Snapshot) -> list[tuple[str, Snapshot]]:
    pods = list(snap.pods)
    added = Pod("ns3", "new", {"app": "app3", "tier": "web"}, ("10.40.0.1",), (ContainerPort("http", 8080),), NODE)
    moved = {"app": "app7", "tier": "db"}
    relabelled = [p if p.name != "pod3" else Pod(p.namespace, p.name, moved, p.ips, p.ports, p.host) for p in pods]
    extra = NetworkPolicy(
        "ns3", "extra", sel(app="app3"), (PolicyRule((Peer(None, sel(team="t1")),), (PolicyPort("TCP", 443),)),)
    )
    return [
        ("a pod added", Snapshot(snap.namespaces, (*pods, added), snap.policies)),
        ("a pod's labels changed", Snapshot(snap.namespaces, tuple(relabelled), snap.policies)),
        ("a policy added", Snapshot(snap.namespaces, snap.pods, (*snap.policies, extra))),
        ("a policy deleted", Snapshot(snap.namespaces, snap.pods, snap.policies[1:])),
    ]


def bench_apply(reps: int) -> None:
    netns = f"wnpcbench{os.getpid()}"
    subprocess.run(["ip", "netns", "add", netns], check=True)
    try:
        path = f"/var/run/netns/{netns}"
        snap = big_cluster()
        t = time.monotonic()
        base = compile_state(snap, NODE)
        compile_s = time.monotonic() - t
        enf = Enforcer(path)
        full = enf.apply(base)
        ours_rules = base.rule_count() + 2 * 3 + 4  # + each chain's drop tail, + the hook chain
        sets, rules = weave_npc(snap)
        print(f"cluster: {len(snap.pods)} pods ({sum(p.host == NODE for p in snap.pods)} local), "
              f"{len(snap.namespaces)} namespaces, {len(snap.policies)} policies")  # fmt: skip
        print(f"full state: compile {compile_s * 1000:.0f} ms, nft apply {full.seconds * 1000:.0f} ms "
              f"({full.lines} commands, {base.element_count()} set members)")  # fmt: skip
        print(f"rules: weavenet {ours_rules} nft rules in {len(base.sets) + 1} sets; "
              f"weave-npc design {len(rules)} iptables rules in {len(sets)} ipsets "
              f"({sum(len(v) for v in sets.values())} members)")  # fmt: skip
        print(
            "| change | weavenet compile ms | nft apply ms | total ms | weave-npc ops (members, rules) | weave-npc ms |"
        )
        print("|---|---|---|---|---|---|")
        for what, changed in changes(snap):
            comp, app, tot = [], [], []
            for _ in range(reps):
                enf.apply(base)
                t = time.monotonic()
                st = compile_state(changed, NODE)
                c = time.monotonic() - t
                r = enf.apply(st)
                comp.append(c * 1000)
                app.append(r.seconds * 1000)
                tot.append((c + r.seconds) * 1000)
                assert not r.full
            m, rl = npc_ops(snap, changed)
            npc_ms = time_npc_ops(netns, m, rl) * 1000
            print(f"| {what} | {statistics.median(comp):.0f} | {statistics.median(app):.0f} | "
                  f"{statistics.median(tot):.0f} | {m}, {rl} | {npc_ms:.0f} |")  # fmt: skip
    finally:
        subprocess.run(["ip", "netns", "del", netns], check=False)


def iperf(client, server, ip: str, seconds: int) -> float:
    server.run(["iperf3", "-s", "-D", "-1"], check=False)
    time.sleep(0.3)
    res = client.run(["iperf3", "-c", ip, "-t", str(seconds), "-J"], check=False, timeout=seconds + 30)
    try:
        return json.loads(res.stdout)["end"]["sum_received"]["bits_per_second"] / 1e9
    except (ValueError, KeyError):
        return float("nan")


CONNECT_RATE = r"""
import socket, sys, time
end = time.monotonic() + float(sys.argv[2]); n = 0
while time.monotonic() < end:
    s = socket.create_connection((sys.argv[1], 5999), timeout=2); s.close(); n += 1
print(n / float(sys.argv[2]))
"""
ACCEPTOR = r"""
import socket
s = socket.socket(); s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1); s.bind(("0.0.0.0", 5999)); s.listen(512)
print("ready", flush=True)
while True:
    s.accept()[0].close()
"""


def hundred_policies(client_ip: str, server_ip: str) -> Snapshot:
    pods = (
        Pod("default", "client", {"app": "client"}, (client_ip,), (), "h1"),
        Pod("default", "server", {"app": "server"}, (server_ip,), (), "h2"),
    )
    pols = [
        NetworkPolicy("default", f"p{i:03}", sel(app="server"),
                      (PolicyRule((Peer(sel(app=f"other{i}")),), (PolicyPort("TCP", 1000 + i),)),))
        for i in range(99)
    ]  # fmt: skip
    pols.append(NetworkPolicy("default", "p099", sel(app="server"), (PolicyRule((Peer(sel(app="client")),)),)))
    return Snapshot((), pods, tuple(pols))


def bench_throughput(reps: int, seconds: int) -> None:
    with Testbed(2, prefix=f"wpb{os.getpid() % 1000}") as tb:
        h1, h2 = tb.hosts
        h1.weave("launch", check=True)
        h2.weave("launch", h1.ip, check=True)
        c1, c2 = h1.container("client"), h2.container("server")
        h1.weave("attach", "10.2.1.1/24", c1.netns_path, check=True)
        h2.weave("attach", "10.2.1.2/24", c2.netns_path, check=True)
        deadline = time.monotonic() + 30
        while c1.run(["ping", "-c", "1", "-W", "1", "10.2.1.2"], check=False).returncode:
            if time.monotonic() > deadline:
                raise SystemExit("overlay did not come up")
        assert "established fastdp" in h1.weave("status", "connections").stdout
        enf = {h.name: Enforcer(h.netns_path) for h in tb.hosts}
        snaps = {"none": None, "100 policies": hundred_policies("10.2.1.1", "10.2.1.2")}
        acceptor = subprocess.Popen(["ip", "netns", "exec", c2.netns, sys.executable, "-c", ACCEPTOR],
                                    stdout=subprocess.PIPE, text=True)  # fmt: skip
        assert acceptor.stdout is not None and acceptor.stdout.readline().strip() == "ready"
        gbps: dict[str, list[float]] = {k: [] for k in snaps}
        rate: dict[str, list[float]] = {k: [] for k in snaps}
        ratios = []
        iperf(c1, c2, "10.2.1.2", 2)  # warm up
        try:
            for rep in range(reps):
                order = list(snaps) if rep % 2 == 0 else list(reversed(snaps))
                got = {}
                for name in order:
                    for h in tb.hosts:
                        if name == "none":  # no table at all: the whole cost of policing is measured
                            enf[h.name].reset()
                            continue
                        state = compile_state(snaps[name] or Snapshot(), h.name)
                        assert h.name == "h1" or state.rule_count() == 100
                        enf[h.name].apply(state)
                    got[name] = iperf(c1, c2, "10.2.1.2", seconds)
                    gbps[name].append(got[name])
                    out = c1.run([sys.executable, "-c", CONNECT_RATE, "10.2.1.2", "2"], check=False).stdout.strip()
                    rate[name].append(float(out or "nan"))
                ratios.append(got["100 policies"] / got["none"])
                print(f"rep {rep + 1}: none {got['none']:.2f} Gbit/s, 100 policies {got['100 policies']:.2f} Gbit/s, "
                      f"ratio {ratios[-1]:.3f}; load {os.getloadavg()[0]:.2f}")  # fmt: skip
        finally:
            acceptor.kill()
            acceptor.communicate()
            for e in enf.values():
                e.reset()
        none, hundred = statistics.median(gbps["none"]), statistics.median(gbps["100 policies"])
        print(f"throughput median: none {none:.2f} Gbit/s, 100 policies {hundred:.2f} Gbit/s, "
              f"ratio median {statistics.median(ratios):.3f}")  # fmt: skip
        print(f"new connections/s median: none {statistics.median(rate['none']):.0f}, "
              f"100 policies {statistics.median(rate['100 policies']):.0f}")  # fmt: skip


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--reps", type=int, default=4)
    ap.add_argument("--seconds", type=int, default=5)
    ap.add_argument("--only", choices=["apply", "throughput"])
    args = ap.parse_args()
    print(f"nft rules over policies rendered with {nftmod.TABLE}; load {os.getloadavg()[0]:.2f}")
    if args.only != "throughput":
        bench_apply(max(args.reps, 3))
    if args.only != "apply":
        bench_throughput(args.reps, args.seconds)


if __name__ == "__main__":
    main()
