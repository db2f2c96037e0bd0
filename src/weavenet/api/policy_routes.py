"""Network policy routes of the router API (weavenet's own; ``weave policy`` and ``weave attach`` use them).

* ``POST /policy``: a manifest (YAML or JSON, several documents) as the body; every object or none. 200 with
  ``{"Lines": [kubectl's line per object], "Warning": ""}``; 400 with the API server's refusal
  (``The NetworkPolicy "x" is invalid: spec...``).
* ``DELETE /policy/networkpolicies/{namespace}/{name}``, ``DELETE /policy/namespaces/{name}``: 200 with kubectl's
  line, 404 with kubectl's ``Error from server (NotFound): ...``.
* ``GET /policy``: the objects and the pods of the cluster (JSON).
* ``GET /policy/test?src=&dst=&port=&protocol=``: the decision for a new connection (JSON), 400 if a side names
  nothing.
* ``PUT /policy/pods/{ident}`` (form: ``name``, ``label=k=v`` and ``ip`` repeated), ``DELETE
  /policy/pods/{ident}``: a container of this host; the ident may be a namespace path (``%2F``-encoded or not).
* ``PUT /policy/kubernetes`` (a whole state), ``PATCH /policy/kubernetes`` (changes): from the Kubernetes policy
  controller (``weavenet.policy.kube_source`` says the JSON); 200 ``{"InForce": bool, "Problem": ""}`` once in
  force here, 409 for changes out of step (send a whole state), 400 for a malformed body, 409 when this host's
  policy is not from Kubernetes.
"""

from __future__ import annotations

import ipaddress
import json
from typing import Any

from aiohttp import web

from weavenet.api.control import PolicyControl
from weavenet.api.forms import read_form
from weavenet.errors import ConfigError
from weavenet.policy.kube_source import FeedError

PROTOCOLS = ("TCP", "UDP", "SCTP")
NOT_FOUND = 'Error from server (NotFound): {resource} "{name}" not found\n'


def _text(body: str, status: int = 200) -> web.Response:
    return web.Response(text=body, status=status, content_type="text/plain")


def _json(data: Any, status: int = 200) -> web.Response:
    return web.Response(text=json.dumps(data) + "\n", status=status, content_type="application/json")


def add_policy_routes(routes: web.RouteTableDef, policy: PolicyControl, read_only: bool = False) -> None:
    @routes.get("/policy")
    async def listing(request: web.Request) -> web.Response:
        return _json(policy.listing())

    @routes.get("/policy/test")
    async def test(request: web.Request) -> web.Response:
        q = request.query
        protocol = q.get("protocol", "tcp").upper()
        port = q.get("port", "")
        if protocol not in PROTOCOLS:
            return _text(f"invalid protocol {q.get('protocol')!r}: use tcp, udp or sctp\n", 400)
        if not port.isascii() or not port.isdigit() or not 1 <= int(port) <= 65535:
            return _text(f"invalid port {port!r}: a number between 1 and 65535\n", 400)
        if not q.get("src") or not q.get("dst"):
            return _text("a source (src) and a destination (dst) are needed\n", 400)
        try:
            return _json(policy.test(q["src"], q["dst"], protocol, int(port)))
        except ValueError as e:
            return _text(f"{e}\n", 400)

    if read_only:
        return

    @routes.post("/policy")
    async def apply(request: web.Request) -> web.Response:
        try:
            text = (await request.read()).decode()
        except UnicodeDecodeError:
            return _text("error: the manifest is not UTF-8 text\n", 400)
        try:
            lines, warning = await policy.apply(text)
        except ConfigError as e:  # PolicyInvalid: the API server's refusal, nothing changed
            return _text(f"{e}\n", 400)
        return _json({"Lines": lines, "Warning": warning})

    @routes.delete("/policy/networkpolicies/{namespace}/{name}")
    async def delete_policy(request: web.Request) -> web.Response:
        ns, name = request.match_info["namespace"], request.match_info["name"]
        try:
            line = await policy.delete("NetworkPolicy", ns, name)
        except ConfigError as e:  # this host's policies are not weave's to change (Kubernetes mode)
            return _text(f"{e}\n", 409)
        if line is None:
            return _text(NOT_FOUND.format(resource="networkpolicies.networking.k8s.io", name=name), 404)
        return _text(line + "\n")

    @routes.delete("/policy/namespaces/{name}")
    async def delete_namespace(request: web.Request) -> web.Response:
        name = request.match_info["name"]
        try:
            line = await policy.delete("Namespace", "", name)
        except ConfigError as e:
            return _text(f"{e}\n", 409)
        if line is None:
            return _text(NOT_FOUND.format(resource="namespaces", name=name), 404)
        return _text(line + "\n")

    @routes.put("/policy/pods/{ident:.+}")
    async def put_pod(request: web.Request) -> web.Response:
        form = await read_form(request)
        labels: dict[str, str] = {}
        for item in form.getall("label", []):
            key, eq, value = item.partition("=")
            if not eq or not key:
                return _text(f"invalid label {item!r}: expected KEY=VALUE\n", 400)
            labels[key] = value
        ips = form.getall("ip", [])
        for ip in ips:
            try:
                ipaddress.IPv4Address(ip)
            except ValueError:
                return _text(f"invalid address {ip!r}: an IPv4 address is expected\n", 400)
        try:
            warning = await policy.put_pod(request.match_info["ident"], form.get("name", ""), labels, ips)
        except ValueError as e:
            return _text(f"{e}\n", 400)
        return _text(f"{warning}\n") if warning else web.Response(status=204)

    async def kube(request: web.Request, whole: bool) -> web.Response:
        try:
            body = json.loads(await request.read())
        except (ValueError, UnicodeDecodeError, RecursionError) as e:
            return _text(f"the body is not JSON: {e}\n", 400)
        try:
            taken, problem = await policy.kube_state(body, whole)
        except FeedError as e:
            return _text(f"{e}\n", 400)
        except ConfigError as e:
            return _text(f"{e}\n", 409)
        if not taken:
            return _text("out of step: send the whole state\n", 409)
        return _json({"InForce": not problem, "Problem": problem})

    @routes.put("/policy/kubernetes")
    async def kube_whole(request: web.Request) -> web.Response:
        return await kube(request, whole=True)

    @routes.patch("/policy/kubernetes")
    async def kube_patch(request: web.Request) -> web.Response:
        return await kube(request, whole=False)

    @routes.delete("/policy/pods/{ident:.+}")
    async def delete_pod(request: web.Request) -> web.Response:
        await policy.delete_pod(request.match_info["ident"])
        return web.Response(status=204)
