"""IPAM's HTTP API, exactly as Weave's ``ipam/http.go`` (and ``DELETE /peer/{id}`` of ``prog/weaver``).

Addresses travel as plain text ``a.b.c.d/len``; errors are 400 with the message (an allocation that could not be
saved too: it was undone), a release done but not saved yet is 507 with the reason; a request cancelled because
its container is not running (``check-alive=true``) or its client went away answers ``cancelled``. Idents
may contain ``/`` (a namespace path): clients percent-encode them (``%2F``), the router decodes them.
Without IPAM none of these routes exist (404, which ``weave`` reads as "IPAM disabled") except ``DELETE
/peer/{id}``, which then does nothing, as in Weave.
"""

from __future__ import annotations

import json

from aiohttp import web

from weavenet.api.control import IpamControl
from weavenet.errors import ConfigError, StateError
from weavenet.ipam.address import CIDR, parse_ip
from weavenet.ipam.allocator import TakeoverError
from weavenet.ipam.operations import Result

TEXT = "text/plain"


def _text(body: str, status: int = 200) -> web.Response:
    return web.Response(text=body, status=status, content_type=TEXT)


def _bad(message: str) -> web.Response:
    return _text(message + "\n", 400)


def _true(request: web.Request, key: str) -> bool:
    return request.query.get(key) == "true"


def _gone(request: web.Request) -> bool:
    t = request.transport
    return t is None or t.is_closing()


def _cidr(request: web.Request, subnet: bool) -> CIDR:
    text = f"{request.match_info['ip']}/{request.match_info['prefixlen']}"
    return CIDR.parse_subnet(text) if subnet else CIDR.parse(text)


def _allocated(result: Result, subnet: CIDR) -> web.Response:
    if result.cancelled:
        return _text("cancelled")
    if result.error is not None or result.cidr is None:
        return _bad(result.error or "allocation failed")
    return _text(f"{result.cidr}")


def add_routes(routes: web.RouteTableDef, ipam: IpamControl | None) -> None:
    """Register the routes (called from ``api/http.py`` for the read-write API); ``ipam`` None: IPAM is off."""

    @routes.delete("/peer/{id}")
    async def rmpeer(request: web.Request) -> web.Response:
        peer = request.match_info["id"]
        if ipam is None:
            return _text("")
        try:
            count = ipam.rmpeer(peer)
        except TakeoverError as e:
            return _bad(str(e))
        return _text(f"{count} IPs taken over from {peer}\n")

    if ipam is None:
        return

    @routes.get("/ipinfo/defaultsubnet")
    async def default_subnet(request: web.Request) -> web.Response:
        return _text(str(ipam.default_subnet))

    @routes.get("/ipinfo/tracker")
    async def tracker(request: web.Request) -> web.Response:
        return _text("\n")

    @routes.get("/ring")
    async def ring(request: web.Request) -> web.Response:
        result = await ipam.prime(lambda: _gone(request))
        return _text("cancelled" if result.cancelled else "")

    @routes.put("/ip/{id}/{ip}/{prefixlen}")
    async def claim(request: web.Request) -> web.Response:
        try:
            cidr = _cidr(request, subnet=False)
        except ConfigError as e:
            return _bad(str(e))
        result = await ipam.claim(
            request.match_info["id"],
            cidr,
            _true(request, "check-alive"),
            _true(request, "noErrorOnUnknown"),
            lambda: _gone(request),
        )
        if result.cancelled:
            return _text("cancelled")
        if result.error is not None:
            return _bad(f"Unable to claim: {result.error}")
        return web.Response(status=204)

    @routes.get("/ip/{id}/{ip}/{prefixlen}")
    async def lookup_in(request: web.Request) -> web.Response:
        try:
            subnet = _cidr(request, subnet=True)
        except ConfigError as e:
            return _bad(str(e))
        return _text(" ".join(map(str, ipam.lookup(request.match_info["id"], subnet))))

    @routes.get("/ip/{id}")
    async def lookup(request: web.Request) -> web.Response:
        return _text(" ".join(map(str, ipam.lookup(request.match_info["id"], None))))

    @routes.get("/ip")
    async def owned(request: web.Request) -> web.Response:
        mappings = [{"containerid": ident, "addrs": [str(c) for c in cidrs]} for ident, cidrs in ipam.owned().items()]
        body = json.dumps({"owned": mappings or None}, separators=(",", ":")) + "\n"
        return web.Response(text=body, content_type="application/json")

    @routes.post("/ip/{id}/{ip}/{prefixlen}")
    async def allocate_in(request: web.Request) -> web.Response:
        try:
            subnet = _cidr(request, subnet=True)
        except ConfigError as e:
            return _bad(str(e))
        result = await ipam.allocate(
            request.match_info["id"], subnet, _true(request, "check-alive"), lambda: _gone(request)
        )
        return _allocated(result, subnet)

    @routes.post("/ip/{id}")
    async def allocate(request: web.Request) -> web.Response:
        result = await ipam.allocate(
            request.match_info["id"], None, _true(request, "check-alive"), lambda: _gone(request)
        )
        return _allocated(result, ipam.default_subnet)

    @routes.delete("/ip/{id}/{ip}")
    async def free(request: web.Request) -> web.Response:
        try:
            addr = parse_ip(request.match_info["ip"])
        except ConfigError as e:
            return _bad(str(e))
        try:
            err = ipam.free(request.match_info["id"], addr)
        except StateError as e:  # released, not saved yet: 507 Insufficient Storage
            return _text(f"{e}\n", 507)
        if err is not None:
            return _bad(f"Unable to free: {err}")
        return web.Response(status=204)

    @routes.delete("/ip/{id}")
    async def delete(request: web.Request) -> web.Response:
        try:
            err = ipam.delete(request.match_info["id"])
        except StateError as e:
            return _text(f"{e}\n", 507)
        if err is not None:
            return _bad(err)
        return web.Response(status=204)
