"""Real routers on simulated hosts: convergence, memory per router, idle CPU and idle underlay traffic, by kind.

    sudo .venv/bin/python bench/router_resources.py --hosts 10,20,30,60 --idle 60

For each size: launches one router per host (host 1 alone, the others pointing at it; discovery builds the full
mesh), waits until every router has n-1 established connections, then measures ``--idle`` seconds.

What it counts, so that the figures are honest:

* CPU and memory of a router are those of its whole process tree: the daemon and its data-plane worker
  processes (rx, tx), which do the sleeve's and the fast datapath's heartbeats. CPU is user+system time from
  /proc; memory is the daemon's RSS and the tree's PSS (shared pages counted once).
* Underlay bytes are the switch ports' counters (frames, both directions, every byte once), and beside them
  the same traffic split by kind by iptables counters in the switch (IP bytes): TCP 6783 (control), UDP 6783
  (sleeve) and UDP 6784 (fast datapath), each by size class (small heartbeats, full-size MTU probes).
* The machine's load average is printed with every figure: other work on the machine slows convergence.

Go Weave 2.8's figures measured on this machine kind (the design anchors) are printed beside weavenet's, with
ratios; sizes Go was not measured at get a geometric interpolation, marked ``~``.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import re
import shutil
import time
from pathlib import Path

from weavenet.testbed import Testbed

ACCT = "WNB-ACCT"
# Go Weave 2.8 (N routers joined by discovery): converge s, converge MB, idle kB/s, RSS MB per router, idle CPU %.
GO = {
    5: (0.8, 1.4, 1.1, 53, 0.35),
    10: (1.3, 6.7, 8.8, 59, 1.3),
    20: (3.0, 50.0, 79.0, 69, 4.5),
    40: (66.0, 446.0, 744.0, 82, 19.0),
    60: (78.0, 1880.0, 2700.0, 96, 39.0),
}
SIZE_CLASSES = (("small", "0:300"), ("mid", "301:1000"), ("full", "1001:65535"))
KINDS = (("tcp-6783", "tcp", "6783"), ("sleeve-6783", "udp", "6783"), ("fastdp-6784", "udp", "6784"))


def go_figures(n: int) -> tuple[tuple[float, ...], bool]:
    """Go's figures at ``n`` routers, and whether they were measured (else interpolated on a log-log curve)."""
    if n in GO:
        return GO[n], True
    sizes = sorted(GO)
    lo = max((s for s in sizes if s < n), default=sizes[0])
    hi = min((s for s in sizes if s > n), default=sizes[-1])
    if lo == hi:
        return GO[lo], False
    t = (math.log(n) - math.log(lo)) / (math.log(hi) - math.log(lo))
    pairs = zip(GO[lo], GO[hi], strict=True)
    return tuple(math.exp(math.log(a) + t * (math.log(b) - math.log(a))) for a, b in pairs), False


def router_pid(host) -> int:
    for pid in host.pids():
        try:
            if b"weavenet.daemon" in Path(f"/proc/{pid}/cmdline").read_bytes():
                return pid
        except FileNotFoundError:
            continue
    raise RuntimeError(f"no router in {host.name}")


def _stat(pid: int) -> list[str]:
    return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()


def process_tree(root: int) -> list[int]:
    """``root`` and all its descendants (the data-plane workers are the daemon's children)."""
    children: dict[int, list[int]] = {}
    for d in os.listdir("/proc"):
        if d.isdigit():
            try:
                children.setdefault(int(_stat(int(d))[1]), []).append(int(d))
            except (FileNotFoundError, ProcessLookupError, IndexError):
                continue
    out, todo = [], [root]
    while todo:
        pid = todo.pop()
        out.append(pid)
        todo.extend(children.get(pid, []))
    return out


def cpu_seconds(pids: list[int]) -> float:
    """User+system time of these processes, and of the children they reaped (a worker restarted)."""
    total = 0
    for pid in pids:
        try:
            f = _stat(pid)
        except FileNotFoundError:
            continue
        total += int(f[11]) + int(f[12]) + int(f[13]) + int(f[14])
    return total / os.sysconf("SC_CLK_TCK")


def _kb(path: str, key: str) -> float:
    try:
        for line in Path(path).read_text().splitlines():
            if line.startswith(key):
                return int(line.split()[1]) / 1024
    except FileNotFoundError:
        pass
    return 0.0


