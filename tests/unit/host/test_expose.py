"""What ``weave expose`` and ``POST /expose`` refuse (Weave 2.8 put any IPv4 CIDR on the bridge)."""

from __future__ import annotations

from ipaddress import IPv4Interface

import pytest

from weavenet.host.expose import expose_refusal

UNDERLAY = [(IPv4Interface("192.168.48.11/24"), "eth0")]


@pytest.mark.parametrize(
    ("cidr", "why"),
    [
        ("255.255.255.255/0", "prefix /0 is too short"),
        ("0.0.0.0/0", "prefix /0 is too short"),
        ("10.0.0.1/7", "prefix /7 is too short"),
        ("127.0.0.1/8", "loopback"),
        ("127.1.2.3/32", "loopback"),
        ("224.0.0.1/24", "multicast"),
        ("239.255.0.1/16", "multicast"),
        ("255.255.255.255/32", "reserved"),
        ("240.0.0.1/8", "reserved"),
        ("169.254.1.1/16", "link-local"),
        ("0.1.2.3/8", "this network"),
        ("10.2.1.0/24", "network address of 10.2.1.0/24"),
        ("10.2.1.255/24", "broadcast address of 10.2.1.0/24"),
        ("192.168.48.5/24", "holds the host's own address 192.168.48.11 on eth0"),
        ("192.168.0.1/16", "take over the host's network 192.168.48.0/24"),
    ],
)
def test_refused(cidr: str, why: str) -> None:
    reason = expose_refusal(IPv4Interface(cidr), UNDERLAY)
    assert reason is not None and why in reason and cidr in reason and "\n" not in reason


@pytest.mark.parametrize(
    "cidr",
    [
        "10.2.1.132/24",  # Weave's documented example, outside the default IPAM range: Weave took it, so do we
        "10.32.0.1/12",  # what net:default gives
        "10.0.0.1/8",  # the largest private network
        "10.2.1.1/32",
        "10.2.1.0/31",  # point-to-point: both addresses are host addresses
        "192.168.48.200/25",  # inside the underlay network but not holding the host's address: warned, not refused
        "100.64.0.1/10",
    ],
)
def test_taken(cidr: str) -> None:
    assert expose_refusal(IPv4Interface(cidr), UNDERLAY) is None
