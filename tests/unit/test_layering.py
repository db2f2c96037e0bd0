"""The layers and what each may import (docs/architecture.md), checked on every import statement of the sources.

Pure packages hold the protocol machines, the IPAM ring, DNS logic, the Go-compatible formatting and the status
report: no I/O and no clock, time passed in, so simulations run hundreds of peers deterministically. They may
not import the I/O modules of the standard library or the I/O libraries, nor the impure layers of weavenet. The
HTTP API talks to the parts through the protocols of ``api/control.py``, never to the daemon that builds them.
An import inside a function counts as much as one at the top: laziness is no exemption.
"""

from __future__ import annotations

import ast
from collections.abc import Iterator
from pathlib import Path

import pytest

SRC = Path(__file__).resolve().parents[2] / "src" / "weavenet"

PURE = ("core", "ipam", "dns", "gocompat", "status", "policy")
PURE_MODULES = ("kube/peers.py", "kube/plan.py")  # pure modules of impure packages
PURE_NAMES = {"weavenet." + m[:-3].replace("/", ".") for m in PURE_MODULES}
IMPURE_IN_PURE = {"dns/server.py"}  # weaveDNS's listeners: the asyncio side of the pure dns package
IO_MODULES = {"asyncio", "socket", "time", "os", "subprocess", "pyroute2", "aiohttp", "select", "threading"}
IMPURE_LAYERS = {"aio", "api", "cli", "daemon", "dataplane", "docker", "host", "testbed", "demo", "demo_docker"}


def _modules(tree: ast.AST) -> Iterator[tuple[int, str]]:
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            for alias in node.names:
                yield node.lineno, alias.name
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            yield node.lineno, node.module


def _files(package: str) -> list[Path]:
    root = SRC / package
    return sorted(root.rglob("*.py")) if root.is_dir() else []


def _imports(path: Path) -> list[tuple[int, str]]:
    return list(_modules(ast.parse(path.read_text(), str(path))))


def _layer(module: str) -> str | None:
    parts = module.split(".")
    return parts[1] if len(parts) > 1 and parts[0] == "weavenet" else None


@pytest.mark.parametrize("package", PURE)
def test_pure_packages_do_no_io(package: str) -> None:
    bad = []
    for path in _files(package):
        rel = str(path.relative_to(SRC))
        if rel in IMPURE_IN_PURE:
            continue
        for line, module in _imports(path):
            top = module.split(".")[0]
            layer = _layer(module)
            if top in IO_MODULES or layer in IMPURE_LAYERS:
                bad.append(f"{rel}:{line}: imports {module}")
    assert not bad, "pure code must not do I/O nor import the impure layers:\n" + "\n".join(bad)


@pytest.mark.parametrize("module", PURE_MODULES)
def test_pure_modules_do_no_io(module: str) -> None:
    bad = [
        f"{module}:{line}: imports {name}"
        for line, name in _imports(SRC / module)
        if name.split(".")[0] in IO_MODULES or (_layer(name) in (*IMPURE_LAYERS, "kube") and name not in PURE_NAMES)
    ]
    assert not bad, "pure code must not do I/O nor import the impure layers:\n" + "\n".join(bad)


def test_the_api_never_imports_the_daemon() -> None:
    bad = [
        f"{path.relative_to(SRC)}:{line}: imports {module}"
        for path in _files("api")
        for line, module in _imports(path)
        if _layer(module) == "daemon"
    ]
    assert not bad, "api/ talks to api/control.py protocols, not to daemon/:\n" + "\n".join(bad)


def test_the_checked_packages_exist() -> None:
    """A renamed package must not make its rules pass by checking nothing."""
    for package in (*PURE, "api"):
        assert _files(package), package
    for module in PURE_MODULES:
        assert (SRC / module).is_file(), module


def test_only_kubernetes_mode_imports_its_client() -> None:
    """lightkube (the ``kube`` extra) is Kubernetes mode's alone: ``weave launch`` must never load it."""
    bad = [
        f"{path.relative_to(SRC)}:{line}: imports {module}"
        for path in sorted(SRC.rglob("*.py"))
        if path.relative_to(SRC).parts[0] != "kube"
        for line, module in _imports(path)
        if module.split(".")[0] in ("lightkube", "httpx2")
    ]
    assert not bad, "\n".join(bad)
