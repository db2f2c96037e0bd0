"""A stand-in for the Kubernetes API server, for tests: no API server can run on these machines.

It serves recorded API objects (Nodes, Namespaces, Pods, NetworkPolicies, ConfigMaps, as a real API server
returns them) over HTTPS with a bearer token, the way a pod's service account reaches the real one, and does
what Weave's and weavenet's pods rely on, as the real server does it:

* list (``kind: XList`` with the collection's ``resourceVersion``) and watch (``?watch=true``: newline-delimited
  ``{"type", "object"}`` events after the given ``resourceVersion``, ended after ``timeoutSeconds``; a version
  older than the history kept is answered by an ``ERROR`` event with a ``410 Expired`` Status, as etcd's
  compaction makes the real one answer);
* get, create (``409 AlreadyExists``), replace with optimistic locking (``409 Conflict`` when the
  ``resourceVersion`` sent is not the stored one), delete;
* a strategic merge patch of a node's status (conditions merged by ``type``).

Every change gets the next ``resourceVersion`` and an event. Tests change objects through :class:`FakeKubeAPI`
(as kubelet or kubectl would), read what was written (``requests``: each call with its body), and inject bad
answers (:meth:`FakeKubeAPI.fault`): an HTTP error with a Status, a body that is not JSON, a watch event that is
not JSON, an ``ERROR 410`` event, a connection closed mid-answer.

The server runs in a thread of its own with its own event loop, on a socket the caller may create in any
network namespace (a simulated host's), so routers in other namespaces reach it over the test bed's underlay.
"""

from __future__ import annotations

import asyncio
import contextlib
import copy
import json
import re
import socket
import ssl
import subprocess
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from aiohttp import web

GROUPS = {  # plural -> (API path prefix, apiVersion, kind, namespaced)
    "nodes": ("/api/v1", "v1", "Node", False),
    "namespaces": ("/api/v1", "v1", "Namespace", False),
    "pods": ("/api/v1", "v1", "Pod", True),
    "configmaps": ("/api/v1", "v1", "ConfigMap", True),
    "networkpolicies": ("/apis/networking.k8s.io/v1", "networking.k8s.io/v1", "NetworkPolicy", True),
}
KIND_PLURAL = {v[2]: k for k, v in GROUPS.items()}
GARBAGE = b'{"kind": "List", "items": [garb'  # a body cut short, or from something that is no API server
HISTORY = 10_000
# events kept for watches; older versions get 410


def status(code: int, reason: str, message: str, details: dict[str, Any] | None = None) -> dict[str, Any]:
    """A ``metav1.Status`` as the API server writes it."""
    out: dict[str, Any] = {
        "kind": "Status",
        "apiVersion": "v1",
        "metadata": {},
        "status": "Failure",
        "message": message,
        "reason": reason,
        "code": code,
    }
    if details is not None:
        out["details"] = details
    return out


@dataclass
class Fault:
    """One bad answer, for the first request matching ``method`` and ``path`` (a regular expression searched in
    the path with its query). ``kind``: ``status`` (HTTP ``code`` with a Status body), ``plain`` (HTTP ``code``
    with a text body and no content type), ``garbage`` (200, a body that is not JSON), ``garbage-event`` (a
    watch whose first event is not JSON), ``gone`` (a watch answered by an ERROR 410 event), ``drop`` (the
    connection closed with no answer)."""

    method: str
    path: str
    kind: str
    code: int = 500
    times: int = 1
    skip: int = 0  # matching requests served normally before this fault applies


BODY: web.RequestKey[Any] = web.RequestKey("body", object)


FAULT: web.RequestKey[Fault] = web.RequestKey("fault", Fault)


@dataclass
class Request:
    method: str
    path: str
    query: dict[str, str]
    body: Any


@dataclass
class _Gate:
    method: str
    path: str
    n: int
    timeout: float
    arrived: int = 0
    open: asyncio.Event = field(default_factory=asyncio.Event)


@dataclass
class _Store:
    objects: dict[tuple[str, str, str], dict[str, Any]] = field(default_factory=dict)
    version: int = 1000
    history: list[tuple[int, str, str, dict[str, Any]]] = field(default_factory=list)  # (rv, plural, type, obj)
    oldest: int = 1000  # the oldest version a watch may start from


