"""The router's CNI service process: started and listening, ended with the router, and a service that cannot
start or that ends is a problem the router reports (``weave status``), never a failed launch."""

from __future__ import annotations

import asyncio
import os
import signal
import time

import pytest

from weavenet.daemon import cni_service
from weavenet.daemon.cni_service import CniService, service_name


def unique() -> str:
    return f"@weavenet-cni-test-{os.getpid()}-{time.monotonic_ns()}"


def test_the_name_and_off() -> None:
    assert service_name({}) == "@weavenet-cni"
    assert service_name({"WEAVE_CNI_SERVICE": "/run/weave/cni.sock"}) == "/run/weave/cni.sock"
    assert service_name({"WEAVE_CNI_SERVICE": "off"}) is None


async def test_started_listening_and_ended_with_the_router() -> None:
    problems: list[str] = []
    service = CniService(unique(), problems.append)
    await service.start()
    assert service.proc is not None and service.proc.returncode is None
    await service.close()
    assert service.proc.returncode == 0 and problems == []


async def test_a_service_that_cannot_listen_is_a_problem() -> None:
    problems: list[str] = []
    service = CniService("/nonexistent-dir/cni.sock", problems.append)
    await service.start()
    assert service.proc is None
    assert len(problems) == 1 and "did not start (it ended with status 1)" in problems[0]
    await service.close()


async def test_a_service_that_ends_is_a_problem() -> None:
    problems: list[str] = []
    service = CniService(unique(), problems.append)
    await service.start()
    assert service.proc is not None
    os.kill(service.proc.pid, signal.SIGKILL)
    for _ in range(100):
        if problems:
            break
        await asyncio.sleep(0.05)
    assert problems == ["CNI service ended (status -9): the CNI plugins run in their own process"]
    await service.close()


async def test_an_interpreter_that_is_missing_is_a_problem(monkeypatch: pytest.MonkeyPatch) -> None:
    problems: list[str] = []
    real = cni_service.command
    monkeypatch.setattr(cni_service, "command", lambda name: real(name, "/nonexistent/python3"))
    service = CniService(unique(), problems.append)
    await service.start()
    assert service.proc is None and len(problems) == 1 and problems[0].startswith("CNI service not started")
