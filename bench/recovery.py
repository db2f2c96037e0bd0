"""Recovery times on the test bed: how long after a fault heals do links and traffic come back?

    sudo .venv/bin/python bench/recovery.py [--reps 3] [--overlays fastdp,sleeve] [--scenarios kill,cut] [--before SRC]
        [--down 5] [--cut 30] [--verbose]

Two simulated hosts with real routers (``weave launch``; h2 names h1 as its peer) and one container on each
(``weave attach``); a ping from c1 to c2 every 20 ms runs throughout, and the routers' logs are read afterwards.

* **kill**: SIGKILL every router process of h2 (the daemon and its data-plane workers), wait ``--down`` seconds
  (5), relaunch it (``weave launch h1``). Reported: *traffic back*, seconds from the moment the relaunch command
  starts until pings have been answered without a gap for 3 s (0 if they never stopped); the same from the new
  router's first log line ("Command line options", after the CLI started it and it imported its first
  modules), which leaves out the interpreter start-ups; the launch command's own duration; and the longest
  silence of the pings from the SIGKILL until they flow again (with the fast datapath kept across the restart,
  ``core/fastdp_keep.py``, they need not stop at all).
* **cut**: drop all traffic between h1 and h2 in the underlay switch for ``--cut`` seconds (30), then heal.
  Reported: *links back*, seconds from the heal until the connection is established again on both hosts
  ("connection fully established" in both routers' logs; if it never went down, 0), and *traffic back* as above.

Each figure is printed per repetition, then the median over the repetitions. ``--verbose`` prints the routers'
log lines of each fault with their time relative to the heal or relaunch (where the time goes). With ``--before
SRC`` (another checkout's ``src/``), a second bed runs that version's routers (``PYTHONPATH``) and the
repetitions alternate between the two, so both see the same load: the before/after comparison in
docs/robustness.md.
"""

from __future__ import annotations

import argparse
import contextlib
import datetime as dt
import itertools
import os
import re
import signal
import statistics
import subprocess
import sys
import threading
import time
from collections.abc import Callable
from pathlib import Path

from weavenet.testbed import Container, Host, Testbed

PING_INTERVAL = 0.02
GAP = 0.25  # pings answered with no silence longer than this count as flowing
HOLD = 3.0  # ... for this long
ESTABLISHED = "connection fully established"


class Pinger:
    """``ping -D`` from a container in the background; the (Unix) times of the answers."""

    def __init__(self, c: Container, ip: str) -> None:
        self.replies: list[float] = []
        self.proc = subprocess.Popen(
            ["ip", "netns", "exec", c.netns, "ping", "-D", "-n", "-i", str(PING_INTERVAL), "-W", "1", ip],
            stdout=subprocess.PIPE,
            stderr=subprocess.DEVNULL,
            text=True,
        )
        self.thread = threading.Thread(target=self._read, daemon=True)
        self.thread.start()

    def _read(self) -> None:
        assert self.proc.stdout is not None
        for line in self.proc.stdout:
            m = re.match(r"\[(\d+\.\d+)\] \d+ bytes from", line)
            if m:
                self.replies.append(float(m.group(1)))

    def stop(self) -> None:
        self.proc.terminate()
        self.proc.wait(10)
        self.thread.join(5)


def flowing_from(replies: list[float], t0: float, gap: float = GAP, hold: float = HOLD) -> float | None:
    """The first time >= t0 from which answers come with no gap over ``gap`` for ``hold`` seconds (t0 if they
    were flowing at t0), or None if that never happened."""
    start: float | None = None
    prev: float | None = None
    for r in sorted(x for x in replies if x >= t0 - gap):
        if prev is None or r - prev > gap:
            start = r
        prev = r
        if start is not None and r - start >= hold:
            return max(start, t0)
    return None


def longest_silence(replies: list[float], start: float, end: float) -> float:
    """The longest time without an answer between ``start`` and ``end``."""
    times = [start, *sorted(r for r in replies if start <= r <= end), end]
    return max(b - a for a, b in itertools.pairwise(times))


def log_lines(host: Host) -> list[tuple[float, str]]:
    """The router's log lines with their Unix time (Weave's layout: ``INFO: 2016/04/06 12:30:00.123456 msg``)."""
    path = host.dir / "run" / "weave" / "weaver.log"
    out = []
    try:
        text = path.read_text(errors="replace")
    except FileNotFoundError:
        return out
    for line in text.splitlines():
        m = re.match(r"\w+: (\d{4}/\d\d/\d\d \d\d:\d\d:\d\d\.\d{6}) (.*)", line)
        if m:
            t = dt.datetime.strptime(m.group(1), "%Y/%m/%d %H:%M:%S.%f").timestamp()
            out.append((t, m.group(2)))
    return out