def switch_bytes(tb: Testbed) -> int:
    out = 0
    for h in tb.hosts:
        stats = json.loads(os.popen(f"ip -n {tb.switch_ns} -s -j link show sw-{h.name}").read())[0]["stats64"]
        out += stats["rx"]["bytes"] + stats["tx"]["bytes"]
    return out // 2  # every byte crosses two switch ports


def accounting_rules() -> list[list[str]]:
    rules = []
    for kind, proto, port in KINDS:
        if proto == "tcp":
            for d in ("--dport", "--sport"):
                rules.append(["-p", "tcp", d, port, "-m", "comment", "--comment", kind, "-j", "RETURN"])
            continue
        for size, span in SIZE_CLASSES:
            rules.append(
                [
                    *("-p", "udp", "--dport", port, "-m", "length", "--length", span),
                    *("-m", "comment", "--comment", f"{kind}-{size}", "-j", "RETURN"),
                ]
            )
    rules.append(["-m", "comment", "--comment", "other", "-j", "RETURN"])
    return rules


def install_accounting(tb: Testbed) -> None:
    tb._ipt(["-N", ACCT])
    tb._ipt(["-I", "FORWARD", "1", "-j", ACCT])
    for r in accounting_rules():
        tb._ipt(["-A", ACCT, *r])


def read_accounting(tb: Testbed, zero: bool = False) -> dict[str, int]:
    """Bytes by kind since the last zeroing (``zero``: read and zero at once)."""
    out = tb._ipt(["-L", ACCT, "-x", "-v", "-n", *(["-Z"] if zero else [])]).stdout
    by: dict[str, int] = {}
    for line in out.splitlines():
        m = re.search(r"/\* (\S+) \*/", line)
        fields = line.split()
        if m and fields and fields[0].isdigit():
            by[m.group(1)] = by.get(m.group(1), 0) + int(fields[1])
    return by


def launch(host, env: dict[str, str] | None, *peers: str) -> None:
    """``weave launch``; on a loaded machine a router may take longer than the command waits (30 s) to be ready:
    then wait for its API up to two minutes more before giving up."""
    res = host.weave("launch", *peers, env=env, timeout=90)
    if res.returncode == 0:
        return
    print(f"{host.name}: {res.stderr.strip()}; waiting for it (load {loadavg()})", flush=True)
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline:
        if host.weave("status", timeout=30).returncode == 0:
            return
        time.sleep(2)
    raise SystemExit(f"{host.name}: router not ready")


def snapshot_profiles(where: str, name: str) -> None:
    """Copy the daemons' latest cProfile dumps (written every 10 s) to ``where/name``."""
    dest = Path(where) / name
    dest.mkdir(parents=True, exist_ok=True)
    for f in Path(where).glob("*.prof"):
        shutil.copy(f, dest / f.name)


def established(host) -> int:
    res = host.weave("report", "-f", "{{range .Router.Connections}}{{.State}} {{end}}")
    return res.stdout.split().count("established")


def loadavg() -> str:
    return " ".join(Path("/proc/loadavg").read_text().split()[:3])


