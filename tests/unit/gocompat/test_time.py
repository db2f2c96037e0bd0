"""Go's time.Time printing: String() (with the monotonic reading), RFC 3339 with nanoseconds, the version-check
layout, and Unix floats taken at their shortest spelling."""

from __future__ import annotations

import pytest

from weavenet.gocompat import GoTime, go_time_string


def test_go_time_string_matches_go() -> None:
    assert GoTime(1438887338_246910357).string() == "2015-08-06 18:55:38.246910357 +0000 UTC"
    assert GoTime(1438887338_000000000).string() == "2015-08-06 18:55:38 +0000 UTC"
    assert GoTime(1438887338_100000000).string() == "2015-08-06 18:55:38.1 +0000 UTC"
    assert GoTime.zero().string() == "0001-01-01 00:00:00 +0000 UTC"


def test_go_time_string_of_a_float_timestamp() -> None:
    assert go_time_string(1438887338.25) == "2015-08-06 18:55:38.25 +0000 UTC"
    assert go_time_string(1438887338) == "2015-08-06 18:55:38 +0000 UTC"
    # a float keeps the digits of its shortest spelling, not binary noise
    assert go_time_string(1438887338.246910357) == "2015-08-06 18:55:38.2469103 +0000 UTC"


def test_go_time_monotonic_reading() -> None:
    """Go >= 1.9 appends the monotonic clock to String() of a time.Now()-derived value."""
    t = GoTime(1438887338_246910357, monotonic_ns=29_250120367)
    assert t.string() == "2015-08-06 18:55:38.246910357 +0000 UTC m=+29.250120367"
    assert GoTime(0, monotonic_ns=-1_000000005).string().endswith(" m=-1.000000005")
    assert t.rfc3339nano() == "2015-08-06T18:55:38.246910357Z"


def test_rfc3339_round_trip_and_offsets() -> None:
    for text in ("2015-08-06T18:55:38.246910357Z", "0001-01-01T00:00:00Z", "2016-04-06T12:30:00.5+02:00"):
        assert GoTime.parse(text).rfc3339nano() == text
    t = GoTime.parse("2016-04-06T12:30:00+02:00")
    assert t.string() == "2016-04-06 12:30:00 +0200 +0200"
    assert t.format_check() == "2016/04/06 12:30:00"
    assert GoTime.parse("2016-04-06T12:30:00Z").unix_ns == 1459945800 * 10**9
    with pytest.raises(ValueError):
        GoTime.parse("yesterday")


def test_go_time_string_helper() -> None:
    assert go_time_string(1438887338.5) == "2015-08-06 18:55:38.5 +0000 UTC"
    assert GoTime.from_unix(0).string() == "1970-01-01 00:00:00 +0000 UTC"


def test_a_float_prints_its_decimal_not_its_binary_noise() -> None:
    """The router's retry times go through the same formatter: 1e9 + 1µs is the double 1000000000.0000009537,
    which must not print as ``.000000954``."""
    assert go_time_string(1_000_000_000.000001) == "2001-09-09 01:46:40.000001 +0000 UTC"
    assert go_time_string(1700000000.123456789) == "2023-11-14 22:13:20.1234567 +0000 UTC"
    assert go_time_string(-0.5) == "1969-12-31 23:59:59.5 +0000 UTC"
