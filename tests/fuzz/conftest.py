"""The fuzz suite: one module per kind of outside input (see each module's docstring), budgets in ``budget.py``.

Beyond each target's own invariants, every log record a target causes must format: a message whose
arguments do not match its placeholders is lost at the moment it matters (logging swallows the error), so the
weavenet loggers run at DEBUG here and every record is formatted.
"""

from __future__ import annotations

import logging
from collections.abc import Iterator

import pytest


class _FormatCheck(logging.Handler):
    def __init__(self) -> None:
        super().__init__(logging.DEBUG)
        self.failures: list[str] = []

    def emit(self, record: logging.LogRecord) -> None:
        try:
            record.getMessage()
        except Exception as e:
            self.failures.append(f"{record.pathname}:{record.lineno}: {record.msg!r} % {record.args!r}: {e!r}")


@pytest.fixture(autouse=True)
def log_records_format() -> Iterator[None]:
    logger = logging.getLogger("weavenet")
    check, level = _FormatCheck(), logger.level
    logger.addHandler(check)
    logger.setLevel(logging.DEBUG)
    try:
        yield
    finally:
        logger.removeHandler(check)
        logger.setLevel(level)
    assert not check.failures, "log records that cannot be formatted:\n" + "\n".join(sorted(set(check.failures)))
