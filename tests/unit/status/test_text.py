"""``weave status`` texts, byte for byte as Weave 2.8's templates (prog/weaver/http.go) render them."""

from __future__ import annotations

import json
from typing import Any

import pytest

from weavenet.gocompat import GoTime
from weavenet.status import (
    STATUS_PAGES,
    DNSEntryStatus,
    DNSStatus,
    IPAMEntryStatus,
    IPAMStatus,
    LocalConnectionStatus,
    PaxosStatus,
    PeerConnectionStatus,
    PeerStatus,
    PluginConfig,
    PluginStatus,
    ProxyStatus,
    RouterStatus,
    StatusUnavailable,
    VersionCheck,
    WeaveStatus,
    render_connections,
    render_dns,
    render_ipam,
    render_peers,
    render_status,
    render_targets,
    report_json,
    sample_report,
)

# The troubleshooting-guide sample as the current template renders it (design doc section 1.5).
TROUBLESHOOTING_STATUS = """\
        Version: 2.8.1 (up to date; next check at 2016/04/06 12:30:00)

        Service: router
       Protocol: weave 1..2
           Name: 4a:0f:f6:ec:1c:93(host1)
     Encryption: disabled
  PeerDiscovery: enabled
        Targets: 2
    Connections: 5 (1 established, 1 pending, 1 retrying, 1 failed, 1 connecting)
          Peers: 3 (with 5 established, 1 pending connections)
 TrustedSubnets: none

        Service: ipam
         Status: ready
          Range: 10.32.0.0/12
  DefaultSubnet: 10.32.0.0/12

        Service: dns
         Domain: weave.local.
       Upstream: 8.8.8.8, 8.8.4.4
            TTL: 1
        Entries: 9

        Service: proxy
        Address: unix:///var/run/weave/weave.sock

        Service: plugin (legacy)
     DriverName: weave
"""


def test_status_matches_the_reference_sample() -> None:
    assert render_status(sample_report()) == TROUBLESHOOTING_STATUS


def test_status_from_json_dict_is_the_same() -> None:
    assert render_status(json.loads(sample_report().to_json())) == TROUBLESHOOTING_STATUS


def _router(**kw: Any) -> RouterStatus:
    base: dict[str, Any] = {"name": "8a:3e:3e:3e:3e:3e", "nick_name": "nicknamington"}
    base.update(kw)
    return RouterStatus(**base)


def test_minimal_status_router_only() -> None:
    r = WeaveStatus(
        ready=True,
        version="2.8.1",
        router=_router(protocol_min_version=2, peers=[PeerStatus("8a:3e:3e:3e:3e:3e", "nicknamington")]),
    )
    assert render_status(r) == (
        "        Version: 2.8.1 (version check update disabled)\n"
        "\n"
        "        Service: router\n"
        "       Protocol: weave 2\n"
        "           Name: 8a:3e:3e:3e:3e:3e(nicknamington)\n"
        "     Encryption: disabled\n"
        "  PeerDiscovery: enabled\n"
        "        Targets: 0\n"
        "    Connections: 0\n"
        "          Peers: 1\n"
        " TrustedSubnets: none\n"
    )


def test_status_encryption_trusted_subnets_and_counts() -> None:
    conns = [
        LocalConnectionStatus.target("a:6783", attempting=True),
        LocalConnectionStatus.target("b:6783", attempting=True),
        LocalConnectionStatus.target("c:6783", attempting=False, last_error="x"),
        LocalConnectionStatus.target("d:6783", attempting=False),  # "waiting": counted only in the total
    ]
    peers = [
        PeerStatus("aa", "a", connections=[PeerConnectionStatus("bb", "b", "1.2.3.4:6783", True, False)]),
        PeerStatus("bb", "b", connections=[PeerConnectionStatus("aa", "a", "1.2.3.5:1234", False, False)]),
    ]
    r = WeaveStatus(
        version="2.8.1",
        router=_router(
            encryption=True,
            peer_discovery=False,
            connections=conns,
            peers=peers,
            targets=["a", "b", "c"],
            trusted_subnets=["10.0.0.0/8", "192.168.0.0/16"],
        ),
    )
    lines = render_status(r).splitlines()
    assert lines[5:11] == [
        "     Encryption: enabled",
        "  PeerDiscovery: disabled",
        "        Targets: 3",
        "    Connections: 4 (1 failed, 2 connecting)",
        "          Peers: 2 (with 2 pending connections)",
        " TrustedSubnets: 10.0.0.0/8, 192.168.0.0/16",
    ]


