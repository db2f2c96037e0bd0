"""The router's HTTP API on 127.0.0.1:6784 (``--http-addr``), and the read-only status listener.

Routes only translate HTTP to calls on :class:`weavenet.daemon.weaver.Daemon` and back; they decide nothing.
Status answers 503 with a body until the router is ready, as Weave's does, so ``weave launch`` can wait on it.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from aiohttp import web
from prometheus_client import CONTENT_TYPE_LATEST

from weavenet.api.forms import form_value, read_form
from weavenet.api.guard import API_LIMITS, GuardedRunner
from weavenet.daemon import metrics, status_text
from weavenet.daemon.report import format_report, report_json
from weavenet.errors import ConfigError, WeavenetError
from weavenet.gocompat import TemplateExecError, TemplateParseError

if TYPE_CHECKING:
    from weavenet.daemon.weaver import Daemon

TEXT = "text/plain"
MAX_BODY = 1024 * 1024
# Go's strconv.ParseBool, which Weave's /expose used for skipNAT (absent: false).
GO_BOOLS = {v: True for v in ("1", "t", "T", "TRUE", "true", "True")} | {
    v: False for v in ("", "0", "f", "F", "FALSE", "false", "False")
}


def _text(body: str, status: int = 200) -> web.Response:
    return web.Response(text=body, status=status, content_type=TEXT)


def build_app(daemon: Daemon, read_only: bool = False) -> web.Application:
    app = web.Application(client_max_size=MAX_BODY)
    routes = web.RouteTableDef()

    @routes.get("/status")
    async def status(request: web.Request) -> web.Response:
        report = daemon.report()
        return _text(status_text.render_status(report), 200 if report["Ready"] else 503)

    @routes.get("/status/{sub}")
    async def status_sub(request: web.Request) -> web.Response:
        render = status_text.STATUS_PAGES.get(request.match_info["sub"])
        if render is None:
            raise web.HTTPNotFound(text="404 page not found\n")
        try:
            return _text(render(daemon.report()))
        except status_text.StatusUnavailable as e:
            return _text(e.body, 500)

    @routes.get("/report")
    async def report(request: web.Request) -> web.Response:
        data = daemon.report()
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
        return _metrics_response(daemon)

    from weavenet.docker import status_page

    status_text.STATUS_PAGES.setdefault("docker", status_page.render)  # ``weave status docker`` (weavenet's own)

    @routes.get("/proxyaddrs")
    async def proxyaddrs(request: web.Request) -> web.Response:
        docker = getattr(daemon, "docker", None)
        addrs = docker.proxy_addresses() if docker is not None else []
        return _text("".join(f"{a}\n" for a in addrs))

    @routes.get("/docker/attached")
    async def docker_attached(request: web.Request) -> web.Response:
        """weavenet's own: ``<container id> <pid>`` per line for each container the proxy attached, so that
        ``weave ps`` can list them when it cannot ask the engine itself."""
        docker = getattr(daemon, "docker", None)
        rows = docker.attached_containers() if docker is not None else []
        return _text("".join(f"{cid} {pid}\n" for cid, pid in rows))

    if not read_only:

        @routes.post("/connect")
        async def connect(request: web.Request) -> web.Response:
            form = await read_form(request)
            peers = form.getall("peer", [])
            replace = str(form.get("replace", "")).lower() in ("true", "1", "t")
            errors = await daemon.connect(peers, replace)
            if errors:
                return _text("\n".join(errors) + "\n", 400)
            return _text("")

        @routes.post("/forget")
        async def forget(request: web.Request) -> web.Response:
            form = await read_form(request)
            daemon.forget(form.getall("peer", []))
            return _text("")

        @routes.post("/expose/{ip}/{prefixlen}")
        async def expose(request: web.Request) -> web.Response:
            cidr = f"{request.match_info['ip']}/{request.match_info['prefixlen']}"
            skip_nat = await form_value(request, "skipNAT")
            if skip_nat not in GO_BOOLS:
                return _text(f"unable to parse skipNAT option: {skip_nat!r} is not a boolean\n", 400)
            try:
                await daemon.expose(cidr, GO_BOOLS[skip_nat])
            except ConfigError as e:  # refused: nothing was changed
                return _text(f"{e}\n", 400)
            except WeavenetError as e:  # the host refused a step: what was done is undone
                return _text(f"{e}\n", 500)
            return web.Response(status=204)

        @routes.delete("/peer")
        async def delete_peer(request: web.Request) -> web.Response:
            daemon.remove_from_cluster()
            return web.Response(status=204)

    if not read_only and getattr(daemon, "dns", None) is not None:
        from weavenet.api.dns_routes import add_dns_routes

        add_dns_routes(routes, daemon.dns)
    if not read_only:
        from weavenet.api.ipam_routes import add_routes as add_ipam_routes

        add_ipam_routes(routes, daemon)
    app.add_routes(routes)
    return app


async def _serve(app: web.Application, addr: str, label: str) -> web.AppRunner:
    runner = GuardedRunner(app, label, API_LIMITS)
    await runner.setup()
    site: Any
    if addr.startswith("/"):
        site = web.UnixSite(runner, addr)
    else:
        host, _, port = addr.rpartition(":")
        site = web.TCPSite(runner, host or "0.0.0.0", int(port), reuse_address=True)
    await site.start()
    return runner


async def start_api(daemon: Daemon) -> list[web.AppRunner]:
    """Start the API and, if configured, the read-only status and metrics listeners."""
    runners = [await _serve(build_app(daemon), daemon.config.http_addr, "HTTP API")]
    if daemon.config.status_addr:
        runners.append(await _serve(build_app(daemon, read_only=True), daemon.config.status_addr, "status listener"))
    if daemon.config.metrics_addr:
        app = web.Application()

        async def only_metrics(request: web.Request) -> web.Response:
            return _metrics_response(daemon)

        app.router.add_get("/metrics", only_metrics)
        runners.append(await _serve(app, daemon.config.metrics_addr, "metrics listener"))
    return runners


def _metrics_response(daemon: Daemon) -> web.Response:
    return web.Response(body=metrics.render(daemon.report), headers={"Content-Type": CONTENT_TYPE_LATEST})
