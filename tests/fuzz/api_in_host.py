"""The router's HTTP API fuzzed over loopback, from inside a simulated host where a real router runs.

Not collected on its own: ``test_http_api.py`` launches the router in a one-host test bed and runs this module
there with ``WEAVENET_FUZZ_API`` set (the host has no route out, so whatever ``/connect`` dials or the router
resolves goes nowhere). Routes are read from the app itself, so a route added later is fuzzed without a word
here.

Per request: an answer below 500, except the 5xx the API documents (``DELIBERATE_5XX``), complete within
``ANSWER_TIMEOUT`` (an event stream's answer is its headers and first event: the connection is then closed, as a
browser leaving the page does); per route: no traceback in the router's log; at the end the router still answers
and the web view's stream still takes a viewer (the streams closed above gave their places back).

The web view (``/ui/*``, on the API's listener by default) is also fuzzed beyond its routes: any method, any
path under ``/ui``, any query and body (``test_ui_any_method``), since its routes are all GET and aiohttp
answers the rest.
"""

from __future__ import annotations

import os
import re
import socket
import time
from pathlib import Path
from types import SimpleNamespace
from urllib.parse import quote, urlencode

import pytest
from hypothesis import given
from hypothesis import strategies as st

from tests.fuzz.budget import fuzz
from weavenet.api.http import ApiParts, build_app
from weavenet.api.ui_routes import WebView

API = os.environ.get("WEAVENET_FUZZ_API", "")
LOG = Path("/run/weave/weaver.log")
pytestmark = pytest.mark.skipif(not API, reason="run by test_http_api.py inside a simulated host")


def app_routes() -> list[tuple[str, str]]:
    """(method, path template) of every route of the read-write API with DNS, IPAM, network policy and the web
    view on (HEAD is GET's); the view where ``weave launch`` puts it by default, on the API's listener."""
    stub = SimpleNamespace()  # the routes are only listed, never called
    ui = WebView(hub=stub, listener="api", addr="127.0.0.1:6784")  # type: ignore[arg-type]
    parts = ApiParts(status=stub, router=stub, docker=stub, ipam=stub, dns=stub, policy=stub, ui=ui)  # type: ignore[arg-type]
    app = build_app(parts)
    return sorted(
        {(r.method, r.resource.canonical) for r in app.router.routes() if r.method != "HEAD" and r.resource is not None}
    )


ROUTES = app_routes()

# Answers the API gives on purpose: Weave's 500 for a template that fails to execute, 503 until ready, 500 for a
# status page whose subsystem is off.
DELIBERATE_5XX = {("GET", "/report"): {500}, ("GET", "/status"): {503}, ("GET", "/status/{sub}"): {500}}

# Known bugs whose fix is on its way from other work: (route, sweep case) -> reason. Each is a strict xfail of the
# sweep below (so it fails once fixed, and the entry goes), and its input class is left out of the random
# requests to that route. Empty: nothing known is pending.
KNOWN_BROKEN: dict[tuple[tuple[str, str], str], str] = {}

VALUES = st.sampled_from(
    [
        "10.32.0.9", "10.32.0.0", "0.0.0.0", "255.255.255.255", "127.0.0.1", "224.0.0.1", "10.32.0.9/0", "1.2.3",
        "24", "0", "32", "33", "-1", "99999999999999999999", "weave:expose", "_", "c1", "/proc/1/ns/net", "..",
        "", "a..b", "x" * 64, "true", "false", "status", "ipam", "dns", "peers", "targets", "connections",
        "{{.Router.Name}}", "{{range .}}", "{{template \"x\"}}", "{{.Nope.Nope}}", "{{", "weave.local.",
        "h1.weave.local", "ce:12:34:56:78:01", "%", "%zz", "\x00", "é", "\u202e", "\u00b2", "\u0664", "\uff11\uff12",
    ]
)  # fmt: skip
TEXT = st.one_of(VALUES, VALUES, st.text(max_size=30), st.binary(max_size=16).map(lambda b: b.decode("latin-1")))
RAW_BODIES = [b"\x80", b"peer=\xff\xfe", b"fqdn=a\xc3", b"%", b"=&=&", b"replace=true&peer=", b"{}"]
KEYS = st.sampled_from(["format", "check-alive", "noErrorOnUnknown", "fqdn", "skipNAT", "replace", "peer", "x"])


