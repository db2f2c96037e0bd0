"""The report value: Weave's WeaveStatus JSON shape, Go's MarshalIndent bytes, mesh's INFO
rules. Expected JSON texts were checked byte for byte against Go's encoding/json over the same structs."""

from __future__ import annotations

import json

import pytest

from weavenet.gocompat import GoMap, GoNil, GoSlice, GoStruct, GoText, GoTime
from weavenet.status import (
    CIDRValue,
    DNSStatus,
    IPAMClaimStatus,
    IPAMStatus,
    LocalConnectionStatus,
    PaxosStatus,
    PluginConfig,
    PluginStatus,
    ProxyStatus,
    RouterStatus,
    VersionCheck,
    WeaveStatus,
    format_report,
    report_json,
    sample_report,
    template_view,
    version_check_text,
)

# ------------------------------------------------------------------------------------------ JSON shape


def test_top_level_keys_and_order() -> None:
    d = sample_report().to_dict()
    assert list(d) == ["Ready", "Version", "VersionCheck", "Router", "IPAM", "DNS", "Proxy", "Plugin"]


def test_router_keys_are_mesh_status_then_network_router_fields() -> None:
    router = sample_report().to_dict()["Router"]
    assert list(router) == [
        "Protocol",
        "ProtocolMinVersion",
        "ProtocolMaxVersion",
        "Encryption",
        "PeerDiscovery",
        "Name",
        "NickName",
        "Port",
        "Peers",
        "UnicastRoutes",
        "BroadcastRoutes",
        "Connections",
        "TerminationCount",
        "Targets",
        "OverlayDiagnostics",
        "TrustedSubnets",
        "Interface",
        "CaptureStats",
        "MACs",
    ]
    assert list(router["Peers"][0]) == ["Name", "NickName", "UID", "ShortID", "Version", "Connections"]
    assert list(router["Peers"][0]["Connections"][0]) == [
        "Name",
        "NickName",
        "Address",
        "Outbound",
        "Established",
    ]
    assert list(router["Connections"][0]) == ["Address", "Outbound", "State", "Info", "Attrs"]


def test_ipam_dns_proxy_plugin_keys() -> None:
    d = sample_report().to_dict()
    assert list(d["IPAM"]) == [
        "Paxos",
        "Range",
        "RangeNumIPs",
        "ActiveIPs",
        "DefaultSubnet",
        "Entries",
        "PendingClaims",
        "PendingAllocates",
    ]
    assert list(d["IPAM"]["Entries"][0]) == ["Token", "Size", "Peer", "Nickname", "IsKnownPeer", "Version"]
    assert list(d["DNS"]) == ["Domain", "Upstream", "Address", "TTL", "Entries"]
    assert list(d["DNS"]["Entries"][0]) == [
        "Hostname",
        "Origin",
        "ContainerID",
        "Address",
        "Version",
        "Tombstone",
    ]
    assert list(d["Proxy"]) == ["Addresses"]
    assert list(d["Plugin"]) == ["Config", "DriverName", "MeshDriverName"]
    assert list(d["Plugin"]["Config"]) == [
        "Socket",
        "MeshSocket",
        "Enable",
        "EnableV2",
        "EnableV2Multicast",
        "DNS",
        "DefaultSubnet",
        "ProcPath",
    ]


def test_disabled_services_are_omitted() -> None:
    d = WeaveStatus(ready=True, version="2.8.1").to_dict()
    assert d == {
        "Ready": True,
        "Version": "2.8.1",
        "VersionCheck": {
            "Enabled": False,
            "Success": False,
            "NewVersion": "",
            "NextCheckAt": "0001-01-01T00:00:00Z",
        },
    }


def test_minimal_report_json_is_go_marshal_indent() -> None:
    assert WeaveStatus(ready=False, version="2.8.1").to_json() == (
        "{\n"
        '    "Ready": false,\n'
        '    "Version": "2.8.1",\n'
        '    "VersionCheck": {\n'
        '        "Enabled": false,\n'
        '        "Success": false,\n'
        '        "NewVersion": "",\n'
        '        "NextCheckAt": "0001-01-01T00:00:00Z"\n'
        "    }\n"
        "}"
    )


def test_empty_router_json_nil_versus_empty() -> None:
    """Go: slices built by append are null when empty, TrustedSubnets is []string{} and stays [], empty
    omitempty strings are left out, and there is no trailing newline."""
    r = WeaveStatus(
        version="x",
        router=RouterStatus(name="aa:bb:cc:dd:ee:ff", nick_name="n", peers=[], connections=[], targets=[]),
        proxy=ProxyStatus([]),
        plugin=PluginStatus(PluginConfig(), "weave", ""),
    )
    text = r.to_json()
    assert not text.endswith("\n")
    router = json.loads(text)["Router"]
    for key in (
        "Peers",
        "UnicastRoutes",
        "BroadcastRoutes",
        "Connections",
        "Targets",
        "CaptureStats",
        "MACs",
    ):
        assert router[key] is None, key
    assert router["OverlayDiagnostics"] is None
    assert router["TrustedSubnets"] == []
    assert '"TrustedSubnets": [],' in text
    assert '"Addresses": []' in text
    assert '"MeshDriverName"' not in text
    assert '"Connections": null,' in text


