"""The router's HTTP API fuzzed over loopback, from inside a simulated host where a real router runs.

Not collected on its own: ``test_http_api.py`` launches the router in a one-host test bed and runs this module
there with ``WEAVENET_FUZZ_API`` set (the host has no route out, so whatever ``/connect`` dials or the router
resolves goes nowhere). Routes are read from the app itself, so a route added later is fuzzed without a word
here.

Per request: an answer below 500, except the 5xx the API documents (``DELIBERATE_5XX``); per route: no
traceback in the router's log; at the end the router still answers.
"""

from __future__ import annotations

import os
import socket
from pathlib import Path
from types import SimpleNamespace
from urllib.parse import quote, urlencode

import pytest
from hypothesis import given
from hypothesis import strategies as st

from tests.fuzz.budget import fuzz
from weavenet.api.http import ApiParts, build_app

API = os.environ.get("WEAVENET_FUZZ_API", "")
LOG = Path("/run/weave/weaver.log")
pytestmark = pytest.mark.skipif(not API, reason="run by test_http_api.py inside a simulated host")


def app_routes() -> list[tuple[str, str]]:
    """(method, path template) of every route of the read-write API with DNS, IPAM and network policy on (HEAD is
    GET's)."""
    stub = SimpleNamespace()  # the routes are only listed, never called
    parts = ApiParts(status=stub, router=stub, docker=stub, ipam=stub, dns=stub, policy=stub)  # type: ignore[arg-type]
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


def _request(method: str, target: str, body: bytes | None, ctype: str) -> tuple[int, bytes]:
    head = f"{method} {target} HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n"
    if body is not None:
        head += f"Content-Type: {ctype}\r\nContent-Length: {len(body)}\r\n"
    host, port = API.removeprefix("http://").rsplit(":", 1)
    with socket.create_connection((host, int(port)), timeout=30) as s:
        s.sendall(head.encode() + b"\r\n" + (body or b""))
        data = b""
        while chunk := s.recv(65536):
            data += chunk
    assert data[:7] == b"HTTP/1." and data[8:9] == b" ", data[:200]
    return int(data[9:12]), data.partition(b"\r\n\r\n")[2]


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


def test_the_router_still_answers() -> None:
    status, answer = _request("GET", "/status", None, "")
    assert status == 200, answer


def test_every_route_is_fuzzed() -> None:
    """The parametrization above comes from the app: nothing to keep in step by hand."""
    assert ROUTES and len(ROUTES) == len(set(ROUTES))
