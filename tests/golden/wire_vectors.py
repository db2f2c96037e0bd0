"""Access to the golden vectors generated from Weave Net 2.8 (see vectors/SPEC.md)."""

from __future__ import annotations

import json
from functools import cache
from pathlib import Path
from typing import Any

VECTORS = Path(__file__).parent / "vectors"


@cache
def load(name: str) -> dict[str, Any]:
    """Load ``vectors/<name>.json`` (name without extension)."""
    with open(VECTORS / f"{name}.json") as f:
        return json.load(f)


def case(file: str, name: str) -> dict[str, Any]:
    for c in load(file)["cases"]:
        if c["name"] == name:
            return c
    raise KeyError(f"{file}: no case {name!r}")


def cases(file: str) -> list[dict[str, Any]]:
    return list(load(file)["cases"])
