"""Run the whole test suite as several pytest processes at once, and report as one run.

Most of the suite's wall time is spent waiting: routers on simulated hosts converging, Docker engines
starting, pings timing out. Those tests are independent (every test bed takes a free name prefix of its own),
so running a few files at once shortens the run without needing more cores. Files are dealt to the shards
longest first, by the durations recorded in ``tests/durations.json`` (``--record`` rewrites it from this run);
a file not recorded there counts as ``DEFAULT`` seconds.

Exit status: 0 when every shard passed (or collected nothing: pytest's 5), else 1. Each shard's output is
printed whole once it ends, a failing shard's last, so the failures end the log.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
import xml.etree.ElementTree as ET
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
DURATIONS = ROOT / "tests" / "durations.json"
DEFAULT = 10.0  # seconds, for a test file not in DURATIONS


def test_files() -> list[str]:
    return sorted(str(p.relative_to(ROOT)) for p in (ROOT / "tests").rglob("test_*.py"))


def deal(files: list[str], weights: dict[str, float], jobs: int) -> list[list[str]]:
    """Longest file first onto the least loaded shard (the classic LPT rule: within 4/3 of the best split)."""
    shards: list[list[str]] = [[] for _ in range(jobs)]
    load = [0.0] * jobs
    for f in sorted(files, key=lambda f: (-weights.get(f, DEFAULT), f)):
        i = load.index(min(load))
        shards[i].append(f)
        load[i] += weights.get(f, DEFAULT)
    return [s for s in shards if s]


def durations_from(junit: Path) -> dict[str, float]:
    """Seconds per test file in a junit XML report (its testcases' times summed by file)."""
    out: dict[str, float] = {}
    for case in ET.parse(junit).getroot().iter("testcase"):
        parts = case.get("classname", "").split(".")  # tests.unit.core.test_router[.TestClass]
        path = "/".join(parts) + ".py"
        if not (ROOT / path).exists():
            path = "/".join(parts[:-1]) + ".py"
        out[path] = out.get(path, 0.0) + float(case.get("time", 0) or 0)
    return out


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("-j", "--jobs", type=int, default=int(os.environ.get("WEAVENET_TEST_JOBS", "3")))
    ap.add_argument("--record", action="store_true", help=f"rewrite {DURATIONS.relative_to(ROOT)} from this run")
    ap.add_argument("pytest_args", nargs="*", help="passed to every shard's pytest")
    args = ap.parse_args()
    weights = json.loads(DURATIONS.read_text()) if DURATIONS.exists() else {}
    shards = deal(test_files(), weights, max(1, args.jobs))
    work = Path(tempfile.mkdtemp(prefix="weavenet-shards-"))
    started = time.monotonic()
    procs = []
    for i, files in enumerate(shards):
        log = (work / f"shard{i}.log").open("w")
        cmd = [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", f"--junitxml={work}/shard{i}.xml"]
        procs.append(
            (
                i,
                files,
                log,
                subprocess.Popen([*cmd, *args.pytest_args, *files], cwd=ROOT, stdout=log, stderr=subprocess.STDOUT),
            )
        )
        est = sum(weights.get(f, DEFAULT) for f in files)
        print(f"shard {i}: {len(files)} files, about {est:.0f} s by the recorded durations", flush=True)
    results: list[tuple[int, int]] = []
    running = list(procs)
    while running:  # in the order they end, so the log shows how long each took
        time.sleep(0.5)
        for entry in list(running):
            i, _files, log, proc = entry
            rc = proc.poll()
            if rc is not None:
                log.close()
                running.remove(entry)
                results.append((i, rc))
                print(f"shard {i} ended with {rc} after {time.monotonic() - started:.0f} s", flush=True)
    ok = all(rc in (0, 5) for _, rc in results)
    for i, rc in sorted(results, key=lambda r: r[1] not in (0, 5)):  # failing shards last
        print(f"\n===== shard {i} (exit {rc}) =====", flush=True)
        sys.stdout.write((work / f"shard{i}.log").read_text())
    if args.record:
        recorded: dict[str, float] = {}
        for i, _ in results:
            if (work / f"shard{i}.xml").exists():
                recorded.update(durations_from(work / f"shard{i}.xml"))
        DURATIONS.write_text(json.dumps({k: round(v, 1) for k, v in sorted(recorded.items())}, indent=1) + "\n")
    print(f"\n{'all shards passed' if ok else 'FAILED'} in {time.monotonic() - started:.0f} s", flush=True)
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
