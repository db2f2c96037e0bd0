"""The web view's routes on a real aiohttp server over a sample report: the page and its assets, the event stream,
only GET answered, and a viewer that stops reading dropped without holding the hub."""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator

import pytest
from aiohttp import web
from aiohttp.test_utils import TestClient, TestServer

from weavenet.api.guard import API_LIMITS, GuardedRunner
from weavenet.api.ui_routes import STATIC, WebView, placement, url_of
from weavenet.status import sample_report
from weavenet.ui import hub as hub_module
from weavenet.ui.hub import Hub
from weavenet.ui.model import ViewInput


class Source:
    def __init__(self) -> None:
        self.calls = 0

    def view_input(self) -> ViewInput:
        self.calls += 1
        return ViewInput(sample_report())


@pytest.fixture
async def served() -> AsyncIterator[tuple[TestClient, Hub, Source]]:
    source = Source()
    hub = Hub(source, tick=0.05, idle_tick=0.05)
    view = WebView(hub, "own", "127.0.0.1:0")
    client = TestClient(TestServer(view.app()))
    await client.start_server()
    hub.start()
    try:
        yield client, hub, source
    finally:
        await hub.close()
        await client.close()


async def test_page_and_assets_come_from_the_router(served) -> None:
    client, _, _ = served
    page = await client.get("/ui/")
    assert page.status == 200 and "text/html" in page.headers["Content-Type"]
    text = await page.text()
    assert "/ui/static/app.js" in text and "http" not in text.replace("http-equiv", "")  # nothing from elsewhere
    assert "default-src 'self'" in page.headers["Content-Security-Policy"]
    for name in STATIC:
        if name != "index.html":
            assert (await client.get(f"/ui/static/{name}")).status == 200
    assert (await client.get("/ui/static/../hub.py")).status == 404
    assert (await client.get("/ui/static/missing.js")).status == 404


async def test_only_get_is_answered(served) -> None:
    client, _hub, _source = served
    for method in ("POST", "PUT", "DELETE", "PATCH"):
        for path in ("/ui/", "/ui/events", "/ui/snapshot", "/ui/static/app.js"):
            resp = await client.request(method, path, data=b"x")
            assert resp.status == 405, (method, path)
    for path in ("/connect", "/forget", "/peer", "/expose/10.2.0.1/24"):
        assert (await client.post(path)).status in (404, 405)


async def test_event_stream_starts_with_hello_then_rates(served) -> None:
    client, _hub, _ = served
    resp = await client.get("/ui/events")
    assert resp.headers["Content-Type"] == "text/event-stream"
    seen: list[str] = []
    async with asyncio.timeout(10):
        while "rates" not in seen:
            line = (await resp.content.readline()).decode()
            if line.startswith("event: "):
                seen.append(line[7:].strip())
            elif line.startswith("data: ") and seen[-1] == "hello":
                hello = json.loads(line[6:])
                assert {p["nickname"] for p in hello["snapshot"]["peers"]} == {"host1", "host2", "host3"}
    assert seen[0] == "hello"
    resp.close()


async def test_viewers_share_one_snapshot_per_tick(served) -> None:
    client, hub, source = served
    streams = [await client.get("/ui/events") for _ in range(20)]
    await asyncio.sleep(0.5)
    before, ticks = source.calls, hub.ticks
    await asyncio.sleep(0.5)
    assert source.calls - before == hub.ticks - ticks  # one report per tick, however many watch
    assert len(hub.viewers) == 20
    for s in streams:
        s.close()


