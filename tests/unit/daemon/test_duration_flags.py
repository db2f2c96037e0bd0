"""The duration flags (``--dns-fallback-timeout``, ``--ipalloc-reclaim-after``) read Go durations the same way,
each refusing what it cannot use with its own message, and the reclaim texts print Go's Duration.String."""

from __future__ import annotations

import pytest

from weavenet.config.convert import go_duration as parse_go_duration
from weavenet.config.convert import short_duration as parse_duration
from weavenet.errors import ConfigError
from weavenet.ipam.reclaim import duration

DNS_HINT = "use e.g. 5s or 500ms"
IPAM_HINT = "use e.g. 1h, 30m or 0 (off)"


@pytest.mark.parametrize(
    ("text", "seconds"),
    [
        ("1m30s", 90.0),
        ("1.5h", 5400.0),
        ("500ms", 0.5),
        ("2h45m", 9900.0),
        ("250us", 0.00025),
        ("0", 0.0),
        ("2", 2.0),
        ("2.5", 2.5),
        (" 5s ", 5.0),
    ],
)
def test_both_flags_read_go_durations_alike(text: str, seconds: float) -> None:
    assert parse_duration(text) == seconds
    assert parse_go_duration(text) == seconds


@pytest.mark.parametrize("text", ["-1s", "-0", "-2", "soon", "", "1h 2m", "3d", "1e3s", "\u0663s"])
def test_both_flags_refuse_with_their_own_message(text: str) -> None:
    with pytest.raises(ConfigError) as dns:
        parse_duration(text)
    assert str(dns.value) == f"invalid duration {text!r}: {DNS_HINT}"
    with pytest.raises(ConfigError) as ipam:
        parse_go_duration(text)
    assert str(ipam.value) == f"invalid duration {text!r}: {IPAM_HINT}"


def test_reclaim_texts_round_to_whole_seconds() -> None:
    assert [duration(s) for s in (0, 0.4, 2.5, 45, 59.5, 90, 3600, 3723.2)] == [
        "0s",
        "0s",
        "2s",
        "45s",
        "1m0s",
        "1m30s",
        "1h0m0s",
        "1h2m3s",
    ]
    assert duration(-5) == "-5s"  # overdue: Go's sign, not a wrapped clock reading ("-1h59m55s")
