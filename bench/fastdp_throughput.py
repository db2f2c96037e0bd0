"""Fast datapath throughput and latency, side by side with a hand-made kernel VXLAN overlay and the raw underlay.

    sudo .venv/bin/python bench/fastdp_throughput.py --reps 6 --seconds 5

Two simulated hosts. In each repetition: iperf3 (one TCP stream) host to host over the raw underlay (the veth
pair through the test bed's switch), then container to container over a hand-made overlay (Linux bridge + VXLAN
device with a static FDB flood entry, MTU 1376, the anchors' baseline) and over weavenet (`weave launch`,
`weave attach`; the connection on fastdp, checked), in the order VXLAN, weavenet, weavenet, VXLAN, so that a
machine getting faster or slower during the repetition favours neither. Ratios are taken per repetition, both
runs of each against both of the other. Besides Gbit/s, each run's CPU cost per byte: iperf3's CPU time on both
ends plus the kernel's softirq threads', per GB; the data path runs in those contexts, and the cost per byte
moves much less than the throughput when other work shares the machine. Then pings (median RTT), alternating
between the overlays in rounds. Router CPU is the weavenet router and its data-plane workers on both hosts during
the weavenet runs (the kernel carries the data, so it should be next to nothing). Before the routers start, the
hand-made VXLAN is also measured alone, to show what the routers (their VXLAN sniffer, iptables rules and
connection tracking, which see the hand-made overlay's packets too) cost it. The machine's load average is
printed with every repetition: the figures are only comparable within one run.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from sleeve_throughput import cpu_seconds, router_pids, rtt, vxlan_overlay
from weavenet.testbed import Testbed


def weavenet_fastdp(tb: Testbed) -> list:
    h1, h2 = tb.hosts
    h1.weave("launch", check=True)
    h2.weave("launch", h1.ip, check=True)
    cs = []
    for i, h in enumerate(tb.hosts):
        c = h.container(f"wn{i + 1}")
        h.weave("attach", f"10.2.1.{i + 1}/24", c.netns_path, check=True)
        cs.append(c)
    deadline = time.monotonic() + 30
    while True:
        lines = [h.weave("status", "connections").stdout for h in tb.hosts]
        if all("established fastdp" in line for line in lines):
            break
        if time.monotonic() > deadline:
            raise SystemExit(f"weavenet connections did not reach fastdp: {lines}")
        time.sleep(0.5)
    while cs[0].run(["ping", "-c", "1", "-W", "1", "10.2.1.2"], check=False).returncode:
        if time.monotonic() > deadline:
            raise SystemExit("weavenet overlay did not come up")
    return cs


def ksoftirqd_seconds() -> float:
    """CPU time of the softirq threads: under load the kernel defers the data path's softirq work to them."""
    total = 0.0
    for d in Path("/proc").iterdir():
        if d.name.isdigit():
            try:
                stat = (d / "stat").read_text()
            except OSError:
                continue
            if "(ksoftirqd/" in stat:
                f = stat.rsplit(")", 1)[1].split()
                total += (int(f[11]) + int(f[12])) / os.sysconf("SC_CLK_TCK")
    return total


def iperf(client, server, ip: str, seconds: int) -> tuple[float, float]:
    """(Gbit/s, CPU seconds per GB) of one TCP stream: iperf3's own CPU time on both ends (without IRQ time
    accounting, the softirq work of the whole path done in their context is theirs) plus the softirq threads'."""
    server.run(["iperf3", "-s", "-D", "-1"], check=False)
    time.sleep(0.3)
    k0 = ksoftirqd_seconds()
    res = client.run(["iperf3", "-c", ip, "-t", str(seconds), "-J"], check=False, timeout=seconds + 30)
    k = ksoftirqd_seconds() - k0
    try:
        end = json.loads(res.stdout)["end"]
        got, cpu = end["sum_received"], end["cpu_utilization_percent"]
    except (ValueError, KeyError):
        return 0.0, float("nan")
    busy = (cpu["host_total"] + cpu["remote_total"]) / 100 * got["seconds"] + k
    gb = got["bytes"] / 1e9
    return got["bits_per_second"] / 1e9, busy / gb if gb else float("nan")


