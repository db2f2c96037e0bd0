"""Every DNS test runs with the DNS loggers at DEBUG and a handler that formats each record and lets a formatting
error escape, so a log call whose arguments do not fit its format fails the test that reached it.

Without this such a mistake stays hidden twice over: the DNS code logs mostly at INFO, below the level tests run
at, and ``logging`` turns a formatting error into a "--- Logging error ---" report on stderr, so the message is
lost and nothing fails. The fuzz tests reach the refusal paths with every kind of malformed query.
"""

from __future__ import annotations

import logging
from collections.abc import Iterator

import pytest

DNS_LOGGER = "weavenet.dns"


class FormatOrFail(logging.Handler):
    """Formats every record it sees (as any real handler would) and raises whatever formatting raises."""

    def __init__(self) -> None:
        super().__init__(logging.DEBUG)
        self.formatter = logging.Formatter("%(levelname)s %(message)s")
        self.seen = 0

    def emit(self, record: logging.LogRecord) -> None:
        self.format(record)  # no try/except here: logging's own handlers swallow exactly this mistake
        self.seen += 1


@pytest.fixture(autouse=True)
def strict_dns_logging() -> Iterator[FormatOrFail]:
    logger = logging.getLogger(DNS_LOGGER)
    handler = FormatOrFail()
    old_level = logger.level
    logger.addHandler(handler)
    logger.setLevel(logging.DEBUG)
    try:
        yield handler
    finally:
        logger.removeHandler(handler)
        logger.setLevel(old_level)
