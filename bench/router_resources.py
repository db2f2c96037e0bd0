"""Real routers on simulated hosts: convergence, memory (RSS) per router, idle CPU and idle underlay traffic.

    sudo .venv/bin/python bench/router_resources.py --hosts 10 --idle 60

Launches one router per host (host 1 alone, the others pointing at it; discovery builds the full mesh), waits
until every router has n-1 established connections, then measures for ``--idle`` seconds: CPU time of all
routers (from /proc), bytes on the underlay switch ports (both directions), and RSS of each router. The figures
of Go Weave 2.8 measured on this machine kind are in docs (anchors): 10 routers converge in 1.3 s, idle traffic
8.8 kB/s, 59 MB RSS per router, 1.3 % CPU for all routers at idle.
"""

from __future__ import annotations

import argparse
import json
import os
import time
from pathlib import Path

from weavenet.testbed import Testbed


def router_pid(host) -> int:
    for pid in host.pids():
        try:
            if b"weavenet.daemon" in Path(f"/proc/{pid}/cmdline").read_bytes():
                return pid
        except FileNotFoundError:
            continue
    raise RuntimeError(f"no router in {host.name}")


def cpu_seconds(pid: int) -> float:
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def rss_mb(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return float("nan")


def switch_bytes(tb: Testbed) -> int:
    out = 0
    for h in tb.hosts:
        stats = json.loads(os.popen(f"ip -n {tb.switch_ns} -s -j link show sw-{h.name}").read())[0]["stats64"]
        out += stats["rx"]["bytes"] + stats["tx"]["bytes"]
    return out // 2  # every byte crosses two switch ports


def established(host) -> int:
    res = host.weave("report", "-f", "{{range .Router.Connections}}{{.State}} {{end}}")
    return res.stdout.split().count("established")


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--hosts", type=int, default=10)
    ap.add_argument("--idle", type=float, default=60.0)
    args = ap.parse_args()
    n = args.hosts
    with Testbed(n, prefix="wnb") as tb:
        first = tb.hosts[0]
        start_bytes = switch_bytes(tb)
        t0 = time.monotonic()
        first.weave("launch", check=True)
        for h in tb.hosts[1:]:
            h.weave("launch", first.ip, check=True)
        launched = time.monotonic()
        while not all(established(h) == n - 1 for h in tb.hosts):
            if time.monotonic() - t0 > 180:
                raise SystemExit("no full mesh within 180 s")
            time.sleep(0.2)
        converged = time.monotonic()
        converge_bytes = switch_bytes(tb) - start_bytes
        time.sleep(5)  # let the last updates settle
        pids = [router_pid(h) for h in tb.hosts]
        cpu0 = sum(cpu_seconds(p) for p in pids)
        b0 = switch_bytes(tb)
        time.sleep(args.idle)
        cpu = sum(cpu_seconds(p) for p in pids) - cpu0
        idle_bytes = switch_bytes(tb) - b0
        rss = [rss_mb(p) for p in pids]
        print(f"routers: {n}")
        print(f"launch of all routers:      {launched - t0:.1f} s (sequential `weave launch`)")
        mesh_s, mesh_mb = converged - launched, converge_bytes / 1e6
        print(f"full mesh after last launch: {mesh_s:.1f} s; underlay bytes until then {mesh_mb:.2f} MB")
        print(f"idle underlay traffic:      {idle_bytes / args.idle / 1e3:.2f} kB/s (all routers, {args.idle:.0f} s)")
        print(f"idle CPU, all routers:      {100 * cpu / args.idle:.2f} % of one core")
        print(f"RSS per router:             min {min(rss):.1f} MB, max {max(rss):.1f} MB")


if __name__ == "__main__":
    main()