def wait_until(pred: Callable[[], bool], timeout: float, what: str) -> None:
    deadline = time.monotonic() + timeout
    while not pred():
        if time.monotonic() > deadline:
            raise SystemExit(f"timed out waiting for {what}")
        time.sleep(0.2)


def router_pids(host: Host) -> list[int]:
    out = []
    for pid in host.pids():
        try:
            cmd = Path(f"/proc/{pid}/cmdline").read_bytes()
        except FileNotFoundError:
            continue
        if b"weavenet.daemon" in cmd or b"weavenet.dataplane" in cmd:
            out.append(pid)
    return out


def established_both(tb: Testbed) -> bool:
    for h in tb.hosts:
        out = h.weave("status", "connections").stdout
        if "established" not in out:
            return False
    return True


class Bench:
    def __init__(self, tb: Testbed, overlay: str, verbose: bool, env: dict[str, str] | None = None) -> None:
        self.tb = tb
        self.overlay = overlay
        self.verbose = verbose
        self.env = {**(env or {}), **({"WEAVE_NO_FASTDP": "1"} if overlay == "sleeve" else {})}
        h1, h2 = tb.hosts
        h1.weave("launch", env=self.env, check=True)
        h2.weave("launch", h1.ip, env=self.env, check=True)
        self.cs = []
        for i, h in enumerate(tb.hosts, 1):
            c = h.container(f"c{i}")
            h.weave("attach", f"10.2.1.{i}/24", c.netns_path, env=self.env, check=True)
            self.cs.append(c)
        self.settle()

    def settle(self) -> None:
        wait_until(lambda: established_both(self.tb), 60, "the connection established on both hosts")
        if self.overlay == "fastdp":
            wait_until(
                lambda: all("fastdp" in h.weave("status", "connections").stdout for h in self.tb.hosts),
                60,
                "fastdp on both hosts",
            )
        wait_until(
            lambda: self.cs[0].run(["ping", "-c", "1", "-W", "1", "10.2.1.2"], check=False).returncode == 0,
            30,
            "c1 -> c2",
        )

    def show(self, t0: float, since: float, replies: list[float]) -> None:
        if not self.verbose:
            return
        lines = sorted((t, h.name, msg) for h in self.tb.hosts for t, msg in log_lines(h) if t >= since)
        rs = sorted(r for r in replies if r >= since - 1)
        gaps = [(a, b) for a, b in itertools.pairwise(rs) if b - a > GAP]
        lines += [(b, "ping", f"answered again after {b - a:.3f} s of silence") for a, b in gaps]
        lines.sort()
        for t, name, msg in lines:
            print(f"      {t - t0:+7.3f} {name} {msg[:150]}")

    def kill(self, down: float) -> tuple[float | None, float, float | None, float]:
        h1, h2 = self.tb.hosts
        pinger = Pinger(self.cs[0], "10.2.1.2")
        time.sleep(2)
        t_kill = time.time()
        for pid in router_pids(h2):  # the router's processes only (h2.kill_all would take the bench's too)
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)
        time.sleep(down)
        t0 = time.time()
        h2.weave("launch", h1.ip, env=self.env, check=True)
        launched = time.time() - t0
        deadline = time.time() + 60
        while flowing_from(pinger.replies, t0) is None and time.time() < deadline:
            time.sleep(0.2)
        pinger.stop()
        back = flowing_from(pinger.replies, t0)
        self.show(t0, t_kill, pinger.replies)
        started = next((t for t, msg in log_lines(h2) if t >= t0 and msg.startswith("Command line options")), None)
        silence = longest_silence(pinger.replies, t_kill, back if back is not None else time.time())
        self.settle()
        after_start = None if back is None or started is None else back - started
        return (None if back is None else back - t0), launched, after_start, silence

    def cut(self, seconds: float) -> tuple[float | None, float | None]:
        h1, h2 = self.tb.hosts
        pinger = Pinger(self.cs[0], "10.2.1.2")
        time.sleep(2)
        t_cut = time.time()
        self.tb.cut(h1, h2)
        time.sleep(seconds)
        self.tb.restore(h1, h2)
        t0 = time.time()
        deadline = time.time() + 120
        links: float | None = None
        while time.time() < deadline:
            links = self.links_back(t_cut, t0)
            if links is not None and flowing_from(pinger.replies, t0) is not None:
                break
            time.sleep(0.2)
        pinger.stop()
        back = flowing_from(pinger.replies, t0)
        self.show(t0, t_cut, pinger.replies)
        self.settle()
        return links, (None if back is None else back - t0)

    def links_back(self, t_cut: float, t0: float) -> float | None:
        """When both routers last logged the connection established (0 if it never went down during the cut)."""
        times = []
        for h in self.tb.hosts:
            lines = log_lines(h)
            went_down = any(t >= t_cut and "connection deleted" in msg for t, msg in lines)
            ups = [t for t, msg in lines if t >= t_cut and ESTABLISHED in msg]
            if not went_down:
                times.append(t0)
            elif not ups:
                return None
            else:
                times.append(max(ups))
        return max(times) - t0 if max(times) >= t0 else 0.0