def measure(n: int, idle: float, profile: str | None) -> dict[str, object]:
    env = {"WEAVENET_PROFILE": profile} if profile else None
    with Testbed(n, prefix="wnb") as tb:
        install_accounting(tb)
        first = tb.hosts[0]
        start_bytes = switch_bytes(tb)
        read_accounting(tb, zero=True)
        t0 = time.monotonic()
        launch(first, env)
        for h in tb.hosts[1:]:
            launch(h, env, first.ip)
        launched = time.monotonic()
        load_launch = loadavg()
        deadline = 300 + 3 * n
        while not all(established(h) == n - 1 for h in tb.hosts):
            if time.monotonic() - t0 > deadline:
                raise SystemExit(f"no full mesh within {deadline} s")
            time.sleep(0.2)
        converged = time.monotonic()
        converge_bytes = switch_bytes(tb) - start_bytes
        converge_kinds = read_accounting(tb, zero=True)
        time.sleep(5)  # let the last updates settle
        roots = [router_pid(h) for h in tb.hosts]
        trees = [process_tree(p) for p in roots]
        cpu0 = sum(cpu_seconds(t) for t in trees)
        daemon0 = sum(cpu_seconds([p]) for p in roots)
        b0 = switch_bytes(tb)
        read_accounting(tb, zero=True)
        if profile:
            snapshot_profiles(profile, "idle-start")
        time.sleep(idle)
        if profile:
            snapshot_profiles(profile, "idle-end")  # diff the two for the idle window (each is cumulative)
        gone = [h.name for h, p in zip(tb.hosts, roots, strict=True) if not Path(f"/proc/{p}").exists()]
        for name in gone:
            tail = tb.host(name).sh("tail -n 20 /run/weave/weaver.log").stdout
            print(f"router of {name} is gone; the end of its log:\n{tail}", flush=True)
        cpu = sum(cpu_seconds(t) for t in trees) - cpu0
        daemon_cpu = sum(cpu_seconds([p]) for p in roots) - daemon0
        idle_bytes = switch_bytes(tb) - b0
        kinds = read_accounting(tb)
        rss = [_kb(f"/proc/{p}/status", "VmRSS:") for p in roots]
        pss = [sum(_kb(f"/proc/{q}/smaps_rollup", "Pss:") for q in t) for t in trees]
        return {
            "routers": n,
            "routers_gone": gone,
            "processes_per_router": sum(len(t) for t in trees) / n,
            "launch_s": launched - t0,
            "converge_s": converged - launched,
            "converge_mb": converge_bytes / 1e6,
            "converge_kinds_mb": {k: v / 1e6 for k, v in sorted(converge_kinds.items()) if v},
            "idle_kb_s": idle_bytes / idle / 1e3,
            "idle_kinds_kb_s": {k: v / idle / 1e3 for k, v in sorted(kinds.items()) if v},
            "idle_cpu_pct": 100 * cpu / idle,
            "idle_cpu_daemons_pct": 100 * daemon_cpu / idle,
            "rss_mb": (min(rss), max(rss)),
            "tree_pss_mb": (min(pss), max(pss)),
            "load_launch": load_launch,
            "load_idle": loadavg(),
            "idle_s": idle,
        }


def report(r: dict[str, object]) -> None:
    n = int(r["routers"])  # type: ignore[call-overload]
    go, measured = go_figures(n)
    mark = "" if measured else "~"
    print(f"routers: {n} ({r['processes_per_router']:.1f} processes each)")
    print(f"launch of all routers:       {r['launch_s']:.1f} s (sequential `weave launch`), load {r['load_launch']}")
    print(
        f"full mesh after last launch: {r['converge_s']:.1f} s (Go {mark}{go[0]:.1f} s); "
        f"underlay bytes until then {r['converge_mb']:.2f} MB (Go {mark}{go[1]:.1f} MB, "
        f"ratio {r['converge_mb'] / go[1]:.3f})"  # type: ignore[operator]
    )
    print("  by kind (MB): " + ", ".join(f"{k} {v:.2f}" for k, v in r["converge_kinds_mb"].items()))  # type: ignore[attr-defined]
    print(
        f"idle underlay traffic:       {r['idle_kb_s']:.2f} kB/s all routers, {r['idle_s']:.0f} s "
        f"(Go {mark}{go[2]:.1f} kB/s, ratio {r['idle_kb_s'] / go[2]:.3f}), load {r['load_idle']}"  # type: ignore[operator]
    )
    print("  by kind (kB/s, IP bytes): " + ", ".join(f"{k} {v:.2f}" for k, v in r["idle_kinds_kb_s"].items()))  # type: ignore[attr-defined]
    print(
        f"idle CPU, all routers:       {r['idle_cpu_pct']:.2f} % of one core, daemons alone "
        f"{r['idle_cpu_daemons_pct']:.2f} % (Go {mark}{go[4]:.2f} %, ratio {r['idle_cpu_pct'] / go[4]:.2f})"  # type: ignore[operator]
    )
    lo, hi = r["rss_mb"]  # type: ignore[misc]
    plo, phi = r["tree_pss_mb"]  # type: ignore[misc]
    print(
        f"memory per router:           daemon RSS {lo:.1f}-{hi:.1f} MB, whole tree PSS {plo:.1f}-{phi:.1f} MB "
        f"(Go {mark}{go[3]:.0f} MB RSS)"
    )


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--hosts", default="10", help="comma-separated sizes, e.g. 10,20,30,60")
    ap.add_argument("--idle", type=float, default=60.0)
    ap.add_argument("--profile", help="directory: each daemon writes its cProfile there (WEAVENET_PROFILE)")
    ap.add_argument("--json", help="append each size's figures to this file, one JSON object a line")
    args = ap.parse_args()
    for n in (int(x) for x in args.hosts.split(",")):
        r = measure(n, args.idle, args.profile)
        report(r)
        print(flush=True)
        if args.json:
            with open(args.json, "a") as f:
                f.write(json.dumps(r) + "\n")


if __name__ == "__main__":
    main()
