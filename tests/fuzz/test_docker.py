"""Fuzz the Docker side's inputs: requests to the Docker API proxy (above all the create body it rewrites, with
its ``WEAVE_CIDR``, host config, entrypoint and names) and calls to the network and IPAM plugin.

The proxy runs in front of the scripted engine of the proxy's unit tests, the plugin with the fake router and
Docker of the plugin's unit tests; both listen on real unix sockets and are sent raw requests.

Invariants: the proxy answers what the engine answered or a 4xx of its own (never a 5xx, never aiohttp's page
for an exception it did not handle), the create body it forwards is JSON; the plugin answers every call with
JSON, a result or ``{"Err": ...}``; neither logs a traceback; both keep answering.
"""

from __future__ import annotations

import asyncio
import json
import logging
from pathlib import Path
from typing import Any
from urllib.parse import quote

import pytest
from hypothesis import given
from hypothesis import strategies as st

from tests.fuzz.budget import fuzz
from tests.unit.docker.test_plugin import FakeDocker, FakeRouter
from tests.unit.docker.test_proxy import Harness
from weavenet.docker.endpoints import Endpoint
from weavenet.docker.options import DockerOptions
from weavenet.docker.plugin import CONTENT_TYPE, Plugin

json_leaf = st.one_of(st.none(), st.booleans(), st.integers(-(2**40), 2**40), st.text(max_size=20))
json_any = st.recursive(
    json_leaf,
    lambda inner: st.one_of(st.lists(inner, max_size=4), st.dictionaries(st.text(max_size=12), inner, max_size=4)),
    max_leaves=12,
)
CIDRS = st.sampled_from(
    ["net:default", "net:10.32.5.0/24", "ip:10.32.0.9/12", "10.2.1.1/24", "net:10.2.3.2/30", "ip:1.2.3", "",
     "net:", "10.32.0.9/0", "x" * 80, "net:default net:10.32.5.0/24", "\u00e9"]
)  # fmt: skip
env = st.lists(
    st.one_of(CIDRS.map(lambda c: f"WEAVE_CIDR={c}"), st.text(max_size=20), st.just("WEAVE_CIDR=none")), max_size=4
)
strslice = st.one_of(st.none(), st.text(max_size=10), st.lists(st.text(max_size=10), max_size=3), json_any)


@st.composite
def create_bodies(draw: st.DrawFn) -> bytes:
    kind = draw(st.sampled_from(["structured", "structured", "structured", "json", "bytes"]))
    if kind == "bytes":
        return draw(st.binary(max_size=80))
    if kind == "json":
        return json.dumps(draw(json_any)).encode()
    host = draw(
        st.one_of(
            st.fixed_dictionaries(
                {},
                optional={
                    "NetworkMode": st.one_of(st.sampled_from(["", "default", "bridge", "host", "weave", "none",
                                                              "container:x"]), json_any),
                    "Binds": st.one_of(st.lists(st.text(max_size=20), max_size=2), json_any),
                    "Dns": st.one_of(st.lists(st.text(max_size=15), max_size=2), json_any),
                    "DnsSearch": json_any,
                },
            ),
            json_any,
        )
    )  # fmt: skip
    body = draw(
        st.fixed_dictionaries(
            {},
            optional={
                "Image": st.one_of(st.sampled_from(["bb", "nope", ""]), json_any),
                "Env": st.one_of(env, json_any),
                "Entrypoint": strslice,
                "Cmd": strslice,
                "Hostname": st.one_of(st.text(max_size=70), json_any),
                "Domainname": st.one_of(st.text(max_size=20), json_any),
                "Labels": json_any,
            },
        )
    )
    body["HostConfig"] = host
    return json.dumps(body).encode()


def _http(method: str, target: str, body: bytes | None, extra: str = "") -> bytes:
    head = f"{method} {target} HTTP/1.1\r\nHost: docker\r\nConnection: close\r\n{extra}"
    if body is not None:
        head += f"Content-Type: application/json\r\nContent-Length: {len(body)}\r\n"
    return head.encode() + b"\r\n" + (body or b"")


async def _exchange(sock: str, request: bytes) -> tuple[int, bytes]:
    reader, writer = await asyncio.open_unix_connection(sock)
    writer.write(request)
    await writer.drain()
    async with asyncio.timeout(20):
        data = await reader.read()
    writer.close()
    assert data[:7] == b"HTTP/1." and data[8:9] == b" ", data[:200]
    return int(data[9:12]), data.partition(b"\r\n\r\n")[2]