def _target(template: str, values: list[str]) -> str:
    parts, it = [], iter(values)
    for seg in template.split("/"):
        parts.append(quote(next(it), safe="") if seg.startswith("{") else seg)
    return "/".join(parts)


ANSWER_TIMEOUT = 30.0  # a whole answer (an event stream's first event) within this, else the route hangs
_LENGTH = re.compile(rb"\r\ncontent-length: *(\d+)", re.I)
_EVENT_STREAM = re.compile(rb"\r\ncontent-type: *text/event-stream", re.I)


def _request(method: str, target: str, body: bytes | None, ctype: str) -> tuple[int, bytes]:
    """(status, body) of one request; the body is read as far as the answer says it goes (its length, or to the
    close), an event stream's up to the end of its first event (the ``hello``), and then the connection closed."""
    head = f"{method} {target} HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n"
    if body is not None:
        head += f"Content-Type: {ctype}\r\nContent-Length: {len(body)}\r\n"
    host, port = API.removeprefix("http://").rsplit(":", 1)
    deadline = time.monotonic() + ANSWER_TIMEOUT
    data = b""

    def more(s: socket.socket) -> bool:
        """Read on; False at the close. Past the deadline the route hangs: that fails the test."""
        nonlocal data
        s.settimeout(max(deadline - time.monotonic(), 0.001))
        try:
            chunk = s.recv(65536)
        except TimeoutError as e:
            hang = f"{method} {target}: no complete answer in {ANSWER_TIMEOUT:.0f} s: {data[:300]!r}"
            raise AssertionError(hang) from e
        data += chunk
        return bool(chunk)

    with socket.create_connection((host, int(port)), timeout=ANSWER_TIMEOUT) as s:
        s.sendall(head.encode() + b"\r\n" + (body or b""))
        while b"\r\n\r\n" not in data and more(s):
            pass
        assert data[:7] == b"HTTP/1." and data[8:9] == b" ", data[:200]
        status = int(data[9:12])
        top, _, rest = data.partition(b"\r\n\r\n")
        if method == "HEAD" or status in (204, 304):
            return status, b""
        if _EVENT_STREAM.search(top):
            while not re.search(rb"event: hello\n.*\n\n", data.partition(b"\r\n\r\n")[2], re.S) and more(s):
                pass
            rest = data.partition(b"\r\n\r\n")[2]
            assert b"event: hello" in rest, f"{method} {target}: a stream without its first event: {rest[:300]!r}"
            return status, rest
        length = _LENGTH.search(top)
        while (length is None or len(data.partition(b"\r\n\r\n")[2]) < int(length.group(1))) and more(s):
            pass
    return status, data.partition(b"\r\n\r\n")[2]


@st.composite
def requests(draw: st.DrawFn, route: tuple[str, str]) -> tuple[str, bytes | None, str]:
    template = route[1]
    n = template.count("{")
    target = _target(template, draw(st.lists(TEXT, min_size=n, max_size=n)))
    query = draw(st.dictionaries(KEYS, TEXT, max_size=3))
    if query:
        target += "?" + urlencode(query)
    kind = draw(st.sampled_from(["none", "form", "form", "raw"]))
    if kind == "none":
        return target, None, ""
    if kind == "form":
        pairs = draw(st.lists(st.tuples(KEYS, TEXT), max_size=4))
        return target, urlencode(pairs).encode(), "application/x-www-form-urlencoded"
    ctype = draw(st.sampled_from(["application/x-www-form-urlencoded", "text/plain"]))
    body = draw(st.one_of(st.sampled_from(RAW_BODIES), st.binary(max_size=64)))
    if (route, "non-utf8-form") in KNOWN_BROKEN:
        body = body.decode(errors="replace").encode()
    return target, body, ctype


def _log_size() -> int:
    return LOG.stat().st_size if LOG.exists() else 0