async def test_closed_streams_give_their_places_back_before_the_next_tick() -> None:
    """A viewer that closed its connection does not count against the limit, though its handler only learns of
    it at the next tick: streams opened and closed faster than ticks are never refused. Served as the router serves
    it (``GuardedRunner``: aiohttp then does not cancel a handler whose client left, as its test server does)."""
    hub = Hub(Source(), tick=60.0, idle_tick=60.0, max_viewers=3)
    view = WebView(hub, "own", "127.0.0.1:0")
    runner = GuardedRunner(view.app(), "web view", API_LIMITS)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    port = site._server.sockets[0].getsockname()[1]  # type: ignore[union-attr]
    hub.start()
    try:
        for _ in range(6):  # twice as many as the hub takes, all within one tick
            reader, writer = await asyncio.open_connection("127.0.0.1", port)
            writer.write(b"GET /ui/events HTTP/1.1\r\nHost: x\r\n\r\n")
            head = await asyncio.wait_for(reader.readuntil(b"event: hello"), 10)
            assert head.startswith(b"HTTP/1.1 200"), head[:100]
            writer.close()
            await asyncio.sleep(0.05)  # the server reads the close (the handler, waiting for a tick, does not)
        assert len(hub.viewers) == 3  # the last three, closed, still waiting for the tick
    finally:
        await hub.close()
        await runner.cleanup()


async def test_a_viewer_that_does_not_read_is_dropped(monkeypatch) -> None:
    monkeypatch.setattr(hub_module, "QUEUE", 4)
    hub = Hub(Source(), tick=0.01, idle_tick=0.01)
    closed: list[bool] = []
    viewer = hub.join(close=lambda: closed.append(True))
    assert viewer is not None
    for _ in range(10):
        hub.step()
    assert viewer.dropped and closed and viewer not in hub.viewers and hub.dropped == 1
    assert await viewer.next() is None


async def test_too_many_viewers_are_refused() -> None:
    hub = Hub(Source(), max_viewers=2)
    assert hub.join() and hub.join() and hub.join() is None


async def test_a_full_hub_lets_go_of_viewers_whose_clients_left() -> None:
    hub = Hub(Source(), max_viewers=2)
    here, closed = [True, True], []
    first = hub.join(close=lambda: closed.append(0), alive=lambda: here[0])
    second = hub.join(close=lambda: closed.append(1), alive=lambda: here[1])
    assert first and second and hub.join(alive=lambda: True) is None  # both still there: refused
    here[0] = False
    third = hub.join(alive=lambda: True)
    assert third is not None and hub.viewers == {second, third}
    assert first.dropped and closed == [0] and await first.next() is None  # its handler ends at once
    assert hub.dropped == 0  # not a viewer that could not keep up


def test_placement_and_url() -> None:
    assert placement("", "127.0.0.1:6784", "") == ("api", "127.0.0.1:6784")
    assert placement("", "127.0.0.1:6784", "0.0.0.0:6782") == ("status", "0.0.0.0:6782")
    assert placement("off", "127.0.0.1:6784", "0.0.0.0:6782") is None
    assert placement("0.0.0.0:6785", "127.0.0.1:6784", "") == ("own", "0.0.0.0:6785")
    assert url_of("0.0.0.0:6782") == "http://127.0.0.1:6782/ui/"
    assert url_of("192.0.2.1:6785") == "http://192.0.2.1:6785/ui/"


async def test_api_listener_gets_the_url_route_and_the_view() -> None:
    from weavenet.api.http import ApiParts, build_app

    hub = Hub(Source())
    view = WebView(hub, "api", "127.0.0.1:6784")

    class Report:
        def report(self):
            return sample_report()

    app = build_app(ApiParts(status=Report(), router=None, ui=view))  # type: ignore[arg-type]
    status_app = build_app(ApiParts(status=Report(), router=None, ui=view), read_only=True)  # type: ignore[arg-type]
    async with TestClient(TestServer(app)) as c, TestClient(TestServer(status_app)) as s:
        assert (await (await c.get("/ui/url")).text()) == "http://127.0.0.1:6784/ui/\n"
        assert (await c.get("/ui/")).status == 200
        assert (await s.get("/ui/url")).status == 200 and (await s.get("/ui/")).status == 404
    await hub.close()
