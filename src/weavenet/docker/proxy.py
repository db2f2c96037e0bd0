"""The Docker API proxy (Weave's ``proxy/``): ``DOCKER_HOST=unix:///var/run/weave/weave.sock docker run ...``.

Every request goes to the engine unchanged and every answer comes back as it is produced (chunked streams such
as ``logs -f``, ``events`` or ``pull`` progress; request bodies of any size such as ``load`` or ``build``
contexts are streamed, never held in memory). Hijacked requests (attach, exec start) are relayed byte for byte
both ways, half-close included (``hijack``).

Intercepted, as Weave does (paths with or without an API version prefix):

* ``POST /containers/create``: the body is rewritten by :func:`weavenet.docker.rewrite.rewrite_create`;
  a malformed ``WEAVE_CIDR`` is refused (400, Docker's JSON error) before anything is created;
* ``POST /containers/{id}/start`` and ``/restart``: after the engine started it, the answer waits until the
  container is on the weave network; if that fails the container is killed and the client gets the reason;
* ``GET /containers/{id}/json`` with ``--rewrite-inspect``: ``NetworkSettings`` shows the weave address.

A client that goes away cancels its request (``handler_cancellation``), which closes the upstream connection:
no connection outlives its client. An engine that does not answer gives a 502 with Docker's message format.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import os
import re
import ssl
from collections.abc import Awaitable, Callable
from typing import Any

import aiohttp
from aiohttp import web

from weavenet.api.guard import PROXY_LIMITS, GuardedRunner
from weavenet.docker import hijack
from weavenet.docker.api import DockerClient, DockerError, connector_for
from weavenet.docker.endpoints import Endpoint
from weavenet.docker.rewrite import NoCommand, ProxySettings, needs_image, rewrite_create, rewrite_inspect
from weavenet.errors import ConfigError

log = logging.getLogger("weavenet.proxy")

_V = r"^(/v[0-9.]+)?"
CREATE_RE = re.compile(_V + r"/containers/create$")
START_RE = re.compile(_V + r"/containers/([^/]+)/(re)?start$")
INSPECT_RE = re.compile(_V + r"/containers/([^/]+)/json$")
MAX_CREATE_BODY = 4 * 1024 * 1024  # a create body is a few KB; bigger is an abuse, refused before reading it all
HEAD_LIMIT = 64 * 1024
HOP_BY_HOP = frozenset(
    h.lower()
    for h in (
        "Connection",
        "Keep-Alive",
        "Proxy-Authenticate",
        "Proxy-Authorization",
        "TE",
        "Trailer",
        "Transfer-Encoding",
        "Upgrade",
        "Host",
    )
)

Attach = Callable[[str], Awaitable[None]]
InspectAddrs = Callable[[dict[str, Any]], Awaitable[tuple[str, str] | None]]


def docker_error(status: int, message: str) -> web.Response:
    """Docker's error body, so the docker CLI prints ``Error response from daemon: <message>``."""
    return web.Response(
        status=status, body=json.dumps({"message": message}).encode() + b"\n", content_type="application/json"
    )


def _forward_headers(headers: Any, keep_length: bool = True) -> dict[str, str]:
    out = {}
    for k, v in headers.items():
        lk = k.lower()
        if lk in HOP_BY_HOP or (lk == "content-length" and not keep_length):
            continue
        out[k] = v
    return out


