"""Router daemon configuration: defaults, environment variables, validation.

Defaults are Weave's places and ports. ``WEAVE_STATE_DIR`` / ``--state-dir`` and ``WEAVE_RUN_DIR`` /
``--run-dir`` move the state and runtime directories so several routers can share one machine.
"""

from __future__ import annotations

import argparse
import os
import socket
from dataclasses import dataclass, field
from ipaddress import IPv4Network

from weavenet.core.connection_maker import parse_peer_spec
from weavenet.core.names import PeerName
from weavenet.daemon.ipam_options import IpamOptions
from weavenet.daemon.ipam_options import add_arguments as add_ipam_arguments
from weavenet.daemon.ipam_options import from_namespace as ipam_options
from weavenet.docker.options import DockerOptions
from weavenet.docker.options import add_arguments as add_docker_arguments
from weavenet.docker.options import from_namespace as docker_options
from weavenet.errors import ConfigError
from weavenet.gocompat import DurationError, parse_seconds
from weavenet.host.bridge import env_mtu

DEFAULT_STATE_DIR = "/var/lib/weave"
DEFAULT_RUN_DIR = "/run/weave"
DEFAULT_PORT = 6783
DEFAULT_HTTP_ADDR = "127.0.0.1:6784"
DEFAULT_STATUS_ADDR = "127.0.0.1:6782"
DEFAULT_CONN_LIMIT = 200
DEFAULT_MTU = 1376
DEFAULT_DNS_DOMAIN = "weave.local."
DEFAULT_DNS_TTL = 1
DEFAULT_DNS_FALLBACK_TIMEOUT = 5.0
DEFAULT_RESOLV_CONF = "/etc/resolv.conf"
LOG_LEVELS = ("debug", "info", "warning", "error")


def state_dir_default() -> str:
    return os.environ.get("WEAVE_STATE_DIR") or DEFAULT_STATE_DIR


def run_dir_default() -> str:
    return os.environ.get("WEAVE_RUN_DIR") or DEFAULT_RUN_DIR


def http_addr_default() -> str:
    return os.environ.get("WEAVE_HTTP_ADDR") or DEFAULT_HTTP_ADDR


def pid_file(run_dir: str) -> str:
    return os.path.join(run_dir, "weaver.pid")


def log_file(run_dir: str) -> str:
    return os.path.join(run_dir, "weaver.log")


@dataclass
class DaemonConfig:
    peers: list[str] = field(default_factory=list)
    name: str | None = None
    nickname: str = field(default_factory=socket.gethostname)
    host: str = ""
    port: int = DEFAULT_PORT
    password: bytes | None = None
    trusted_subnets: list[IPv4Network] = field(default_factory=list)
    conn_limit: int = DEFAULT_CONN_LIMIT
    discovery: bool = True
    min_protocol_version: int = 1
    log_level: str = "info"
    http_addr: str = DEFAULT_HTTP_ADDR
    status_addr: str = ""
    metrics_addr: str = ""
    state_dir: str = DEFAULT_STATE_DIR
    db_prefix: str = ""  # Weave's --db-prefix: where its BoltDB state is imported from (daemon.weave_import)
    run_dir: str = DEFAULT_RUN_DIR
    host_root: str = "/"
    resume: bool = False
    log_file: str | None = None
    mtu: int = 1376
    no_fastdp: bool = False  # --no-fastdp / WEAVE_NO_FASTDP: offer only the sleeve
    tap_steering: bool = True  # WEAVE_NO_TAP_STEERING unsets it: one TAP queue (dataplane/steering.py)
    warm_tick: bool = True  # WEAVE_NO_WARM_TICK unsets it: no idle wakes after traffic (dataplane/worker.py)
    rehearsal: bool = True  # WEAVE_NO_REHEARSAL unsets it: the warm ticks only wake (worker.REHEARSAL)
    # weaveDNS; dns_listen_address "" = automatic (see weavenet.daemon.dns_service)
    no_dns: bool = False
    dns_listen_address: str = ""
    dns_domain: str = DEFAULT_DNS_DOMAIN
    dns_ttl: int = DEFAULT_DNS_TTL
    dns_fallback_timeout: float = DEFAULT_DNS_FALLBACK_TIMEOUT
    resolv_conf: str = DEFAULT_RESOLV_CONF
    dns_upstream: list[str] = field(default_factory=list)
    # Docker: --docker-api, the API proxy and the network plugin (weavenet.docker.options)
    docker: DockerOptions = field(default_factory=DockerOptions)
    # IPAM: --ipalloc-range/-default-subnet/-init/-reclaim-after (weavenet.daemon.ipam_options)
    ipam: IpamOptions = field(default_factory=IpamOptions)


