"""The pure parts of ``weavenet.host.attach``; the namespace work runs in ``tests/integration/test_host_attach.py``."""

from __future__ import annotations

import os

import pytest

from weavenet.dataplane import fastcrypto, fastwire, frames, udp
from weavenet.errors import HostError
from weavenet.host import attach


def test_isolation_rules_for_a_new_and_an_existing_interface() -> None:
    rules = attach._iptables_rules(["10.2.1.0/24", "10.2.2.0/24"], new_link=True)
    assert rules.splitlines() == [
        "*filter",
        "-I INPUT 1 -i ethwe -s 10.2.1.0/24 -d 224.0.0.0/4 -j ACCEPT",
        "-I INPUT 1 -i ethwe -s 10.2.2.0/24 -d 224.0.0.0/4 -j ACCEPT",
        "-A INPUT -i ethwe -d 224.0.0.0/4 -j DROP",  # once, with the interface: later attaches only accept more
        "COMMIT",
    ]
    assert "DROP" not in attach._iptables_rules(["10.2.3.0/24"], new_link=False)
    undo = attach._iptables_rules(["10.2.1.0/24"], new_link=True, undo=True)
    assert undo.splitlines()[1:3] == [
        "-D INPUT -i ethwe -s 10.2.1.0/24 -d 224.0.0.0/4 -j ACCEPT",
        "-D INPUT -i ethwe -d 224.0.0.0/4 -j DROP",
    ]
    # the rules detach deletes (``iptables -D <rule>``) are the ones attach wrote
    assert "-D " + " ".join(attach._accept_rule("10.2.1.0/24", "ethwe")) in undo
    assert "-D " + " ".join(attach._drop_rule("ethwe")) in undo


def test_namespace_threads_and_their_errors() -> None:
    with pytest.raises(HostError, match="/nonexistent"):
        attach.in_netns("/nonexistent/ns/net", lambda: None)
    assert attach.in_netns("/proc/self/ns/net", lambda: 42) == 42  # our own namespace: a no-op join
    with pytest.raises(ZeroDivisionError):  # the function's own error comes back to the caller as is
        attach.in_netns("/proc/self/ns/net", lambda: 1 // 0)


def test_addresses_and_references() -> None:
    assert str(attach.parse_cidr("ip:10.2.1.1/24")) == "10.2.1.1/24"
    for bad in ("10.2.1.1", "10.2.1.1/33", "bogus/8"):
        with pytest.raises(HostError, match="invalid address"):
            attach.parse_cidr(bad)
    ref = attach.pid_ref("c0ffee", 1234567890)
    assert ref == attach.ContainerRef("c0ffee", "/proc/1234567890/ns/net", "1234567")
    assert len(f"vethwepl{ref.short}") <= 15  # IFNAMSIZ - 1


def test_own_namespace_is_refused_with_weaves_message() -> None:
    if not os.access("/proc/thread-self/ns/net", os.R_OK):
        pytest.skip("cannot open our own network namespace")
    with pytest.raises(HostError) as e:
        attach.attach(attach.ContainerRef("x", "/proc/thread-self/ns/net", "x"), ["10.2.1.1/24"])
    assert str(e.value) == attach.HOST_NETNS_MESSAGE
    with pytest.raises(HostError, match="not a network namespace"):
        attach.attach(attach.ContainerRef("x", "/proc/self/ns/uts", "x"), ["10.2.1.1/24"])


def test_container_super_frames_fit_one_sleeve_send() -> None:
    """Under the cap, a container's TCP builds super-frames of at most cap - 321 bytes of payload (the kernel keeps
    MAX_TCP_HEADER + 1 back) in whole segments, plus 66 bytes of Ethernet, IP and TCP headers with timestamps.
    The largest fits one UDP GSO send of the fast sleeve on a 1500-byte underlay, sealed with the larger tag,
    whatever the overlay MTU; and the cap is no smaller than that needs (every super-frame the kernel's VXLAN
    path carries costs it per-packet work: 63488 allowed 47 segments of 1324 bytes, this 48)."""
    segment = 1500 - 28
    room = (udp.MAX_GSO_BYTES // segment) * (segment - fastwire.HDR_LEN)
    room -= fastwire.SUPER_LEN + frames.VNET_LEN + max(fastcrypto.MAC, fastcrypto.AEGIS_TAG)
    payload = attach.CONTAINER_GSO_MAX_SIZE - 321
    assert payload + 66 == room
    for mtu in (576, 1340, 1376, 1410, 1438, 1500):
        mss = mtu - 52
        assert payload // mss * mss + 66 <= room, mtu
    assert payload // (1376 - 52) == 48