IPAM_STATUS_CASES = [
    (IPAMStatus(entries=[IPAMEntryStatus("10.32.0.0", 1 << 20, "p", "n", True, 1)]), "ready"),
    (
        IPAMStatus(
            entries=[IPAMEntryStatus("10.32.0.0", 1 << 20, "p", "n", True, 1)],
            pending_allocates=["c1 10.32.0.0-..."],
        ),
        "waiting for IP(s) to become available",
    ),
    (
        IPAMStatus(
            entries=[
                IPAMEntryStatus("10.32.0.0", 1 << 19, "p", "n", False, 1),
                IPAMEntryStatus("10.40.0.0", 0, "q", "m", True, 1),  # known but empty: still "unreachable"
            ]
        ),
        "all IP ranges owned by unreachable peers - use 'rmpeer' if they are dead",
    ),
    (IPAMStatus(paxos=PaxosStatus(True, 1, 2)), "awaiting consensus (quorum: 2, known: 1)"),
    (IPAMStatus(paxos=PaxosStatus(False)), "priming"),
    (IPAMStatus(), "idle"),
]


@pytest.mark.parametrize(("ipam", "wording"), IPAM_STATUS_CASES)
def test_ipam_status_wording(ipam: IPAMStatus, wording: str) -> None:
    ipam.range, ipam.default_subnet = "10.32.0.0/12", "10.32.0.0/12"
    text = render_status(WeaveStatus(version="v", router=_router(), ipam=ipam))
    assert text.endswith(
        " TrustedSubnets: none\n"
        "\n"
        "        Service: ipam\n"
        f"         Status: {wording}\n"
        "          Range: 10.32.0.0/12\n"
        "  DefaultSubnet: 10.32.0.0/12\n"
    )


def test_dns_proxy_plugin_sections() -> None:
    r = WeaveStatus(
        version="v",
        router=_router(),
        dns=DNSStatus("weave.local.", [], "172.17.0.1:53", 1, None),
        proxy=ProxyStatus(["unix:///var/run/weave/weave.sock", "tcp://0.0.0.0:12375"]),
        plugin=PluginStatus(PluginConfig(enable_v2=True), "weave", ""),
    )
    assert render_status(r).split(" TrustedSubnets: none\n", 1)[1] == (
        "\n"
        "        Service: dns\n"
        "         Domain: weave.local.\n"
        "       Upstream: none\n"
        "            TTL: 1\n"
        "        Entries: 0\n"
        "\n"
        "        Service: proxy\n"
        "        Address: unix:///var/run/weave/weave.sock, tcp://0.0.0.0:12375\n"
        "\n"
        "        Service: plugin (v2)\n"
    )


def test_upstream_test_greps_still_work() -> None:
    """test/700: `weave status | grep -oP '(?<= Name: ).*'` etc."""
    text = render_status(WeaveStatus(version="v", router=_router(), ipam=IPAMStatus(default_subnet="10.2.0.0/16")))
    assert "           Name: 8a:3e:3e:3e:3e:3e(nicknamington)\n" in text
    assert "  DefaultSubnet: 10.2.0.0/16\n" in text
    assert "(version check update disabled)" in text


# ------------------------------------------------------------------------------------------ sub-pages


def test_targets() -> None:
    assert render_targets(sample_report()) == "192.168.48.14\n192.168.48.15\n"
    assert render_targets(WeaveStatus(router=_router())) == ""


