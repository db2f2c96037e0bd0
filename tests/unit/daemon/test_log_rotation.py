"""The router's log file is bounded: rotated at a size with one older file kept, and what Python writes to stdout
and stderr (which ``weave launch`` points at the same file) follows it to the new file."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

CHILD = r"""
import logging, sys
import weavenet.daemon.__main__ as m
m.LOG_MAX_BYTES = 20_000
m.setup_logging("info", sys.argv[1])
log = logging.getLogger("weavenet.test")
for i in range(2000):
    log.info("line %d %s", i, "x" * 80)
print("printed after the rotations", file=sys.stderr, flush=True)
"""


def test_log_is_rotated_and_stderr_follows(tmp_path: Path) -> None:
    path = tmp_path / "weaver.log"
    with open(path, "ab") as out:
        subprocess.run([sys.executable, "-c", CHILD, str(path)], stdout=out, stderr=out, check=True, timeout=60)
    files = sorted(p.name for p in tmp_path.iterdir())
    assert files == ["weaver.log", "weaver.log.1"]
    sizes = [p.stat().st_size for p in tmp_path.iterdir()]
    assert all(s <= 20_000 for s in sizes), sizes  # 2000 lines of ~130 bytes: 260 KB without rotation
    current = path.read_text()
    assert "line 1999" in current and "printed after the rotations" in current
