"""Executes a chaos plan (:mod:`weavenet.testbed.chaos_plan`) on a test bed and checks the invariants.

Real routers run on every simulated host (``weave launch`` naming all the other hosts, weaveDNS on
127.0.0.1:53 of the host); containers are namespaces attached with ``weave attach`` (IPAM allocates their
addresses) whose hostname ``<name>.weave.local`` registers their name. Faults: SIGKILL of every process of a
router (its data-plane workers too) and ``weave launch`` again, underlay cuts in the test bed's switch, 5 %
random loss (``iptables -m statistic``).

What must hold, checked at every ``check`` (and at the end, ``settle``):

* no address is used by two containers (their kernel interfaces, across all hosts), ever;
* every container keeps the address it was attached with, across router restarts;
* a name never resolves to another container's address, and always to its own on its own host; a detached
  container's name never to an address since given to another container, on a host that has reached the
  detaching one for ``GOSSIP_GRACE`` seconds since (one cut off cannot know yet); at ``settle`` every name
  resolves, on every host, to its own container, and the names of detached containers to nothing;
* traffic flows again within ``recovery_bound`` seconds after each heal and relaunch (timed: these are the
  run's figures), and a container reaches another whenever the underlay joins their hosts (relayed if needed).

Violations are collected with the step that found them; the caller fails the run and prints the seed, since the
plan is a pure function of it.
"""

from __future__ import annotations

import contextlib
import os
import re
import signal
import statistics
import subprocess
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from weavenet.testbed import chaos_plan
from weavenet.testbed.bed import Container, Host, Testbed, TestbedError
from weavenet.testbed.chaos_plan import Step

DOMAIN = "weave.local"
LOSS = 0.05
GOSSIP_GRACE = 10.0  # seconds of connectivity in which a change on one host must have reached another
DNS = "127.0.0.1"


@dataclass
class Ctr:
    name: str
    host: str
    ns: Container
    ip: str | None = None  # what IPAM gave it; None until attached

    @property
    def fqdn(self) -> str:
        return f"{self.name}.{DOMAIN}"


@dataclass
class Report:
    seed: int
    violations: list[str] = field(default_factory=list)
    recoveries: list[tuple[str, float]] = field(default_factory=list)  # (fault healed, seconds until traffic)
    talks: list[float] = field(default_factory=list)  # seconds until a ping answered, where one was expected
    settle: float | None = None
    skipped: list[str] = field(default_factory=list)  # steps that could not be carried out (not violations)
    duration: float = 0.0

    def summary(self) -> str:
        lines = [f"seed {self.seed}: {len(self.violations)} violations, {self.duration:.0f} s"]
        if self.recoveries:
            times = [t for _, t in self.recoveries]
            lines.append(
                f"  traffic back after {len(times)} heals/relaunches: median {statistics.median(times):.2f} s, "
                f"max {max(times):.2f} s"
            )
            for kind in sorted({k.split()[0] for k, _ in self.recoveries}):
                ts = [t for k, t in self.recoveries if k.split()[0] == kind]
                lines.append(f"    {kind:<8} n={len(ts):<3} median {statistics.median(ts):.2f} s, max {max(ts):.2f} s")
        if self.talks:
            lines.append(f"  talks answered: {len(self.talks)}, slowest {max(self.talks):.2f} s")
        if self.settle is not None:
            lines.append(f"  converged {self.settle:.1f} s after the last heal")
        lines += [f"  skipped: {s}" for s in self.skipped]
        lines += [f"  VIOLATION: {v}" for v in self.violations]
        return "\n".join(lines)


