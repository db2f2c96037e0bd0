"""The CLI's HTTP client for the router API, with Weave's ``http_call`` semantics.

2xx: print the body, exit 0; 404: nothing printed, exit 4 (Weave uses it to mean "feature disabled");
anything else: the body on stderr, exit 1. Uses only the standard library so ``weave status`` starts fast.
"""

from __future__ import annotations

import http.client
import socket
import sys
from dataclasses import dataclass
from urllib.parse import urlencode

from weavenet.config import http_addr_default

CONNECT_TIMEOUT = 3.0
NOT_RUNNING = "weave is not running. Have you launched it?"


class RouterUnreachable(Exception):
    """Nothing answers on the API address."""


@dataclass
class Reply:
    status: int
    body: str


class _UnixConnection(http.client.HTTPConnection):
    def __init__(self, path: str, timeout: float) -> None:
        super().__init__("localhost", timeout=timeout)
        self._path = path

    def connect(self) -> None:
        sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        sock.settimeout(self.timeout)
        sock.connect(self._path)
        self.sock = sock


def request(
    method: str,
    path: str,
    form: list[tuple[str, str]] | None = None,
    headers: dict[str, str] | None = None,
    addr: str | None = None,
    timeout: float | None = None,
    body: str | None = None,
) -> Reply:
    """One request: a form, or a raw ``body`` (text), or neither."""
    addr = addr or http_addr_default()
    conn: http.client.HTTPConnection
    if addr.startswith("/"):
        conn = _UnixConnection(addr, CONNECT_TIMEOUT)
    else:
        host, _, port = addr.rpartition(":")
        conn = http.client.HTTPConnection(host or "127.0.0.1", int(port), timeout=CONNECT_TIMEOUT)
    hdrs = dict(headers or {})
    if form is not None:
        body = urlencode(form)
        hdrs["Content-Type"] = "application/x-www-form-urlencoded"
    elif body is not None:
        hdrs.setdefault("Content-Type", "text/plain; charset=utf-8")
    try:
        conn.connect()
        if conn.sock is not None:
            conn.sock.settimeout(timeout)
        conn.request(method, path, body=body.encode() if body is not None else None, headers=hdrs)
        resp = conn.getresponse()
        return Reply(resp.status, resp.read().decode(errors="replace"))
    except (TimeoutError, ConnectionRefusedError, FileNotFoundError, OSError) as e:
        raise RouterUnreachable(str(e)) from e
    finally:
        conn.close()


def call(method: str, path: str, form: list[tuple[str, str]] | None = None, **kw: object) -> int:
    """Weave's ``call_weave``: print per the status code, return the exit code."""
    try:
        reply = request(method, path, form, **kw)  # type: ignore[arg-type]
    except RouterUnreachable:
        print(NOT_RUNNING, file=sys.stderr)
        return 1
    if 200 <= reply.status < 300:
        sys.stdout.write(reply.body)
        return 0
    if reply.status == 404:
        return 4
    sys.stderr.write(reply.body if reply.body.endswith("\n") or not reply.body else reply.body + "\n")
    return 1
