"""weaveDNS routes of the router API (Weave's ``nameserver/http.go``).

``GET /domain``, ``GET /dns-address``, ``GET /dns-address-port``; ``PUT /name/{container}/{ip}`` with form or query
``fqdn`` and ``check-alive=true``; ``DELETE /name[/{container}[/{ip}]][?fqdn=]``; ``GET /name`` (JSON). A
container ident may be a namespace path, so ``{container}`` takes slashes (the address is always last). Only
registered when DNS is enabled: with ``--no-dns`` these answer 404, which ``weave`` reports as disabled.
"""

from __future__ import annotations

import json

from aiohttp import web

from weavenet.api.control import DnsControl
from weavenet.api.forms import form_value

IP = r"{ip:\d+\.\d+\.\d+\.\d+}"


def _text(body: str, status: int = 200) -> web.Response:
    return web.Response(text=body, status=status, content_type="text/plain")


async def _param(request: web.Request, key: str) -> str:
    return await form_value(request, key)


def add_dns_routes(routes: web.RouteTableDef, dns: DnsControl) -> None:
    @routes.get("/domain")
    async def domain(request: web.Request) -> web.Response:
        return _text(dns.domain)

    @routes.get("/dns-address")
    async def dns_address(request: web.Request) -> web.Response:
        addr = dns.address
        return _text(addr.rsplit(":", 1)[0].strip("[]") if addr else "")

    @routes.get("/dns-address-port")
    async def dns_address_port(request: web.Request) -> web.Response:
        return _text(dns.address)

    @routes.put("/name/{container:.+}/" + IP)
    async def put_name(request: web.Request) -> web.Response:
        fqdn = await _param(request, "fqdn")
        check_alive = (await _param(request, "check-alive")) == "true"
        try:
            dns.add(request.match_info["container"], request.match_info["ip"], fqdn, check_alive)
        except ValueError as e:
            return _text(f"{e}\n", 400)
        return web.Response(status=204)

    async def delete(request: web.Request) -> web.Response:
        fqdn = await _param(request, "fqdn")
        try:
            dns.delete(request.match_info.get("container"), request.match_info.get("ip"), fqdn or None)
        except ValueError as e:
            return _text(f"{e}\n", 400)
        return web.Response(status=204)

    routes.delete("/name/{container:.+}/" + IP)(delete)
    routes.delete("/name/{container:.+}")(delete)
    routes.delete("/name")(delete)

    @routes.get("/name")
    async def get_names(request: web.Request) -> web.Response:
        return web.Response(text=json.dumps(dns.entries_json()) + "\n", content_type="application/json")
