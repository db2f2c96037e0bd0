"""Fixtures for tests on simulated hosts: they need root and network namespaces, and always clean up."""

from __future__ import annotations

import os
import shutil
from collections.abc import Callable, Iterator

import pytest

from weavenet.testbed import Testbed


def _netns_unavailable() -> str | None:
    if os.geteuid() != 0:
        return "needs root (network namespaces)"
    if shutil.which("ip") is None or shutil.which("nsenter") is None:
        return "needs iproute2 and util-linux (ip, nsenter)"
    return None


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    reason = _netns_unavailable()
    if reason is None:
        return
    for item in items:
        if "netns" in item.keywords:
            item.add_marker(pytest.mark.skip(reason=reason))


@pytest.fixture
def make_testbed() -> Iterator[Callable[..., Testbed]]:
    made: list[Testbed] = []

    def make(n: int, **kw: object) -> Testbed:
        tb = Testbed(n, **kw)  # type: ignore[arg-type]
        made.append(tb)
        return tb

    try:
        yield make
    finally:
        for tb in made:
            tb.close()
