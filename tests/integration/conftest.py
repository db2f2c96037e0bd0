"""Fixtures for tests on simulated hosts: they need root and network namespaces, and always clean up."""

from __future__ import annotations

import functools
import os
import shutil
import subprocess
from collections.abc import Callable, Iterator
from typing import Any

import pytest

from weavenet.testbed import Testbed, TestbedBusy

# A bed whose prefix is held by a live process (another pytest run, a `testbed up`) is left alone: the factory
# takes the next free prefix of this family instead. Crashed runs' leftovers are swept when a prefix is reused.
PREFIXES = ("wnt", *(f"wnt{i}" for i in range(2, 10)))


@functools.cache
def netns_unavailable() -> str | None:
    """Why tests marked ``netns`` cannot run here, or None."""
    if os.geteuid() != 0:
        return "needs root (creates network and mount namespaces)"
    for tool in ("ip", "nsenter", "unshare", "iptables"):
        if shutil.which(tool) is None:
            return f"needs {tool} (iproute2, util-linux, iptables)"
    try:
        subprocess.run(["ip", "netns", "list"], check=True, capture_output=True, timeout=10)
    except (OSError, subprocess.SubprocessError) as e:
        return f"`ip netns` is unavailable: {e}"
    return None


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    if not any("netns" in item.keywords for item in items):
        return
    reason = netns_unavailable()
    if reason is None:
        return
    for item in items:
        if "netns" in item.keywords:
            item.add_marker(pytest.mark.skip(reason=reason))


@pytest.fixture
def make_testbed() -> Iterator[Callable[..., Testbed]]:
    """Factory ``make_testbed(n, **kw) -> Testbed``; every bed it made is closed afterwards, pass or fail."""
    made: list[Testbed] = []

    def make(n: int, **kw: Any) -> Testbed:
        if "prefix" in kw:
            tb = Testbed(n, **kw)
        else:
            for prefix in PREFIXES:
                try:
                    tb = Testbed(n, prefix=prefix, **kw)
                    break
                except TestbedBusy:
                    continue
            else:
                raise TestbedBusy(f"all test bed prefixes {PREFIXES} are in use")
        made.append(tb)
        return tb

    try:
        yield make
    finally:
        errors = []
        for tb in reversed(made):
            try:
                tb.close()
            except Exception as e:  # close the others anyway
                errors.append(e)
        if errors:
            raise errors[0]
