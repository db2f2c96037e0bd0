"""The router's HTTP API on 127.0.0.1:6784 (``--http-addr``), and the read-only status listener.

Routes only translate HTTP to calls on the protocols of :mod:`weavenet.api.control` and back; they decide nothing.
Status answers 503 with a body until the router is ready, as Weave's does, so ``weave launch`` can wait on it.
"""

from __future__ import annotations

import contextlib
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from aiohttp import web
from prometheus_client import CONTENT_TYPE_LATEST

from weavenet.api.control import DnsControl, DockerControl, IpamControl, PolicyControl, RouterControl, StatusSource
from weavenet.api.forms import form_value, read_form
from weavenet.api.guard import API_LIMITS, GuardedRunner
from weavenet.api.ui_routes import WebView
from weavenet.errors import ConfigError, WeavenetError
from weavenet.gocompat import TemplateExecError, TemplateParseError
from weavenet.status import PAGES, StatusUnavailable, format_report, render_status, report_json
from weavenet.status.metrics import render_metrics

TEXT = "text/plain"
MAX_BODY = 1024 * 1024
# Go's strconv.ParseBool, which Weave's /expose used for skipNAT (absent: false).
GO_BOOLS = {v: True for v in ("1", "t", "T", "TRUE", "true", "True")} | {
    v: False for v in ("", "0", "f", "F", "FALSE", "false", "False")
}


def _text(body: str, status: int = 200) -> web.Response:
    return web.Response(text=body, status=status, content_type=TEXT)


@dataclass(frozen=True)
class ApiParts:
    """What the API serves: the report, and what each group of routes controls (None: that part is off)."""

    status: StatusSource
    router: RouterControl
    docker: DockerControl | None = None
    ipam: IpamControl | None = None
    dns: DnsControl | None = None
    policy: PolicyControl | None = None
    collectors: Sequence[Any] = ()  # more Prometheus collectors for /metrics (network policy's)
    ui: WebView | None = None  # the web view (weavenet.api.ui_routes), None when it is off


