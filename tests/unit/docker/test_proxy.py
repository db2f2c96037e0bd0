"""The Docker API proxy against a fake engine on a unix socket: streams, big bodies, hijack, hang-ups, rewrites.

The real engine runs in ``tests/integration/test_docker.py``; here the engine's side is scripted so the edge
cases (a client leaving mid-stream, a 32 MiB chunked body, half-closed hijacks) are exact and fast.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import json
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import aiohttp
import pytest

from weavenet.docker.endpoints import Endpoint
from weavenet.docker.proxy import Proxy
from weavenet.docker.rewrite import ProxySettings


class FakeEngine:
    """A minimal HTTP/1.1 engine (one request per connection) that records what it was sent."""

    def __init__(self, path: str) -> None:
        self.path = path
        self.requests: list[tuple[str, str, dict[str, str], bytes]] = []
        self.open = 0
        self.killed: list[str] = []
        self.server: asyncio.AbstractServer | None = None

    async def start(self) -> None:
        self.server = await asyncio.start_unix_server(self._conn, self.path)

    async def close(self) -> None:
        if self.server is not None:
            self.server.close()

    async def _read_body(self, reader: asyncio.StreamReader, headers: dict[str, str]) -> bytes:
        if headers.get("transfer-encoding", "").lower() == "chunked":
            h = hashlib.sha256()
            total = 0
            while True:
                size = int((await reader.readuntil(b"\r\n")).split(b";")[0].strip(), 16)
                if size == 0:
                    await reader.readuntil(b"\r\n")
                    break
                h.update(await reader.readexactly(size))
                total += size
                await reader.readexactly(2)
            return f"chunked {total} {h.hexdigest()}".encode()
        n = int(headers.get("content-length", "0"))
        return await reader.readexactly(n) if n else b""

    async def _conn(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.open += 1
        try:
            head = (await reader.readuntil(b"\r\n\r\n")).decode("latin-1").split("\r\n")
            method, target, _ = head[0].split(" ", 2)
            headers = {k.strip().lower(): v.strip() for k, _, v in (h.partition(":") for h in head[1:] if h)}
            body = await self._read_body(reader, headers)
            path = target.split("?")[0]
            for prefix in ("/v1.41", "/v1.24"):
                path = path.removeprefix(prefix)
            self.requests.append((method, path, headers, body))
            await self._answer(method, path, headers, body, reader, writer)
        except (asyncio.IncompleteReadError, ConnectionError):
            pass
        finally:
            self.open -= 1
            writer.close()

    async def _answer(
        self,
        method: str,
        path: str,
        headers: dict[str, str],
        body: bytes,
        reader: asyncio.StreamReader,
        writer: asyncio.StreamWriter,
    ) -> None:
        def send(status: str, payload: bytes, ctype: str = "application/json") -> None:
            writer.write(
                f"HTTP/1.1 {status}\r\nContent-Type: {ctype}\r\nContent-Length: {len(payload)}\r\n"
                f"Connection: close\r\n\r\n".encode()
                + payload
            )

        if path == "/_ping":
            send("200 OK", b"OK", "text/plain")
        elif path == "/echo":
            send("200 OK", body, "text/plain")
        elif path in ("/stream", "/forever"):
            writer.write(b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nTransfer-Encoding: chunked\r\n\r\n")
            i = 0
            while path == "/forever" or i < 3:
                chunk = json.dumps({"n": i}).encode() + b"\n"
                writer.write(f"{len(chunk):x}\r\n".encode() + chunk + b"\r\n")
                await writer.drain()
                i += 1
                await asyncio.sleep(0.05)
            writer.write(b"0\r\n\r\n")
        elif path == "/containers/create":
            send("201 Created", b'{"Id":"cid","Warnings":[]}')
        elif path.startswith("/containers/") and path.endswith(("/start", "/restart")):
            writer.write(b"HTTP/1.1 204 No Content\r\nConnection: close\r\n\r\n")
        elif path.endswith("/kill"):
            self.killed.append(path.split("/")[2])
            writer.write(b"HTTP/1.1 204 No Content\r\nConnection: close\r\n\r\n")
        elif path == "/containers/cid/json":
            send("200 OK", b'{"Id":"cid","State":{"Pid":1},"NetworkSettings":{"IPAddress":"172.18.1.2"}}')
        elif path == "/images/bb/json":
            send("200 OK", b'{"Config":{"Cmd":["sh"],"Entrypoint":null}}')
        elif path == "/images/nope/json":
            send("404 Not Found", b'{"message":"No such image: nope"}')
        elif path.endswith("/attach") and headers.get("upgrade") == "tcp":
            writer.write(
                b"HTTP/1.1 101 UPGRADED\r\nContent-Type: application/vnd.docker.raw-stream\r\n"
                b"Connection: Upgrade\r\nUpgrade: tcp\r\n\r\n"
            )
            while data := await reader.read(1024):
                writer.write(data.upper())
            writer.write(b"bye")  # output after the client's half-close must still arrive
            await writer.drain()
        else:
            send("404 Not Found", b'{"message":"page not found"}')
        with contextlib.suppress(ConnectionError):
            await writer.drain()


class Harness:
    def __init__(self, tmp: Path) -> None:
        self.engine = FakeEngine(str(tmp / "docker.sock"))
        self.sock = str(tmp / "weave.sock")
        self.attached: list[str] = []
        self.attach_error: Exception | None = None
        self.attach_delay = 0.0
        self.settings = ProxySettings(dns_ip="172.18.1.1", wait_dir="/run/weave/weavewait")

        async def settings() -> ProxySettings:
            return self.settings

        async def attach(ident: str) -> None:
            await asyncio.sleep(self.attach_delay)
            if self.attach_error is not None:
                raise self.attach_error
            self.attached.append(ident)

        self.proxy = Proxy(Endpoint("unix", path=self.engine.path), settings, attach)

    def client(self) -> aiohttp.ClientSession:
        return aiohttp.ClientSession(connector=aiohttp.UnixConnector(path=self.sock))


@pytest.fixture
async def h(tmp_path: Path) -> AsyncIterator[Harness]:
    harness = Harness(tmp_path)
    await harness.engine.start()
    await harness.proxy.start([Endpoint("unix", path=harness.sock)])
    try:
        yield harness
    finally:
        await harness.proxy.close()
        await harness.engine.close()


def created_body(h: Harness) -> dict[str, Any]:
    bodies = [json.loads(b) for m, p, _, b in h.engine.requests if p == "/containers/create"]
    assert len(bodies) == 1
    return bodies[0]


async def test_plain_calls_and_errors_pass_through(h: Harness) -> None:
    async with h.client() as c:
        async with c.get("http://docker/v1.41/_ping") as r:
            assert r.status == 200 and await r.text() == "OK"
        async with c.get("http://docker/v1.41/nothing") as r:
            assert r.status == 404 and (await r.json())["message"] == "page not found"


async def test_streamed_answer_arrives_before_it_is_complete(h: Harness) -> None:
    async with h.client() as c, c.get("http://docker/v1.41/stream") as r:
        first = await r.content.readline()
        assert json.loads(first) == {"n": 0}
        assert not r.content.at_eof()  # the engine is still producing: nothing was buffered up
        rest = await r.read()
    assert [json.loads(x)["n"] for x in rest.splitlines()] == [1, 2]


async def test_huge_chunked_request_body_is_streamed_through(h: Harness) -> None:
    block = bytes(range(256)) * 4096  # 1 MiB
    total = 32

    async def gen() -> AsyncIterator[bytes]:
        for _ in range(total):
            yield block

    async with h.client() as c, c.post("http://docker/v1.41/echo", data=gen()) as r:
        got = await r.text()
    want = hashlib.sha256(block * total).hexdigest()
    assert got == f"chunked {total << 20} {want}"


async def test_client_hanging_up_mid_stream_closes_the_upstream_connection(h: Harness) -> None:
    async with h.client() as c:
        r = await c.get("http://docker/v1.41/forever")
        await r.content.readline()
        assert h.engine.open == 1
        r.close()  # the client goes away while the engine still streams
    for _ in range(100):
        if h.engine.open == 0 and h.proxy.active == 0:
            break
        await asyncio.sleep(0.05)
    assert h.engine.open == 0 and h.proxy.active == 0
    async with h.client() as c, c.get("http://docker/_ping") as r:  # and the proxy still serves
        assert r.status == 200


async def test_unreachable_engine_gives_a_docker_style_error(h: Harness) -> None:
    await h.engine.close()
    Path(h.engine.path).unlink()
    async with h.client() as c, c.get("http://docker/v1.41/_ping") as r:
        assert r.status == 502
        assert "Cannot connect to the Docker daemon" in (await r.json())["message"]


async def test_create_is_rewritten(h: Harness) -> None:
    body = {"Image": "bb", "Env": ["WEAVE_CIDR=10.2.1.1/24"], "HostConfig": {"NetworkMode": "default"}}
    async with h.client() as c, c.post("http://docker/v1.41/containers/create?name=a2", json=body) as r:
        assert r.status == 201 and (await r.json())["Id"] == "cid"
    sent = created_body(h)
    assert sent["Entrypoint"] == ["/w/w"] and sent["Cmd"] == ["sh"]  # the image's command, wrapped
    assert sent["Hostname"] == "a2" and sent["HostConfig"]["Dns"] == ["172.18.1.1"]


async def test_malformed_weave_cidr_is_refused_before_anything_is_created(h: Harness) -> None:
    body = {"Image": "bb", "Cmd": ["x"], "Env": ["WEAVE_CIDR=net:bogus"]}
    async with h.client() as c, c.post("http://docker/containers/create", json=body) as r:
        assert r.status == 400 and "WEAVE_CIDR" in (await r.json())["message"]
    assert not [p for _, p, _, _ in h.engine.requests if p == "/containers/create"]


@pytest.mark.parametrize("payload", [b"{not json", b"[1,2]"])
async def test_malformed_create_body_is_refused(h: Harness, payload: bytes) -> None:
    async with h.client() as c, c.post("http://docker/containers/create", data=payload) as r:
        assert r.status == 400


async def test_missing_image_answers_404_so_the_cli_pulls(h: Harness) -> None:
    async with h.client() as c, c.post("http://docker/containers/create", json={"Image": "nope"}) as r:
        assert r.status == 404 and (await r.json())["message"] == "No such image: nope"


async def test_start_waits_for_attach_and_kills_on_failure(h: Harness) -> None:
    async with h.client() as c:
        async with c.post("http://docker/v1.41/containers/cid/start") as r:
            assert r.status == 204
        assert h.attached == ["cid"]
        h.attach_error = RuntimeError("no bridge")
        async with c.post("http://docker/v1.41/containers/cid/restart") as r:
            assert r.status == 500 and "no bridge" in (await r.json())["message"]
    assert h.engine.killed == ["cid"]


async def test_a_slow_attach_does_not_block_other_clients(h: Harness) -> None:
    h.attach_delay = 1.0
    async with h.client() as c:
        start = asyncio.ensure_future(c.post("http://docker/containers/cid/start"))
        await asyncio.sleep(0.1)
        async with c.get("http://docker/_ping") as r:
            assert r.status == 200
        assert not start.done()  # the ping was answered while the start was still attaching
        (await start).close()


async def test_hijacked_attach_relays_both_ways_and_survives_half_close(h: Harness) -> None:
    reader, writer = await asyncio.open_unix_connection(h.sock)
    writer.write(
        b"POST /v1.41/containers/cid/attach?stream=1&stdin=1&stdout=1 HTTP/1.1\r\nHost: docker\r\n"
        b"Connection: Upgrade\r\nUpgrade: tcp\r\nContent-Length: 0\r\n\r\n"
    )
    head = await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), 5)
    assert head.startswith(b"HTTP/1.1 101")
    writer.write(b"hello")
    await writer.drain()
    assert await asyncio.wait_for(reader.readexactly(5), 5) == b"HELLO"
    writer.write_eof()  # the CLI half-closes when stdin ends
    rest = await asyncio.wait_for(reader.read(), 5)
    assert rest == b"bye"
    writer.close()


async def test_declined_upgrade_is_relayed(h: Harness) -> None:
    reader, writer = await asyncio.open_unix_connection(h.sock)
    writer.write(
        b"POST /v1.41/exec/zzz/start HTTP/1.1\r\nHost: docker\r\nConnection: Upgrade\r\nUpgrade: tcp\r\n"
        b"Content-Type: application/json\r\nContent-Length: 2\r\n\r\n{}"
    )
    head = await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), 5)
    assert head.startswith(b"HTTP/1.1 404")
    length = int(next(ln for ln in head.split(b"\r\n") if ln.lower().startswith(b"content-length:")).split(b":")[1])
    assert b"page not found" in await asyncio.wait_for(reader.readexactly(length), 5)
    writer.close()


def _certs(d: Path) -> dict[str, str] | None:
    """A CA and a server and client certificate signed by it (openssl), or None without openssl."""
    import shutil
    import subprocess

    if shutil.which("openssl") is None:
        return None

    def ossl(*args: str) -> None:
        subprocess.run(["openssl", *args], cwd=d, check=True, capture_output=True, timeout=60)

    ossl(
        "req",
        "-x509",
        "-newkey",
        "rsa:2048",
        "-nodes",
        "-keyout",
        "ca-key.pem",
        "-out",
        "ca.pem",
        "-days",
        "2",
        "-subj",
        "/CN=test-ca",
    )
    for who in ("server", "client"):
        ossl(
            "req",
            "-newkey",
            "rsa:2048",
            "-nodes",
            "-keyout",
            f"{who}-key.pem",
            "-out",
            f"{who}.csr",
            "-subj",
            f"/CN={who}",
        )
        ossl(
            "x509",
            "-req",
            "-in",
            f"{who}.csr",
            "-CA",
            "ca.pem",
            "-CAkey",
            "ca-key.pem",
            "-CAcreateserial",
            "-out",
            f"{who}.pem",
            "-days",
            "2",
        )
    return {k: str(d / f"{k}.pem") for k in ("ca", "server", "server-key", "client", "client-key")}


async def test_tls_listener_requires_a_client_certificate_with_tlsverify(tmp_path: Path) -> None:
    import socket
    import ssl

    from weavenet.config import DockerOptions
    from weavenet.docker.options import server_ssl

    certs = _certs(tmp_path)
    if certs is None:
        pytest.skip("needs openssl")
    opts = DockerOptions(tlsverify=True, tlscacert=certs["ca"], tlscert=certs["server"], tlskey=certs["server-key"])
    h = Harness(tmp_path)
    h.proxy.server_ssl = server_ssl(opts)
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    await h.engine.start()
    await h.proxy.start([Endpoint("tcp", host="127.0.0.1", port=port)])
    try:
        good = ssl.create_default_context(cafile=certs["ca"])
        good.check_hostname = False
        good.load_cert_chain(certs["client"], certs["client-key"])
        async with aiohttp.ClientSession() as c, c.get(f"https://127.0.0.1:{port}/_ping", ssl=good) as r:
            assert r.status == 200
        anonymous = ssl.create_default_context(cafile=certs["ca"])
        anonymous.check_hostname = False
        with pytest.raises(aiohttp.ClientError):
            async with aiohttp.ClientSession() as c, c.get(f"https://127.0.0.1:{port}/_ping", ssl=anonymous) as r:
                await r.read()
    finally:
        await h.proxy.close()
        await h.engine.close()


async def test_rewrite_inspect_shows_the_weave_address(h: Harness) -> None:
    async def addrs(info: dict[str, Any]) -> tuple[str, str] | None:
        return ("aa:bb:cc:dd:ee:ff", "10.2.1.1/24")

    h.proxy.inspect_addrs = addrs
    async with h.client() as c:
        async with c.get("http://docker/v1.41/containers/cid/json") as r:
            assert (await r.json())["NetworkSettings"]["IPAddress"] == "172.18.1.2"  # not asked for
        h.settings = ProxySettings(rewrite_inspect=True)
        async with c.get("http://docker/v1.41/containers/cid/json") as r:
            ns = (await r.json())["NetworkSettings"]
    assert ns == {"IPAddress": "10.2.1.1", "IPPrefixLen": 24, "MacAddress": "aa:bb:cc:dd:ee:ff"}


async def test_malformed_requests_cost_one_log_line(h: Harness, caplog: pytest.LogCaptureFixture) -> None:
    """The proxy shares the router API's listener limits (weavenet.api.guard): no traceback per bad request."""
    for _ in range(40):
        reader, writer = await asyncio.open_unix_connection(h.sock)
        writer.write(b"GET /v1.41/\xff\xfe HTTP/1.1\r\nHost: docker\r\n\r\n")
        assert (await asyncio.wait_for(reader.read(), 5)).startswith(b"HTTP/1.0 400")
        writer.close()
    lines = [r for r in caplog.records if r.name == "weavenet.http"]
    assert len(lines) == 1 and lines[0].getMessage().startswith("Docker proxy: ") and lines[0].exc_info is None
    assert "Traceback" not in caplog.text
    assert not any(r.name.startswith("aiohttp") for r in caplog.records)
