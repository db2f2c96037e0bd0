"""IPAM in the ``weave`` command without a router: bad options and addresses are one line and non-zero."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.unit.cli.test_cli import weave

RANGE = ("--ipalloc-range", "198.18.0.0/15")  # a benchmark range no host routes, so no overlap warning


@pytest.mark.parametrize(
    ("args", "needle"),
    [
        ([*RANGE, "--ipalloc-default-subnet", "10.3.0.0/24"], "does not overlap with allocation range"),
        ([*RANGE, "--ipalloc-default-subnet", "198.16.0.0/14"], "is not inside allocation range"),
        (["--ipalloc-range", "198.18.1.0/15"], "bits after network prefix are not all zero"),
        (["--ipalloc-range", "198.18.0.0/31"], "smaller than minimum size 4"),
        (["--ipalloc-range", "198.18.0/15"], "invalid CIDR address"),
        ([*RANGE, "--ipalloc-init", "consensus=x"], "bad consensus parameter"),
        ([*RANGE, "--ipalloc-init", "consensus=-1"], "bad consensus parameter: -1"),  # 0 is taken, as Go takes it
        ([*RANGE, "--ipalloc-init", "seed="], "bad seed parameter"),
        ([*RANGE, "--ipalloc-init", "seed"], "seed mode requires peer name list"),
        ([*RANGE, "--ipalloc-init", "observer=2"], "observer mode takes no parameter"),
        ([*RANGE, "--ipalloc-init", "magic"], "unknown mode: magic"),
        ([*RANGE, "--ipalloc-reclaim-after", "soon"], "invalid duration"),
        (["--ipalloc-range", "", "--ipalloc-init", "consensus"], "--ipalloc-init specified without --ipalloc-range."),
        (
            ["--ipalloc-range", "", "--ipalloc-default-subnet", "10.1.0.0/24"],
            "--ipalloc-default-subnet specified without --ipalloc-range.",
        ),
    ],
)
def test_bad_ipam_launch_options(args: list[str], needle: str, tmp_path: Path) -> None:
    res = weave("launch", *args, tmp=tmp_path)
    assert res.returncode == 1
    lines = res.stderr.strip().splitlines()
    assert len(lines) == 1 and needle in lines[0], res.stderr


@pytest.mark.parametrize(
    ("args", "needle"),
    [
        (["attach", "net:10.2.3.2/30", "/nonexistent"], "bits after network prefix are not all zero"),
        (["attach", "net:10.2.3.2/31", "/nonexistent"], "smaller than minimum size 4"),
        (["attach", "10.2.3.300/24", "/nonexistent"], "invalid CIDR address"),
        (["detach", "net:x/24", "/nonexistent"], "invalid CIDR address"),
        (["expose", "net:10.2.3.1/24"], "bits after network prefix"),
        (["rmpeer"], "missing argument"),
        (["rmpeer", "host3"], "not running"),
        (["prime"], "not running"),
    ],
)
def test_bad_ipam_commands(args: list[str], needle: str, tmp_path: Path) -> None:
    res = weave(*args, tmp=tmp_path)
    assert res.returncode != 0
    lines = res.stderr.strip().splitlines()
    assert len(lines) == 1 and needle.lower() in lines[0].lower(), res.stderr