def parse_trusted_subnets(text: str) -> list[IPv4Network]:
    out = []
    for part in filter(None, (p.strip() for p in text.split(","))):
        try:
            out.append(IPv4Network(part, strict=False))
        except ValueError as e:
            raise ConfigError(f"Unable to parse trusted subnets: invalid CIDR address: {part}") from e
    return out


def parse_addr(text: str, what: str) -> tuple[str, int]:
    host, sep, port = text.rpartition(":")
    if not sep or not port.isdigit() or int(port) > 65535:
        raise ConfigError(f"{what}: expected <ip>:<port>, got {text!r}")
    return host or "0.0.0.0", int(port)


def parse_duration(text: str) -> float:
    """A Go duration (``5s``, ``500ms``, ``1m30s``) or plain seconds, as ``--dns-fallback-timeout`` takes."""
    try:
        return parse_seconds(text, allow_negative=False)
    except DurationError:
        raise ConfigError(f"invalid duration {text!r}: use e.g. 5s or 500ms") from None


def _validate_dns(cfg: DaemonConfig) -> None:
    import ipaddress

    from weavenet.dns.index import name_to_wire

    if cfg.dns_listen_address:
        host, _ = parse_addr(cfg.dns_listen_address, "--dns-listen-address")
        try:
            ipaddress.ip_address(host)
        except ValueError as e:
            raise ConfigError(f"--dns-listen-address: {host!r} is not an IP address") from e
    domain = cfg.dns_domain if cfg.dns_domain.endswith(".") else cfg.dns_domain + "."
    if domain == "." or name_to_wire(domain) is None:
        raise ConfigError(f"invalid --dns-domain {cfg.dns_domain!r}")
    if not 0 <= cfg.dns_ttl < 1 << 31:
        raise ConfigError(f"invalid --dns-ttl {cfg.dns_ttl}")
    if not 0 < cfg.dns_fallback_timeout <= 300:
        raise ConfigError("--dns-fallback-timeout must be above 0 and at most 5m")
    for up in cfg.dns_upstream:
        host, sep, port = up.rpartition(":") if up.count(":") == 1 else (up, "", "")
        try:
            ipaddress.ip_address(host)
        except ValueError as e:
            raise ConfigError(f"invalid --dns-upstream {up!r}: expected <ip>[:<port>]") from e
        if sep and not (port.isdigit() and 0 < int(port) < 65536):
            raise ConfigError(f"invalid --dns-upstream {up!r}: bad port")


def validate(cfg: DaemonConfig) -> DaemonConfig:
    """Check everything that can be checked without touching the network; raise ConfigError."""
    if cfg.name:
        PeerName.parse(cfg.name)
    for peer in cfg.peers:
        try:
            parse_peer_spec(peer)
        except ValueError as e:
            raise ConfigError(str(e)) from e
    if not 0 < cfg.port < 65535:
        raise ConfigError(f"invalid --port {cfg.port}: must be between 1 and 65534 (the port above carries VXLAN)")
    if cfg.conn_limit < 0:
        raise ConfigError("--conn-limit must be 0 (unlimited) or more")
    if cfg.min_protocol_version not in (1, 2):
        raise ConfigError("--min-protocol-version must be 1 or 2")
    if cfg.log_level not in LOG_LEVELS:
        raise ConfigError(f"invalid --log-level {cfg.log_level!r}: use one of {', '.join(LOG_LEVELS)}")
    if not 576 <= cfg.mtu <= 65535:
        raise ConfigError(f"invalid MTU {cfg.mtu}: must be between 576 and 65535")
    if cfg.resume and cfg.peers:
        raise ConfigError("You must not specify an initial peer list in conjunction with --resume")
    for addr, what in (
        (cfg.http_addr, "--http-addr"),
        (cfg.status_addr, "--status-addr"),
        (cfg.metrics_addr, "--metrics-addr"),
    ):
        if addr and not addr.startswith("/"):
            parse_addr(addr, what)
    _validate_dns(cfg)
    from weavenet.daemon.ipam_options import resolve as resolve_ipam

    resolve_ipam(cfg.ipam)  # raises ConfigError with Weave's messages
    return cfg


