"""The fuzz suite's budgets: fixed and seeded in CI, large and random by hand.

Every target declares how many examples it gets in CI (``@fuzz(n)``); in CI they are derandomized (the seed is
derived from the test, so every run tries the same inputs and a failure reproduces exactly) and no example
database is read or written. A long run by hand multiplies every budget and draws fresh inputs each time:

    .venv/bin/pytest tests/fuzz --hypothesis-profile=long            (x50)
    WEAVENET_FUZZ=long WEAVENET_FUZZ_SCALE=500 .venv/bin/pytest tests/fuzz

A long run prints the blob to reproduce any failure (``@reproduce_failure``); a failure found becomes a regular
regression test next to the parser it broke.
"""

from __future__ import annotations

import os

from hypothesis import HealthCheck, settings

LONG_PROFILE = "long"


def long_run() -> bool:
    return os.environ.get("WEAVENET_FUZZ") == LONG_PROFILE or settings.get_current_profile_name() == LONG_PROFILE


def scale() -> int:
    return int(os.environ.get("WEAVENET_FUZZ_SCALE", "50")) if long_run() else 1


def fuzz(examples: int) -> settings:
    """Settings for one fuzz target that gets ``examples`` inputs in CI."""
    common = {"deadline": None, "suppress_health_check": list(HealthCheck), "print_blob": True}
    if long_run():
        return settings(max_examples=examples * scale(), derandomize=False, **common)  # type: ignore[arg-type]
    return settings(max_examples=examples, derandomize=True, database=None, **common)  # type: ignore[arg-type]
