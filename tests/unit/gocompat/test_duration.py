"""Go's time.ParseDuration and Duration.String. The tables are Go's own ParseDuration and Duration.String test
cases (Go 1.15 semantics: an int64 of nanoseconds), plus weavenet's bare-seconds form."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from weavenet.gocompat import SECOND, DurationError, format_duration, parse_duration, parse_seconds

NS, US, MS, S, M, H = 1, 1000, 10**6, 10**9, 60 * 10**9, 3600 * 10**9

GO_PARSE = [
    ("0", 0),
    ("5s", 5 * S),
    ("30s", 30 * S),
    ("1478s", 1478 * S),
    ("-5s", -5 * S),
    ("+5s", 5 * S),
    ("-0", 0),
    ("+0", 0),
    ("5.0s", 5 * S),
    ("5.6s", 5 * S + 600 * MS),
    ("5.s", 5 * S),
    (".5s", 500 * MS),
    ("1.0s", 1 * S),
    ("1.00s", 1 * S),
    ("1.004s", 1 * S + 4 * MS),
    ("1.0040s", 1 * S + 4 * MS),
    ("100.00100s", 100 * S + 1 * MS),
    ("10ns", 10 * NS),
    ("11us", 11 * US),
    ("12\u00b5s", 12 * US),  # MICRO SIGN
    ("12\u03bcs", 12 * US),  # GREEK SMALL LETTER MU
    ("13ms", 13 * MS),
    ("14s", 14 * S),
    ("15m", 15 * M),
    ("16h", 16 * H),
    ("3h30m", 3 * H + 30 * M),
    ("10.5s4m", 4 * M + 10 * S + 500 * MS),
    ("-2m3.4s", -(2 * M + 3 * S + 400 * MS)),
    ("1h2m3s4ms5us6ns", 1 * H + 2 * M + 3 * S + 4 * MS + 5 * US + 6 * NS),
    ("39h9m14.425s", 39 * H + 9 * M + 14 * S + 425 * MS),
    ("52763797000ns", 52763797000 * NS),
    ("0.3333333333333333333h", 20 * M),  # the fraction is scaled in float64, as in Go
    ("9007199254740993ns", (1 << 53) + 1),
    ("9223372036854775807ns", (1 << 63) - 1),
    ("9223372036854775.807us", (1 << 63) - 1),
    ("9223372036s854ms775us807ns", (1 << 63) - 1),
    ("-9223372036854775807ns", -(1 << 63) + 1),
    ("0.100000000000000000000h", 6 * M),  # digits beyond int64 precision are ignored
    ("0.830103483285477580700h", 49 * M + 48 * S + 372539827 * NS),
    ("1m30s", 90 * S),
    ("1.5h", 90 * M),
]

GO_PARSE_ERRORS = [
    ("", 'time: invalid duration ""'),
    ("3", 'time: missing unit in duration "3"'),
    ("-", 'time: invalid duration "-"'),
    ("s", 'time: invalid duration "s"'),
    (".", 'time: invalid duration "."'),
    ("-.", 'time: invalid duration "-."'),
    (".s", 'time: invalid duration ".s"'),
    ("+.s", 'time: invalid duration "+.s"'),
    ("1d", 'time: unknown unit "d" in duration "1d"'),
    ("1h 2m", 'time: unknown unit "h " in duration "1h 2m"'),
    (" 1s", 'time: invalid duration " 1s"'),
    ("1\u00b5", 'time: unknown unit "\\xc2\\xb5" in duration "1\\xc2\\xb5"'),
    ("\u0663s", 'time: invalid duration "\\xd9\\xa3s"'),  # only ASCII digits
    ("1e3s", 'time: unknown unit "e" in duration "1e3s"'),
    ("\ufffd hello \ufffd world", 'time: invalid duration "\\xef\\xbf\\xbd hello \\xef\\xbf\\xbd world"'),
    (b"\x85\x85".decode("utf-8", "surrogateescape"), 'time: invalid duration "\\x85\\x85"'),
    ("3000000h", 'time: invalid duration "3000000h"'),
    ("9223372036854775808ns", 'time: invalid duration "9223372036854775808ns"'),
    ("9223372036854775.808us", 'time: invalid duration "9223372036854775.808us"'),
    ("9223372036854ms775us808ns", 'time: invalid duration "9223372036854ms775us808ns"'),
    ("-9223372036854775808ns", 'time: invalid duration "-9223372036854775808ns"'),  # Go 1.15: int64 digits
]


@pytest.mark.parametrize(("text", "ns"), GO_PARSE)
def test_parse_duration_as_go(text: str, ns: int) -> None:
    assert parse_duration(text) == ns
    assert parse_duration(text, bare_seconds=True) == ns


@pytest.mark.parametrize(("text", "message"), GO_PARSE_ERRORS)
def test_parse_duration_errors_as_go(text: str, message: str) -> None:
    with pytest.raises(DurationError) as e:
        parse_duration(text)
    assert str(e.value) == message


def test_bare_seconds_only_when_asked() -> None:
    for text, ns in (("2", 2 * S), ("2.5", 2500 * MS), ("2.", 2 * S), (".5", 500 * MS), ("-1.5", -1500 * MS)):
        assert parse_duration(text, bare_seconds=True) == ns
        with pytest.raises(DurationError, match="missing unit"):
            parse_duration(text)
    for bad in ("1h2", "2 ", ".", "1e3", "0x10"):
        with pytest.raises(DurationError):
            parse_duration(bad, bare_seconds=True)


def test_parse_seconds_is_the_flag_form() -> None:
    assert parse_seconds(" 1m30s ") == 90.0 and parse_seconds("2") == 2.0 and parse_seconds("500ms") == 0.5
    assert parse_seconds("1.5h") == 5400.0 and parse_seconds("+5s") == 5.0 and parse_seconds("-1s") == -1.0
    for negative in ("-1s", "-0", "-0s", " -2"):
        with pytest.raises(DurationError, match="negative"):
            parse_seconds(negative, allow_negative=False)
    assert parse_seconds("0", allow_negative=False) == 0.0


GO_STRING = [
    ("0s", 0),
    ("1ns", 1 * NS),
    ("1.1\u00b5s", 1100 * NS),
    ("2.2ms", 2200 * US),
    ("3.3s", 3300 * MS),
    ("4m5s", 4 * M + 5 * S),
    ("4m5.001s", 4 * M + 5001 * MS),
    ("5h6m7.001s", 5 * H + 6 * M + 7001 * MS),
    ("8m0.000000001s", 8 * M + 1 * NS),
    ("2562047h47m16.854775807s", (1 << 63) - 1),
    ("-2562047h47m16.854775808s", -(1 << 63)),
    ("1h0m0s", 1 * H),
    ("1m30s", 90 * S),
    ("-5s", -5 * S),
    ("-1.5ms", -1500 * US),
]


@pytest.mark.parametrize(("text", "ns"), GO_STRING)
def test_format_duration_as_go(text: str, ns: int) -> None:
    assert format_duration(ns) == text


@given(st.integers(min_value=-(1 << 63) + 1, max_value=(1 << 63) - 1))
def test_format_then_parse_round_trips(ns: int) -> None:
    assert parse_duration(format_duration(ns)) == ns


def test_second_is_go_time_second() -> None:
    assert SECOND == 10**9 == parse_duration("1s")
