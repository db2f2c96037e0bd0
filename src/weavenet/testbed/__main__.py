"""``python -m weavenet.testbed``: simulated hosts by hand.

up N [--prefix P] [--subnet S]     create N hosts and leave them running (state: /tmp/P-<pid>/state.json)
status [--prefix P]                list hosts, their processes, containers and impairments
exec HOST [--prefix P] -- CMD...   run a command inside a host
down [--prefix P]                  remove everything with that prefix (refuses a bed whose owner still runs)
"""

from __future__ import annotations

import argparse
import os
import sys

from weavenet.testbed import plan
from weavenet.testbed.bed import Testbed, TestbedError, cleanup_stale, list_netns


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m weavenet.testbed")
    sub = ap.add_subparsers(dest="cmd", required=True)
    up = sub.add_parser("up", help="create N hosts and leave them running")
    up.add_argument("n", type=int)
    up.add_argument("--subnet", default="192.168.48.0/24")
    down = sub.add_parser("down", help="remove a test bed (also a crashed one)")
    status = sub.add_parser("status", help="show a test bed")
    ex = sub.add_parser("exec", help="run a command inside a host")
    ex.add_argument("host")
    ex.add_argument("argv", nargs="*", help="the command (put it after --)")
    for p in (up, down, status, ex):
        p.add_argument("--prefix", default="wnt")
    argv = sys.argv[1:] if argv is None else argv
    cmd: list[str] = []
    if "--" in argv:  # everything after -- is the command, options and all
        i = argv.index("--")
        argv, cmd = argv[:i], argv[i + 1 :]
    args = ap.parse_args(argv)
    try:
        if args.cmd == "up":
            tb = Testbed(args.n, prefix=args.prefix, subnet=args.subnet)
            tb.leave_running()  # the bed outlives us; `down` removes it
            for h in tb.hosts:
                print(f"{h.name} {h.ip}")
            return 0
        if args.cmd == "down":
            cleanup_stale(args.prefix)
            return 0
        tb = Testbed.load(args.prefix)
        if args.cmd == "status":
            print(f"work dir {tb.workdir}")
            for h in tb.hosts:
                containers = [n for n in list_netns() if n.startswith(f"{tb.prefix}-{h.name}-")]
                print(f"{h.name} {h.ip} processes={len(h.pids())} containers={' '.join(containers) or '-'}")
            for rule in tb.impairments():
                print(f"impairment: {rule.removeprefix(f'-A {plan.IMPAIR_CHAIN} ')}")
            return 0
        cmd = [*args.argv, *cmd]
        if not cmd:
            ap.error("exec: no command given")
        host = tb.host(args.host)
        sys.stdout.flush()
        os.execvp("nsenter", [*host.enter(), *cmd])
    except (TestbedError, ValueError, KeyError) as e:
        print(f"error: {e}", file=sys.stderr)
        return 1
    return 1


if __name__ == "__main__":
    sys.exit(main())
