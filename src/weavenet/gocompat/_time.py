"""Go's ``time.Time`` as weave prints it: ``String()``, RFC 3339 with nanoseconds (JSON) and the layouts the
status texts use.

Why here, once: the report (``LastSeen``, ``NextCheckAt``), the report's JSON and ``weave status connections``
(retry times, computed in the router core) must all print an instant exactly as Go would, from the same
nanosecond value.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from typing import ClassVar

_NS = 10**9
_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
_RFC3339 = re.compile(r"(\d{4})-(\d\d)-(\d\d)T(\d\d):(\d\d):(\d\d)(?:\.(\d{1,9}))?(Z|[+-]\d\d:\d\d)\Z")


@dataclass(frozen=True)
class GoTime:
    """A Go ``time.Time``: nanoseconds since the Unix epoch, the zone offset it is shown in, and (optionally)
    Go's monotonic clock reading in nanoseconds since process start.

    Why the monotonic part: mesh sets a failed target's retry time with ``time.Now().Add(...)``, and since
    Go 1.9 ``Time.String()`` appends `` m=+<seconds>`` for such values. Weave 2.8 is built with Go 1.15, so a
    real ``weave status connections`` shows ``retry: 2015-08-06 18:55:38.246910357 +0000 UTC m=+29.250120367``
    (the docs' example predates Go 1.9). Pass ``monotonic`` to reproduce that; JSON never includes it.
    """

    unix_ns: int
    offset_s: int = 0
    monotonic_ns: int | None = None

    ZERO_UNIX_NS: ClassVar[int] = -62135596800 * _NS  # 0001-01-01T00:00:00Z, Go's zero Time

    @classmethod
    def zero(cls) -> GoTime:
        return cls(cls.ZERO_UNIX_NS)

    @classmethod
    def from_unix(cls, seconds: float | int, monotonic: float | None = None) -> GoTime:
        """From a Unix timestamp in seconds (UTC). Floats are taken at their shortest decimal spelling (so
        ``1438887338.2469103`` keeps exactly those digits instead of binary noise)."""
        ns = int(Decimal(repr(seconds)) * _NS) if isinstance(seconds, float) else int(seconds) * _NS
        mono = None if monotonic is None else int(Decimal(repr(float(monotonic))) * _NS)
        return cls(ns, 0, mono)

    @classmethod
    def parse(cls, text: str) -> GoTime:
        """Parse Go's RFC 3339 JSON form (``2006-01-02T15:04:05.999999999Z07:00``)."""
        m = _RFC3339.match(text)
        if not m:
            raise ValueError(f"not an RFC 3339 time: {text!r}")
        y, mo, d, h, mi, s, frac, zone = m.groups()
        offset = 0
        if zone != "Z":
            sign = -1 if zone[0] == "-" else 1
            offset = sign * (int(zone[1:3]) * 3600 + int(zone[4:6]) * 60)
        wall = datetime(int(y), int(mo), int(d), int(h), int(mi), int(s), tzinfo=UTC)
        secs = (wall - _EPOCH) // timedelta(seconds=1) - offset
        nanos = int((frac or "").ljust(9, "0"))
        return cls(secs * _NS + nanos, offset)

    def is_zero(self) -> bool:
        return self.unix_ns == self.ZERO_UNIX_NS

    def _wall(self) -> tuple[datetime, int]:
        local_ns = self.unix_ns + self.offset_s * _NS
        secs, nanos = divmod(local_ns, _NS)
        return _EPOCH + timedelta(seconds=secs), nanos

    def _zone(self, colon: bool) -> str:
        sign = "-" if self.offset_s < 0 else "+"
        hh, mm = divmod(abs(self.offset_s) // 60, 60)
        return f"{sign}{hh:02d}{':' if colon else ''}{mm:02d}"

    def _clock(self, date_sep: str, mid: str) -> tuple[str, int]:
        wall, nanos = self._wall()
        ymd = f"{wall.year:04d}{date_sep}{wall.month:02d}{date_sep}{wall.day:02d}"
        return f"{ymd}{mid}{wall.hour:02d}:{wall.minute:02d}:{wall.second:02d}", nanos

    @staticmethod
    def _frac(nanos: int) -> str:
        """Go's ``.999999999``: trailing zeros dropped, nothing at all for a whole second."""
        return f".{nanos:09d}".rstrip("0").rstrip(".")

    def string(self) -> str:
        """Go's ``Time.String()``: ``2015-08-06 18:55:38.246910357 +0000 UTC`` (plus `` m=±s.nnnnnnnnn``)."""
        clock, nanos = self._clock("-", " ")
        zone = self._zone(False)
        name = "UTC" if self.offset_s == 0 else zone  # a fixed zone without a name prints its offset
        s = f"{clock}{self._frac(nanos)} {zone} {name}"
        if self.monotonic_ns is not None:
            sign = "-" if self.monotonic_ns < 0 else "+"
            secs, nanos = divmod(abs(self.monotonic_ns), _NS)
            s += f" m={sign}{secs}.{nanos:09d}"
        return s

    def rfc3339nano(self) -> str:
        """Go's JSON encoding of a time (``time.RFC3339Nano``)."""
        clock, nanos = self._clock("-", "T")
        zone = "Z" if self.offset_s == 0 else self._zone(True)
        return f"{clock}{self._frac(nanos)}{zone}"

    def format_check(self) -> str:
        """``Format("2006/01/02 15:04:05")``, used by the version-check line."""
        return self._clock("/", " ")[0]


def go_time_string(unix_seconds: float | int, monotonic: float | None = None) -> str:
    """Render a Unix timestamp the way Go's ``time.Time.String()`` does, in UTC.

    A float is taken at its shortest decimal spelling (:meth:`GoTime.from_unix`): near 2015 a double resolves
    only about 240 ns, so the digits beyond that spelling would be binary noise rather than the nanoseconds of
    the instant it was computed from.

    >>> go_time_string(1438887338.246910357)
    '2015-08-06 18:55:38.2469103 +0000 UTC'
    >>> go_time_string(1000000000.000001)
    '2001-09-09 01:46:40.000001 +0000 UTC'
    """
    return GoTime.from_unix(unix_seconds, monotonic).string()
