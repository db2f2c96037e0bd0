"""Docker endpoints as Weave writes them: ``-H`` listen addresses, ``--docker-api``, ``weave env`` (pure).

``unix:///path`` or ``/path`` is a unix socket; ``tcp://host:port``, ``host:port`` or ``:port`` is TCP (host
``0.0.0.0`` when left out). The normalised form (``unix:///path``, ``tcp://host:port``) is what ``/proxyaddrs``
lists and ``weave env`` exports.
"""

from __future__ import annotations

from collections.abc import Mapping
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


def _same_endpoint(a: str, b: str) -> bool:
    try:
        return parse_endpoint(a) == parse_endpoint(b)
    except ConfigError:
        return a == b


def env_lines(proxy_addrs: list[str], current: str, proxy_host: str = "") -> str:
    """``weave env``: the export line (empty when the proxy is not running).

    As Weave's script, ``ORIG_DOCKER_HOST`` is set only when ``DOCKER_HOST`` is not the proxy already: a second
    ``eval $(weave env)`` in the same shell keeps the engine the first one saved (the line then ends in a space,
    as Weave's does)."""
    if not proxy_addrs:
        return ""
    addr = client_address(proxy_addrs[0], proxy_host)
    restore = "" if current and _same_endpoint(current, addr) else f"ORIG_DOCKER_HOST={current}"
    return f"export DOCKER_HOST={addr} {restore}\n"


def names_proxy(addr: str) -> bool:
    """Does a Docker client address lead to a weave proxy? Weave's defaults: the socket ``weave.sock``, or TCP
    port 12375 (a proxy on another ``-H`` is not recognised; it passes every request on, so that does no harm)."""
    return "weave.sock" in addr or f":{PROXY_PORT}" in addr


def docker_engine(env: Mapping[str, str]) -> tuple[str, str]:
    """Where the ``weave`` command finds the Docker engine, and why there (for its messages).

    ``WEAVE_DOCKER_API`` if set; else ``DOCKER_HOST`` unless it is the proxy; after ``eval $(weave env)`` (it is)
    the engine ``weave env`` saved in ``ORIG_DOCKER_HOST`` (empty: Docker's default socket), so the command works
    even when the router and its proxy do not run; without it the proxy itself, which passes requests on to the
    engine, as Weave's script talks to whatever ``DOCKER_HOST`` names; with no ``DOCKER_HOST``, Docker's default.
    """
    explicit = env.get("WEAVE_DOCKER_API")
    if explicit is not None:
        return explicit, "WEAVE_DOCKER_API"
    host = env.get("DOCKER_HOST", "")
    if not host:
        return DEFAULT_DOCKER_API, "Docker's default"
    if not names_proxy(host):
        return host, "DOCKER_HOST"
    orig = env.get("ORIG_DOCKER_HOST")
    if orig is not None and not names_proxy(orig):
        if not orig:
            return DEFAULT_DOCKER_API, "Docker's default: ORIG_DOCKER_HOST is empty"
        return orig, "ORIG_DOCKER_HOST"
    return host, "DOCKER_HOST, the weave proxy"


def restore_line(orig: str | None) -> str | None:
    """``weave env --restore``; None when there is nothing to restore."""
    if orig is None:
        return None
    return f"export DOCKER_HOST={orig}\n"
