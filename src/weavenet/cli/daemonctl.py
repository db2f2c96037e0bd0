"""Starting and stopping the router daemon: pid file, log file, readiness wait.

``weave launch`` runs ``python -m weavenet.daemon`` detached (new session, stdio to the log file), then polls
``GET /status`` until the router answers 200. If the daemon exits first, the error it logged is shown.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

from weavenet.cli.client import RouterUnreachable, request
from weavenet.cli.progress import Progress, waiting_on
from weavenet.config import log_file, pid_file

LAUNCH_TIMEOUT = 30.0
STOP_TIMEOUT = 10.0
POLL_TIMEOUT = 2.0


def running_pid(run_dir: str) -> int | None:
    """PID of our daemon if its pid file names a live weavenet daemon process."""
    try:
        pid = int(Path(pid_file(run_dir)).read_text().strip())
    except (FileNotFoundError, ValueError):
        return None
    try:
        cmdline = Path(f"/proc/{pid}/cmdline").read_bytes()
    except FileNotFoundError:
        return None
    return pid if b"weavenet.daemon" in cmdline else None


def _tail_errors(path: str, since: int) -> str:
    try:
        with open(path, "rb") as f:
            if os.fstat(f.fileno()).st_size < since:  # the router rotated its log since: all of it is new
                since = 0
            f.seek(since)
            text = f.read().decode(errors="replace")
    except FileNotFoundError:
        return ""
    lines = [ln for ln in text.splitlines() if ln.startswith(("ERROR", "weave:", "Traceback")) or "Error" in ln]
    return (lines[-1] if lines else (text.strip().splitlines() or [""])[-1]).removeprefix("weave: ")


def start(
    daemon_args: list[str], run_dir: str, http_addr: str, env: dict[str, str], progress: Progress | None = None
) -> tuple[bool, str]:
    """Start the daemon and wait until it is ready. Returns (ok, error message); the daemon removes what a launch
    that fails created (see ``weavenet.daemon.root``), this only waits, saying what for to ``progress``."""
    os.makedirs(run_dir, exist_ok=True)
    log_path = log_file(run_dir)
    with open(log_path, "ab") as log:
        offset = log.tell()
        proc = subprocess.Popen(
            [sys.executable, "-m", "weavenet.daemon", *daemon_args],
            stdin=subprocess.DEVNULL,
            stdout=log,
            stderr=log,
            env=env,
            start_new_session=True,
            close_fds=True,
        )
    deadline = time.monotonic() + LAUNCH_TIMEOUT
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            return False, _tail_errors(log_path, offset) or f"router exited with status {proc.returncode}"
        answer: int | None = None
        try:
            # bounded: a process that holds the port and never answers must not hang the launch; our daemon
            # then exits (the port is taken), which the next round notices
            answer = request("GET", "/status", addr=http_addr, timeout=POLL_TIMEOUT).status
            if answer == 200:
                return True, ""
        except RouterUnreachable:
            pass
        if progress is not None:
            progress.say(waiting_on(answer))
        time.sleep(0.1)
    proc.terminate()
    return False, f"router did not become ready within {LAUNCH_TIMEOUT:.0f}s; see {log_path}"


def launch_report(http_addr: str) -> dict[str, Any]:
    """The router's report just after the launch (empty if it cannot be had)."""
    import json

    try:
        reply = request("GET", "/report", addr=http_addr)
        report = json.loads(reply.body) if reply.status == 200 else {}
    except (RouterUnreachable, ValueError):
        return {}
    return report if isinstance(report, dict) else {}


def state_problems(report: dict[str, Any]) -> list[str]:
    """What the router found wrong with its saved state at launch (``weave launch`` prints it)."""
    state = report.get("State") or {}
    return [str(p) for p in (state.get("Problems") or [] if isinstance(state, dict) else [])]


def stop(run_dir: str) -> bool:
    """SIGTERM the daemon and wait for it to exit (SIGKILL after a while). False if it was not running."""
    pid = running_pid(run_dir)
    if pid is None:
        return False
    try:
        os.kill(pid, signal.SIGTERM)
    except ProcessLookupError:
        return True
    deadline = time.monotonic() + STOP_TIMEOUT
    while time.monotonic() < deadline:
        if not Path(f"/proc/{pid}").exists() or _is_zombie(pid):
            break
        time.sleep(0.05)
    else:
        try:
            os.kill(pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
    try:
        Path(pid_file(run_dir)).unlink()
    except FileNotFoundError:
        pass
    return True


def _is_zombie(pid: int) -> bool:
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except FileNotFoundError:
        return True
    return stat.rsplit(")", 1)[1].split()[0] == "Z"
