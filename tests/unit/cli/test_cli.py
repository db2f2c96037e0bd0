"""The ``weave`` command without a router: usage, one-line errors, exit codes."""

from __future__ import annotations

import os
import re
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
        "WEAVE_CNI_PLUGIN_DIR": str(tmp / "cni-bin"),  # `weave setup` installs the CNI plugins: never the machine's
        "WEAVE_CNI_CONF_DIR": str(tmp / "cni-net.d"),
    }
    return subprocess.run(
        [sys.executable, "-m", "weavenet.cli", *args], capture_output=True, text=True, env=env, timeout=30
    )


def test_usage(tmp_path: Path) -> None:
    res = weave(tmp=tmp_path)
    assert res.returncode == 1 and res.stderr.startswith("Usage:") and "weave launch" in res.stderr
    for args in (["--help"], ["help"]):
        ok = weave(*args, tmp=tmp_path)
        assert ok.returncode == 0 and "weave status" in ok.stdout


def test_every_command_the_usage_lists_exists(tmp_path: Path) -> None:
    """Weave's usage text, kept as it is, names ``setup`` too: it must not answer "no such command"."""
    usage = weave("--help", tmp=tmp_path).stdout
    listed = re.findall(r"^(?:weave +|      )([a-z][a-z-]*)\b", usage, re.M)
    assert "setup" in listed and "dns-lookup" in listed and "rmpeer" in listed
    from weavenet.cli.main import weave as group

    assert sorted(set(listed) - set(group.commands)) == []


def test_setup_installs_the_cni_plugins_as_weaves_does(tmp_path: Path) -> None:
    """Weave's ``setup`` pulled its images and then did ``setup-cni``: weavenet has no images, so the CNI
    plugins are what it sets up (``tests/unit/cni/test_install.py`` covers the details). Silent, as Weave's."""
    res = weave("setup", tmp=tmp_path)
    assert (res.returncode, res.stdout, res.stderr) == (0, "", "")
    assert sorted(p.name for p in (tmp_path / "cni-bin").iterdir() if p.is_symlink()) == ["weave-ipam", "weave-net"]
    assert (tmp_path / "cni-net.d" / "10-weave.conflist").is_file()


@pytest.mark.parametrize(
    ("args", "needle"),
    [
        (["launch", "--frobnicate"], "--frobnicate"),
        (["launch", "--port", "x"], "--port"),
        (["launch", "--log-level", "loud"], "--log-level"),
        (["launch", "--trusted-subnets", "nope"], "trusted subnets"),
        (["launch", "1.2.3.4:x!y"], "should be host"),
        (["launch", "--name", "not-a-mac"], "invalid peer name"),
        (["frobnicate"], "frobnicate"),
        (["forget"], "peers"),
        (["launch", "--network-policy", "sometimes"], "--network-policy"),
        (["policy", "apply"], "--filename"),
        (["policy", "apply", "-f", "/nonexistent.yaml"], 'error: the path "/nonexistent.yaml" does not exist'),
        (["policy", "ls", "-o", "xml"], "xml"),
        (["policy", "test", "a", "b"], "port"),
        (["policy", "rm"], "names"),
        (["policy", "rm", "pod/a"], 'doesn\'t have a resource type "pod"'),
        (["attach", "--label", "nokv", "10.2.0.1/24", "/proc/1/ns/net"], "invalid label 'nokv': expected key=value"),
        (["attach", "-l", "weave.works/namespace=Not_Ok", "10.2.0.1/24", "1"], "is not a namespace name"),
        (["attach", "-l", "weave.works/ports=http=0", "10.2.0.1/24", "1"], "between 1 and 65535"),
    ],
)
def test_bad_arguments_print_one_line(args: list[str], needle: str, tmp_path: Path) -> None:
    res = weave(*args, tmp=tmp_path)
    assert res.returncode != 0
    lines = res.stderr.strip().splitlines()
    assert len(lines) == 1 and needle.lower() in lines[0].lower(), res.stderr


def test_commands_without_a_router(tmp_path: Path) -> None:
    res = weave("status", tmp=tmp_path)
    assert res.returncode == 1 and "not running" in res.stderr
    for args in (["policy", "ls"], ["policy", "test", "a", "b", "80"], ["policy", "rm", "x"]):
        res = weave(*args, tmp=tmp_path)
        assert (res.returncode, res.stderr) == (1, "weave is not running. Have you launched it?\n"), args
    res = weave("policy", tmp=tmp_path)
    assert res.returncode == 1 and "weave policy apply -f <file>" in res.stderr
    assert weave("stop", tmp=tmp_path).stderr.strip() == "Weave is not running (ignore on Kubernetes)."
    # `weave reset` changes the host (bridge, iptables): tests/integration/test_cli_host.py runs it in a test host
    version = weave("version", tmp=tmp_path)
    assert version.returncode == 0 and version.stdout.startswith("weave script 2.8.1+weavenet.")