def _new_log(since: int) -> str:
    if not LOG.exists():
        return ""
    with LOG.open("rb") as f:
        f.seek(since)
        return f.read().decode(errors="replace")


def _no_traceback(log: str) -> None:
    """A bad request may cost one short line (WARNING), never a traceback or an ERROR."""
    assert "Traceback" not in log and "\nERROR" not in "\n" + log, log[-2000:]


def _check(route: tuple[str, str], target: str, body: bytes | None, ctype: str) -> None:
    method, _ = route
    since = _log_size()
    status, answer = _request(method, target, body, ctype)
    allowed = DELIBERATE_5XX.get(route, set())
    assert status < 500 or status in allowed, f"{method} {target} {body!r}: {status} {answer[:300]!r}"
    if status in allowed:
        assert b"Server got itself in trouble" not in answer  # aiohttp's page for an exception we did not handle
    _no_traceback(_new_log(since))


@pytest.mark.parametrize("route", [pytest.param(r, id=f"{r[0]} {r[1]}") for r in ROUTES])
@given(data=st.data())
@fuzz(40)
def test_route(route: tuple[str, str], data: st.DataObject) -> None:
    _check(route, *data.draw(requests(route)))


FORM = "application/x-www-form-urlencoded"
SWEEP = {  # case -> (path value, query, body): the input classes every route must refuse cleanly
    "non-utf8-form": ("10.32.0.9", "", b"\x80"),
    "non-utf8-path": ("%80", "", None),
    "non-utf8-query": ("10.32.0.9", "fqdn=%FF&format=%80", None),
    "nul": ("%00", "x=%00", b"x=%00"),
    "long": ("9" * 4000, "", None),
    "empty": ("", "", b""),
}


def _sweep_params() -> list[object]:
    out = []
    for route in ROUTES:
        for case in sorted(SWEEP):
            reason = KNOWN_BROKEN.get((route, case))
            marks = [pytest.mark.xfail(strict=True, reason=reason)] if reason else []
            out.append(pytest.param(route, case, id=f"{route[0]} {route[1]} {case}", marks=marks))
    return out


@pytest.mark.parametrize(("route", "case"), _sweep_params())
def test_route_sweep(route: tuple[str, str], case: str) -> None:
    """The same hostile inputs for every route, so a known class of bug is found whatever the budget."""
    value, query, body = SWEEP[case]
    target = "/".join(value if seg.startswith("{") else seg for seg in route[1].split("/"))
    _check(route, target + ("?" + query if query else ""), body, FORM)


def _raw(data: bytes) -> bytes:
    host, port = API.removeprefix("http://").rsplit(":", 1)
    with socket.create_connection((host, int(port)), timeout=30) as s:
        s.sendall(data)
        s.shutdown(socket.SHUT_WR)  # the end of what we send: a server waiting for more sees EOF
        out = b""
        while chunk := s.recv(65536):
            out += chunk
    return out


RAW_SEEDS = [
    b"GET /status HTTP/1.1\r\nHost: x\r\n\r\n",
    b"POST /connect HTTP/1.1\r\nHost: x\r\nContent-Type: application/x-www-form-urlencoded\r\n"
    b"Content-Length: 12\r\n\r\npeer=1.2.3.4",
    b"PUT /name/c1/10.2.1.1?fqdn=a.weave.local HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n",
]


@given(
    st.sampled_from(RAW_SEEDS),
    st.lists(st.tuples(st.integers(0, 200), st.integers(0, 255)), max_size=4),
    st.integers(0, 200),
    st.binary(max_size=20),
)
@fuzz(100)
def test_raw_requests(seed: bytes, flips: list[tuple[int, int]], cut: int, tail: bytes) -> None:
    """Mangled request lines, headers and bodies: aiohttp's parser answers 4xx or closes; never a 5xx."""
    data = bytearray(seed)
    for pos, val in flips:
        data[pos % len(data)] = val
    out = _raw(bytes(data[: max(cut, 1)] if cut < len(data) else data) + tail)
    if out:  # a mangled version may be answered in kind ("HTTP/0.9 404")
        version, _, rest = out.partition(b" ")
        assert version.startswith(b"HTTP/") and int(rest[:3]) < 500, out[:300]


