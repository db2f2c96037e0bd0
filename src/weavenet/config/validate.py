"""The checks of a launch configuration, in one place: ``weave launch`` runs them before it starts the daemon (so
a mistake is one line and exit 1), the daemon again on what it was given. Each raises ``ConfigError`` with one
line, Weave's wording where Weave has one.
"""

from __future__ import annotations

import ipaddress
import os
from collections.abc import Mapping
from pathlib import Path

from weavenet.config.ipam import resolve as resolve_ipam
from weavenet.config.model import LOG_LEVELS, POLICY_MODES, DaemonConfig, DockerOptions
from weavenet.core.connection_maker import parse_peer_spec
from weavenet.core.names import PeerName
from weavenet.docker.endpoints import parse_endpoint
from weavenet.docker.hostname import compile_match
from weavenet.errors import ConfigError


def validate(cfg: DaemonConfig, environ: Mapping[str, str] | None = None) -> DaemonConfig:
    """Check everything that can be checked without touching the network; raise ConfigError."""
    env = os.environ if environ is None else environ
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
    if cfg.network_policy not in POLICY_MODES:
        raise ConfigError(f"invalid --network-policy {cfg.network_policy!r}: use one of {', '.join(POLICY_MODES)}")
    if cfg.podman_api:
        parse_endpoint(cfg.podman_api, "--podman-api")
    if not 576 <= cfg.mtu <= 65535:
        raise ConfigError(f"invalid MTU {cfg.mtu}: must be between 576 and 65535")
    if cfg.resume and cfg.peers:
        raise ConfigError("You must not specify an initial peer list in conjunction with --resume")
    for addr, what in (
        (cfg.http_addr, "--http-addr"),
        (cfg.status_addr, "--status-addr"),
        (cfg.metrics_addr, "--metrics-addr"),
        ("" if cfg.ui_addr == "off" else cfg.ui_addr, "--ui-addr"),
    ):
        if addr and not addr.startswith("/"):
            parse_addr(addr, what)
    _validate_dns(cfg)
    validate_docker(cfg.docker, env)
    resolve_ipam(cfg.ipam)  # raises ConfigError with Weave's messages
    return cfg


def parse_addr(text: str, what: str) -> tuple[str, int]:
    host, sep, port = text.rpartition(":")
    if not sep or not port.isdigit() or int(port) > 65535:
        raise ConfigError(f"{what}: expected <ip>:<port>, got {text!r}")
    return host or "0.0.0.0", int(port)


def _validate_dns(cfg: DaemonConfig) -> None:
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


def validate_docker(opts: DockerOptions, environ: Mapping[str, str]) -> DockerOptions:
    if opts.docker_api:
        parse_endpoint(opts.docker_api, "--docker-api")
    for addr in opts.listen:
        parse_endpoint(addr)
    compile_match(opts.hostname_match)
    if (opts.tls or opts.tlsverify) and not all(Path(p).is_file() for p in tls_files(opts, environ)[1:]):
        raise ConfigError("--tls: certificate and key files not found (use --tlscert and --tlskey)")
    if opts.tlsverify and not Path(tls_files(opts, environ)[0]).is_file():
        raise ConfigError("--tlsverify: CA certificate not found (use --tlscacert)")
    return opts


def tls_files(opts: DockerOptions, environ: Mapping[str, str]) -> tuple[str, str, str]:
    """(ca, cert, key), defaults from ``$DOCKER_CERT_PATH`` or ``~/.docker`` as dockerd's."""
    base = environ.get("DOCKER_CERT_PATH") or os.path.expanduser("~/.docker")
    return (
        opts.tlscacert or os.path.join(base, "ca.pem"),
        opts.tlscert or os.path.join(base, "cert.pem"),
        opts.tlskey or os.path.join(base, "key.pem"),
    )
