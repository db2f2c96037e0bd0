"""The launch options of the router: the option table, as the dataclasses the daemon reads.

Every option of ``weave launch`` and of the daemon is declared once, here, as a field (``config.option``):
``cfg.port``, ``cfg.dns_domain``, ``cfg.docker.proxy``, ``cfg.ipam.range``. Defaults are Weave's places and
ports; ``WEAVE_STATE_DIR`` / ``--state-dir`` and ``WEAVE_RUN_DIR`` / ``--run-dir`` move the state and runtime
directories so several routers can share one machine.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from ipaddress import IPv4Network

from weavenet.config import convert
from weavenet.config.option import Kind, Side, group, option
from weavenet.docker.endpoints import DEFAULT_DOCKER_API
from weavenet.ipam.reclaim import DEFAULT_RECLAIM_AFTER

DEFAULT_MTU = 1376  # Weave's fast-datapath MTU: 1460 (GCE) - 20 IP - 8 UDP - 8 VXLAN - 14 Ethernet - 34 ESP
DEFAULT_RANGE = "10.32.0.0/12"  # what ``weave launch`` allocates from when not told (the daemon's default: off)
LOG_LEVELS = ("debug", "info", "warning", "error")
POLICY_MODES = ("auto", "on", "off", "kubernetes")  # --network-policy (weavenet.daemon.policy_service)
DEFAULT_PODMAN_API = "unix:///run/podman/podman.sock"  # rootful podman's system service (podman.socket)
PLUGIN_SOCKET = "/run/docker/plugins/weave.sock"
PLUGIN_MESH_SOCKET = "/run/docker/plugins/weavemesh.sock"
GOBOOL = Kind.GOBOOL


def host_name() -> str:
    return os.uname().nodename


@dataclass
class DockerOptions:
    """Docker: ``--docker-api``, the API proxy (``-H``, hostnames, TLS) and the network plugin."""

    docker_api: str = option(
        DEFAULT_DOCKER_API,
        flag="--docker-api",
        env="DOCKER_HOST",
        env_parse=convert.docker_engine_from_env,
        help="the Docker engine; '' turns everything Docker off ($DOCKER_HOST unless it is the proxy)",
        example="tcp://127.0.0.1:2375",
    )
    proxy: bool = option(True, flag="--proxy", kind=GOBOOL, help="run the Docker API proxy")
    listen: list[str] = option(
        factory=list, flag="-H", dest="proxy_listen", help="the proxy's listen address", example="unix:///tmp/w.sock"
    )
    hostname_from_label: str = option(
        "", flag="--hostname-from-label", help="the container label that names it", example="weave.name"
    )
    hostname_match: str = option(
        "(.*)", flag="--hostname-match", help="regexp on the container name", example="^a-(.*)"
    )
    hostname_replacement: str = option(
        "$1", flag="--hostname-replacement", help="the hostname from --hostname-match's groups", example="$1.b"
    )
    rewrite_inspect: bool = option(False, flag="--rewrite-inspect", kind=GOBOOL, help="weave addresses in inspect")
    no_default_ipalloc: bool = option(
        False, flag="--no-default-ipalloc", kind=GOBOOL, help="attach only containers with WEAVE_CIDR"
    )
    no_rewrite_hosts: bool = option(False, flag="--no-rewrite-hosts", kind=GOBOOL, help="leave /etc/hosts alone")
    without_dns: bool = option(False, flag="--without-dns", kind=GOBOOL, help="do not point containers at weaveDNS")
    no_multicast_route: bool = option(
        False, flag="--no-multicast-route", kind=GOBOOL, help="no multicast route to the weave interface"
    )
    tls: bool = option(False, flag="--tls", kind=GOBOOL, help="the proxy serves TLS")
    tlsverify: bool = option(False, flag="--tlsverify", kind=GOBOOL, help="the proxy serves TLS and checks clients")
    tlscacert: str = option("", flag="--tlscacert", help="CA certificate", example="/etc/docker/ca.pem")
    tlscert: str = option("", flag="--tlscert", help="server certificate", example="/etc/docker/cert.pem")
    tlskey: str = option("", flag="--tlskey", help="server key", example="/etc/docker/key.pem")
    plugin: bool = option(True, flag="--plugin", kind=GOBOOL, help="run the Docker network plugin")
    plugin_socket: str = option(
        PLUGIN_SOCKET, flag="--plugin-socket", help="the plugin's socket", example="/tmp/weave.sock"
    )
    plugin_mesh_socket: str = option(
        PLUGIN_MESH_SOCKET, flag="--plugin-mesh-socket", help="the mesh plugin's socket", example="/tmp/mesh.sock"
    )


@dataclass
class IpamOptions:
    """IPAM: on when any of range, default subnet or init is set (``config.ipam.resolve`` checks them)."""

    range: str = option(
        "",
        flag=("--ipalloc-range", "--iprange"),
        cli_default=DEFAULT_RANGE,
        help=f"the address range to allocate from ('' turns IPAM off; weave launch's default {DEFAULT_RANGE})",
        example="10.32.0.0/16",
    )
    default_subnet: str = option(
        "", flag="--ipalloc-default-subnet", help="the subnet of net:default", example="10.32.4.0/24"
    )
    init: str = option(
        "", flag="--ipalloc-init", help="consensus[=<count>] | seed=<peer>,... | observer", example="consensus=3"
    )
    reclaim_after: float = option(
        DEFAULT_RECLAIM_AFTER,
        flag="--ipalloc-reclaim-after",
        parse=convert.go_duration,
        fmt=convert.format_duration,
        help="reclaim the space of peers gone this long (0: off)",
        example="90m",
    )


@dataclass
class DaemonConfig:
    """Everything ``weave launch`` and the router daemon take."""

    peers: list[str] = option(factory=list, kind=Kind.ARGS, help="peers to connect to", example="192.0.2.7:6783")
    name: str | None = option(
        None, flag="--name", parse=convert.none_if_empty, help="the peer name", example="aa:bb:cc:dd:ee:ff"
    )
    nickname: str = option(
        factory=host_name, flag="--nickname", parse=convert.unset_if_empty, help="the nickname", example="host9"
    )
    host: str = option("", flag="--host", help="the address to listen on for peers", example="127.0.0.1")
    port: int = option(6783, flag="--port", env="WEAVE_PORT", type=int, help="the port for peers", example="7000")
    password: bytes | None = option(
        None,
        flag="--password",
        env="WEAVE_PASSWORD",
        side=Side.CLI,
        secret=True,
        parse=convert.password,
        fmt=convert.format_password,
        help="encrypt the traffic between peers",
        example="s3cret",
    )
    trusted_subnets: list[IPv4Network] = option(
        factory=list,
        flag="--trusted-subnets",
        kind=Kind.VALUE,
        parse=convert.parse_trusted_subnets,
        fmt=convert.format_subnets,
        help="peers in these subnets talk unencrypted",
        example="10.0.0.0/8,192.168.0.0/16",
    )
    conn_limit: int = option(
        200, flag="--conn-limit", type=int, help="at most this many peer connections (0: no limit)", example="30"
    )
    discovery: bool = option(True, flag="--no-discovery", help="do not connect to the peers our peers know")
    min_protocol_version: int = option(
        1, flag="--min-protocol-version", type=int, help="the oldest peer protocol to speak", example="2"
    )
    log_level: str = option("info", flag="--log-level", choices=LOG_LEVELS, help="what to log", example="debug")
    http_addr: str = option(
        "127.0.0.1:6784", flag="--http-addr", env="WEAVE_HTTP_ADDR", help="the API", example="127.0.0.1:7784"
    )
    status_addr: str = option(
        "", flag="--status-addr", env="WEAVE_STATUS_ADDR", help="the read-only status API", example="127.0.0.1:7782"
    )
    metrics_addr: str = option("", flag="--metrics-addr", help="the metrics listener", example="127.0.0.1:9782")
    ui_addr: str = option(
        "",
        flag="--ui-addr",
        env="WEAVE_UI_ADDR",
        help="the web view (read-only): '' on the status address, else the API's; <ip>:<port> its own; off",
        example="127.0.0.1:6785",
    )
    state_dir: str = option(
        "/var/lib/weave", flag="--state-dir", env="WEAVE_STATE_DIR", help="persisted state", example="/tmp/st"
    )
    db_prefix: str = option(
        "",
        flag="--db-prefix",
        help="where Weave 2.8's BoltDB state is imported from (<prefix>data.db; daemon.weave_import)",
        example="/weavedb/weave-net",
    )
    run_dir: str = option(
        "/run/weave", flag="--run-dir", env="WEAVE_RUN_DIR", help="pid file, log, sockets", example="/tmp/rn"
    )
    host_root: str = option("/", flag="--host-root", help="the host's root (for its machine id)", example="/host")
    resume: bool = option(False, flag="--resume", help="reconnect to the peers of the last run")
    foreground: bool = option(
        False,
        flag="--foreground",
        side=Side.CLI,
        help="run the router in this process, logging to stderr (under systemd: deploy/systemd/weave.service)",
    )
    no_restart: bool = option(
        False, flag="--no-restart", side=Side.CLI, help="accepted for compatibility (the router is not supervised)"
    )
    log_file: str | None = option(
        None, flag="--log-file", side=Side.DAEMON, help="log here (rotated), not stderr", example="/tmp/w.log"
    )
    mtu: int = option(
        DEFAULT_MTU,
        flag="--mtu",
        env="WEAVE_MTU",
        type=int,
        parse=convert.unset_if_zero,
        env_parse=convert.env_mtu,
        help="the overlay MTU: the bridge's, every container's and the fast datapath's",
        example="1400",
    )
    no_fastdp: bool = option(False, flag="--no-fastdp", env="WEAVE_NO_FASTDP", help="offer only the sleeve")
    no_masq_local: bool = option(
        False, flag="--no-masq-local", help="do not SNAT external traffic sent to containers running on this host"
    )
    # The sleeve's worker tuning, environment only (dataplane/steering.py, dataplane/worker.py)
    tap_steering: bool = option(True, env="WEAVE_NO_TAP_STEERING", help="two TAP queues with BPF steering")
    warm_tick: bool = option(True, env="WEAVE_NO_WARM_TICK", help="idle wakes after traffic")
    rehearsal: bool = option(True, env="WEAVE_NO_REHEARSAL", help="the warm ticks replay the last express frame")
    # WEAVE_NO_EXTENSIONS: Weave 2.8's protocol and timings only, no Weavenet* feature sent or read, as a Go router
    # (core MeshConfig.extensions): to rule our extensions out when interworking with Go peers misbehaves, and to
    # stand in for a Go peer on hosts that have none
    extensions: bool = option(True, env="WEAVE_NO_EXTENSIONS", help="weavenet's protocol extensions")
    # weaveDNS; dns_listen_address "" = automatic (see weavenet.daemon.dns_service)
    no_dns: bool = option(False, flag="--no-dns", help="no weaveDNS")
    dns_listen_address: str = option(
        "", flag="--dns-listen-address", help="weaveDNS's address (default: on the bridge)", example="10.2.1.1:5353"
    )
    dns_domain: str = option("weave.local.", flag="--dns-domain", help="weaveDNS's domain", example="corp.local")
    dns_ttl: int = option(1, flag="--dns-ttl", type=int, help="the TTL of weaveDNS's answers", example="30")
    dns_fallback_timeout: float = option(
        5.0,
        flag="--dns-fallback-timeout",
        parse=convert.short_duration,
        fmt=convert.format_duration,
        help="how long to wait for an upstream server",
        example="500ms",
    )
    resolv_conf: str = option(
        "/etc/resolv.conf", flag="--resolv-conf", help="where the upstream servers are", example="/tmp/resolv.conf"
    )
    dns_upstream: list[str] = option(
        factory=list, flag="--dns-upstream", help="an upstream server (instead of resolv.conf's)", example="10.9.0.1:53"
    )
    network_policy: str = option(
        "auto",
        flag="--network-policy",
        choices=POLICY_MODES,
        help="enforce NetworkPolicy: auto (from the first policy applied anywhere in the cluster), on (from launch: "
        "nothing new enters the bridge until the policy state is in force), off (never on this host), kubernetes "
        "(as on, with the policies and pods from the Kubernetes API's policy controller)",
        example="on",
    )
    podman_api: str = option(
        DEFAULT_PODMAN_API,
        flag="--podman-api",
        help="podman's API (its system service), read for the labels of the containers podman puts on weave through "
        "the CNI plugin, for network policy; '' turns it off",
        example="unix:///run/user/1000/podman/podman.sock",
    )
    docker: DockerOptions = group(DockerOptions)
    ipam: IpamOptions = group(IpamOptions)


def pid_file(run_dir: str) -> str:
    return os.path.join(run_dir, "weaver.pid")


def log_file(run_dir: str) -> str:
    return os.path.join(run_dir, "weaver.log")