def build_app(parts: ApiParts, read_only: bool = False) -> web.Application:
    app = web.Application(client_max_size=MAX_BODY)
    routes = web.RouteTableDef()
    source, router, docker = parts.status, parts.router, parts.docker

    @routes.get("/status")
    async def status(request: web.Request) -> web.Response:
        report = source.report()
        return _text(render_status(report), 200 if report.ready else 503)

    @routes.get("/status/{sub}")
    async def status_sub(request: web.Request) -> web.Response:
        render = PAGES.get(request.match_info["sub"])
        if render is None:
            raise web.HTTPNotFound(text="404 page not found\n")
        try:
            return _text(render(source.report()))
        except StatusUnavailable as e:
            return _text(e.body, 500)

    @routes.get("/report")
    async def report(request: web.Request) -> web.Response:
        data = source.report()
        fmt = request.query.get("format")
        if fmt is None:
            return web.Response(text=report_json(data), content_type="application/json")
        try:
            return _text(format_report(data, fmt))
        except TemplateParseError as e:
            return _text(f"{e}\n", 400)
        except TemplateExecError as e:
            return _text(f"{e.partial_output}{e}\n", 500)

    @routes.get("/metrics")
    async def metrics_handler(request: web.Request) -> web.Response:
        return _metrics_response(parts)

    @routes.get("/proxyaddrs")
    async def proxyaddrs(request: web.Request) -> web.Response:
        addrs = docker.proxy_addresses() if docker is not None else []
        return _text("".join(f"{a}\n" for a in addrs))

    if parts.policy is not None:
        from weavenet.api.policy_routes import add_policy_routes

        add_policy_routes(routes, parts.policy, read_only)

    @routes.get("/docker/attached")
    async def docker_attached(request: web.Request) -> web.Response:
        """weavenet's own: ``<container id> <pid>`` per line for each container the proxy attached, so that
        ``weave ps`` can list them when it cannot ask the engine itself."""
        rows = docker.attached_containers() if docker is not None else []
        return _text("".join(f"{cid} {pid}\n" for cid, pid in rows))

    if not read_only:

        @routes.post("/connect")
        async def connect(request: web.Request) -> web.Response:
            form = await read_form(request)
            peers = form.getall("peer", [])
            replace = str(form.get("replace", "")).lower() in ("true", "1", "t")
            errors = await router.connect(peers, replace)
            if errors:
                return _text("\n".join(errors) + "\n", 400)
            return _text("")

        @routes.post("/forget")
        async def forget(request: web.Request) -> web.Response:
            form = await read_form(request)
            router.forget(form.getall("peer", []))
            return _text("")

        @routes.post("/expose/{ip}/{prefixlen}")
        async def expose(request: web.Request) -> web.Response:
            cidr = f"{request.match_info['ip']}/{request.match_info['prefixlen']}"
            skip_nat = await form_value(request, "skipNAT")
            if skip_nat not in GO_BOOLS:
                return _text(f"unable to parse skipNAT option: {skip_nat!r} is not a boolean\n", 400)
            try:
                await router.expose(cidr, GO_BOOLS[skip_nat])
            except ConfigError as e:  # refused: nothing was changed
                return _text(f"{e}\n", 400)
            except WeavenetError as e:  # the host refused a step: what was done is undone
                return _text(f"{e}\n", 500)
            return web.Response(status=204)

        @routes.delete("/peer")
        async def delete_peer(request: web.Request) -> web.Response:
            router.remove_from_cluster()
            return web.Response(status=204)

        if parts.dns is not None:
            from weavenet.api.dns_routes import add_dns_routes

            add_dns_routes(routes, parts.dns)
        from weavenet.api.ipam_routes import add_routes as add_ipam_routes

        add_ipam_routes(routes, parts.ipam)
    if parts.ui is not None:
        parts.ui.add_routes(routes, "status" if read_only else "api")
    app.add_routes(routes)
    return app


async def _serve(app: web.Application, addr: str, label: str) -> web.AppRunner:
    runner = GuardedRunner(app, label, API_LIMITS)
    await runner.setup()
    try:
        await _site(runner, addr).start()
    except BaseException:
        await runner.cleanup()
        raise
    return runner


def _site(runner: web.AppRunner, addr: str) -> web.BaseSite:
    if addr.startswith("/"):
        return web.UnixSite(runner, addr)
    host, _, port = addr.rpartition(":")
    return web.TCPSite(runner, host or "0.0.0.0", int(port), reuse_address=True)


async def start_api(
    stack: contextlib.AsyncExitStack, parts: ApiParts, http_addr: str, status_addr: str = "", metrics_addr: str = ""
) -> None:
    """Start the API and, if given addresses, the read-only status and metrics listeners; each listener's cleanup
    goes onto ``stack`` as soon as it listens, so a listener that fails to start leaves none behind."""

    async def serve(app: web.Application, addr: str, label: str) -> None:
        runner = await _serve(app, addr, label)
        stack.push_async_callback(runner.cleanup)

    await serve(build_app(parts), http_addr, "HTTP API")
    if status_addr:
        await serve(build_app(parts, read_only=True), status_addr, "status listener")
    if parts.ui is not None and parts.ui.listener == "own":
        await serve(parts.ui.app(), parts.ui.addr, "web view listener")
    if metrics_addr:
        app = web.Application()

        async def only_metrics(request: web.Request) -> web.Response:
            return _metrics_response(parts)

        app.router.add_get("/metrics", only_metrics)
        await serve(app, metrics_addr, "metrics listener")


def _metrics_response(parts: ApiParts) -> web.Response:
    body = render_metrics(parts.status.report(), parts.collectors)
    return web.Response(body=body, headers={"Content-Type": CONTENT_TYPE_LATEST})
