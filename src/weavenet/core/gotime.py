"""Go's ``time.Time.String()`` layout, which Weave prints in ``weave status connections`` (retry times)."""

from __future__ import annotations

import datetime


def go_time_string(unix_seconds: float) -> str:
    """``2015-08-06 18:55:38.246910357 +0000 UTC`` for a UTC instant (nanoseconds, trailing zeros trimmed)."""
    whole = int(unix_seconds // 1)
    nanos = round((unix_seconds - whole) * 1e9)
    if nanos >= 1_000_000_000:
        whole, nanos = whole + 1, nanos - 1_000_000_000
    stamp = datetime.datetime.fromtimestamp(whole, tz=datetime.UTC).strftime("%Y-%m-%d %H:%M:%S")
    frac = f".{nanos:09d}".rstrip("0") if nanos else ""
    return f"{stamp}{frac} +0000 UTC"
