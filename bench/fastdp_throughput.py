"""Fast datapath throughput and latency, side by side with a hand-made kernel VXLAN overlay and the raw underlay.

    sudo .venv/bin/python bench/fastdp_throughput.py --reps 3 --seconds 10

Two simulated hosts. In each repetition, one after the other: iperf3 (one TCP stream) host to host over the raw
underlay (the veth pair through the test bed's switch); container to container over a hand-made overlay (Linux
bridge + VXLAN device with a static FDB flood entry, MTU 1376, the anchors' baseline); container to container over
weavenet (`weave launch`, `weave attach`; the connection on fastdp, checked). Ratios are taken per repetition
against the hand-made VXLAN of the same repetition. Then 200 pings each (median RTT). Router CPU is the
weavenet router and its data-plane workers on both hosts during the weavenet runs (the kernel carries the data,
so it should be next to nothing). Before the routers start, the hand-made VXLAN is also measured alone, to show
what the routers' VXLAN sniffer costs it. The machine's load average is printed with every repetition: the
figures are only comparable within one run.
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from sleeve_throughput import cpu_seconds, iperf, router_pids, rtt, vxlan_overlay
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


def ratio(a: float, b: float) -> float:
    return a / b if b else float("nan")


def load() -> str:
    return "load {:.2f} {:.2f} {:.2f}".format(*os.getloadavg())


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--reps", type=int, default=3)
    ap.add_argument("--seconds", type=int, default=10)
    args = ap.parse_args()
    with Testbed(2, prefix="wnf") as tb:
        h1, h2 = tb.hosts
        vx = vxlan_overlay(tb)
        print(f"iperf3 {args.seconds} s x {args.reps}, one TCP stream, same run; {load()}", flush=True)
        alone = [iperf(vx[0], vx[1], "10.9.0.2", args.seconds)[0] for _ in range(max(1, args.reps // 2))]
        print(
            f"hand-made VXLAN before any weavenet router runs: {', '.join(f'{g:.2f}' for g in alone)} Gbit/s "
            f"(the routers' VXLAN sniffer sees every UDP packet the hosts receive, these too); {load()}",
            flush=True,
        )
        wn = weavenet_fastdp(tb)
        raw, kvx, fdp, cpu_ms, cores = [], [], [], [], []
        for r in range(args.reps):
            ug, _ = iperf(h1, h2, h2.ip, args.seconds)
            vg, _ = iperf(vx[0], vx[1], "10.9.0.2", args.seconds)
            pids = [p for h in tb.hosts for p in router_pids(h)]
            c0 = cpu_seconds(pids)
            wg, mb = iperf(wn[0], wn[1], "10.2.1.2", args.seconds)
            cpu = cpu_seconds(pids) - c0
            raw.append(ug)
            kvx.append(vg)
            fdp.append(wg)
            cpu_ms.append(1000 * cpu / mb if mb else float("nan"))
            cores.append(cpu / args.seconds)
            print(
                f"rep {r}: raw underlay {ug:6.2f}  hand-made VXLAN {vg:6.2f}  weavenet fastdp {wg:6.2f} Gbit/s;"
                f"  fastdp/VXLAN {ratio(wg, vg):.3f}  VXLAN/raw {ratio(vg, ug):.3f};"
                f"  router CPU {cores[-1]:.3f} cores = {cpu_ms[-1]:.3f} core-ms/MB; {load()}",
                flush=True,
            )
        ratios = [w / v for w, v in zip(fdp, kvx, strict=True) if v]
        t_raw, t_vx, t_wn = rtt(h1, h2.ip), rtt(vx[0], "10.9.0.2"), rtt(wn[0], "10.2.1.2")
        print(
            f"median: raw {statistics.median(raw):.2f}, hand-made VXLAN {statistics.median(kvx):.2f}, "
            f"weavenet fastdp {statistics.median(fdp):.2f} Gbit/s; fastdp/VXLAN per rep "
            f"{', '.join(f'{x:.3f}' for x in ratios)} (median {statistics.median(ratios):.3f})",
            flush=True,
        )
        print(
            f"ping RTT median: raw {t_raw:.3f} ms, hand-made VXLAN {t_vx:.3f} ms, weavenet fastdp {t_wn:.3f} ms "
            f"(fastdp/VXLAN {t_wn / t_vx:.2f}); router CPU median {statistics.median(cores):.3f} cores; {load()}",
            flush=True,
        )


if __name__ == "__main__":
    sys.exit(main())
