"""Two sleeve configurations side by side: two test beds alive at once, rounds interleaved A, B, A, B, ...

    sudo .venv/bin/python bench/sleeve_ab.py --a WEAVE_NO_TAP_STEERING=1 [--b VAR=VALUE ...] [--rounds 8]
        [--password SECRET] [--iperf SECONDS] [--size BYTES]

On this machine kind the round trip drifts by ±30 % within minutes (other tenants, the VM idling), so two
configurations measured one after the other cannot be told apart; measured in alternating rounds of the same
run, they can. Each bed is two simulated hosts with real routers (``weave launch``, sleeve only) started with the
given environment variables, and one container per host. A round is 100 pings 10 ms apart (300 pings 2 ms
apart in the second series), over A, then over B; with ``--iperf`` also one iperf3 TCP stream each. Reported:
the median RTT of all of A's and of B's pings, the median of the per-round differences, and how many rounds B won.
"""

from __future__ import annotations

import argparse
import statistics
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from sleeve_throughput import iperf, weavenet_overlay
from weavenet.testbed import Testbed


def pings(c, count: int, interval: float, size: int = 56) -> list[float]:
    argv = ["ping", "-n", "-s", str(size), "-c", str(count), "-i", str(interval), "10.2.1.2"]
    out = c.run(argv, check=False, timeout=120).stdout
    return [float(line.split("time=")[1].split()[0]) for line in out.splitlines() if "time=" in line]


def env_arg(pairs: list[str]) -> dict[str, str]:
    env = {}
    for pair in pairs:
        name, sep, value = pair.partition("=")
        if not sep or not name:
            raise SystemExit(f"not VAR=VALUE: {pair!r}")
        env[name] = value
    return env


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--a", nargs="*", default=[], metavar="VAR=VALUE", help="environment of bed A's routers")
    ap.add_argument("--b", nargs="*", default=[], metavar="VAR=VALUE", help="environment of bed B's routers")
    ap.add_argument("--rounds", type=int, default=8)
    ap.add_argument("--password", default="")
    ap.add_argument("--iperf", type=int, default=0, metavar="SECONDS", help="also one iperf3 stream per round")
    ap.add_argument("--size", type=int, default=56, metavar="BYTES", help="ping payload (ping -s)")
    args = ap.parse_args()
    env_a, env_b = env_arg(args.a), env_arg(args.b)
    print(f"A: {env_a or 'defaults'}\nB: {env_b or 'defaults'}", flush=True)
    with Testbed(2, prefix="wnsa") as ta, Testbed(2, prefix="wnsb") as tb:
        a, b = weavenet_overlay(ta, args.password or None, env_a), weavenet_overlay(tb, args.password or None, env_b)
        pings(a[0], 10, 0.01, args.size)
        pings(b[0], 10, 0.01, args.size)
        for interval, count in ((0.01, 100), (0.002, 300)):
            all_a: list[float] = []
            all_b: list[float] = []
            deltas = []
            for r in range(args.rounds):
                ra, rb = pings(a[0], count, interval, args.size), pings(b[0], count, interval, args.size)
                all_a += ra
                all_b += rb
                deltas.append(statistics.median(ra) - statistics.median(rb))
                print(f"  {interval * 1000:.0f} ms apart, round {r}: A {statistics.median(ra):.3f} ms, "
                      f"B {statistics.median(rb):.3f} ms", flush=True)
            print(f"{interval * 1000:.0f} ms apart: A {statistics.median(all_a):.3f} ms, B "
                  f"{statistics.median(all_b):.3f} ms; per round A-B median {statistics.median(deltas):+.3f} ms, "
                  f"B faster in {sum(d > 0 for d in deltas)}/{args.rounds}", flush=True)
        if args.iperf:
            ga, gb = [], []
            for r in range(args.rounds):
                ga.append(iperf(a[0], a[1], "10.2.1.2", args.iperf)[0])
                gb.append(iperf(b[0], b[1], "10.2.1.2", args.iperf)[0])
                print(f"  iperf3 round {r}: A {ga[-1]:.2f} Gbit/s, B {gb[-1]:.2f} Gbit/s", flush=True)
            print(f"iperf3: A {statistics.median(ga):.2f} Gbit/s, B {statistics.median(gb):.2f} Gbit/s, "
                  f"B/A {statistics.median(gb) / statistics.median(ga):.2f}", flush=True)


if __name__ == "__main__":
    sys.exit(main())
