"""The router's CNI service (:mod:`weavenet.cni.server`): started with the router, ended with it.

The plugins ``weave setup-cni`` installs hand their executions to it (:mod:`weavenet.cni.client`), which saves
each pod the interpreter's imports (see docs/benchmarks.md). It is a process of its own, not a thread of the
router's: its workers are forked, and a fork of the router (its threads, its event loop, its memory) would be
neither cheap nor safe. It listens on ``$WEAVE_CNI_SERVICE`` (``@weavenet-cni``: an abstract socket, which the
router's network namespace and so, with ``hostNetwork``, the host's, has; ``off``: none). Its standard input is a
pipe from the router: it ends when the router does, however the router ends.

A service that cannot start or that ends is logged with its reason and listed in ``weave status`` (the state
problems); the plugins then run in their own processes, as they would without it, only slower.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import sys
from collections.abc import Callable
from pathlib import Path

import weavenet

log = logging.getLogger(__name__)

DEFAULT = "@weavenet-cni"
READY_TIMEOUT = 30.0  # the service imports the plugin's modules first: long on a loaded machine
STOP_TIMEOUT = 5.0


def service_name(env: dict[str, str] | os._Environ[str]) -> str | None:
    """Where the service listens, None if it is ``off``."""
    name = env.get("WEAVE_CNI_SERVICE", DEFAULT)
    return None if name in ("", "off") else name


def command(name: str, python: str | None = None) -> list[str]:
    """The service's command line: this interpreter without site or environment (as the plugin runs), the
    installed package first on its path."""
    root = str(Path(weavenet.__file__).resolve().parent.parent)
    code = f"import sys; sys.path.insert(0, {root!r}); from weavenet.cni.server import main; main()"
    return [python or sys.executable, "-I", "-S", "-c", code, name]


class CniService:
    """The service process, its readiness and its end."""

    def __init__(self, name: str, problem: Callable[[str], None]) -> None:
        self.name, self.problem = name, problem
        self.proc: asyncio.subprocess.Process | None = None
        self.watch: asyncio.Task[None] | None = None
        self.stopping = False

    async def start(self) -> None:
        """Start it and wait until it listens; a failure is a problem reported, never the launch's."""
        try:
            self.proc = await asyncio.create_subprocess_exec(
                *command(self.name), stdin=asyncio.subprocess.PIPE, stdout=asyncio.subprocess.PIPE
            )
        except OSError as e:
            self.problem(f"CNI service not started ({e.strerror or e}): the CNI plugins run in their own process")
            return
        assert self.proc.stdout is not None
        try:
            line = await asyncio.wait_for(self.proc.stdout.readline(), READY_TIMEOUT)
        except TimeoutError:
            line = b""
        if not line.startswith(b"listening"):
            await self._end()
            why = f"it ended with status {self.proc.returncode}" if self.proc.returncode is not None else "no answer"
            self.problem(f"CNI service on {self.name} did not start ({why}): the CNI plugins run in their own process")
            self.proc = None
            return
        log.info("CNI service listening on %s (pid %d)", self.name, self.proc.pid)
        self.watch = asyncio.create_task(self._watch())

    async def _watch(self) -> None:
        assert self.proc is not None
        status = await self.proc.wait()
        if not self.stopping:
            self.problem(f"CNI service ended (status {status}): the CNI plugins run in their own process")

    async def _end(self) -> None:
        proc = self.proc
        if proc is None:
            return
        if proc.stdin is not None:
            proc.stdin.close()
        try:
            await asyncio.wait_for(proc.wait(), STOP_TIMEOUT)
        except TimeoutError:
            with contextlib.suppress(ProcessLookupError):
                proc.kill()
            await proc.wait()

    async def close(self) -> None:
        self.stopping = True
        await self._end()
        if self.watch is not None:
            await self.watch
