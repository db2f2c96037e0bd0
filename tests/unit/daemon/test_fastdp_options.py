"""The fast datapath's user-facing surface: options and environment, the fallback reason in
``weave status connections``, and its diagnostics through ``weave report -f``."""

from __future__ import annotations

import pytest

from weavenet.config import from_argv as from_args
from weavenet.daemon.fastdp_link import overlays
from weavenet.errors import ConfigError
from weavenet.status import format_report, render_connections


def test_no_fastdp_and_mtu_from_options_or_environment() -> None:
    assert from_args([], {}).no_fastdp is False and from_args([], {}).mtu == 1376
    assert from_args(["--no-fastdp"], {}).no_fastdp
    assert from_args([], {"WEAVE_NO_FASTDP": "1"}).no_fastdp
    assert from_args([], {"WEAVE_MTU": "1340"}).mtu == 1340
    assert from_args(["--mtu", "1400"], {"WEAVE_MTU": "1340"}).mtu == 1400  # the option wins
    assert overlays(False) == ("fastdp", "sleeve") and overlays(True) == ("sleeve",)


@pytest.mark.parametrize("value", ["abc", "-5", "1.5e3"])
def test_bad_weave_mtu_is_one_clear_error(value: str) -> None:
    with pytest.raises(ConfigError, match="invalid WEAVE_MTU"):
        from_args([], {"WEAVE_MTU": value})
    with pytest.raises(ConfigError, match="invalid MTU 100"):
        from_args([], {"WEAVE_MTU": "100"})


def report(attrs: dict[str, object]) -> dict[str, object]:
    conn = {"Address": "192.168.48.13:6783", "Outbound": True, "State": "established", "Attrs": attrs,
            "Info": f"{attrs['name']} 5a:00:00:00:00:03(h3)"}  # fmt: skip
    diags = {"fastdp": {"Enabled": True, "Connections": [{"Peer": "5a:00:00:00:00:03", "Using": "sleeve"}]}}
    return {"Router": {"Connections": [conn], "OverlayDiagnostics": diags}}


def test_fallback_reason_follows_weaves_columns() -> None:
    line = render_connections(report({"name": "sleeve", "mtu": 1438, "fallback": "no VXLAN packets get through"}))
    assert line == (
        "-> 192.168.48.13:6783    established sleeve 5a:00:00:00:00:03(h3) mtu=1438"
        " (fallback: no VXLAN packets get through)\n"
    )
    assert render_connections(report({"name": "fastdp", "mtu": 1376})).endswith("(h3) mtu=1376\n")


def test_fast_sleeve_cipher_follows_weaves_columns() -> None:
    line = render_connections(report({"name": "sleeve", "mtu": 1376, "encrypted": True, "cipher": "aegis256"}))
    assert line.endswith("(h3) encrypted=truemtu=1376 (cipher: aegis256)\n")


def test_fastdp_diagnostics_through_a_template() -> None:
    out = format_report(report({"name": "sleeve", "mtu": 1438}), "{{json .Router.OverlayDiagnostics.fastdp}}")
    assert '"Enabled":true' in out and '"Using":"sleeve"' in out