def test_connections_with_encryption_like_the_docs() -> None:
    """The docs' example lines; Go always writes the spaces around INFO, so short rows end in spaces."""
    assert render_connections(sample_report(encryption=True)) == (
        "<- 192.168.48.12:33866   established unencrypted fastdp 7e:21:4a:70:2f:45(host2) mtu=1410\n"
        "<- 192.168.48.13:60773   pending     encrypted   fastdp 7e:ae:cd:d5:23:8d(host3) "
        "encrypted=truemtu=1376\n"
        "-> 192.168.48.14:6783    retrying    dial tcp4 192.168.48.14:6783: no route to host \n"
        "-> 192.168.48.15:6783    failed      dial tcp4 192.168.48.15:6783: no route to host, "
        "retry: 2015-08-06 18:55:38.246910357 +0000 UTC \n"
        "-> 192.168.48.16:6783    connecting   \n"
    )


def test_connections_without_encryption_have_no_encryption_column() -> None:
    assert render_connections(sample_report()).splitlines()[0] == (
        "<- 192.168.48.12:33866   established fastdp 7e:21:4a:70:2f:45(host2) mtu=1410"
    )


def test_connections_long_fields_are_not_cut_and_attrs_sorted() -> None:
    c = LocalConnectionStatus("[fe80::1]:65535-and-more", True, "established", "info", {"z": 1, "name": "x", "a": True})
    r = WeaveStatus(router=_router(connections=[c]))
    assert render_connections(r) == "-> [fe80::1]:65535-and-more established info a=truez=1\n"


def test_upstream_connection_cut_still_works() -> None:
    """test/700: `weave status connections | tr -s ' ' | cut -d ' ' -f 2` is the address."""
    line = render_connections(sample_report()).splitlines()[2]
    assert " ".join(line.split()).split(" ")[1] == "192.168.48.14:6783"


def test_peers() -> None:
    assert render_peers(sample_report()) == (
        "4a:0f:f6:ec:1c:93(host1)\n"
        "   <- 192.168.48.12:33866   7e:21:4a:70:2f:45(host2)              established\n"
        "   <- 192.168.48.13:60773   7e:ae:cd:d5:23:8d(host3)              pending\n"
        "7e:21:4a:70:2f:45(host2)\n"
        "   -> 192.168.48.11:6783    4a:0f:f6:ec:1c:93(host1)              established\n"
        "   <- 192.168.48.13:58181   7e:ae:cd:d5:23:8d(host3)              established\n"
        "7e:ae:cd:d5:23:8d(host3)\n"
        "   -> 192.168.48.12:6783    7e:21:4a:70:2f:45(host2)              established\n"
        "   -> 192.168.48.11:6783    4a:0f:f6:ec:1c:93(host1)              established\n"
    )


def test_peer_without_connections() -> None:
    assert render_peers(WeaveStatus(router=_router(peers=[PeerStatus("aa", "a")]))) == "aa(a)\n"


def test_dns_matches_the_docs() -> None:
    assert render_dns(sample_report()) == (
        "one          10.32.0.1       eebd81120ee4 4a:0f:f6:ec:1c:93\n"
        "one          10.43.255.255   4fcec78d2a9b 66:c4:47:c6:65:bf\n"
        "one          10.40.0.0       bab69d305cba ba:98:d0:37:4f:1c\n"
        "three        10.32.0.3       7615b6537f74 4a:0f:f6:ec:1c:93\n"
        "three        10.44.0.1       c0b39dc52f8d 66:c4:47:c6:65:bf\n"
        "three        10.40.0.2       8a9c2e2ef00f ba:98:d0:37:4f:1c\n"
        "two          10.32.0.2       83689b8f34e0 4a:0f:f6:ec:1c:93\n"
        "two          10.44.0.0       7edc306cb668 66:c4:47:c6:65:bf\n"
        "two          10.40.0.1       68a5e9c2641b ba:98:d0:37:4f:1c\n"
    )


def test_dns_edge_cases() -> None:
    entries = [
        DNSEntryStatus("a-very-long-hostname.weave.local.", "o", "short", "10.0.0.1", 1, 0),
        DNSEntryStatus("other.example.", "o", "weave:extern", "10.0.0.2", 1, 0),
        DNSEntryStatus("weave.local.", "o", "c", "10.0.0.3", 1, 0),
        DNSEntryStatus("dead.weave.local.", "o", "c", "10.0.0.4", 2, 1438887000),
    ]
    r = WeaveStatus(dns=DNSStatus("weave.local.", [], "", 1, entries))
    assert render_dns(r) == (
        "a-very-long-hostname 10.0.0.1               short o\n"
        "other.example. 10.0.0.2        weave:extern o\n"
        "weave.local. 10.0.0.3                   c o\n"
    )


