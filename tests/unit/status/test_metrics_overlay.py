"""weavenet's metrics for the operator's kit: sleeve fallbacks by kind of reason, bytes by peer and overlay."""

from __future__ import annotations

from weavenet.status import LocalConnectionStatus, RouterStatus, WeaveStatus
from weavenet.status.metrics import FALLBACK_KINDS, fallback_kind, render_metrics
from weavenet.status.overlay import FastdpDiagnostics, SleeveDiagnostics, Vport


def test_fallback_reasons_fall_into_few_kinds() -> None:
    assert fallback_kind("no VXLAN packets get through (UDP port 6784 blocked?)") == "udp_blocked"
    assert fallback_kind("1414-byte VXLAN packets from the peer do not arrive, small ones do: path MTU too small") == (
        "path_mtu"
    )
    assert fallback_kind("encrypted link and no IPsec ESP in the kernel to encrypt VXLAN") == "encryption"
    assert fallback_kind("the peer predates the overlay switch (sleeve only)") == "not_offered"
    assert fallback_kind("something new") == "other"
    assert set(FALLBACK_KINDS) >= {"udp_blocked", "path_mtu", "encryption", "not_offered", "other"}


def test_metrics_count_fallbacks_and_bytes_by_peer() -> None:
    a, b = "aa:00:00:00:00:01", "aa:00:00:00:00:02"
    conn = LocalConnectionStatus(
        "192.0.2.2:6783", True, "established", "", {"name": "sleeve", "fallback": "no VXLAN packets get through"}
    )
    router = RouterStatus(
        name="aa:00:00:00:00:00",
        connections=[conn],
        overlay_diagnostics={
            "sleeve": SleeveDiagnostics(peers={a: {"RxBytes": 10, "TxBytes": 20}}),
            "fastdp": FastdpDiagnostics(vports=[Vport("vethwe-vx001", peer=b, rx_bytes=30, tx_bytes=40)]),
        },
    )
    text = render_metrics(WeaveStatus(ready=True, version="x", router=router)).decode()
    assert 'weave_sleeve_fallback_connections{reason="udp_blocked"} 1.0' in text
    assert f'weave_overlay_bytes_total{{direction="tx",nickname="",overlay="sleeve",peer="{a}"}} 20.0' in text
    assert f'weave_overlay_bytes_total{{direction="rx",nickname="",overlay="fastdp",peer="{b}"}} 30.0' in text
