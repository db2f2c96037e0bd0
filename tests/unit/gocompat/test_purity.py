"""gocompat stays pure, like core (which imports it): no I/O, no clock, nothing from weavenet but its errors."""

from __future__ import annotations

import ast
import pathlib

import weavenet.gocompat

ALLOWED_STDLIB = {"__future__", "collections", "dataclasses", "datetime", "decimal", "math", "re", "typing"}


def test_gocompat_imports_only_pure_modules() -> None:
    root = pathlib.Path(weavenet.gocompat.__file__).parent
    seen: set[str] = set()
    for path in sorted(root.glob("*.py")):
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.Import):
                names = [a.name for a in node.names]
            elif isinstance(node, ast.ImportFrom):
                assert node.level == 0, f"{path.name}: relative import"
                names = [node.module or ""]
            else:
                continue
            for name in names:
                seen.add(name)
                top = name.split(".")[0]
                if top == "weavenet":
                    assert name == "weavenet.errors" or name.startswith("weavenet.gocompat."), f"{path.name}: {name}"
                else:
                    assert top in ALLOWED_STDLIB, f"{path.name} imports {name}"
    assert "weavenet.gocompat._exec" in seen  # the walk did see the package