class Chaos:
    """One run: ``setup()`` then ``run()``. ``log`` receives one line per step (with its outcome)."""

    def __init__(
        self,
        tb: Testbed,
        seed: int,
        steps: list[Step],
        *,
        log: Callable[[str], None] = print,
        recovery_bound: float = 30.0,
        settle_bound: float = 90.0,
        env: dict[str, str] | None = None,
    ) -> None:
        self.tb = tb
        self.steps = steps
        self.log = log
        self.recovery_bound = recovery_bound
        self.settle_bound = settle_bound
        self.env = env or {}
        self.report = Report(seed)
        self.hosts = {h.name: h for h in tb.hosts}
        self.down: set[str] = set()
        self.cuts: set[frozenset[str]] = set()
        self.lossy: set[frozenset[str]] = set()
        self.containers: dict[str, Ctr] = {}
        self.detached: dict[str, tuple[str, float, str]] = {}  # fqdn of a detached container -> (address, when, host)
        self.joined_since: dict[frozenset[str], float] = {}  # hosts that reach each other: since when
        self.changed_at = 0.0  # monotonic time of the last change to routers or the underlay
        self.start = 0.0
        self.step_no = -1  # -1: setting up

    # -- set-up ---------------------------------------------------------------------------------------------------

    def launch(self, h: Host) -> None:
        others = [o.ip for o in self.tb.hosts if o is not h]
        res = h.weave("launch", "--dns-listen-address", f"{DNS}:53", *others, env=self.env, timeout=120)
        if res.returncode != 0:
            raise TestbedError(f"{h.name}: weave launch -> {res.returncode}: {res.stderr.strip()}")

    def setup(self) -> None:
        for h in self.tb.hosts:
            self.launch(h)
        for host, names in chaos_plan.initial_containers(len(self.tb.hosts)).items():
            for name in names:
                if not self.attach(host, name, timeout=120):
                    raise TestbedError(f"could not attach {name} before the chaos: {self.report.violations}")
        self._settle(first=True)

    # -- running -------------------------------------------------------------------------------------------------------

    def run(self) -> Report:
        self.start = time.monotonic()
        self.changed_at = self.start
        self._track_reachability()
        for i, step in enumerate(self.steps):
            self.step_no = i
            wait = self.start + step.at - time.monotonic()
            if wait > 0:
                time.sleep(wait)
            t0 = time.monotonic()
            outcome = getattr(self, f"_{step.op}")(step) or ""
            self._track_reachability()
            took = time.monotonic() - t0
            self.log(f"[{time.monotonic() - self.start:6.1f}s] step {i:3} {step} ({took:.1f}s) {outcome}")
        self.report.duration = time.monotonic() - self.start
        return self.report

    def _track_reachability(self) -> None:
        now = time.monotonic()
        for a in self.hosts:
            for b in self.hosts:
                pair = frozenset((a, b))
                if a >= b:
                    continue
                if not self.reachable(a, b):
                    self.joined_since.pop(pair, None)
                else:
                    self.joined_since.setdefault(pair, now)

    def could_know(self, host: str, of: str, since: float) -> bool:
        """Whether ``host`` has reached ``of`` for ``GOSSIP_GRACE`` seconds since ``since`` (so gossip from ``of``
        about a change at ``since`` has had time to arrive)."""
        if host == of:
            return True
        joined = self.joined_since.get(frozenset((host, of)))
        return joined is not None and time.monotonic() - max(joined, since) >= GOSSIP_GRACE

    def violation(self, text: str) -> None:
        where = f"step {self.step_no} ({self.steps[self.step_no]})" if self.step_no >= 0 else "setup"
        msg = f"{where}: {text}"
        self.report.violations.append(msg)
        self.log("  VIOLATION " + msg)

    # -- faults --------------------------------------------------------------------------------------------------------

    def _kill(self, s: Step) -> str:
        h = self.hosts[s.host]
        pids = router_pids(h)
        for pid in pids:
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)
        self.down.add(s.host)
        self.changed_at = time.monotonic()
        return f"{len(pids)} processes"

    def _relaunch(self, s: Step) -> str:
        """``weave launch`` again; pings run from before it, so traffic back is timed from the command's start
        (the command itself returns only once the router is ready, which is later)."""
        h = self.hosts[s.host]
        deadline = time.monotonic() + 10
        while router_pids(h) and time.monotonic() < deadline:  # the killed ones, until reaped
            time.sleep(0.05)
        mine = self.witness(s.host)
        self.down.discard(s.host)  # for reachable(): what should work once it runs
        theirs = [w for o in self.hosts if o != s.host and self.reachable(s.host, o) and (w := self.witness(o))]
        pingers = [Pinger(mine, w) for w in theirs] if mine is not None else []
        t0, wall0 = time.monotonic(), time.time()
        try:
            self.launch(h)
            launched = time.monotonic() - t0
            self.changed_at = time.monotonic()
            until = t0 + self.recovery_bound
            while any(p.first_after(wall0) is None for p in pingers) and time.monotonic() < until:
                time.sleep(0.1)
        finally:
            for p in pingers:
                p.stop()
        firsts = [p.first_after(wall0) for p in pingers]
        for p, first in zip(pingers, firsts, strict=True):
            if first is None:
                self.violation(
                    f"relaunch {s.host}: no traffic {p.src.name} -> {p.dst.name} within {self.recovery_bound:.0f}s"
                )
        if not pingers or None in firsts:
            return f"launched in {launched:.1f}s"
        back = max(f for f in firsts if f is not None) - wall0
        self.report.recoveries.append((f"relaunch {s.host}", back))
        return f"launched in {launched:.1f}s; traffic back {back:.2f}s after the command started"

    def _cut(self, s: Step) -> str:
        self.tb.cut(self.hosts[s.host], self.hosts[s.other])
        self.cuts.add(frozenset((s.host, s.other)))
        self.changed_at = time.monotonic()
        return ""

    def _heal(self, s: Step) -> str:
        self.tb.restore(self.hosts[s.host], self.hosts[s.other])
        self.cuts.discard(frozenset((s.host, s.other)))
        t0 = self.changed_at = time.monotonic()
        return self._recovered(f"heal {s.host}-{s.other}", s.host, t0, s.other)

    def _isolate(self, s: Step) -> str:
        for o in self.hosts:
            if o != s.host:
                self._cut(Step(s.at, "cut", s.host, o))
        return ""

    def _rejoin(self, s: Step) -> str:
        for o in self.hosts:
            if o != s.host:
                self.tb.restore(self.hosts[s.host], self.hosts[o])
                self.cuts.discard(frozenset((s.host, o)))
        t0 = self.changed_at = time.monotonic()
        return self._recovered(f"rejoin {s.host}", s.host, t0)

    def _loss(self, s: Step) -> str:
        self.tb.loss(self.hosts[s.host], self.hosts[s.other], LOSS)
        self.lossy.add(frozenset((s.host, s.other)))
        return ""

    def _unloss(self, s: Step) -> str:
        self.tb.loss(self.hosts[s.host], self.hosts[s.other], 0)
        self.lossy.discard(frozenset((s.host, s.other)))
        return ""

    # -- containers ----------------------------------------------------------------------------------------------------

    def attach(self, host: str, name: str, timeout: float = 60) -> bool:
        h = self.hosts[host]
        ns = h.container(name)
        c = Ctr(name, host, ns)
        etc = Path(f"/etc/netns/{ns.netns}")
        etc.mkdir(parents=True, exist_ok=True)
        (etc / "hostname").write_text(c.fqdn + "\n")
        try:
            res = h.weave("attach", ns.netns_path, timeout=timeout)
        except subprocess.TimeoutExpired:
            res = None
        if res is None or res.returncode != 0:
            why = "timed out" if res is None else f"rc {res.returncode}: {res.stderr.strip()[-300:]}"
            with contextlib.suppress(subprocess.TimeoutExpired):
                h.weave("detach", ns.netns_path, timeout=30)
            ns.remove()
            if self.healthy(host):
                self.violation(f"attach {name} on a healthy cluster failed: {why}")
            else:
                self.report.skipped.append(f"attach {name} during faults: {why}")
            return False
        c.ip = res.stdout.split()[0] if res.stdout.split() else None
        self.containers[name] = c
        self.detached.pop(c.fqdn, None)
        self._check_addresses(f"after attaching {name} ({c.ip})")
        return True

    def _detach(self, s: Step) -> str:
        c = self.containers.pop(s.name, None)
        if c is None:
            return "not attached (skipped)"
        h = self.hosts[c.host]
        res = h.weave("detach", c.ns.netns_path, timeout=60)
        c.ns.remove()
        if res.returncode != 0:
            self.violation(f"detach {s.name}: rc {res.returncode}: {res.stderr.strip()[-300:]}")
        if c.ip:
            self.detached[c.fqdn] = (c.ip, time.monotonic(), c.host)
        return ""

    def _attach(self, s: Step) -> str:
        return "" if self.attach(s.host, s.name) else "failed"

    # -- traffic -------------------------------------------------------------------------------------------------------

    def reachable(self, a: str, b: str) -> bool:
        """Whether the underlay and the routers let host a's containers reach host b's (relayed if need be)."""
        if a in self.down or b in self.down:
            return False
        if a == b:
            return True
        seen, todo = {a}, [a]
        while todo:
            x = todo.pop()
            for y in self.hosts:
                if y not in seen and y not in self.down and frozenset((x, y)) not in self.cuts:
                    if y == b:
                        return True
                    seen.add(y)
                    todo.append(y)
        return False

    def healthy(self, host: str) -> bool:
        return not self.down and not self.cuts and host not in self.down

    def ping(self, src: Ctr, dst: Ctr, until: float) -> float | None:
        """Seconds until ``src`` got an answer from ``dst`` (pinging every 0.2 s), or None by ``until``."""
        t0 = time.monotonic()
        while True:
            res = src.ns.run(["ping", "-n", "-c", "1", "-W", "1", str(dst.ip)], check=False, timeout=10)
            if res.returncode == 0:
                return time.monotonic() - t0
            if time.monotonic() >= until:
                return None
            time.sleep(0.2)

    def _talk(self, s: Step) -> str:
        src, dst = self.containers.get(s.name), self.containers.get(s.peer)
        if src is None or dst is None or src.ip is None or dst.ip is None:
            return "a container is not attached (skipped)"
        if not self.reachable(src.host, dst.host):
            took = self.ping(src, dst, time.monotonic())
            return f"not expected to answer ({'answered' if took is not None else 'no answer'})"
        until = max(time.monotonic() + 5, self.changed_at + self.recovery_bound)
        took = self.ping(src, dst, until)
        if took is None:
            self.violation(f"{s.name} ({src.ip}) got no answer from {s.peer} ({dst.ip}) within the bound")
            return "no answer"
        self.report.talks.append(took)
        return f"answered after {took:.2f}s"

    def _recovered(self, what: str, host: str, t0: float, other: str | None = None) -> str:
        """After a heal or relaunch: time until a witness container on ``host`` and one on each host it should
        reach (or just ``other``) answer each other."""
        mine = self.witness(host)
        if mine is None:
            return "no container to measure with"
        worst = 0.0
        for o in [other] if other else [x for x in self.hosts if x != host]:
            theirs = self.witness(o)
            if theirs is None or not self.reachable(host, o):
                continue
            took = self.ping(mine, theirs, t0 + self.recovery_bound)
            if took is None:
                self.violation(f"{what}: no traffic {mine.name} -> {theirs.name} within {self.recovery_bound:.0f}s")
                return "no traffic"
            back = time.monotonic() - t0
            worst = max(worst, back)
        self.report.recoveries.append((what, worst))
        return f"traffic back {worst:.2f}s after"

    def witness(self, host: str) -> Ctr | None:
        return next((c for c in self.containers.values() if c.host == host and c.ip), None)

    # -- invariants ----------------------------------------------------------------------------------------------------

    def _check(self, s: Step | None = None) -> str:
        self._check_addresses("check")
        self._check_names(strict_only=True)
        return ""

    def _check_addresses(self, when: str) -> None:
        """No address on two containers; every container on the address it was attached with (kernel truth)."""
        users: dict[str, list[str]] = {}
        for c in self.containers.values():
            got = container_ips(c.ns.netns)
            for ip in got:
                users.setdefault(ip, []).append(c.name)
            if c.ip is not None and got != [c.ip]:
                self.violation(f"{when}: {c.name} has {got or 'no address'}, attached with {c.ip}")
        for ip, names in users.items():
            if len(names) > 1:
                self.violation(f"{when}: duplicate address {ip} on {', '.join(sorted(names))}")

    def _check_names(self, strict_only: bool) -> list[str]:
        """A name never resolves to another container's address (a detached one's to none a live container uses),
        and on its own host (router up) always to its own; returns what is still missing elsewhere (a live name
        not resolving on an up host, a detached one still resolving), which only ``settle`` insists on."""
        live = {c.fqdn: c for c in self.containers.values() if c.ip}
        in_use = {c.ip: c.name for c in live.values()}
        missing = []
        for hname, h in self.hosts.items():
            if hname in self.down:
                continue
            answers = dig(h, [*live, *self.detached])
            for fqdn, c in live.items():
                got = answers.get(fqdn, [])
                wrong = [ip for ip in got if ip != c.ip]
                if wrong:
                    self.violation(f"on {hname} {fqdn} resolves to {got}, not only {c.ip}")
                if c.ip not in got:
                    if c.host == hname and strict_only:
                        self.violation(f"{fqdn} does not resolve on its own host {hname} (got {got})")
                    missing.append(f"{fqdn} on {hname}")
            for fqdn, (old, when, where) in self.detached.items():
                got = answers.get(fqdn, [])
                stale = [ip for ip in got if ip in in_use]
                if stale and self.could_know(hname, where, when):  # (a host cut off since cannot know yet)
                    self.violation(f"on {hname} detached {fqdn} resolves to {stale}, now {in_use[stale[0]]}'s")
                if got:
                    missing.append(f"{fqdn} (detached, had {old}) still resolves on {hname} to {got}")
        return missing

    def _settle(self, s: Step | None = None, first: bool = False) -> str:
        """Everything healed: wait for every pair of hosts to talk and every name to resolve everywhere."""
        t0 = time.monotonic()
        until = t0 + self.settle_bound
        for a in self.hosts:
            for b in self.hosts:
                wa, wb = self.witness(a), self.witness(b)
                if a != b and wa and wb and self.ping(wa, wb, until) is None:
                    self.violation(f"settle: {wa.name} -> {wb.name} no traffic within {self.settle_bound:.0f}s")
        missing = self._check_names(strict_only=False)
        while missing and time.monotonic() < until:
            time.sleep(1)
            missing = self._check_names(strict_only=False)
        for m in missing:
            self.violation(f"settle: name not right after {self.settle_bound:.0f}s: {m}")
        self._check_addresses("settle")
        for hname, h in self.hosts.items():
            listed = weave_ps(h)
            for c in self.containers.values():
                if c.host == hname and c.ip and listed.get(c.ns.netns) != [c.ip]:
                    self.violation(f"settle: weave ps on {hname} shows {c.name} with {listed.get(c.ns.netns)}")
        took = time.monotonic() - t0
        if not first:
            self.report.settle = took
        return f"converged in {took:.1f}s"


