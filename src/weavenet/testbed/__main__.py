"""``python -m weavenet.testbed``: simulated hosts by hand.

up N [--prefix P]        create N hosts and leave them running
status [--prefix P]      list hosts and what runs in them
exec HOST [--prefix P] -- CMD...   run a command inside a host
down [--prefix P]        remove everything with that prefix
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from pathlib import Path

from weavenet.testbed.bed import Testbed, cleanup_stale, pids_in_netns


def _state(prefix: str) -> tuple[Path, dict]:
    for state in sorted(Path("/tmp").glob(f"{prefix}-*/state.json")):
        return state.parent, json.loads(state.read_text())
    raise SystemExit(f"no test bed with prefix {prefix!r} is up")


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m weavenet.testbed")
    sub = ap.add_subparsers(dest="cmd", required=True)
    up = sub.add_parser("up")
    up.add_argument("n", type=int)
    for p in (up, sub.add_parser("down"), sub.add_parser("status")):
        p.add_argument("--prefix", default="wnt")
    ex = sub.add_parser("exec")
    ex.add_argument("host")
    ex.add_argument("--prefix", default="wnt")
    ex.add_argument("argv", nargs=argparse.REMAINDER)
    args = ap.parse_args(argv)
    if args.cmd == "up":
        tb = Testbed(args.n, prefix=args.prefix)
        tb._closed = True  # keep it after we exit
        for h in tb.hosts:
            print(f"{h.name} {h.ip}")
        return 0
    if args.cmd == "down":
        cleanup_stale(args.prefix)
        return 0
    workdir, state = _state(args.prefix)
    if args.cmd == "status":
        for name, ip in state["hosts"]:
            print(f"{name} {ip} processes={len(pids_in_netns(f'{args.prefix}-{name}'))}")
        return 0
    cmd = args.argv[1:] if args.argv[:1] == ["--"] else args.argv
    if not cmd:
        raise SystemExit("exec: no command given")
    ns = workdir / "ns"
    os.execvp(
        "nsenter",
        [
            "nsenter",
            f"--net=/run/netns/{args.prefix}-{args.host}",
            f"--mount={ns / args.host}.mnt",
            f"--uts={ns / args.host}.uts",
            "--",
            *cmd,
        ],
    )
    return 1


if __name__ == "__main__":
    sys.exit(main())