def test_dns_json_from_the_docs() -> None:
    r = WeaveStatus(dns=DNSStatus("weave.local.", ["8.8.8.8", "8.8.4.4"], "172.17.0.1:53", 1, None))
    assert format_report(r, "{{json .DNS}}") == (
        '{"Domain":"weave.local.","Upstream":["8.8.8.8","8.8.4.4"],"Address":"172.17.0.1:53","TTL":1,"Entries":null}'
    )


def test_go_html_escaping_in_json() -> None:
    r = WeaveStatus(version="<a&b>\u2028", router=RouterStatus(nick_name='"q"\\\n\x01é'))
    text = r.to_json()
    assert '"Version": "\\u003ca\\u0026b\\u003e\\u2028",' in text
    assert '"NickName": "\\"q\\"\\\\\\n\\u0001é",' in text


def test_maps_are_sorted_and_attrs_of_targets_are_null() -> None:
    d = sample_report(encryption=True).to_dict()
    live, pending, retrying = d["Router"]["Connections"][:3]
    assert list(live["Attrs"]) == ["mtu", "name"]
    assert list(pending["Attrs"]) == ["encrypted", "mtu", "name"]
    assert retrying["Attrs"] is None
    text = sample_report(encryption=True).to_json()
    assert '"Attrs": {\n                    "encrypted": true,\n                    "mtu": 1376,' in text


def test_pending_claims_marshal_cidr_as_struct() -> None:
    ipam = IPAMStatus(range="10.2.0.0/16", pending_claims=[IPAMClaimStatus("c1", CIDRValue.parse("10.2.1.4/32"))])
    r = WeaveStatus(ipam=ipam)
    assert json.loads(r.to_json())["IPAM"]["PendingClaims"] == [
        {"Ident": "c1", "CIDR": {"Addr": "10.2.1.4", "PrefixLen": 32}}
    ]
    assert format_report(r, "{{range .IPAM.PendingClaims}}{{.Ident}} {{.CIDR}} {{.CIDR.Addr}}{{end}}") == (
        "c1 10.2.1.4/32 10.2.1.4"
    )


def test_json_round_trip_renders_identically() -> None:
    r = sample_report(encryption=True)
    back = json.loads(r.to_json())
    assert report_json(back) == r.to_json()
    fmt = "{{.IPAM.Paxos}}|{{len .DNS.Entries}}|{{.VersionCheck}}|"
    fmt += "{{range .Router.Connections}}{{.Attrs}}{{end}}"
    assert format_report(back, fmt) == format_report(r, fmt)


def test_sample_report_matches_the_troubleshooting_cluster() -> None:
    d = sample_report().to_dict()
    assert d["Version"] == "2.8.1"
    assert [c["State"] for c in d["Router"]["Connections"]] == [
        "established",
        "pending",
        "retrying",
        "failed",
        "connecting",
    ]
    assert len(d["Router"]["Peers"]) == 3
    assert sum(1 for e in d["DNS"]["Entries"] if e["Tombstone"] == 0) == 9


# ------------------------------------------------------------------------------------------ version check


@pytest.mark.parametrize(
    ("vc", "text"),
    [
        (VersionCheck(), "version check update disabled"),
        (
            VersionCheck(True, False, "", GoTime.parse("2016-04-06T12:30:00Z")),
            "failed to check latest version - see logs; next check at 2016/04/06 12:30:00",
        ),
        (VersionCheck(True, True, "2.9.0", GoTime.zero()), "version 2.9.0 available - please upgrade!"),
        (
            VersionCheck(True, True, "", GoTime.parse("2016-04-06T12:30:00Z")),
            "up to date; next check at 2016/04/06 12:30:00",
        ),
    ],
)
def test_version_check_text(vc: VersionCheck, text: str) -> None:
    r = WeaveStatus(version_check=vc)
    assert version_check_text(r.to_dict()["VersionCheck"]) == text
    assert format_report(r, "{{.VersionCheck}}") == text


def test_version_check_nil() -> None:
    assert version_check_text(None) == "<nil>"
    assert format_report(WeaveStatus(version_check=None), "{{.VersionCheck}}") == "<nil>"


# ------------------------------------------------------------------------------------------ INFO rules