class FakeKubeAPI:
    """The server (see the module docstring). ``start()`` it on a socket, stop it with ``close()``."""

    def __init__(self, token: str = "test-token") -> None:
        self.token = token
        self._store = _Store()
        self._lock = threading.RLock()
        self._faults: list[Fault] = []
        self._gates: list[_Gate] = []
        self.requests: list[Request] = []
        self.uid = 0
        self._loop: asyncio.AbstractEventLoop | None = None
        self._changed: asyncio.Condition | None = None
        self._thread: threading.Thread | None = None
        self._runner: web.AppRunner | None = None
        self.url = ""

    # -- objects (the tests' side) ------------------------------------------------------------------------------

    def _key(self, obj: dict[str, Any]) -> tuple[str, str, str]:
        plural = KIND_PLURAL[obj["kind"]]
        meta = obj["metadata"]
        return plural, meta.get("namespace", "") if GROUPS[plural][3] else "", meta["name"]

    def _bump(self, plural: str, kind: str, obj: dict[str, Any]) -> None:
        st = self._store
        st.version += 1
        obj["metadata"]["resourceVersion"] = str(st.version)
        st.history.append((st.version, plural, kind, copy.deepcopy(obj)))
        if len(st.history) > HISTORY:
            drop = len(st.history) - HISTORY
            st.oldest = st.history[drop - 1][0]
            del st.history[:drop]
        self._notify()

    def _notify(self) -> None:
        loop, cond = self._loop, self._changed
        if loop is None or cond is None:
            return

        async def wake() -> None:
            async with cond:
                cond.notify_all()

        if loop.is_running():
            asyncio.run_coroutine_threadsafe(wake(), loop)

    def put(self, obj: dict[str, Any]) -> dict[str, Any]:
        """Create or replace an object (as kubectl apply would); returns the stored copy."""
        obj = copy.deepcopy(obj)
        plural, _, _ = key = self._key(obj)
        obj.setdefault("apiVersion", GROUPS[plural][1])
        meta = obj.setdefault("metadata", {})
        with self._lock:
            old = self._store.objects.get(key)
            if old is None:
                self.uid += 1
                meta.setdefault("uid", f"00000000-0000-4000-8000-{self.uid:012d}")
                meta.setdefault("creationTimestamp", time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()))
            else:
                meta["uid"] = old["metadata"]["uid"]
                meta["creationTimestamp"] = old["metadata"].get("creationTimestamp")
            self._store.objects[key] = obj
            self._bump(plural, "ADDED" if old is None else "MODIFIED", obj)
            return copy.deepcopy(obj)

    def delete(self, kind: str, name: str, namespace: str = "") -> bool:
        plural = KIND_PLURAL[kind]
        key = (plural, namespace if GROUPS[plural][3] else "", name)
        with self._lock:
            obj = self._store.objects.pop(key, None)
            if obj is None:
                return False
            self._bump(plural, "DELETED", obj)
            return True

    def get(self, kind: str, name: str, namespace: str = "") -> dict[str, Any] | None:
        plural = KIND_PLURAL[kind]
        with self._lock:
            obj = self._store.objects.get((plural, namespace if GROUPS[plural][3] else "", name))
            return copy.deepcopy(obj) if obj is not None else None

    def list(self, kind: str) -> list[dict[str, Any]]:
        plural = KIND_PLURAL[kind]
        with self._lock:
            return [copy.deepcopy(o) for (pl, _, _), o in sorted(self._store.objects.items()) if pl == plural]

    def compact(self) -> None:
        """Forget the event history, as etcd's compaction does: watches from an older version get 410."""
        with self._lock:
            self._store.oldest = self._store.version
            self._store.history.clear()

    def fault(self, method: str, path: str, kind: str, code: int = 500, times: int = 1, skip: int = 0) -> None:
        with self._lock:
            self._faults.append(Fault(method, path, kind, code, times, skip))

    def gate(self, method: str, path: str, n: int = 2, timeout: float = 20.0) -> None:
        """Hold the next ``n`` requests matching ``method`` and ``path`` until all ``n`` have arrived (or
        ``timeout``), then serve them in the order they came: two writers that read the same version both write
        at it, a race the real server would also have to settle."""
        with self._lock:
            self._gates.append(_Gate(method, path, n, timeout))

    def faults_left(self) -> int:
        with self._lock:
            return sum(f.times for f in self._faults)

    def calls(self, method: str, path: str = "") -> list[Request]:
        with self._lock:
            return [r for r in self.requests if r.method == method and re.search(path, r.path)]

    def _take_fault(self, method: str, target: str) -> Fault | None:
        with self._lock:
            for f in self._faults:
                if f.method == method and re.search(f.path, target):
                    if f.skip > 0:
                        f.skip -= 1
                        return None
                    f.times -= 1
                    if f.times <= 0:
                        self._faults.remove(f)
                    return f
        return None

    # -- serving ------------------------------------------------------------------------------------------------

    def start(self, sock: socket.socket, ssl_context: ssl.SSLContext | None = None) -> str:
        """Serve on ``sock`` (bound and listening) in a thread; returns the URL."""
        ready = threading.Event()
        errors: list[BaseException] = []

        def main() -> None:
            loop = asyncio.new_event_loop()
            self._loop = loop
            try:
                loop.run_until_complete(self._serve(sock, ssl_context))
            except BaseException as e:
                errors.append(e)
                ready.set()
                return
            ready.set()
            loop.run_forever()
            loop.close()

        self._thread = threading.Thread(target=main, name="fake-kube-api", daemon=True)
        self._thread.start()
        ready.wait(10)
        if errors:
            raise errors[0]
        host, port = sock.getsockname()[:2]
        self.url = f"{'https' if ssl_context else 'http'}://{host}:{port}"
        return self.url

    async def _serve(self, sock: socket.socket, ssl_context: ssl.SSLContext | None) -> None:
        self._changed = asyncio.Condition()
        app = web.Application(middlewares=[self._middleware])
        app.router.add_route("*", "/{path:.*}", self._route)
        self._runner = web.AppRunner(app, handle_signals=False, access_log=None, shutdown_timeout=1.0)
        await self._runner.setup()
        await web.SockSite(self._runner, sock, ssl_context=ssl_context).start()

    async def _stop(self) -> None:
        if self._runner is not None:
            await self._runner.cleanup()

    def close(self) -> None:
        loop = self._loop
        if loop is not None and loop.is_running():
            with contextlib.suppress(Exception):
                asyncio.run_coroutine_threadsafe(self._stop(), loop).result(15)
            loop.call_soon_threadsafe(loop.stop)
        if self._thread is not None:
            self._thread.join(10)

    @web.middleware
    async def _middleware(self, request: web.Request, handler: Callable[..., Any]) -> web.StreamResponse:
        body: Any = None
        if request.can_read_body:
            raw = await request.read()
            try:
                body = json.loads(raw)
            except ValueError:
                body = raw.decode(errors="replace")
        with self._lock:
            self.requests.append(Request(request.method, request.path, dict(request.query), body))
        if request.headers.get("Authorization") != f"Bearer {self.token}":
            return _json(status(401, "Unauthorized", "Unauthorized"), 401)
        request[BODY] = body
        await self._pass_gate(request.method, request.path_qs)
        fault = self._take_fault(request.method, request.path_qs)
        if fault is not None:
            request[FAULT] = fault
            if fault.kind == "status":
                return _json(status(fault.code, "InternalError", f"injected fault {fault.code}"), fault.code)
            if fault.kind == "plain":
                return web.Response(status=fault.code, body=b"injected fault", content_type="text/plain")
            if fault.kind == "garbage":
                return web.Response(
                    status=200, body=b'{"kind": "NodeList", "items": [garb', content_type="application/json"
                )
            if fault.kind == "drop":
                assert request.transport is not None
                request.transport.close()
                return web.Response(status=500)  # never sent: the connection is gone
        resp: web.StreamResponse = await handler(request)
        return resp

    async def _pass_gate(self, method: str, target: str) -> None:
        with self._lock:
            gate = next((g for g in self._gates if g.method == method and re.search(g.path, target)), None)
            if gate is None:
                return
            gate.arrived += 1
            if gate.arrived >= gate.n:
                self._gates.remove(gate)
        if gate.arrived >= gate.n:
            gate.open.set()
        else:
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(gate.open.wait(), gate.timeout)

    def _parse(self, path: str) -> tuple[str, str, str, str] | None:
        """(plural, namespace, name, subresource) of an API path, or None."""
        for prefix in ("/api/v1", "/apis/networking.k8s.io/v1"):
            if not path.startswith(prefix + "/"):
                continue
            parts = path[len(prefix) + 1 :].split("/")
            ns = ""
            if parts[0] == "namespaces" and len(parts) >= 3:
                ns, parts = parts[1], parts[2:]
            plural, rest = parts[0], parts[1:]
            if plural not in GROUPS or GROUPS[plural][0] != prefix:
                return None
            return plural, ns, rest[0] if rest else "", rest[1] if len(rest) > 1 else ""
        return None

    async def _route(self, request: web.Request) -> web.StreamResponse:
        parsed = self._parse(request.path)
        if parsed is None:
            return _json(status(404, "NotFound", "the server could not find the requested resource"), 404)
        plural, ns, name, sub = parsed
        if not name:
            if request.method == "GET":
                if request.query.get("watch") in ("true", "1"):
                    return await self._watch(request, plural, ns)
                return self._list(plural, ns)
            if request.method == "POST":
                return self._create(plural, ns, request[BODY])
        elif request.method == "GET" and not sub:
            obj = self._get(plural, ns, name)
            return _json(obj) if obj is not None else _not_found(plural, name)
        elif request.method == "PUT" and not sub:
            return self._replace(plural, ns, name, request[BODY])
        elif request.method == "PATCH" and plural == "nodes" and sub == "status":
            return self._patch_status(name, request[BODY], request.headers.get("Content-Type", ""))
        elif request.method == "DELETE" and not sub:
            obj = self._get(plural, ns, name)
            if obj is None or not self.delete(GROUPS[plural][2], name, ns):
                return _not_found(plural, name)
            return _json(obj)
        return _json(status(405, "MethodNotAllowed", f"{request.method} is not supported here"), 405)

    def _get(self, plural: str, ns: str, name: str) -> dict[str, Any] | None:
        with self._lock:
            obj = self._store.objects.get((plural, ns if GROUPS[plural][3] else "", name))
            return copy.deepcopy(obj) if obj is not None else None

    def _list(self, plural: str, ns: str) -> web.Response:
        _, api_version, kind, _ = GROUPS[plural]
        with self._lock:
            items = [
                copy.deepcopy(o) for (pl, ons, _), o in sorted(self._store.objects.items()) if pl == plural
                if not ns or ons == ns
            ]  # fmt: skip
            version = self._store.version
        return _json({"kind": f"{kind}List", "apiVersion": api_version,
                      "metadata": {"resourceVersion": str(version)}, "items": items})  # fmt: skip

    def _create(self, plural: str, ns: str, body: Any) -> web.Response:
        if not isinstance(body, dict) or not isinstance(body.get("metadata"), dict):
            return _json(status(400, "BadRequest", "the body is not an object"), 400)
        _, api_version, kind, namespaced = GROUPS[plural]
        body = {**body, "kind": kind, "apiVersion": api_version}
        if namespaced:
            body["metadata"] = {**body["metadata"], "namespace": ns}
        name = body["metadata"].get("name", "")
        with self._lock:
            if self._get(plural, ns, name) is not None:
                details = {"name": name, "kind": plural}
                return _json(status(409, "AlreadyExists", f'{plural} "{name}" already exists', details), 409)
            return _json(self.put(body), 201)

    def _replace(self, plural: str, ns: str, name: str, body: Any) -> web.Response:
        if not isinstance(body, dict) or not isinstance(body.get("metadata"), dict):
            return _json(status(400, "BadRequest", "the body is not an object"), 400)
        _, api_version, kind, namespaced = GROUPS[plural]
        with self._lock:
            old = self._get(plural, ns, name)
            if old is None:
                return _not_found(plural, name)
            if body["metadata"].get("resourceVersion") != old["metadata"]["resourceVersion"]:
                message = (
                    f'Operation cannot be fulfilled on {plural} "{name}": the object has been modified; '
                    "please apply your changes to the latest version and try again"
                )
                return _json(status(409, "Conflict", message, {"name": name, "kind": plural}), 409)
            new = {**body, "kind": kind, "apiVersion": api_version}
            new["metadata"] = {**body["metadata"], "name": name, **({"namespace": ns} if namespaced else {})}
            return _json(self.put(new))

    def _patch_status(self, name: str, patch: Any, content_type: str) -> web.Response:
        if "strategic-merge-patch" not in content_type and "merge-patch" not in content_type:
            return _json(status(415, "UnsupportedMediaType", f"unsupported patch type {content_type}"), 415)
        if not isinstance(patch, dict):
            return _json(status(400, "BadRequest", "the patch is not an object"), 400)
        with self._lock:
            node = self._get("nodes", "", name)
            if node is None:
                return _not_found("nodes", name)
            st = node.setdefault("status", {})
            for k, v in (patch.get("status") or {}).items():
                if k == "conditions" and isinstance(v, list):
                    conditions = {c.get("type"): c for c in st.get("conditions", [])}
                    for c in v:
                        conditions[c.get("type")] = {**conditions.get(c.get("type"), {}), **c}
                    st["conditions"] = list(conditions.values())
                else:
                    st[k] = v
            return _json(self.put(node))

    async def _watch(self, request: web.Request, plural: str, ns: str) -> web.StreamResponse:
        resp = web.StreamResponse(headers={"Content-Type": "application/json"})
        await resp.prepare(request)
        try:
            await self._stream(request, resp, plural, ns)
        except ConnectionResetError:  # the watcher went away
            pass
        return resp

    async def _stream(self, request: web.Request, resp: web.StreamResponse, plural: str, ns: str) -> None:
        assert self._changed is not None
        timeout = float(request.query.get("timeoutSeconds", "1800"))
        deadline = time.monotonic() + timeout
        since_text = request.query.get("resourceVersion", "")
        fault: Fault | None = request.get(FAULT)
        if fault is None:
            fault = self._take_fault("WATCH", request.path_qs)
        with self._lock:
            oldest, current = self._store.oldest, self._store.version
        if fault is not None and fault.kind == "garbage-event":
            await resp.write(b'{"type": "ADDED", "object": {"kind": "Pod", "metadata": {"name": \n')
            return
        since = int(since_text) if since_text.isdigit() else None
        if (fault is not None and fault.kind == "gone") or (since is not None and since < oldest):
            message = f"too old resource version: {since_text} ({current})"
            await resp.write(_line({"type": "ERROR", "object": status(410, "Expired", message)}))
            return
        if since is None:  # no version: the current objects as ADDED, then changes
            with self._lock:
                for (pl, ons, _), o in sorted(self._store.objects.items()):
                    if pl == plural and (not ns or ons == ns):
                        await resp.write(_line({"type": "ADDED", "object": o}))
            since = current
        while True:
            with self._lock:
                events = [(rv, t, o) for rv, pl, t, o in self._store.history if rv > since and pl == plural]
            for rv, kind, obj in events:
                if not ns or obj["metadata"].get("namespace") == ns:
                    await resp.write(_line({"type": kind, "object": obj}))
                since = rv
            left = deadline - time.monotonic()
            if left <= 0:
                return
            async with self._changed:
                try:
                    await asyncio.wait_for(self._changed.wait(), min(left, 1.0))
                except TimeoutError:
                    pass


