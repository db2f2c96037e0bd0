"""``/proc/net/dev`` read as byte counters per device (the fast datapath's per-peer VXLAN devices)."""

from __future__ import annotations

from weavenet.host import netdev

SAMPLE = "\n".join(
    [
        "Inter-|   Receive                                                |  Transmit",
        " face |bytes    packets errs drop fifo frame compressed multicast|bytes    packets errs drop fifo colls ...",
        "    lo:    1200      12    0    0    0     0          0         0     1200      12    0    0    0  0  0  0",
        "vethwe-vx2d5: 987654321 1000 0 0 0 0 0 0 123456789  900    0    0    0     0       0          0",
        " broken: x y",
    ]
)


def test_parse_gives_rx_and_tx_bytes_per_device() -> None:
    assert netdev.parse(SAMPLE) == {"lo": (1200, 1200), "vethwe-vx2d5": (987654321, 123456789)}


def test_counters_of_this_namespace_include_loopback() -> None:
    assert "lo" in netdev.counters()
    assert netdev.counters("/nonexistent/net/dev") == {}
