"""A sample report: the troubleshooting guide's cluster, for tests and documentation."""

from __future__ import annotations

from weavenet.gocompat import GoTime
from weavenet.status.dns import DNSEntryStatus, DNSStatus
from weavenet.status.docker import PluginConfig, PluginStatus, ProxyStatus
from weavenet.status.ipam import IPAMEntryStatus, IPAMStatus
from weavenet.status.report import VersionCheck, WeaveStatus
from weavenet.status.router import (
    BroadcastRouteStatus,
    LocalConnectionStatus,
    MACStatus,
    PeerConnectionStatus,
    PeerStatus,
    RouterStatus,
    UnicastRouteStatus,
)

__all__ = ["sample_report"]


def sample_report(*, encryption: bool = False) -> WeaveStatus:
    """The troubleshooting-guide cluster as a report (for tests and docs).

    host1 (us) has one connection in each state (established from host2 over fastdp, pending from host3,
    retrying/failed/connecting targets), 3 peers with 5 established + 1 pending connections between them,
    IPAM ready over 10.32.0.0/12, 9 live DNS entries plus one tombstone, the proxy and the legacy plugin.
    With ``encryption`` the router has a password and host2's address is a trusted subnet, reproducing the
    docs' ``unencrypted``/``encrypted`` INFO columns.
    """
    us, host2, host3 = "4a:0f:f6:ec:1c:93", "7e:21:4a:70:2f:45", "7e:ae:cd:d5:23:8d"
    failed_at = GoTime(1438887338_246910357)  # 2015-08-06 18:55:38.246910357 UTC, as in the docs
    connections = [
        LocalConnectionStatus.live(
            "192.168.48.12:33866",
            outbound=False,
            established=True,
            remote_name=host2,
            remote_nickname="host2",
            attrs={"name": "fastdp", "mtu": 1410},
            encryption=encryption,
            untrusted=False,
        ),
        LocalConnectionStatus.live(
            "192.168.48.13:60773",
            outbound=False,
            established=False,
            remote_name=host3,
            remote_nickname="host3",
            attrs={"name": "fastdp", "mtu": 1376},
            encryption=encryption,
            untrusted=True,
        ),
        LocalConnectionStatus.target(
            "192.168.48.14:6783", attempting=True, last_error="dial tcp4 192.168.48.14:6783: no route to host"
        ),
        LocalConnectionStatus.target(
            "192.168.48.15:6783",
            attempting=False,
            last_error="dial tcp4 192.168.48.15:6783: no route to host",
            try_after=failed_at,
        ),
        LocalConnectionStatus.target("192.168.48.16:6783", attempting=True),
    ]
    peers = [
        PeerStatus(
            us,
            "host1",
            uid=12103327843924405264,
            short_id=1,
            version=12,
            connections=[
                PeerConnectionStatus(host2, "host2", "192.168.48.12:33866", False, True),
                PeerConnectionStatus(host3, "host3", "192.168.48.13:60773", False, False),
            ],
        ),
        PeerStatus(
            host2,
            "host2",
            uid=5573125393049452392,
            short_id=2,
            version=7,
            connections=[
                PeerConnectionStatus(us, "host1", "192.168.48.11:6783", True, True),
                PeerConnectionStatus(host3, "host3", "192.168.48.13:58181", False, True),
            ],
        ),
        PeerStatus(
            host3,
            "host3",
            uid=889213381431373838,
            short_id=3,
            version=5,
            connections=[
                PeerConnectionStatus(host2, "host2", "192.168.48.12:6783", True, True),
                PeerConnectionStatus(us, "host1", "192.168.48.11:6783", True, True),
            ],
        ),
    ]
    router = RouterStatus(
        encryption=encryption,
        peer_discovery=True,
        name=us,
        nick_name="host1",
        peers=peers,
        unicast_routes=[UnicastRouteStatus(host2, host2), UnicastRouteStatus(host3, host2)],
        broadcast_routes=[BroadcastRouteStatus(us, [host2])],
        connections=connections,
        termination_count=3,
        targets=["192.168.48.14", "192.168.48.15"],
        overlay_diagnostics={"fastdp": {"Vports": [], "Flows": []}, "sleeve": None},
        trusted_subnets=["192.168.48.12/32"] if encryption else [],
        interface="datapath (via ODP)",
        capture_stats={"FlowMisses": 42},
        macs=[MACStatus("ce:15:34:a9:b5:6d", host2, "host2", GoTime.from_unix(1438887300))],
    )
    ipam = IPAMStatus(
        range="10.32.0.0/12",
        range_num_ips=1 << 20,
        active_ips=3,
        default_subnet="10.32.0.0/12",
        entries=[
            IPAMEntryStatus("10.32.0.0", 1 << 18, us, "host1", True, 3),
            IPAMEntryStatus("10.36.0.0", 1 << 18, host2, "host2", True, 1),
            IPAMEntryStatus("10.40.0.0", 1 << 18, us, "host1", True, 2),
            IPAMEntryStatus("10.44.0.0", 1 << 18, host3, "host3", True, 1),
        ],
    )
    # the docs' `weave status dns` example; container IDs extended to full length to exercise %12.12v
    origin_a, origin_b, origin_c = us, "66:c4:47:c6:65:bf", "ba:98:d0:37:4f:1c"
    dns_rows = [
        ("one", "10.32.0.1", "eebd81120ee4", origin_a),
        ("one", "10.43.255.255", "4fcec78d2a9b", origin_b),
        ("one", "10.40.0.0", "bab69d305cba", origin_c),
        ("three", "10.32.0.3", "7615b6537f74", origin_a),
        ("three", "10.44.0.1", "c0b39dc52f8d", origin_b),
        ("three", "10.40.0.2", "8a9c2e2ef00f", origin_c),
        ("two", "10.32.0.2", "83689b8f34e0", origin_a),
        ("two", "10.44.0.0", "7edc306cb668", origin_b),
        ("two", "10.40.0.1", "68a5e9c2641b", origin_c),
    ]
    entries = [
        DNSEntryStatus(f"{host}.weave.local.", origin, cid + "0123456789abcdef" * 3 + "0" * 4, ip, 1, 0)
        for host, ip, cid, origin in dns_rows
    ]
    entries.append(DNSEntryStatus("gone.weave.local.", us, "f" * 64, "10.32.0.9", 2, 1438887000))
    return WeaveStatus(
        ready=True,
        version="2.8.1",
        version_check=VersionCheck(True, True, "", GoTime.from_unix(1459945800)),
        router=router,
        ipam=ipam,
        dns=DNSStatus("weave.local.", ["8.8.8.8", "8.8.4.4"], "172.17.0.1:53", 1, entries),
        proxy=ProxyStatus(["unix:///var/run/weave/weave.sock"]),
        plugin=PluginStatus(PluginConfig(default_subnet="10.32.0.0/12"), "weave", "weavemesh"),
    )