def test_a_bad_request_line_costs_no_traceback() -> None:
    since = _log_size()
    out = _raw(b"GET /st\xe9tus HTTP/1.1\r\nHost: x\r\n\r\n")
    assert out == b"" or (out[:7] == b"HTTP/1." and 400 <= int(out[9:12]) < 500), out[:300]
    _no_traceback(_new_log(since))


UI_METHODS = ["GET", "HEAD", "POST", "PUT", "DELETE", "PATCH", "OPTIONS", "TRACE", "PROPFIND", "BREW", "get"]
UI_SEGMENTS = st.one_of(
    st.sampled_from(
        [
            "", "ui", "static", "events", "snapshot", "url", "index.html", "app.js", "graph.js", "style.css", "..",
            ".", "%2e%2e", "%2F", "%00", "%80", "%", "static%2fapp.js", "app.js%00", "x" * 300, "\u00e9",
        ]
    ),
    st.text(max_size=12).map(lambda t: quote(t, safe="")),
)  # fmt: skip


@st.composite
def ui_requests(draw: st.DrawFn) -> tuple[str, str, bytes | None, str]:
    """Any method (a token of our own too) on any path under ``/ui``, with any query and body."""
    method = draw(st.one_of(st.sampled_from(UI_METHODS), st.text("ABCDEFGHIJKLMNOPQRSTUVWXYZ", min_size=1, max_size=8)))
    target = "/ui" + "".join("/" + seg for seg in draw(st.lists(UI_SEGMENTS, max_size=4)))
    query = draw(st.dictionaries(KEYS, TEXT, max_size=3))
    if query:
        target += "?" + urlencode(query)
    kind = draw(st.sampled_from(["none", "form", "raw"]))
    if kind == "none":
        return method, target, None, ""
    if kind == "form":
        return method, target, urlencode(draw(st.lists(st.tuples(KEYS, TEXT), max_size=4))).encode(), FORM
    body = draw(st.one_of(st.sampled_from(RAW_BODIES), st.binary(max_size=64)))
    return method, target, body, draw(st.sampled_from([FORM, "text/plain", "text/event-stream"]))


@given(ui_requests())
@fuzz(150)
def test_ui_any_method(req: tuple[str, str, bytes | None, str]) -> None:
    """The web view's paths with whatever a client sends: answered (a GET of the view) or refused with a 4xx."""
    method, target, body, ctype = req
    since = _log_size()
    status, answer = _request(method, target, body, ctype)
    assert status < 500, f"{method} {target} {body!r}: {status} {answer[:300]!r}"
    _no_traceback(_new_log(since))


@pytest.mark.parametrize("method", [m for m in UI_METHODS if m not in ("GET", "HEAD")])
def test_ui_refuses_every_method_but_get(method: str) -> None:
    """Read-only by construction (``api/ui_routes.py``): every other method on every route of the view is a 4xx."""
    for path in ("/ui", "/ui/", "/ui/static/app.js", "/ui/snapshot", "/ui/events", "/ui/url"):
        status, answer = _request(method, path, b"x=1", FORM)
        assert 400 <= status < 500, f"{method} {path}: {status} {answer[:200]!r}"


def test_ui_streams_closed_give_their_places_back() -> None:
    """More event streams opened and closed one after the other, within a tick, than the view takes viewers at
    once: each is answered (a closed one does not count), so a page reloaded over and over is never refused."""
    for i in range(80):
        status, answer = _request("GET", "/ui/events", None, "")
        assert status == 200, f"stream {i}: {status} {answer[:200]!r}"


def test_the_router_still_answers() -> None:
    status, answer = _request("GET", "/status", None, "")
    assert status == 200, answer
    status, answer = _request("GET", "/ui/events", None, "")
    assert status == 200 and b"event: hello" in answer, answer[:300]


def test_every_route_is_fuzzed() -> None:
    """The parametrization above comes from the app: nothing to keep in step by hand."""
    assert ROUTES and len(ROUTES) == len(set(ROUTES))