def _no_tracebacks(caplog: pytest.LogCaptureFixture) -> None:
    bad = [r for r in caplog.records if r.levelno >= logging.ERROR or r.exc_info]
    assert not bad, [r.getMessage() for r in bad]


# -- the Docker API proxy ---------------------------------------------------------------------------------------

names = st.one_of(st.just(""), st.text(max_size=20), st.sampled_from(["c1", "-x", "a" * 70, "a.b", "/x"]))
requests = st.one_of(
    st.tuples(st.just("POST"), st.sampled_from(["/v1.41/containers/create", "/containers/create"]), names,
              create_bodies()),
    st.tuples(st.sampled_from(["POST", "GET", "DELETE"]),
              st.sampled_from(["/containers/cid/start", "/v1.24/containers/cid/start", "/containers/cid/json",
                               "/_ping", "/echo", "/nowhere", "/containers//start", "/containers/%2e%2e/start"]),
              st.just(""), st.one_of(st.none(), st.binary(max_size=40))),
)  # fmt: skip


@given(st.lists(requests, min_size=1, max_size=4))
@fuzz(100)
def test_proxy_requests(tmp_path_factory: pytest.TempPathFactory, caplog: pytest.LogCaptureFixture, reqs: list) -> None:
    caplog.clear()
    tmp = tmp_path_factory.mktemp("proxy")

    async def run() -> None:
        h = Harness(tmp)
        await h.engine.start()
        await h.proxy.start([Endpoint("unix", path=h.sock)])
        try:
            for method, path, name, body in reqs:
                target = path + (f"?name={quote(name, safe='')}" if name else "")
                forwarded = len(h.engine.requests)
                status, answer = await _exchange(h.sock, _http(method, target, body))
                assert status < 500, (method, target, body, status, answer[:300])
                if path.endswith("/create") and status < 300:
                    sent = [b for _, p, _, b in h.engine.requests[forwarded:] if p == "/containers/create"]
                    assert len(sent) == 1 and isinstance(json.loads(sent[0]), dict)
            status, _ = await _exchange(h.sock, _http("GET", "/_ping", None))
            assert status == 200
        finally:
            await h.proxy.close()
            await h.engine.close()

    asyncio.run(run())
    _no_tracebacks(caplog)


# -- the network and IPAM plugin ----------------------------------------------------------------------------------

CALLS = [
    "Plugin.Activate", "NetworkDriver.GetCapabilities", "NetworkDriver.CreateNetwork", "NetworkDriver.DeleteNetwork",
    "NetworkDriver.CreateEndpoint", "NetworkDriver.DeleteEndpoint", "NetworkDriver.Join", "NetworkDriver.Leave",
    "NetworkDriver.EndpointOperInfo", "IpamDriver.GetCapabilities", "IpamDriver.GetDefaultAddressSpaces",
    "IpamDriver.RequestPool", "IpamDriver.ReleasePool", "IpamDriver.RequestAddress", "IpamDriver.ReleaseAddress",
    "Nope.Nothing",
]  # fmt: skip
FIELDS = {
    "NetworkID": st.one_of(st.text(max_size=12), json_any),
    "EndpointID": st.one_of(st.sampled_from(["e1" * 32, "e", ""]), st.text(max_size=70), json_any),
    "Options": st.one_of(
        st.fixed_dictionaries({"com.docker.network.generic": st.one_of(json_any, st.fixed_dictionaries(
            {"works.weave.multicast": json_any}))}),
        st.fixed_dictionaries({"RequestAddressType": st.sampled_from(["com.docker.network.gateway", "x"])}),
        json_any,
    ),
    "Interface": st.one_of(st.fixed_dictionaries({}, optional={"Address": json_any, "MacAddress": json_any}),
                           json_any),
    "Pool": st.one_of(st.sampled_from(["10.32.0.0/12", "10.2.0.0/16", "10.2.0.1/16", "x", ""]), json_any),
    "SubPool": st.one_of(st.sampled_from(["10.2.1.0/24", "10.3.0.0/24", ""]), json_any),
    "PoolID": st.one_of(st.sampled_from(["weave|10.2.0.0/16|10.2.1.0/24", "10.2.0.0/16", "", "|||"]),
                        st.text(max_size=30), json_any),
    "Address": st.one_of(st.sampled_from(["10.2.1.9", "10.2.1.0", "x", ""]), json_any),
    "V6": json_any,
}  # fmt: skip


