"""Docker endpoints as Weave writes them: ``-H`` listen addresses, ``--docker-api``, ``weave env`` (pure).

``unix:///path`` or ``/path`` is a unix socket; ``tcp://host:port``, ``host:port`` or ``:port`` is TCP (host
``0.0.0.0`` when left out). The normalised form (``unix:///path``, ``tcp://host:port``) is what ``/proxyaddrs``
lists and ``weave env`` exports.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

from weavenet.errors import ConfigError

DEFAULT_PROXY_SOCKET = "/var/run/weave/weave.sock"
PROXY_PORT = 12375
DEFAULT_DOCKER_API = "unix:///var/run/docker.sock"


@dataclass(frozen=True, slots=True)
class Endpoint:
    proto: Literal["unix", "tcp"]
    path: str = ""  # unix
    host: str = ""  # tcp
    port: int = 0

    def __str__(self) -> str:
        return f"unix://{self.path}" if self.proto == "unix" else f"tcp://{self.host}:{self.port}"


def parse_endpoint(text: str, what: str = "-H") -> Endpoint:
    t = text.strip()
    if t.startswith("unix://"):
        path = t[len("unix://") :]
        if not path.startswith("/"):
            raise ConfigError(f"{what}: invalid unix socket address {text!r}: the path must be absolute")
        return Endpoint("unix", path=path)
    if t.startswith("/"):
        return Endpoint("unix", path=t)
    if "://" in t:
        proto, _, rest = t.partition("://")
        if proto not in ("tcp", "http", "https"):
            raise ConfigError(f"{what}: invalid protocol format {proto!r} in {text!r}")
        t = rest
    host, sep, port = t.rstrip("/").rpartition(":")
    if not sep or not port.isdigit() or not 0 < int(port) < 65536:
        raise ConfigError(f"{what}: invalid address {text!r}: expected [tcp://][<ip>]:<port> or unix:///<path>")
    return Endpoint("tcp", host=host.strip("[]") or "0.0.0.0", port=int(port))


def default_listen(docker_client_host: str = "") -> Endpoint:
    """Weave's default: the unix socket, unless the Docker client talks TCP (then ``tcp://0.0.0.0:12375``)."""
    if docker_client_host and not docker_client_host.startswith("unix://") and not docker_client_host.startswith("/"):
        return Endpoint("tcp", host="0.0.0.0", port=PROXY_PORT)
    return Endpoint("unix", path=DEFAULT_PROXY_SOCKET)


def client_address(addr: str, proxy_host: str = "") -> str:
    """A listen address as a client should use it: ``0.0.0.0`` becomes ``$PROXY_HOST`` (else loopback)."""
    ep = parse_endpoint(addr)
    if ep.proto == "tcp" and ep.host in ("0.0.0.0", "", "::"):
        return f"tcp://{proxy_host or '127.0.0.1'}:{ep.port}"
    return str(ep)


def env_lines(proxy_addrs: list[str], current: str, proxy_host: str = "") -> str:
    """``weave env``: the export line (empty when the proxy is not running)."""
    if not proxy_addrs:
        return ""
    addr = client_address(proxy_addrs[0], proxy_host)
    return f"export DOCKER_HOST={addr} ORIG_DOCKER_HOST={current}\n"


def restore_line(orig: str | None) -> str | None:
    """``weave env --restore``; None when there is nothing to restore."""
    if orig is None:
        return None
    return f"export DOCKER_HOST={orig}\n"
