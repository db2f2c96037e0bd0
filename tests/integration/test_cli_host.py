"""The ``weave`` command on a simulated host, where it changes the host: ``launch`` against the host's routes,
``reset`` in each state a router can be in (running, stopped, never launched). Messages and exit codes as Weave's
script gives them."""

from __future__ import annotations

from collections.abc import Callable

import pytest

from weavenet.testbed import Host, Testbed, plan

pytestmark = [pytest.mark.netns]

STOPPED = [
    "ERROR: weave is not running; unable to remove from cluster.",
    "Re-launch weave before reset or use --force to override.",
]
NOT_RUNNING = "Weave is not running (ignore on Kubernetes)."


def lines(text: str) -> list[str]:
    return text.strip().splitlines()


def state_file(h: Host) -> bool:
    return h.run(["ls", "/var/lib/weave"]).stdout.split().count("weave-netdata.sqlite") == 1


def test_launch_names_the_route_its_default_range_overlaps(make_testbed: Callable[..., Testbed]) -> None:
    tb = make_testbed(1)
    (h1,) = tb.hosts
    gateway = plan.host_ip(tb.subnet, 2)  # on the underlay's subnet; nothing is ever sent there
    h1.run(["ip", "route", "add", "10.0.0.0/8", "via", gateway])
    res = h1.weave("launch")
    assert res.returncode == 1
    assert lines(res.stderr) == [
        "Network 10.32.0.0/12 overlaps with existing route 10.0.0.0/8 on host",
        "ERROR: Default --ipalloc-range 10.32.0.0/12 overlaps with existing route on host.",
        "You must pick another range and set it on all hosts.",
    ]
    assert h1.weave("status").returncode == 1  # nothing was started
    given = h1.weave("launch", "--ipalloc-range", "10.2.0.0/16")  # a range given: a warning, and it starts
    assert given.returncode == 0
    assert lines(given.stderr) == [
        "Network 10.2.0.0/16 overlaps with existing route 10.0.0.0/8 on host",
        "WARNING: Specified --ipalloc-range 10.2.0.0/16 overlaps with existing route on host.",
        "Unless this is deliberate, you must pick another range and set it on all hosts.",
    ]
    c = h1.container("c")
    res = h1.weave("attach", "10.2.0.9/16", c.netns_path)  # a plain address: warned of, attached all the same
    assert res.returncode == 0 and res.stdout.strip() == "10.2.0.9"
    assert lines(res.stderr) == ["Address 10.2.0.9 overlaps with existing route 10.0.0.0/8 on host"]


def test_reset_when_running_stopped_and_never_launched(make_testbed: Callable[..., Testbed]) -> None:
    tb = make_testbed(1)
    (h1,) = tb.hosts
    never = h1.weave("reset")  # nothing was ever launched: nothing to hand over, the cleanup runs
    assert never.returncode == 0 and lines(never.stderr) == [NOT_RUNNING], never.stderr
    assert h1.weave("launch", "--ipalloc-range", "10.2.0.0/16").returncode == 0
    assert state_file(h1)
    assert h1.weave("stop").returncode == 0
    stopped = h1.weave("reset")  # launched, then stopped: its address space would be lost
    assert stopped.returncode == 1 and lines(stopped.stderr) == STOPPED, stopped.stderr
    assert state_file(h1) and "weave" in h1.run(["ip", "-br", "link"]).stdout  # nothing was removed
    forced = h1.weave("reset", "--force")
    assert forced.returncode == 0 and lines(forced.stderr) == [NOT_RUNNING], forced.stderr
    assert not state_file(h1) and "weave" not in h1.run(["ip", "-br", "link"]).stdout
    again = h1.weave("reset")  # already reset: as never launched
    assert again.returncode == 0 and lines(again.stderr) == [NOT_RUNNING], again.stderr
    assert h1.weave("launch", "--ipalloc-range", "10.2.0.0/16").returncode == 0
    running = h1.weave("reset")
    assert running.returncode == 0 and running.stderr == "", running.stderr
    assert not state_file(h1) and h1.weave("status").returncode == 1
