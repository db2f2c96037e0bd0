"""Settings every test directory shares.

The hypothesis profile ``long`` is registered here, at the root, so ``--hypothesis-profile=long`` works for any
selection of tests (hypothesis loads the profile before the test directories' own conftests are read). The fuzz
suite (``tests/fuzz``) scales its budgets up under it; see ``tests/fuzz/budget.py``.
"""

from __future__ import annotations

from hypothesis import settings

settings.register_profile("long", deadline=None, derandomize=False, print_blob=True)
# No per-example deadline by default either: the suite runs several pytest processes at once on a small machine
# (scripts/pytest_shards.py), and a timer is no test of speed here (benchmarks live in bench/). A profile named on
# the command line still overrides this one.
settings.register_profile("weavenet", deadline=None)
settings.load_profile("weavenet")