def fmt(x: float | None) -> str:
    return "never" if x is None else f"{x:5.2f}"


def med(xs: list[float | None]) -> str:
    got = [x for x in xs if x is not None]
    if not got:
        return "never"
    text = f"{statistics.median(got):.2f}"
    return text if len(got) == len(xs) else f"{text} ({len(xs) - len(got)} never)"


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--reps", type=int, default=3)
    ap.add_argument("--overlays", default="fastdp,sleeve")
    ap.add_argument("--scenarios", default="kill,cut")
    ap.add_argument("--down", type=float, default=5.0, help="seconds between SIGKILL and relaunch")
    ap.add_argument("--cut", type=float, default=30.0, help="seconds the underlay is cut")
    ap.add_argument("--verbose", action="store_true")
    ap.add_argument("--logs", metavar="DIR", help="copy the routers' logs here at the end")
    ap.add_argument("--before", metavar="SRC", help="another version's src/ directory: its routers run on a second "
                    "bed, and the repetitions alternate between the two (same load for both)")
    args = ap.parse_args()
    versions = {"": {}} if not args.before else {"before": {"PYTHONPATH": args.before}, "after": {}}
    summary = []
    for overlay in args.overlays.split(","):
        with contextlib.ExitStack() as stack:
            benches = {}
            for i, (label, env) in enumerate(versions.items()):
                tb = stack.enter_context(Testbed(2, prefix=f"wnrec{i}"))
                benches[label] = Bench(tb, overlay, args.verbose, env)
            for scenario in ("kill", "cut"):
                if scenario not in args.scenarios:
                    continue
                got: dict[str, list[tuple[float | None, ...]]] = {label: [] for label in benches}
                for r in range(args.reps):
                    for label, bench in benches.items():
                        tag = f"{overlay:>6} {label + ' ' if label else ''}{scenario} rep {r}"
                        if scenario == "kill":
                            back, launched, after, silence = bench.kill(args.down)
                            got[label].append((back, after, launched, silence))
                            print(f"{tag}: traffic back {fmt(back)} s after the relaunch, {fmt(after)} s after the "
                                  f"router's first log line (the launch command took {launched:.2f} s); longest "
                                  f"silence of the pings {silence:.2f} s", flush=True)
                        else:
                            link, back = bench.cut(args.cut)
                            got[label].append((link, back))
                            print(f"{tag}: links back {fmt(link)} s, traffic back {fmt(back)} s after the heal",
                                  flush=True)
                for label, rows in got.items():
                    cols = list(zip(*rows, strict=True))
                    name = f"{overlay:>6}{' ' + label if label else ''}"
                    if scenario == "kill":
                        summary.append(f"{name}: SIGKILL, relaunch {args.down:g} s later: traffic back "
                                       f"{med(list(cols[0]))} s after the relaunch, {med(list(cols[1]))} s after the "
                                       f"router's first log line (launch command {med(list(cols[2]))} s); longest "
                                       f"silence {med(list(cols[3]))} s")
                    else:
                        summary.append(f"{name}: {args.cut:g} s underlay cut: links back {med(list(cols[0]))} s, "
                                       f"traffic back {med(list(cols[1]))} s after the heal")
            if args.logs:
                Path(args.logs).mkdir(parents=True, exist_ok=True)
                for label, bench in benches.items():
                    for h in bench.tb.hosts:
                        src = h.dir / "run" / "weave" / "weaver.log"
                        if src.exists():
                            (Path(args.logs) / f"{overlay}-{label or 'x'}-{h.name}.log").write_bytes(src.read_bytes())
    print(f"medians of {args.reps} repetitions:")
    for line in summary:
        print("  " + line)


if __name__ == "__main__":
    sys.exit(main())
