"""The web view's routes: the page, its two static files, the event stream and a one-off snapshot; all GET.

Where the page is served (``--ui-addr``): by default on the read-only status listener when there is one, else on
the API's (local-only by default); an address of its own gets a listener serving only the view; ``off``: nowhere.
Wherever it is, ``GET /ui/url`` on the API says where (``weave status --web`` prints it).

Read-only by construction: every route is a GET (aiohttp answers any other method with 405), none calls anything
but the hub, which only reads what the router builds for ``weave status``. Every asset comes from the package,
never from another site (clusters are often offline), and the Content-Security-Policy says so to the browser.
"""

from __future__ import annotations

from dataclasses import dataclass
from importlib import resources

from aiohttp import web

from weavenet.ui.hub import Hub

STATIC = {
    "index.html": "text/html",
    "app.js": "text/javascript",
    "graph.js": "text/javascript",
    "style.css": "text/css",
}
HEADERS = {
    "Content-Security-Policy": "default-src 'self'; img-src 'self' data:; style-src 'self'; script-src 'self'",
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "no-referrer",
    "Cache-Control": "no-cache",
}
OFF = "off"


def _asset(name: str) -> bytes:
    return resources.files("weavenet.ui").joinpath("static", name).read_bytes()


def placement(ui_addr: str, http_addr: str, status_addr: str) -> tuple[str, str] | None:
    """(listener, address) the view is served on: ``("status"|"api"|"own", addr)``, or None when it is off."""
    if ui_addr == OFF:
        return None
    if not ui_addr:
        return ("status", status_addr) if status_addr else ("api", http_addr)
    if ui_addr == status_addr:
        return "status", status_addr
    if ui_addr == http_addr:
        return "api", http_addr
    return "own", ui_addr


def url_of(addr: str) -> str:
    """The page's URL on ``addr`` (a wildcard address is reached on this host's loopback)."""
    if addr.startswith("/"):
        return f"unix:{addr} GET /ui/"
    host, _, port = addr.rpartition(":")
    if host in ("", "0.0.0.0", "::", "[::]"):
        host = "127.0.0.1"
    return f"http://{host}:{port}/ui/"


@dataclass
class WebView:
    """The view and where it is served; :meth:`add_routes` puts its routes on a listener's table."""

    hub: Hub
    listener: str  # "status", "api" or "own"
    addr: str

    @property
    def url(self) -> str:
        return url_of(self.addr)

    def add_routes(self, routes: web.RouteTableDef, listener: str) -> None:
        """Routes for the API or status listener: ``/ui/url`` on both, the view itself where it lives."""

        @routes.get("/ui/url")
        async def ui_url(request: web.Request) -> web.Response:
            return web.Response(text=self.url + "\n", content_type="text/plain")

        if listener == self.listener:
            self._add_view(routes)

    def app(self) -> web.Application:
        """The application of a listener of the view's own (``--ui-addr <ip>:<port>``)."""
        app = web.Application()
        routes = web.RouteTableDef()
        self._add_view(routes)

        @routes.get("/")
        async def root(request: web.Request) -> web.Response:
            raise web.HTTPFound("/ui/")

        app.add_routes(routes)
        return app

    def _add_view(self, routes: web.RouteTableDef) -> None:
        hub = self.hub
        assets = {name: (_asset(name), kind) for name, kind in STATIC.items()}

        @routes.get("/ui")
        async def ui_bare(request: web.Request) -> web.Response:
            raise web.HTTPFound("/ui/")

        @routes.get("/ui/")
        async def index(request: web.Request) -> web.Response:
            body, kind = assets["index.html"]
            return web.Response(body=body, content_type=kind, charset="utf-8", headers=HEADERS)

        @routes.get("/ui/static/{name}")
        async def static(request: web.Request) -> web.Response:
            found = assets.get(request.match_info["name"])
            if found is None or request.match_info["name"] == "index.html":
                raise web.HTTPNotFound(text="404 page not found\n")
            return web.Response(body=found[0], content_type=found[1], charset="utf-8", headers=HEADERS)

        @routes.get("/ui/snapshot")
        async def snapshot(request: web.Request) -> web.Response:
            if hub.snapshot is None:
                hub.step()
            return web.json_response(hub.snapshot, headers={"Cache-Control": "no-store"})

        @routes.get("/ui/events")
        async def events(request: web.Request) -> web.StreamResponse:
            transport = request.transport
            viewer = hub.join(
                close=transport.abort if transport is not None else None,
                alive=lambda: request.transport is not None and not request.transport.is_closing(),
            )
            if viewer is None:
                return web.Response(status=503, text="too many viewers of the web view; try again later\n")
            resp = web.StreamResponse()
            try:
                resp = web.StreamResponse(
                    headers={
                        "Content-Type": "text/event-stream",
                        "Cache-Control": "no-store",
                        "X-Accel-Buffering": "no",
                    }
                )
                await resp.prepare(request)
                await resp.write(b"retry: 2000\n\n" + hub.hello())
                while (message := await viewer.next()) is not None:
                    await resp.write(message)
            except (ConnectionError, RuntimeError):
                pass  # the viewer went away, or was dropped for not keeping up
            finally:
                hub.leave(viewer)
            return resp
