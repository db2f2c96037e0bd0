"""Faults as a standing test: a seeded chaos run on three simulated hosts (``weavenet.testbed.chaos``).

The schedule is a pure function of the seed (``chaos_plan.plan``): routers SIGKILLed and relaunched, underlay
cuts and isolated hosts healed again, 5 % loss, containers attached, detached and pinging each other, while the
invariants are checked (no duplicate address, addresses kept across restarts, names resolving to their own
containers, traffic back within a bound after each heal). CI runs one short seeded run; a failure prints the seed
and how to replay it. Longer runs: ``bench/chaos.py --seed N --duration S``; figures in docs/robustness.md.
"""

from __future__ import annotations

import os
import re
import signal
import time
from collections.abc import Callable
from pathlib import Path

import pytest

from weavenet.testbed import Testbed
from weavenet.testbed.chaos import Chaos, dig, router_pids
from weavenet.testbed.chaos_plan import plan

pytestmark = [pytest.mark.netns, pytest.mark.slow]

SEED = int(os.environ.get("WEAVENET_CHAOS_SEED", "6"))
DURATION = float(os.environ.get("WEAVENET_CHAOS_DURATION", "45"))


def test_chaos_short_run(make_testbed: Callable[..., Testbed], tmp_path: Path) -> None:
    steps = plan(SEED, 3, DURATION)
    lines: list[str] = []
    tb = make_testbed(3)
    chaos = Chaos(tb, SEED, steps, log=lines.append)
    try:
        chaos.setup()
        report = chaos.run()
    finally:
        for h in tb.hosts:  # the routers' logs, for a failure's post-mortem
            log = h.dir / "run" / "weave" / "weaver.log"
            if log.exists():
                (tmp_path / f"{h.name}-weaver.log").write_bytes(log.read_bytes())
    print("\n".join(lines))
    print(report.summary())
    replay = (
        f"replay: WEAVENET_CHAOS_SEED={SEED} WEAVENET_CHAOS_DURATION={DURATION:g} pytest {__file__}, "
        f"or bench/chaos.py --seed {SEED} --duration {DURATION:g} --hosts 3; router logs in {tmp_path}"
    )
    failed = f"chaos seed {SEED}: {len(report.violations)} violations\n{report.summary()}\n{replay}"
    assert not report.violations, failed


def _launch(h, *peers: str) -> None:
    res = h.weave("launch", "--dns-listen-address", "127.0.0.1:53", *peers)
    assert res.returncode == 0, res.stderr


def test_names_survive_a_router_restart(make_testbed: Callable[..., Testbed]) -> None:
    """A SIGKILLed and relaunched router registers its containers' names again (they were gone on every host),
    only those attached with DNS and only for addresses they still have."""
    tb = make_testbed(2)
    h1, h2 = tb.hosts
    _launch(h1)
    _launch(h2, h1.ip)
    ips = {}
    for name, extra in (("named", ()), ("quiet", ("--without-dns",)), ("moved", ())):
        c = h1.container(name)
        etc = Path(f"/etc/netns/{c.netns}")
        etc.mkdir(parents=True, exist_ok=True)
        (etc / "hostname").write_text(f"{name}.weave.local\n")
        res = h1.weave("attach", *extra, f"10.2.1.{len(ips) + 1}/24", c.netns_path)
        assert res.returncode == 0, res.stderr
        ips[name] = res.stdout.split()[0]
    assert dig(h2, ["named.weave.local"]).get("named.weave.local") == [ips["named"]] or _eventually(
        lambda: dig(h2, ["named.weave.local"]).get("named.weave.local") == [ips["named"]]
    )
    # "moved" gets another address behind the router's back while it is down: its old name must not come back
    for pid in router_pids(h1):
        os.kill(pid, signal.SIGKILL)
    moved = next(c for c in h1.containers if c.name == "moved")
    moved.run(["ip", "addr", "flush", "dev", "ethwe"])
    moved.run(["ip", "addr", "add", "10.2.1.9/24", "dev", "ethwe"])
    _launch(h1, h2.ip)
    names = ["named.weave.local", "quiet.weave.local", "moved.weave.local"]
    for h in (h1, h2):
        assert _eventually(lambda h=h: dig(h, names).get("named.weave.local") == [ips["named"]]), h.name
        got = dig(h, names)
        assert "quiet.weave.local" not in got and "moved.weave.local" not in got, (h.name, got)
    log = (h1.dir / "run" / "weave" / "weaver.log").read_text()
    assert re.search(r"1 names of containers attached before restored \(1 gone\)", log), log[-2000:]


def _eventually(pred: Callable[[], bool], timeout: float = 30) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if pred():
            return True
        time.sleep(0.5)
    return False