def test_live_connection_info_without_password() -> None:
    c = LocalConnectionStatus.live(
        "192.168.48.12:33866",
        outbound=False,
        established=True,
        remote_name="7e:21:4a:70:2f:45",
        remote_nickname="host2",
        attrs={"name": "fastdp", "mtu": 1410},
        encryption=False,
    )
    assert (c.state, c.info, c.attrs) == (
        "established",
        "fastdp 7e:21:4a:70:2f:45(host2)",
        {"name": "fastdp", "mtu": 1410},
    )


def test_live_connection_info_with_password() -> None:
    kw = {"outbound": True, "established": False, "remote_name": "aa:aa:aa:aa:aa:aa", "remote_nickname": "h"}
    enc = LocalConnectionStatus.live("a:1", attrs={"name": "sleeve", "mtu": 1438}, encryption=True, **kw)
    assert enc.state == "pending"
    assert enc.info == "encrypted   sleeve aa:aa:aa:aa:aa:aa(h)"
    assert enc.attrs == {"name": "sleeve", "mtu": 1438, "encrypted": True}
    trusted = LocalConnectionStatus.live("a:1", attrs={"name": "fastdp"}, encryption=True, untrusted=False, **kw)
    assert trusted.info == "unencrypted fastdp aa:aa:aa:aa:aa:aa(h)"
    assert trusted.attrs == {"name": "fastdp"}


def test_live_connection_without_overlay_attrs() -> None:
    c = LocalConnectionStatus.live(
        "a:1",
        outbound=True,
        established=False,
        remote_name="n",
        remote_nickname="k",
        attrs=None,
        encryption=True,
    )
    assert c.info == "encrypted   none   n(k)"
    assert c.attrs is None


def test_target_rows() -> None:
    t = GoTime(1438887338_246910357)
    err = "dial tcp4 192.168.48.15:6783: no route to host"
    rows = [
        LocalConnectionStatus.target("h:6783", attempting=True),
        LocalConnectionStatus.target("h:6783", attempting=True, last_error=err),
        LocalConnectionStatus.target("h:6783", attempting=False, last_error=err, try_after=t),
        LocalConnectionStatus.target("h:6783", attempting=False, last_error=err),
        LocalConnectionStatus.target("h:6783", attempting=False, try_after=t),
    ]
    assert [(r.state, r.info, r.outbound, r.attrs) for r in rows] == [
        ("connecting", "", True, None),
        ("retrying", err, True, None),
        ("failed", err + ", retry: 2015-08-06 18:55:38.246910357 +0000 UTC", True, None),
        ("failed", err + ", retry: never", True, None),
        ("waiting", "until: 2015-08-06 18:55:38.246910357 +0000 UTC", True, None),
    ]


# ------------------------------------------------------------------------------------------ template view


def test_template_view_types_follow_go() -> None:
    v = template_view(sample_report())
    assert isinstance(v, GoStruct) and v.go_type == "main.WeaveStatus" and not v.pointer
    router = v["Router"]
    assert isinstance(router, GoStruct) and router.type_name() == "*router.NetworkRouterStatus"
    assert isinstance(router["Peers"], GoSlice) and router["Peers"].go_type == "[]mesh.PeerStatus"
    assert isinstance(router["CaptureStats"], GoMap) and router["CaptureStats"].elem_zero == 0
    assert v["IPAM"]["Paxos"] == GoNil("ptr", "*paxos.Status")
    assert v["IPAM"]["PendingClaims"] == GoNil("slice", "[]ipam.ClaimStatus")
    assert isinstance(v["VersionCheck"]["NextCheckAt"], GoText)
    assert router["Connections"][2]["Attrs"] == GoNil("map", "map[string]interface {}")


def test_template_view_of_a_sparse_dict_fills_go_zero_values() -> None:
    v = template_view({"Version": "2.8.1", "IPAM": {"Range": "10.32.0.0/12"}})
    assert v["Ready"] is False
    assert v["Router"] == GoNil("ptr", "*router.NetworkRouterStatus")
    assert v["IPAM"]["RangeNumIPs"] == 0
    assert v["IPAM"]["Entries"] == GoNil("slice", "[]ipam.EntryStatus")
    assert format_report(v, "{{.IPAM.Range}} {{len .IPAM.Entries}} {{.Router}}") == "10.32.0.0/12 0 <nil>"


def test_paxos_status_in_json() -> None:
    r = WeaveStatus(ipam=IPAMStatus(paxos=PaxosStatus(True, 2, 3), range="10.32.0.0/12"))
    assert json.loads(r.to_json())["IPAM"]["Paxos"] == {"Elector": True, "KnownNodes": 2, "Quorum": 3}
    assert format_report(r, "{{.IPAM.Paxos.Quorum}}/{{.IPAM.Paxos.KnownNodes}}") == "3/2"
