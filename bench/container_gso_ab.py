"""What the cap on containers' super-frames (``gso_max_size`` of their interface) does to each data path.

    sudo .venv/bin/python bench/container_gso_ab.py --sizes 63488,64089,65536 [--sleeve] [--port-cap] --rounds 10

Two simulated hosts with real weavenet routers (fastdp, or the sleeve only with ``--sleeve``) and one container
pair per size, attached with ``weave attach`` and then given that ``gso_max_size`` on their own end; the bridge's
end of every pair keeps the default (with ``--port-cap``, 63488, as ``weave attach`` set it before). Each round
runs one iperf3 stream over every pair in rotating order; reported per size: Gbit/s and CPU per byte
(``fastdp_throughput.iperf``), and the medians of the per-round ratios to the first size.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from fastdp_throughput import iperf, load
from weavenet.testbed import Testbed


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--sizes", default="63488,64089,65536")
    ap.add_argument("--sleeve", action="store_true", help="routers without fastdp (WEAVE_NO_FASTDP=1)")
    ap.add_argument("--port-cap", action="store_true", help="the bridge's end of each veth at 63488 too")
    ap.add_argument("--rounds", type=int, default=10)
    ap.add_argument("--seconds", type=int, default=4)
    args = ap.parse_args()
    sizes = [int(x) for x in args.sizes.split(",")]
    env = {"WEAVE_NO_FASTDP": "1"} if args.sleeve else {}
    with Testbed(2, prefix="wncg") as tb:
        h1, h2 = tb.hosts
        h1.weave("launch", env=env, check=True)
        h2.weave("launch", h1.ip, env=env, check=True)
        pairs = {}
        for k, size in enumerate(sizes):
            cs = []
            for i, h in enumerate(tb.hosts):
                c = h.container(f"g{k}")
                h.weave("attach", f"10.2.{k + 1}.{i + 1}/24", c.netns_path, check=True)
                c.sh(f"ip link set ethwe gso_max_size {size}")
                cs.append(c)
            pairs[size] = (cs, f"10.2.{k + 1}.2")
        port = 63488 if args.port_cap else 65536
        for h in tb.hosts:
            h.sh(f"for d in $(ls /sys/class/net | grep vethwepl); do ip link set $d gso_max_size {port}; done")
        for cs, ip in pairs.values():
            deadline = time.monotonic() + 30
            while cs[0].run(["ping", "-c", "1", "-W", "1", ip], check=False).returncode:
                if time.monotonic() > deadline:
                    raise SystemExit(f"{ip} unreachable")
        time.sleep(2)  # the sleeve's path MTU discovery
        print(h1.weave("status", "connections").stdout.strip(), flush=True)
        got: dict[int, list[float]] = {s: [] for s in sizes}
        cost: dict[int, list[float]] = {s: [] for s in sizes}
        for r in range(args.rounds):
            order = sizes[r % len(sizes) :] + sizes[: r % len(sizes)]
            for s in reversed(order) if r % 2 else order:
                g, c = iperf(*pairs[s][0], pairs[s][1], args.seconds)
                got[s].append(g)
                cost[s].append(c)
            print(
                f"round {r}: "
                + "  ".join(f"{s} {got[s][-1]:.2f} ({cost[s][-1]:.3f})" for s in sizes)
                + f" Gbit/s (CPU s/GB); {load()}",
                flush=True,
            )
        first = sizes[0]
        for s in sizes:
            rg = [x / y for x, y in zip(got[s], got[first], strict=True) if y]
            rc = [x / y for x, y in zip(cost[s], cost[first], strict=True) if y]
            print(
                f"gso_max_size {s}: {statistics.median(got[s]):.2f} Gbit/s, ratio {statistics.median(rg):.3f} "
                f"({sum(x < 1 for x in rg)}/{len(rg)} rounds below); CPU {statistics.median(cost[s]):.3f} s/GB, "
                f"ratio {statistics.median(rc):.3f} ({sum(x > 1 for x in rc)}/{len(rc)} rounds above)",
                flush=True,
            )
        print(load(), flush=True)


if __name__ == "__main__":
    sys.exit(main())
