"""The daemon's Docker options (Weave's weaver flags for the proxy, the plugin and ``--docker-api``).

Kept here rather than in ``daemon/config.py`` so the integration's flags live with it; the daemon's parser calls
:func:`add_arguments` and :func:`from_namespace`. Booleans accept Go's forms (``--proxy``, ``--proxy=false``).
"""

from __future__ import annotations

import argparse
import os
import ssl
from dataclasses import dataclass, field
from pathlib import Path

from weavenet.docker.endpoints import DEFAULT_DOCKER_API, default_listen, names_proxy, parse_endpoint
from weavenet.docker.hostname import compile_match
from weavenet.errors import ConfigError

PLUGIN_SOCKET = "/run/docker/plugins/weave.sock"
PLUGIN_MESH_SOCKET = "/run/docker/plugins/weavemesh.sock"


def go_bool(text: str | bool) -> bool:
    if isinstance(text, bool):
        return text
    t = text.strip().lower()
    if t in ("1", "t", "true", "yes", ""):
        return True
    if t in ("0", "f", "false", "no"):
        return False
    raise ValueError(f"invalid boolean value {text!r}")


@dataclass
class DockerOptions:
    docker_api: str = DEFAULT_DOCKER_API  # "" disables everything Docker
    proxy: bool = True
    listen: list[str] = field(default_factory=list)  # -H; empty = Weave's default
    hostname_from_label: str = ""
    hostname_match: str = "(.*)"
    hostname_replacement: str = "$1"
    rewrite_inspect: bool = False
    no_default_ipalloc: bool = False
    no_rewrite_hosts: bool = False
    without_dns: bool = False
    no_multicast_route: bool = False
    tls: bool = False
    tlsverify: bool = False
    tlscacert: str = ""
    tlscert: str = ""
    tlskey: str = ""
    plugin: bool = True
    plugin_socket: str = PLUGIN_SOCKET
    plugin_mesh_socket: str = PLUGIN_MESH_SOCKET

    def listen_endpoints(self) -> list[str]:
        if self.listen:
            return [str(parse_endpoint(a)) for a in self.listen]
        return [str(default_listen(os.environ.get("DOCKER_CLIENT_HOST", "")))]


def default_docker_api() -> str:
    host = os.environ.get("DOCKER_HOST", "")
    if host and not names_proxy(host):  # never our own proxy
        return host
    return DEFAULT_DOCKER_API


def add_arguments(p: argparse.ArgumentParser) -> None:
    b = {"nargs": "?", "const": True, "type": go_bool}
    p.add_argument("--docker-api", default=None)
    p.add_argument("--proxy", default=True, **b)  # type: ignore[arg-type]
    p.add_argument("-H", dest="proxy_listen", action="append", default=[])
    p.add_argument("--hostname-from-label", default="")
    p.add_argument("--hostname-match", default="(.*)")
    p.add_argument("--hostname-replacement", default="$1")
    for flag in ("--rewrite-inspect", "--no-default-ipalloc", "--no-rewrite-hosts", "--without-dns"):
        p.add_argument(flag, default=False, **b)  # type: ignore[arg-type]
    p.add_argument("--no-multicast-route", default=False, **b)  # type: ignore[arg-type]
    p.add_argument("--tls", default=False, **b)  # type: ignore[arg-type]
    p.add_argument("--tlsverify", default=False, **b)  # type: ignore[arg-type]
    p.add_argument("--tlscacert", default="")
    p.add_argument("--tlscert", default="")
    p.add_argument("--tlskey", default="")
    p.add_argument("--plugin", default=True, **b)  # type: ignore[arg-type]
    p.add_argument("--plugin-socket", default=PLUGIN_SOCKET)
    p.add_argument("--plugin-mesh-socket", default=PLUGIN_MESH_SOCKET)


def from_namespace(ns: argparse.Namespace) -> DockerOptions:
    opts = DockerOptions(
        docker_api=default_docker_api() if ns.docker_api is None else ns.docker_api,
        proxy=ns.proxy,
        listen=list(ns.proxy_listen),
        hostname_from_label=ns.hostname_from_label,
        hostname_match=ns.hostname_match,
        hostname_replacement=ns.hostname_replacement,
        rewrite_inspect=ns.rewrite_inspect,
        no_default_ipalloc=ns.no_default_ipalloc,
        no_rewrite_hosts=ns.no_rewrite_hosts,
        without_dns=ns.without_dns,
        no_multicast_route=ns.no_multicast_route,
        tls=ns.tls,
        tlsverify=ns.tlsverify,
        tlscacert=ns.tlscacert,
        tlscert=ns.tlscert,
        tlskey=ns.tlskey,
        plugin=ns.plugin,
        plugin_socket=ns.plugin_socket,
        plugin_mesh_socket=ns.plugin_mesh_socket,
    )
    return validate(opts)


def validate(opts: DockerOptions) -> DockerOptions:
    if opts.docker_api:
        parse_endpoint(opts.docker_api, "--docker-api")
    opts.listen_endpoints()
    compile_match(opts.hostname_match)
    if (opts.tls or opts.tlsverify) and not all(Path(p).is_file() for p in tls_files(opts)[1:]):
        raise ConfigError("--tls: certificate and key files not found (use --tlscert and --tlskey)")
    if opts.tlsverify and not Path(tls_files(opts)[0]).is_file():
        raise ConfigError("--tlsverify: CA certificate not found (use --tlscacert)")
    return opts


def tls_files(opts: DockerOptions) -> tuple[str, str, str]:
    """(ca, cert, key), defaults from ``$DOCKER_CERT_PATH`` or ``~/.docker`` as dockerd's."""
    base = os.environ.get("DOCKER_CERT_PATH") or os.path.expanduser("~/.docker")
    return (
        opts.tlscacert or os.path.join(base, "ca.pem"),
        opts.tlscert or os.path.join(base, "cert.pem"),
        opts.tlskey or os.path.join(base, "key.pem"),
    )


def server_ssl(opts: DockerOptions) -> ssl.SSLContext | None:
    """TLS for the proxy's TCP listeners, as dockerd's: ``--tls`` serves it, ``--tlsverify`` also checks clients."""
    if not (opts.tls or opts.tlsverify):
        return None
    ca, cert, key = tls_files(opts)
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    ctx.load_cert_chain(cert, key)
    if opts.tlsverify:
        ctx.verify_mode = ssl.CERT_REQUIRED
        ctx.load_verify_locations(ca)
    return ctx


def upstream_ssl(api: str) -> ssl.SSLContext | None:
    """TLS to a TCP engine the way the docker CLI does it: ``DOCKER_TLS_VERIFY`` and ``DOCKER_CERT_PATH``."""
    if not api.startswith(("tcp://", "https://")) or not (
        os.environ.get("DOCKER_TLS_VERIFY") or api.startswith("https")
    ):
        return None
    base = os.environ.get("DOCKER_CERT_PATH") or os.path.expanduser("~/.docker")
    ctx = ssl.create_default_context(cafile=os.path.join(base, "ca.pem"))
    ctx.load_cert_chain(os.path.join(base, "cert.pem"), os.path.join(base, "key.pem"))
    ctx.check_hostname = False
    return ctx