class Proxy:
    def __init__(
        self,
        upstream: Endpoint,
        settings: Callable[[], Awaitable[ProxySettings]],
        attach: Attach,
        upstream_ssl: ssl.SSLContext | None = None,
        server_ssl: ssl.SSLContext | None = None,
        inspect_addrs: InspectAddrs | None = None,
    ) -> None:
        hijack.install()
        self.upstream = upstream
        self.upstream_ssl = upstream_ssl
        self.server_ssl = server_ssl
        self.settings = settings
        self.attach = attach
        self.inspect_addrs = inspect_addrs
        self.client = DockerClient(str(upstream), upstream_ssl)
        self.addresses: list[str] = []
        self._session: aiohttp.ClientSession | None = None
        self._runner: web.AppRunner | None = None
        self._unix_paths: list[str] = []
        self.stats = {
            "requests": 0,
            "hijacked": 0,
            "intercepted": 0,
            "errors": 0,
            "upstream_errors": 0,
            "client_gone": 0,
        }
        self.active = 0

    # -- lifecycle --------------------------------------------------------------------------------------------------

    async def start(self, listen: list[Endpoint]) -> list[str]:
        app = web.Application(client_max_size=1 << 62)  # bodies are streamed; only create bodies are read
        app.router.add_route("*", "/{tail:.*}", self.handle)
        self._runner = GuardedRunner(app, "Docker proxy", PROXY_LIMITS, handler_cancellation=True)
        await self._runner.setup()
        try:
            for ep in listen:
                site: web.BaseSite
                if ep.proto == "unix":
                    os.makedirs(os.path.dirname(ep.path), exist_ok=True)
                    with contextlib.suppress(FileNotFoundError):
                        os.unlink(ep.path)  # a socket left by a previous run
                    site = web.UnixSite(self._runner, ep.path)
                    await site.start()
                    self._copy_socket_mode(ep.path)
                    self._unix_paths.append(ep.path)
                else:
                    site = web.TCPSite(self._runner, ep.host, ep.port, ssl_context=self.server_ssl, reuse_address=True)
                    await site.start()
                self.addresses.append(str(ep))
                log.info("proxy listening on %s", ep)
        except OSError as e:
            await self.close()
            raise ConfigError(f"proxy: cannot listen on {ep}: {e.strerror or e}") from e
        return self.addresses

    def _copy_socket_mode(self, path: str) -> None:
        """Same owner and mode as Docker's socket, so whoever may use Docker may use the proxy (as Weave does)."""
        if self.upstream.proto != "unix":
            return
        try:
            st = os.stat(self.upstream.path)
            os.chmod(path, st.st_mode & 0o777)
            os.chown(path, st.st_uid, st.st_gid)
        except OSError:
            pass

    async def close(self) -> None:
        if self._runner is not None:
            await self._runner.cleanup()
            self._runner = None
        for path in self._unix_paths:
            with contextlib.suppress(FileNotFoundError):
                os.unlink(path)
        if self._session is not None:
            await self._session.close()
        await self.client.close()

    def session(self) -> aiohttp.ClientSession:
        if self._session is None or self._session.closed:
            self._session = aiohttp.ClientSession(
                connector=connector_for(self.upstream, self.upstream_ssl),
                auto_decompress=False,
                timeout=aiohttp.ClientTimeout(total=None, sock_connect=10),
                skip_auto_headers=("User-Agent", "Accept-Encoding", "Content-Type", "Accept"),
            )
        return self._session

    def _url(self, path_qs: str) -> str:
        if self.upstream.proto == "unix":
            return "http://docker" + path_qs
        scheme = "https" if self.upstream_ssl is not None else "http"
        return f"{scheme}://{self.upstream.host}:{self.upstream.port}{path_qs}"

    # -- dispatch ---------------------------------------------------------------------------------------------------

    async def handle(self, request: web.Request) -> web.StreamResponse:
        self.stats["requests"] += 1
        self.active += 1
        try:
            return await self._dispatch(request)
        except NoCommand as e:
            self.stats["errors"] += 1
            return docker_error(400, str(e))
        except ConfigError as e:
            self.stats["errors"] += 1
            return docker_error(400, str(e))
        except DockerError as e:
            self.stats["upstream_errors"] += 1
            return docker_error(e.status or 502, e.message)
        except (TimeoutError, aiohttp.ClientConnectionError, OSError) as e:
            self.stats["upstream_errors"] += 1
            log.warning("proxy: %s %s: Docker engine unreachable: %s", request.method, request.path, e)
            return docker_error(
                502, f"Cannot connect to the Docker daemon at {self.upstream}. Is the docker daemon running? ({e})"
            )
        finally:
            self.active -= 1

    async def _dispatch(self, request: web.Request) -> web.StreamResponse:
        path = request.path
        if request.headers.get("Upgrade", "").lower() == "tcp":
            self.stats["hijacked"] += 1
            return await self._hijack(request)
        if request.method == "POST" and CREATE_RE.match(path):
            self.stats["intercepted"] += 1
            return await self._create(request)
        m = START_RE.match(path)
        if request.method == "POST" and m:
            self.stats["intercepted"] += 1
            return await self._start(request, m.group(2))
        m = INSPECT_RE.match(path)
        if request.method == "GET" and m and self.inspect_addrs is not None and (await self.settings()).rewrite_inspect:
            return await self._inspect(request)
        return await self._pass(request)

    # -- pass-through -----------------------------------------------------------------------------------------------

    async def _pass(self, request: web.Request, body: bytes | None = None) -> web.StreamResponse:
        headers = _forward_headers(request.headers, keep_length=body is None)
        data: Any
        if body is not None:
            data = body
        elif request.body_exists:
            data = request.content
        else:
            data = None
        async with self.session().request(
            request.method, self._url(request.path_qs), headers=headers, data=data, allow_redirects=False
        ) as up:
            resp = web.StreamResponse(status=up.status, reason=up.reason, headers=_forward_headers(up.headers))
            length = up.headers.get("Content-Length")
            if length is not None and length.isdigit():
                resp.content_length = int(length)
            try:
                await resp.prepare(request)
                if up.status not in (204, 304) and request.method != "HEAD":
                    async for chunk in up.content.iter_any():
                        await resp.write(chunk)
                await resp.write_eof()
            except ConnectionResetError:  # the client went away: leaving the block closes the upstream side
                self.stats["client_gone"] += 1
            return resp

    async def _call(self, request: web.Request, body: bytes | None) -> tuple[int, str, dict[str, str], bytes]:
        """A request whose (small) answer we need before answering the client."""
        headers = _forward_headers(request.headers, keep_length=False)
        async with self.session().request(
            request.method, self._url(request.path_qs), headers=headers, data=body, allow_redirects=False
        ) as up:
            return up.status, up.reason or "", _forward_headers(up.headers, keep_length=False), await up.read()

    # -- interceptions ----------------------------------------------------------------------------------------------

    async def _read_limited(self, request: web.Request, limit: int) -> bytes:
        if request.content_length is not None and request.content_length > limit:
            raise ConfigError(f"request body too large ({request.content_length} bytes; at most {limit})")
        chunks, size = [], 0
        async for chunk in request.content.iter_any():
            size += len(chunk)
            if size > limit:
                raise ConfigError(f"request body too large (more than {limit} bytes)")
            chunks.append(chunk)
        return b"".join(chunks)

    async def _create(self, request: web.Request) -> web.StreamResponse:
        raw = await self._read_limited(request, MAX_CREATE_BODY)
        try:
            body = json.loads(raw or b"{}")
        except ValueError as e:
            raise ConfigError(f"invalid JSON in create request: {e}") from e
        if not isinstance(body, dict):
            raise ConfigError("invalid create request: expected a JSON object")
        settings = await self.settings()
        name = request.query.get("name", "")
        image_config = None
        if needs_image(body) and settings.wait_dir and body.get("Image"):
            image_config = (await self.client.inspect_image(str(body["Image"]))).get("Config") or {}
        new_body, specs = rewrite_create(body, name, settings, image_config)
        if specs is not None:
            log.info('Creating container with WEAVE_CIDR "%s"', " ".join(str(s) for s in specs))
        out = json.dumps(new_body).encode()
        status, reason, headers, answer = await self._call(request, out)
        return web.Response(status=status, reason=reason, headers=headers, body=answer)

    async def _start(self, request: web.Request, ident: str) -> web.StreamResponse:
        body = await self._read_limited(request, MAX_CREATE_BODY) if request.body_exists else None
        status, reason, headers, answer = await self._call(request, body)
        if 200 <= status < 300:
            try:
                await self.attach(ident)
            except DockerError:
                raise
            except Exception as e:  # attach failed: the container must not run half-attached
                log.error("Attaching container %s to weave failed: %s; killing it", ident, e, exc_info=True)
                with contextlib.suppress(DockerError):
                    await self.client.kill(ident)
                return docker_error(500, f"weave: attaching container {ident} to the weave network failed: {e}")
        return web.Response(status=status, reason=reason, headers=headers, body=answer)

    async def _inspect(self, request: web.Request) -> web.StreamResponse:
        status, reason, headers, answer = await self._call(request, None)
        if status == 200 and self.inspect_addrs is not None:
            with contextlib.suppress(ValueError, TypeError):
                info = json.loads(answer)
                addrs = await self.inspect_addrs(info)
                if addrs is not None:
                    answer = json.dumps(rewrite_inspect(info, *addrs)).encode()
        return web.Response(status=status, reason=reason, headers=headers, body=answer)

    # -- hijack -----------------------------------------------------------------------------------------------------

    async def _open_upstream(self) -> tuple[asyncio.StreamReader, asyncio.StreamWriter]:
        if self.upstream.proto == "unix":
            return await asyncio.wait_for(asyncio.open_unix_connection(self.upstream.path), 10)
        return await asyncio.wait_for(
            asyncio.open_connection(self.upstream.host, self.upstream.port, ssl=self.upstream_ssl), 10
        )

    async def _hijack(self, request: web.Request) -> web.StreamResponse:
        body = await self._read_limited(request, MAX_CREATE_BODY) if request.body_exists else b""
        reader, writer = await self._open_upstream()
        try:
            head = [f"{request.method} {request.path_qs} HTTP/1.1", "Host: docker"]
            for k, v in request.headers.items():
                if k.lower() not in ("host", "content-length", "transfer-encoding"):
                    head.append(f"{k}: {v}")
            head.append(f"Content-Length: {len(body)}")
            writer.write(("\r\n".join(head) + "\r\n\r\n").encode("latin-1") + body)
            await writer.drain()
            raw = await reader.readuntil(b"\r\n\r\n")
            if len(raw) > HEAD_LIMIT:
                raise ConfigError("upstream response head too large")
            status, reason, up_headers = hijack.parse_head(raw[:-4])
            if status != 101:
                return await self._plain_answer(reader, status, reason, up_headers)
            resp = web.StreamResponse(status=101, reason=reason or "UPGRADED")
            for k, v in up_headers:
                if k.lower() not in ("content-length", "transfer-encoding"):
                    resp.headers[k] = v
            await resp.prepare(request)
            feeder = hijack.RawFeeder(writer)
            request.protocol.set_parser(feeder)  # type: ignore[arg-type]
            while True:
                data = await reader.read(65536)
                if not data:
                    break
                await resp.write(data)
            with contextlib.suppress(Exception):
                await resp.write_eof()
            if request.transport is not None:
                request.transport.close()
            return resp
        except (asyncio.IncompleteReadError, asyncio.LimitOverrunError, ValueError) as e:
            raise DockerError(502, f"malformed answer from the Docker engine: {e}") from e
        finally:
            writer.close()
            with contextlib.suppress(Exception):
                await writer.wait_closed()

    async def _plain_answer(
        self, reader: asyncio.StreamReader, status: int, reason: str, headers: list[tuple[str, str]]
    ) -> web.Response:
        """The engine declined the upgrade (e.g. no such container): relay its answer."""
        hmap = {k.lower(): v for k, v in headers}
        if "content-length" in hmap and hmap["content-length"].isdigit():
            body = await reader.readexactly(int(hmap["content-length"]))
        elif hmap.get("transfer-encoding", "").lower() == "chunked":
            body = await _read_chunked(reader)
        else:
            body = await reader.read(MAX_CREATE_BODY)
        out = {k: v for k, v in headers if k.lower() not in HOP_BY_HOP and k.lower() != "content-length"}
        return web.Response(status=status, reason=reason, headers=out, body=body)


async def _read_chunked(reader: asyncio.StreamReader) -> bytes:
    out = bytearray()
    while len(out) <= MAX_CREATE_BODY:
        size_line = await reader.readuntil(b"\r\n")
        size = int(size_line.split(b";")[0].strip() or b"0", 16)
        if size == 0:
            await reader.readuntil(b"\r\n")
            break
        out += await reader.readexactly(size)
        await reader.readexactly(2)
    return bytes(out)
