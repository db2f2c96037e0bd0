"""``weave env``, ``weave config`` and the Docker options of ``weave launch`` without a router."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest


def weave(*args: str, tmp: Path, **env: str) -> subprocess.CompletedProcess[str]:
    full = {
        **os.environ,
        "WEAVE_HTTP_ADDR": str(tmp / "no-router.sock"),
        "WEAVE_RUN_DIR": str(tmp / "run"),
        "WEAVE_STATE_DIR": str(tmp / "state"),
        **env,
    }
    if "ORIG_DOCKER_HOST" not in env:
        full.pop("ORIG_DOCKER_HOST", None)
    return subprocess.run(
        [sys.executable, "-m", "weavenet.cli", *args], capture_output=True, text=True, env=full, timeout=30
    )


def test_env_and_config_print_nothing_without_a_router(tmp_path: Path) -> None:
    for args in (["env"], ["config"]):
        res = weave(*args, tmp=tmp_path)
        assert res.returncode == 0 and res.stdout == "" and res.stderr == ""


def test_env_restore(tmp_path: Path) -> None:
    res = weave("env", "--restore", tmp=tmp_path)
    assert res.returncode == 1 and res.stderr.startswith("Nothing to restore.")
    res = weave("env", "--restore", tmp=tmp_path, ORIG_DOCKER_HOST="unix:///var/run/docker.sock")
    assert res.returncode == 0 and res.stdout == "export DOCKER_HOST=unix:///var/run/docker.sock\n"


@pytest.mark.parametrize(
    ("args", "needle"),
    [
        (["launch", "--proxy=maybe"], "--proxy"),
        (["launch", "-H", "udp://1.2.3.4:5"], "-H"),
        (["launch", "--docker-api", "unix://relative"], "--docker-api"),
        (["launch", "--hostname-match", "("], "--hostname-match"),
        (["launch", "--tlsverify"], "--tls"),
    ],
)
def test_bad_docker_options_are_one_line(tmp_path: Path, args: list[str], needle: str) -> None:
    res = weave(*args, tmp=tmp_path, DOCKER_CERT_PATH=str(tmp_path / "no-certs"))
    assert res.returncode == 1
    assert len(res.stderr.strip().splitlines()) == 1 and needle in res.stderr, res.stderr