def build_parser() -> argparse.ArgumentParser:
    """The daemon's own command line (what ``weave launch`` passes on)."""
    p = argparse.ArgumentParser(prog="weaver", description="weavenet router daemon")
    p.add_argument("peers", nargs="*")
    p.add_argument("--name")
    p.add_argument("--nickname", default=socket.gethostname())
    p.add_argument("--host", default="")
    p.add_argument("--port", type=int, default=DEFAULT_PORT)
    p.add_argument("--trusted-subnets", default="")
    p.add_argument("--conn-limit", type=int, default=DEFAULT_CONN_LIMIT)
    p.add_argument("--no-discovery", action="store_true")
    p.add_argument("--min-protocol-version", type=int, default=1)
    p.add_argument("--log-level", default="info")
    p.add_argument("--http-addr", default=DEFAULT_HTTP_ADDR)
    p.add_argument("--status-addr", default="")
    p.add_argument("--metrics-addr", default="")
    p.add_argument("--state-dir", default=DEFAULT_STATE_DIR)
    p.add_argument("--db-prefix", default="")
    p.add_argument("--run-dir", default=DEFAULT_RUN_DIR)
    p.add_argument("--host-root", default="/")
    p.add_argument("--resume", action="store_true")
    p.add_argument("--log-file")
    p.add_argument("--mtu", type=int, default=0)
    p.add_argument("--no-fastdp", action="store_true")
    p.add_argument("--no-dns", action="store_true")
    p.add_argument("--dns-listen-address", default="")
    p.add_argument("--dns-domain", default=DEFAULT_DNS_DOMAIN)
    p.add_argument("--dns-ttl", type=int, default=DEFAULT_DNS_TTL)
    p.add_argument("--dns-fallback-timeout", default="5s")
    p.add_argument("--resolv-conf", default=DEFAULT_RESOLV_CONF)
    p.add_argument("--dns-upstream", action="append", default=[])
    add_docker_arguments(p)
    add_ipam_arguments(p)
    return p


def from_args(argv: list[str], environ: dict[str, str] | None = None) -> DaemonConfig:
    env = os.environ if environ is None else environ
    ns = build_parser().parse_args(argv)
    password = env.get("WEAVE_PASSWORD")
    cfg = DaemonConfig(
        peers=list(ns.peers),
        name=ns.name,
        nickname=ns.nickname,
        host=ns.host,
        port=ns.port,
        password=password.encode() if password else None,
        trusted_subnets=parse_trusted_subnets(ns.trusted_subnets),
        conn_limit=ns.conn_limit,
        discovery=not ns.no_discovery,
        min_protocol_version=ns.min_protocol_version,
        log_level=ns.log_level,
        http_addr=ns.http_addr,
        status_addr=ns.status_addr,
        metrics_addr=ns.metrics_addr,
        state_dir=ns.state_dir,
        db_prefix=ns.db_prefix,
        run_dir=ns.run_dir,
        host_root=ns.host_root,
        resume=ns.resume,
        log_file=ns.log_file,
        mtu=ns.mtu or env_mtu(env),
        no_fastdp=ns.no_fastdp or bool(env.get("WEAVE_NO_FASTDP")),
        tap_steering=not env.get("WEAVE_NO_TAP_STEERING"),
        warm_tick=not env.get("WEAVE_NO_WARM_TICK"),
        rehearsal=not env.get("WEAVE_NO_REHEARSAL"),
        no_dns=ns.no_dns,
        dns_listen_address=ns.dns_listen_address,
        dns_domain=ns.dns_domain,
        dns_ttl=ns.dns_ttl,
        dns_fallback_timeout=parse_duration(ns.dns_fallback_timeout),
        resolv_conf=ns.resolv_conf,
        dns_upstream=list(ns.dns_upstream),
        docker=docker_options(ns),
        ipam=ipam_options(ns),
    )
    return validate(cfg)
