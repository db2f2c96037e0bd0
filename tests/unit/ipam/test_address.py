"""Address arithmetic and Weave's parse errors."""

from __future__ import annotations

import pytest

from weavenet.errors import ConfigError
from weavenet.ipam.address import CIDR, Range, subtract_ranges


def test_parse_subnet_errors_are_weaves() -> None:
    with pytest.raises(
        ConfigError, match=r"^invalid subnet - bits after network prefix are not all zero: 10.2.3.2/30$"
    ):
        CIDR.parse_subnet("10.2.3.2/30")
    with pytest.raises(ConfigError, match=r"^invalid subnet - smaller than minimum size 4: 10.2.3.2/31$"):
        CIDR.parse_subnet("10.2.3.2/31")
    for bad in ("10.2.3.0", "10.2.3.0/33", "x/24", "10.2.3.0/-1", "10.2.3.256/24"):
        with pytest.raises(ConfigError, match="invalid CIDR address"):
            CIDR.parse(bad)


def test_host_range_and_strings() -> None:
    c = CIDR.parse_subnet("10.32.0.0/12")
    assert c.size == 1 << 20 and str(c) == "10.32.0.0/12"
    assert str(c.host_range()) == "10.32.0.1-10.47.255.254"
    assert Range(c.addr, c.addr + c.size).as_cidr_string() == "10.32.0.0/12"
    assert Range(c.addr, c.addr + 3).as_cidr_string() == "10.32.0.0-10.32.0.2"
    assert CIDR.parse("10.32.0.100/12").network == c.addr


def test_biggest_cidr_range() -> None:
    base = CIDR.parse("10.0.0.0/8").addr
    assert Range(base + 1, base + 9).biggest_cidr_range() == Range(base + 4, base + 8)
    assert Range(base, base + 7).biggest_cidr_range() == Range(base, base + 4)
    assert Range(base + 3, base + 4).biggest_cidr_range() == Range(base + 3, base + 4)


def test_cidrs_cover_a_range_exactly() -> None:
    base = CIDR.parse("10.0.0.0/8").addr
    got = Range(base + 1, base + 9).cidrs()
    assert [str(c) for c in got] == ["10.0.0.1/32", "10.0.0.2/31", "10.0.0.4/30", "10.0.0.8/32"]


def test_subtract_ranges() -> None:
    assert subtract_ranges(Range(0, 10), [Range(2, 4), Range(8, 20)]) == [Range(0, 2), Range(4, 8)]
    assert subtract_ranges(Range(0, 10), [Range(0, 10)]) == []


@pytest.mark.parametrize("text", ["10.32.0.9/\u00b2", "10.32.0.9/\u0664", "10.32.0.9/\uff11\uff12", "\u00b2.1.1.1/8"])
def test_non_ascii_digits_are_not_a_prefix_length(text: str) -> None:
    """Found by the HTTP API fuzz (``PUT /ip/x/10.32.0.9/%C2%B2``): ``str.isdigit`` accepts "²", ``int`` does not,
    so the ValueError escaped as a 500."""
    with pytest.raises(ConfigError, match="invalid CIDR address"):
        CIDR.parse(text)
    with pytest.raises(ConfigError):
        CIDR.parse_subnet(text)


def test_merge_ranges_as_gos_merge() -> None:
    from weavenet.ipam.address import Range, merge_ranges

    assert merge_ranges([Range(20, 30), Range(0, 10), Range(10, 15), Range(25, 40), Range(50, 60)]) == [
        Range(0, 15),
        Range(20, 40),
        Range(50, 60),
    ]
    assert merge_ranges([]) == []