def load() -> str:
    return "load {:.2f} {:.2f} {:.2f}".format(*os.getloadavg())


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--reps", type=int, default=6)
    ap.add_argument("--seconds", type=int, default=5, help="per iperf3 run (four overlay runs per repetition)")
    args = ap.parse_args()
    with Testbed(2, prefix="wnf") as tb:
        h1, h2 = tb.hosts
        vx = vxlan_overlay(tb)
        print(f"iperf3 {args.seconds} s runs, {args.reps} repetitions, one TCP stream, same run; {load()}", flush=True)
        alone = [iperf(vx[0], vx[1], "10.9.0.2", args.seconds) for _ in range(max(1, args.reps // 2))]
        print(
            "hand-made VXLAN before any weavenet router runs: "
            f"{', '.join(f'{g:.2f} Gbit/s ({c:.3f} s/GB)' for g, c in alone)}; {load()}",
            flush=True,
        )
        wn = weavenet_fastdp(tb)
        raw, kvx, fdp, ratios, cost_ratios, cores = [], [], [], [], [], []
        for r in range(args.reps):
            ug, _ = iperf(h1, h2, h2.ip, args.seconds)
            pids = [p for h in tb.hosts for p in router_pids(h)]
            runs: dict[str, list[tuple[float, float]]] = {"vx": [], "wn": []}
            cpu, wn_seconds = 0.0, 0.0
            for which in ("vx", "wn", "wn", "vx"):
                c0 = cpu_seconds(pids)
                pair, ip = (vx, "10.9.0.2") if which == "vx" else (wn, "10.2.1.2")
                runs[which].append(iperf(pair[0], pair[1], ip, args.seconds))
                if which == "wn":
                    cpu += cpu_seconds(pids) - c0
                    wn_seconds += args.seconds
            vg, wg = (statistics.mean(g for g, _ in runs[k]) for k in ("vx", "wn"))
            vc, wc = (statistics.mean(c for _, c in runs[k]) for k in ("vx", "wn"))
            raw.append(ug)
            kvx.append(vg)
            fdp.append(wg)
            ratios.append(wg / vg if vg else float("nan"))
            cost_ratios.append(wc / vc if vc else float("nan"))
            cores.append(cpu / wn_seconds)
            print(
                f"rep {r}: raw underlay {ug:6.2f}  hand-made VXLAN {vg:6.2f} ({vc:.3f} s/GB)  weavenet fastdp "
                f"{wg:6.2f} Gbit/s ({wc:.3f} s/GB);  fastdp/VXLAN {ratios[-1]:.3f}, CPU per byte "
                f"{cost_ratios[-1]:.3f};  VXLAN/raw {vg / ug if ug else float('nan'):.3f};  router CPU "
                f"{cores[-1]:.3f} cores; {load()}",
                flush=True,
            )
        print(
            f"median: raw {statistics.median(raw):.2f}, hand-made VXLAN {statistics.median(kvx):.2f}, "
            f"weavenet fastdp {statistics.median(fdp):.2f} Gbit/s; fastdp/VXLAN per rep "
            f"{', '.join(f'{x:.3f}' for x in ratios)} (median {statistics.median(ratios):.3f}, all runs pooled "
            f"{sum(fdp) / sum(kvx):.3f}); CPU per byte fastdp/VXLAN per rep "
            f"{', '.join(f'{x:.3f}' for x in cost_ratios)} (median {statistics.median(cost_ratios):.3f})",
            flush=True,
        )
        t_raw, t_vx, t_wn = [], [], []
        for _ in range(4):
            t_raw.append(rtt(h1, h2.ip, count=50))
            t_vx.append(rtt(vx[0], "10.9.0.2", count=50))
            t_wn.append(rtt(wn[0], "10.2.1.2", count=50))
        m_raw, m_vx, m_wn = (statistics.median(t) for t in (t_raw, t_vx, t_wn))
        print(
            f"ping RTT, median of 4 alternating rounds of 50: raw {m_raw:.3f} ms, hand-made VXLAN {m_vx:.3f} ms, "
            f"weavenet fastdp {m_wn:.3f} ms (fastdp/VXLAN {m_wn / m_vx:.2f}); router CPU median "
            f"{statistics.median(cores):.3f} cores; {load()}",
            flush=True,
        )


if __name__ == "__main__":
    sys.exit(main())
