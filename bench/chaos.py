"""The chaos run by hand: longer, any seed, more hosts (CI runs a short one: tests/integration/test_chaos.py).

    sudo .venv/bin/python bench/chaos.py [--seed N] [--duration 600] [--hosts 3] [--sleeve] [--plan-only]

Prints the plan's steps as they run, then the figures (traffic back after each heal and relaunch, the slowest
talk, convergence at the end) and every violation. Without --seed a random one is drawn and printed: a failing run
replays with the same --seed, --duration and --hosts (the schedule is a pure function of them).
"""

from __future__ import annotations

import argparse
import secrets
import sys
import time
from pathlib import Path

from weavenet.testbed import Testbed
from weavenet.testbed.chaos import Chaos
from weavenet.testbed.chaos_plan import plan


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--seed", type=int, default=None)
    ap.add_argument("--duration", type=float, default=600.0, help="seconds of chaos (the plan's length)")
    ap.add_argument("--hosts", type=int, default=3)
    ap.add_argument("--sleeve", action="store_true", help="routers without the fast datapath")
    ap.add_argument("--plan-only", action="store_true", help="print the plan and stop")
    ap.add_argument("--prefix", default="wnchaos")
    ap.add_argument("--logs", metavar="DIR", help="copy the routers' logs here at the end")
    args = ap.parse_args()
    seed = args.seed if args.seed is not None else secrets.randbelow(2**31)
    steps = plan(seed, args.hosts, args.duration)
    print(f"seed {seed}, {args.hosts} hosts, {args.duration:g} s, {len(steps)} steps "
          f"(replay: bench/chaos.py --seed {seed} --duration {args.duration:g} --hosts {args.hosts})", flush=True)
    if args.plan_only:
        print("\n".join(map(str, steps)))
        return 0
    t0 = time.monotonic()
    with Testbed(args.hosts, prefix=args.prefix) as tb:
        chaos = Chaos(tb, seed, steps, log=lambda line: print(line, flush=True),
                      env={"WEAVE_NO_FASTDP": "1"} if args.sleeve else None)
        try:
            chaos.setup()
            print(f"set up in {time.monotonic() - t0:.0f} s", flush=True)
            report = chaos.run()
        finally:
            if args.logs:
                Path(args.logs).mkdir(parents=True, exist_ok=True)
                for h in tb.hosts:
                    log = h.dir / "run" / "weave" / "weaver.log"
                    if log.exists():
                        (Path(args.logs) / f"{h.name}-weaver.log").write_bytes(log.read_bytes())
    print(report.summary())
    print(f"wall time {time.monotonic() - t0:.0f} s")
    return 1 if report.violations else 0


if __name__ == "__main__":
    sys.exit(main())
