"""Fuzz the router's HTTP API: a real router in a one-host test bed, and ``api_in_host.py`` run inside that host
(where 127.0.0.1:6784 is the router's API and nothing routes out). See that module for the targets."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest
from hypothesis import settings

from tests.fuzz.budget import LONG_PROFILE, long_run
from tests.integration.conftest import make_testbed, netns_unavailable

__all__ = ["make_testbed"]  # the fixture, for this module

pytestmark = [
    pytest.mark.netns,
    pytest.mark.skipif(netns_unavailable() is not None, reason=str(netns_unavailable())),
]
INNER = Path(__file__).with_name("api_in_host.py")
ROOT = Path(__file__).resolve().parents[2]


def test_router_api(make_testbed) -> None:
    tb = make_testbed(1)
    (host,) = tb.hosts
    res = host.weave("launch", "--proxy=false", "--plugin=false")
    assert res.returncode == 0, res.stderr
    argv = [sys.executable, "-m", "pytest", "-q", "-rxX", "-p", "no:cacheprovider", "--rootdir", str(ROOT), str(INNER)]
    if long_run() and settings.get_current_profile_name() == LONG_PROFILE:
        argv.append(f"--hypothesis-profile={LONG_PROFILE}")
    res = host.run(
        argv, check=False, timeout=3600 if long_run() else 600, env={"WEAVENET_FUZZ_API": "http://127.0.0.1:6784"}
    )
    assert res.returncode == 0, res.stdout[-20000:] + res.stderr[-5000:]
    print(res.stdout.strip().splitlines()[-1])  # the inner summary, for -s / -rP
    assert host.weave("status").returncode == 0