def test_ipam_matches_the_docs_layout() -> None:
    ipam = IPAMStatus(
        range="10.32.0.0/12",
        range_num_ips=1 << 20,
        active_ips=2,
        entries=[
            IPAMEntryStatus("10.32.0.0", 349526, "00:00:00:00:00:01", "one", True, 1),
            IPAMEntryStatus("10.37.85.86", 349525, "00:00:00:00:00:03", "three", False, 1),
            IPAMEntryStatus("10.42.170.171", 349525, "00:00:00:00:00:02", "two", True, 1),
        ],
    )
    r = WeaveStatus(router=_router(name="00:00:00:00:00:01"), ipam=ipam)
    assert render_ipam(r) == (
        "00:00:00:00:00:01(one)                  349526 IPs (33.3% of total) (2 active)\n"
        "00:00:00:00:00:02(two)                  349525 IPs (33.3% of total) \n"
        "00:00:00:00:00:03(three)                349525 IPs (33.3% of total) - unreachable!\n"
    )


def test_ipam_sums_entries_per_peer_and_zero_pads_percentages() -> None:
    assert render_ipam(sample_report()) == (
        "4a:0f:f6:ec:1c:93(host1)                524288 IPs (50.0% of total) (3 active)\n"
        "7e:21:4a:70:2f:45(host2)                262144 IPs (25.0% of total) \n"
        "7e:ae:cd:d5:23:8d(host3)                262144 IPs (25.0% of total) \n"
    )
    tiny = IPAMStatus(
        range_num_ips=2000,
        entries=[IPAMEntryStatus("a", 3, "p", "n", True, 1), IPAMEntryStatus("b", 1997, "q", "m", True, 1)],
    )
    # float32 arithmetic as in Go: 3*100/2000 is 0.15000001 -> "00.2" (float64 would give "00.1")
    assert render_ipam(WeaveStatus(router=_router(name="x"), ipam=tiny)) == (
        "p(n)                                         3 IPs (00.2% of total) \n"
        "q(m)                                      1997 IPs (99.8% of total) \n"
    )


def test_ipam_with_no_entries_is_empty() -> None:
    assert render_ipam(WeaveStatus(router=_router(), ipam=IPAMStatus())) == ""


def test_pages_without_their_service_are_unavailable() -> None:
    r = WeaveStatus(router=_router())
    with pytest.raises(StatusUnavailable):
        render_dns(r)
    with pytest.raises(StatusUnavailable):
        render_ipam(r)
    assert StatusUnavailable.body == "error during template execution\n"


def test_status_pages_table() -> None:
    assert set(STATUS_PAGES) == {"", "targets", "connections", "peers", "dns", "ipam"}
    r = sample_report()
    assert STATUS_PAGES[""](r) == TROUBLESHOOTING_STATUS
    assert STATUS_PAGES["peers"](r) == render_peers(r)


def test_version_line_forms() -> None:
    vc = VersionCheck(True, True, "2.9.0", GoTime.zero())
    assert render_status(WeaveStatus(version="2.8.1", version_check=vc, router=_router())).startswith(
        "        Version: 2.8.1 (version 2.9.0 available - please upgrade!)\n\n"
    )


def test_state_problems_get_a_section_of_their_own_only_when_there_are_some() -> None:
    report = sample_report().to_dict()
    problem = "/run/weave/attached.json is unreadable (not JSON): rebuilt from the 2 container(s) found on the bridge"
    report["State"] = {"Problems": [problem], "Unsaved": {"ipam": "cannot write the state file: disk is full"}}
    assert render_status(report) == TROUBLESHOOTING_STATUS + (
        "\n"
        "        Service: state\n"
        "       Problems: 2\n"
        f"                 {problem}\n"
        "                 not saved: cannot write the state file: disk is full\n"
    )
    # it survives the JSON of GET /report (weavenet's own key, absent when all is well)
    assert json.loads(report_json(report))["State"]["Problems"] == [problem]
    assert "State" not in json.loads(sample_report().to_json())
