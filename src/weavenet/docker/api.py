"""A small asyncio client of the Docker Engine API (unix socket or TCP, with TLS), built on aiohttp.

The daemon needs only a handful of calls (inspect, list, events, networks); aiohttp is already a dependency, so
no Docker SDK is pulled in. Errors come back as :class:`DockerError` with Docker's own message, and an engine
that does not answer as :class:`DockerUnreachable`, so callers can tell "no such container" from "no engine".
"""

from __future__ import annotations

import json
import ssl
from collections.abc import AsyncIterator, Callable, Mapping
from typing import Any
from urllib.parse import quote

import aiohttp

from weavenet.docker.endpoints import Endpoint, parse_endpoint
from weavenet.errors import WeavenetError

API_VERSION = "v1.24"  # old enough for every engine we meet, new enough for networks and events filters


class DockerError(WeavenetError):
    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status = status
        self.message = message


class DockerUnreachable(DockerError):
    def __init__(self, message: str) -> None:
        super().__init__(0, message)


def connector_for(ep: Endpoint, ssl_context: ssl.SSLContext | None = None) -> aiohttp.BaseConnector:
    if ep.proto == "unix":
        return aiohttp.UnixConnector(path=ep.path, limit=0)
    return aiohttp.TCPConnector(ssl=ssl_context if ssl_context is not None else False, limit=0)


def base_url(ep: Endpoint, tls: bool) -> str:
    if ep.proto == "unix":
        return "http://docker"
    return f"{'https' if tls else 'http'}://{ep.host}:{ep.port}"


class DockerClient:
    def __init__(
        self, api: str, ssl_context: ssl.SSLContext | None = None, timeout: float = 30.0, option: str = "--docker-api"
    ) -> None:
        """``option``: the launch option that named ``api``, for its error (podman's API is asked the same way)."""
        self.endpoint = parse_endpoint(api, option)
        self.ssl_context = ssl_context
        self.base = base_url(self.endpoint, ssl_context is not None)
        self._timeout = aiohttp.ClientTimeout(total=timeout, connect=5)
        self._session: aiohttp.ClientSession | None = None

    def session(self) -> aiohttp.ClientSession:
        if self._session is None or self._session.closed:
            self._session = aiohttp.ClientSession(
                connector=connector_for(self.endpoint, self.ssl_context), auto_decompress=False
            )
        return self._session

    async def close(self) -> None:
        if self._session is not None:
            await self._session.close()

    def url(self, path: str) -> str:
        return f"{self.base}/{API_VERSION}{path}"

    async def request(self, method: str, path: str, body: Any = None, params: Mapping[str, str] | None = None) -> Any:
        data = None if body is None else json.dumps(body).encode()
        headers = {"Content-Type": "application/json"} if data is not None else {}
        try:
            async with self.session().request(
                method, self.url(path), data=data, headers=headers, params=params, timeout=self._timeout
            ) as resp:
                raw = await resp.read()
                if resp.status >= 400:
                    raise DockerError(resp.status, _message(raw) or f"HTTP {resp.status}")
                if not raw:
                    return None
                try:
                    return json.loads(raw)
                except ValueError:
                    return raw.decode(errors="replace")
        except (TimeoutError, aiohttp.ClientConnectionError, OSError) as e:
            raise DockerUnreachable(f"Cannot connect to the Docker daemon at {self.endpoint}: {e}") from e

    async def ping(self) -> bool:
        try:
            await self.request("GET", "/_ping")
        except DockerError:
            return False
        return True

    async def version(self) -> dict[str, Any]:
        return dict(await self.request("GET", "/version"))

    async def inspect_container(self, ident: str) -> dict[str, Any]:
        return dict(await self.request("GET", f"/containers/{quote(ident, safe='')}/json"))

    async def inspect_image(self, ident: str) -> dict[str, Any]:
        return dict(await self.request("GET", f"/images/{quote(ident, safe='')}/json"))

    async def containers(self, all: bool = False) -> list[dict[str, Any]]:
        return list(await self.request("GET", "/containers/json", params={"all": "1" if all else "0"}) or [])

    async def kill(self, ident: str) -> None:
        await self.request("POST", f"/containers/{quote(ident, safe='')}/kill")

    async def networks(self) -> list[dict[str, Any]]:
        return list(await self.request("GET", "/networks") or [])

    async def create_network(self, spec: Mapping[str, Any]) -> dict[str, Any]:
        return dict(await self.request("POST", "/networks/create", body=dict(spec)))

    async def remove_network(self, ident: str) -> None:
        await self.request("DELETE", f"/networks/{quote(ident, safe='')}")

    async def events(
        self, filters: Mapping[str, list[str]] | None = None, on_open: Callable[[], None] | None = None
    ) -> AsyncIterator[dict[str, Any]]:
        """The engine's event stream (JSON objects), until it ends or the engine goes away.

        ``on_open`` is called once the engine has accepted the subscription (no event is missed after it).
        """
        params = {"filters": json.dumps(filters)} if filters else None
        try:
            async with self.session().get(
                self.url("/events"), params=params, timeout=aiohttp.ClientTimeout(total=None, connect=5)
            ) as resp:
                if resp.status >= 400:
                    raise DockerError(resp.status, _message(await resp.read()))
                if on_open is not None:
                    on_open()
                buf = b""
                async for chunk in resp.content.iter_any():
                    buf += chunk
                    while b"\n" in buf:
                        line, buf = buf.split(b"\n", 1)
                        if line.strip():
                            try:
                                yield json.loads(line)
                            except ValueError:
                                continue
        except (aiohttp.ClientConnectionError, aiohttp.ClientPayloadError, OSError) as e:
            raise DockerUnreachable(f"Docker event stream from {self.endpoint} ended: {e}") from e


def _message(raw: bytes) -> str:
    try:
        return str(json.loads(raw).get("message", "")) or raw.decode(errors="replace").strip()
    except (ValueError, AttributeError):
        return raw.decode(errors="replace").strip()
