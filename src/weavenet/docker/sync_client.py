"""A blocking Docker API client for the ``weave`` command (standard library only, so the CLI starts fast).

Used to turn Docker names and IDs into PIDs (``weave attach a2``, ``weave ps``) and to remove the plugin's
network on ``weave stop`` and ``weave reset``. Which engine: :func:`weavenet.docker.endpoints.docker_engine`
(after ``eval $(weave env)``, the engine saved in ``ORIG_DOCKER_HOST``); an engine that does not answer is
named in the error, with where its address came from.
"""

from __future__ import annotations

import http.client
import json
import os
import socket
from typing import Any
from urllib.parse import quote

from weavenet.docker.endpoints import DEFAULT_DOCKER_API, docker_engine, parse_endpoint
from weavenet.errors import ConfigError, HostError

TIMEOUT = 5.0


class DockerUnavailable(HostError):
    """No engine answers."""


class _Unix(http.client.HTTPConnection):
    def __init__(self, path: str) -> None:
        super().__init__("docker", timeout=TIMEOUT)
        self._path = path

    def connect(self) -> None:
        s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        s.settimeout(TIMEOUT)
        s.connect(self._path)
        self.sock = s


def engine_address() -> str:
    return docker_engine(os.environ)[0]


def no_engine_here() -> bool:
    """Nothing says where an engine is and Docker's default socket does not exist: a host without Docker, where
    ``weave ps`` has nothing to warn about."""
    addr, why = docker_engine(os.environ)
    return addr == DEFAULT_DOCKER_API and why == "Docker's default" and not os.path.exists(addr[len("unix://") :])


def call(method: str, path: str, body: Any = None, api: str | None = None) -> tuple[int, Any]:
    addr, why = docker_engine(os.environ) if api is None else (api, "")
    if not addr:
        raise DockerUnavailable(f"no Docker engine configured ({why} is empty)")
    try:
        ep = parse_endpoint(addr, why or "DOCKER_HOST")
    except ConfigError as e:
        raise DockerUnavailable(str(e)) from e
    conn = _Unix(ep.path) if ep.proto == "unix" else http.client.HTTPConnection(ep.host, ep.port, timeout=TIMEOUT)
    try:
        data = None if body is None else json.dumps(body)
        conn.request(method, "/v1.24" + path, body=data, headers={"Content-Type": "application/json"} if data else {})
        resp = conn.getresponse()
        raw = resp.read()
    except OSError as e:
        source = f" (from {why})" if why else ""
        raise DockerUnavailable(f"Cannot connect to the Docker daemon at {addr}{source}: {e}") from e
    finally:
        conn.close()
    try:
        parsed = json.loads(raw) if raw else None
    except ValueError:
        parsed = raw.decode(errors="replace")
    return resp.status, parsed


def inspect(spec: str) -> dict[str, Any]:
    """The engine's answer about a container named or identified by ``spec`` (``docker inspect``)."""
    try:
        status, info = call("GET", f"/containers/{quote(spec, safe='')}/json")
    except DockerUnavailable as e:
        raise HostError(f"{spec}: not a PID or a network namespace path, and {e}") from e
    if status == 404:
        raise HostError(f"Error: No such container: {spec}")
    if status != 200 or not isinstance(info, dict) or "Id" not in info:
        raise HostError(f"{spec}: Docker answered {status}: {info}")
    return info


def lookup(spec: str) -> tuple[str, int]:
    """(full ID, PID) of a container named or identified by ``spec``; PID 0 if it is not running."""
    info = inspect(spec)
    return str(info["Id"]), int((info.get("State") or {}).get("Pid") or 0)


def running_containers() -> list[tuple[str, int]]:
    """(ID, PID) of every running container; ``DockerUnavailable`` when no engine answers."""
    status, items = call("GET", "/containers/json")
    if status != 200 or not isinstance(items, list):
        raise DockerUnavailable(f"listing containers: Docker answered {status}: {items}")
    out = []
    for c in items:
        try:
            _, pid = lookup(str(c["Id"]))
        except HostError:
            continue
        if pid:
            out.append((str(c["Id"]), pid))
    return out


def remove_network(name: str) -> str | None:
    """Remove a Docker network; the reason it could not be, or None (also when there is no such network)."""
    try:
        status, body = call("DELETE", f"/networks/{quote(name, safe='')}")
    except DockerUnavailable:
        return None
    if status in (200, 204, 404):
        return None
    return str(body.get("message") if isinstance(body, dict) else body)
