"""``weave dns-*`` and the DNS launch options without a router: one-line errors and exit codes."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest


def weave(*args: str, tmp: Path) -> subprocess.CompletedProcess[str]:
    env = {
        **os.environ,
        "WEAVE_HTTP_ADDR": str(tmp / "no-router.sock"),
        "WEAVE_RUN_DIR": str(tmp / "run"),
        "WEAVE_STATE_DIR": str(tmp / "state"),
    }
    return subprocess.run(
        [sys.executable, "-m", "weavenet.cli", *args], capture_output=True, text=True, env=env, timeout=30
    )


@pytest.mark.parametrize(
    ("args", "needle"),
    [
        (["dns-add", "10.2.1.1"], "-h <fqdn> is required"),
        (["dns-add", "10.2.1.1", "nonsense", "10.2.1.3", "-h", "x.weave.local"], "not an IP address"),
        (["dns-remove", "10.2.1.1"], "-h <fqdn> is required"),
        (["dns-add", "mycontainer"], "not a PID or a network namespace path"),
        (["dns-add", "10.2.1.1", "-h", "x.weave.local"], "not running"),
        (["dns-lookup", "a1"], "not running"),
        (["dns-args"], "not running"),
        (["launch", "--dns-listen-address", "nowhere"], "--dns-listen-address"),
        (["launch", "--dns-domain", "."], "--dns-domain"),
        (["launch", "--dns-fallback-timeout", "soon"], "duration"),
        (["launch", "--dns-upstream", "resolver.example"], "--dns-upstream"),
    ],
)
def test_one_line_errors(args: list[str], needle: str, tmp_path: Path) -> None:
    res = weave(*args, tmp=tmp_path)
    assert res.returncode != 0
    lines = res.stderr.strip().splitlines()
    assert len(lines) == 1 and needle in lines[0], res.stderr