def _line(obj: Any) -> bytes:
    return json.dumps(obj).encode() + b"\n"


def _json(obj: Any, code: int = 200) -> web.Response:
    return web.Response(status=code, body=json.dumps(obj).encode(), content_type="application/json")


def _not_found(plural: str, name: str) -> web.Response:
    return _json(status(404, "NotFound", f'{plural} "{name}" not found', {"name": name, "kind": plural}), 404)


# -- TLS and the pod's service account ------------------------------------------------------------------------------


@dataclass(frozen=True)
class Tls:
    ca: Path
    cert: Path
    key: Path

    def server_context(self) -> ssl.SSLContext:
        ctx = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
        ctx.load_cert_chain(self.cert, self.key)
        return ctx


def make_tls(directory: Path, addresses: list[str]) -> Tls:
    """A CA and a server certificate for these IP addresses, made with the ``openssl`` command."""
    directory.mkdir(parents=True, exist_ok=True)
    ca, ca_key = directory / "ca.crt", directory / "ca.key"
    cert, key, csr = directory / "server.crt", directory / "server.key", directory / "server.csr"
    ext = directory / "san.ext"
    ext.write_text("subjectAltName=" + ",".join(f"IP:{a}" for a in addresses) + "\n")
    ec = ["-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1", "-nodes"]
    for argv in (
        ["openssl", "req", "-x509", *ec, "-keyout", ca_key, "-out", ca, "-days", "2", "-subj", "/CN=test-ca"],
        ["openssl", "req", *ec, "-keyout", key, "-out", csr, "-subj", "/CN=kube-apiserver"],
        ["openssl", "x509", "-req", "-in", csr, "-CA", ca, "-CAkey", ca_key, "-CAcreateserial", "-out", cert,
         "-days", "2", "-extfile", ext],
    ):  # fmt: skip
        subprocess.run([str(a) for a in argv], check=True, capture_output=True, timeout=60)
    return Tls(ca, cert, key)


def write_service_account(directory: Path, token: str, ca: Path, namespace: str = "kube-system") -> Path:
    """What kubelet mounts at ``/var/run/secrets/kubernetes.io/serviceaccount``."""
    directory.mkdir(parents=True, exist_ok=True)
    (directory / "token").write_text(token)
    (directory / "ca.crt").write_bytes(ca.read_bytes())
    (directory / "namespace").write_text(namespace)
    return directory


def listening_socket(host: str = "127.0.0.1", port: int = 0) -> socket.socket:
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.bind((host, port))
    sock.listen(128)
    sock.setblocking(False)
    return sock


def recorded(directory: Path) -> Iterator[dict[str, Any]]:
    """The objects of a directory of recorded API answers: each file one object or a ``List``, sorted by name."""
    for path in sorted(directory.glob("*.json")):
        doc = json.loads(path.read_text())
        yield from doc["items"] if doc.get("kind", "").endswith("List") else [doc]