@st.composite
def plugin_calls(draw: st.DrawFn) -> tuple[bool, str, bytes]:
    mesh = draw(st.booleans())
    call = draw(st.sampled_from(CALLS))
    kind = draw(st.sampled_from(["fields", "fields", "fields", "json", "bytes"]))
    if kind == "bytes":
        return mesh, call, draw(st.binary(max_size=60))
    if kind == "json":
        return mesh, call, json.dumps(draw(json_any)).encode()
    body: dict[str, Any] = draw(st.fixed_dictionaries({}, optional=FIELDS))
    return mesh, call, json.dumps(body).encode()


@given(st.lists(plugin_calls(), min_size=1, max_size=5))
@fuzz(100)
def test_plugin_calls(tmp_path_factory: pytest.TempPathFactory, caplog: pytest.LogCaptureFixture, calls: list) -> None:
    caplog.clear()
    tmp: Path = tmp_path_factory.mktemp("plugin")

    async def create_ep(eid: str, mtu: int | None) -> str:
        return "aa:bb:cc:dd:ee:ff"

    async def delete_ep(eid: str) -> None:
        return None

    async def run() -> None:
        opts = DockerOptions(plugin_socket=str(tmp / "weave.sock"), plugin_mesh_socket=str(tmp / "weavemesh.sock"))
        p = Plugin(opts, FakeDocker(), FakeRouter(), create_ep, delete_ep)  # type: ignore[arg-type]
        await p.start()
        try:
            for mesh, call, body in calls:
                sock = opts.plugin_mesh_socket if mesh else opts.plugin_socket
                status, answer = await _exchange(sock, _http("POST", f"/{call}", body))
                assert status == 200 and answer, (call, body, status, answer[:300])
                reply = json.loads(answer)
                assert isinstance(reply, dict), reply
                assert "Err" not in reply or isinstance(reply["Err"], str)
            status, answer = await _exchange(opts.plugin_socket, _http("POST", "/Plugin.Activate", b"{}"))
            assert json.loads(answer) == {"Implements": ["NetworkDriver"]}
        finally:
            await p.close()

    asyncio.run(run())
    _no_tracebacks(caplog)
    assert CONTENT_TYPE


# -- every field of the wrong JSON type, deterministically (type confusion is the commonest crash here) -----------

WRONG = [None, True, 1, "x", [1], {"a": 1}]
CREATE_FIELDS = ["HostConfig", "Env", "Labels", "Entrypoint", "Cmd", "Image", "Hostname", "Domainname"]
HOST_FIELDS = ["NetworkMode", "Binds", "Dns", "DnsSearch"]


def test_proxy_create_fields_of_every_type(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    bodies = [{"Image": "bb", "Cmd": ["sh"], k: v} for k in CREATE_FIELDS for v in WRONG]
    bodies += [{"Image": "bb", "Cmd": ["sh"], "HostConfig": {k: v}} for k in HOST_FIELDS for v in WRONG]

    async def run() -> None:
        h = Harness(tmp_path)
        await h.engine.start()
        await h.proxy.start([Endpoint("unix", path=h.sock)])
        try:
            for body in bodies:
                status, answer = await _exchange(
                    h.sock, _http("POST", "/containers/create?name=c1", json.dumps(body).encode())
                )
                assert status < 500, (body, status, answer[:300])
        finally:
            await h.proxy.close()
            await h.engine.close()

    asyncio.run(run())
    _no_tracebacks(caplog)


def test_plugin_fields_of_every_type(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    async def create_ep(eid: str, mtu: int | None) -> str:
        return "aa:bb:cc:dd:ee:ff"

    async def delete_ep(eid: str) -> None:
        return None

    async def run() -> None:
        opts = DockerOptions(plugin_socket=str(tmp_path / "w.sock"), plugin_mesh_socket=str(tmp_path / "m.sock"))
        p = Plugin(opts, FakeDocker(), FakeRouter(), create_ep, delete_ep)  # type: ignore[arg-type]
        await p.start()
        try:
            for call in CALLS:
                for field in FIELDS:
                    for value in WRONG:
                        body = json.dumps({field: value}).encode()
                        status, answer = await _exchange(opts.plugin_mesh_socket, _http("POST", f"/{call}", body))
                        assert status == 200 and isinstance(json.loads(answer), dict), (call, field, value, answer)
        finally:
            await p.close()

    asyncio.run(run())
    _no_tracebacks(caplog)