class Pinger:
    """``ping -D`` every 0.1 s from one container to another, in the background: the Unix times of the answers."""

    def __init__(self, src: Ctr, dst: Ctr) -> None:
        self.src, self.dst = src, dst
        self.replies: list[float] = []
        self.proc = subprocess.Popen(
            ["ip", "netns", "exec", src.ns.netns, "ping", "-D", "-n", "-i", "0.1", "-W", "1", str(dst.ip)],
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

    def first_after(self, wall: float) -> float | None:
        return next((r for r in list(self.replies) if r >= wall), None)

    def stop(self) -> None:
        self.proc.terminate()
        try:
            self.proc.wait(10)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait(10)
        self.thread.join(5)
        if self.proc.stdout is not None:
            self.proc.stdout.close()


def router_pids(h: Host) -> list[int]:
    """The router's processes in a host: the daemon and its data-plane workers (not the test's own)."""
    out = []
    for pid in h.pids():
        try:
            cmd = Path(f"/proc/{pid}/cmdline").read_bytes()
        except OSError:
            continue
        if b"weavenet.daemon" in cmd or b"weavenet.dataplane" in cmd:
            out.append(pid)
    return out


def container_ips(netns: str) -> list[str]:
    res = subprocess.run(
        ["ip", "-n", netns, "-4", "-o", "addr", "show", "dev", "ethwe"], capture_output=True, text=True, timeout=10
    )
    return re.findall(r"inet (\d+\.\d+\.\d+\.\d+)/", res.stdout)


def dig(h: Host, names: list[str]) -> dict[str, list[str]]:
    """A records for ``names`` from the host's weaveDNS (one ``dig`` for all of them)."""
    if not names:
        return {}
    argv = ["dig", f"@{DNS}", "+noall", "+answer", "+time=2", "+tries=2"]
    for n in names:
        argv += [n, "A"]
    res = h.run(argv, check=False, timeout=60)
    out: dict[str, list[str]] = {}
    for line in res.stdout.splitlines():
        parts = line.split()
        if len(parts) >= 5 and parts[3] == "A":
            out.setdefault(parts[0].rstrip("."), []).append(parts[4])
    return out


def weave_ps(h: Host) -> dict[str, list[str]]:
    """``weave ps``: container (a namespace's name) -> its addresses, without prefix lengths."""
    res = h.weave("ps", timeout=60)
    out = {}
    for line in res.stdout.splitlines():
        parts = line.split()
        if parts and parts[0] != "weave:expose":
            out[parts[0]] = [p.split("/")[0] for p in parts[2:]]
    return out
