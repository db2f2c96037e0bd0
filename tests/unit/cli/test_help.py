"""``weave <command> --help`` in the README's words, and ``weave completion``: every command has its help, every
line of it is in the README, and click's completion answers for each shell."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

from weavenet.cli.help import HELP, text
from weavenet.cli.main import weave

README = Path(__file__).parents[3] / "README.md"


def _words(s: str) -> str:
    return re.sub(r"\s+", " ", s).strip()


def test_every_command_has_help_in_the_readme_words() -> None:
    readme = README.read_text()
    lines = {line.strip() for line in readme.splitlines()}
    flat = _words(readme)
    assert set(weave.commands) == set(HELP)
    for cmd, (usage, what) in HELP.items():
        for line in usage:
            assert any(line in known for known in lines), f"{cmd}: usage line not in the README: {line}"
        assert _words(what).rstrip(".;") in flat, f"{cmd}: description not in the README: {what}"


def _weave(*args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "weavenet.cli", *args],
        capture_output=True,
        text=True,
        timeout=60,
        env={**os.environ, "WEAVE_RUN_DIR": "/nonexistent-run", **(env or {})},
    )


def test_command_help_never_runs_the_command() -> None:
    res = _weave("launch", "--no-such-option", "--help")
    assert res.returncode == 0 and res.stdout == text("launch") and res.stderr == ""
    assert "weave launch starts the router" in res.stdout
    res = _weave("help", "status")
    assert res.returncode == 0 and "weave status --web" in res.stdout
    assert _weave("help", "nonsense").returncode == 1
    assert _weave("--help").stdout.startswith("Usage:")  # Weave's usage of all commands, unchanged


@pytest.mark.parametrize(("shell", "expect"), [("bash", "plain,status"), ("zsh", "status"), ("fish", "status")])
def test_completion_scripts_and_their_answers(shell: str, expect: str) -> None:
    script = _weave("completion", shell)
    assert script.returncode == 0 and "_WEAVE_COMPLETE" in script.stdout
    if shell == "bash":
        assert subprocess.run(["bash", "-n"], input=script.stdout, text=True).returncode == 0
    cword = "sta" if shell == "fish" else "1"  # fish passes the word being completed, the others its index
    env = {"_WEAVE_COMPLETE": f"{shell}_complete", "COMP_WORDS": "weave sta", "COMP_CWORD": cword}
    assert expect in _weave(env=env).stdout
    env = {"_WEAVE_COMPLETE": "bash_complete", "COMP_WORDS": "weave status co", "COMP_CWORD": "2"}
    assert "connections" in _weave(env=env).stdout
    assert _weave("completion", "tcsh").returncode == 1
