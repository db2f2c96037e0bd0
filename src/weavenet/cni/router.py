"""The router's HTTP API as the CNI plugins use it: allocate, release, look up, expose, status.

The router listens on ``WEAVE_HTTP_ADDR`` (``127.0.0.1:6784``, or an absolute path for a unix socket), as for
Weave's plugin. One request per connection, HTTP/1.1 with ``Connection: close``, over a plain socket: the
standard library's ``http.client`` drags in ``email`` and ``ssl`` and costs the plugin more start-up time than the
whole exchange. Allocation waits for the IPAM ring (consensus among the peers), so requests may take long; they
give up after ``WEAVE_CNI_TIMEOUT`` seconds (below the 2 minutes kubelet gives a sandbox), and the runtime's DEL
then releases whatever the router allocated meanwhile.
"""

from __future__ import annotations

import _socket

from weavenet.cni.spec import INTERNAL, NOT_AVAILABLE, TRY_AGAIN_LATER, CniError, fmt_cidr, parse_cidr

TYPE_CHECKING = False
if TYPE_CHECKING:
    from collections.abc import Mapping

DEFAULT_ADDR = "127.0.0.1:6784"
CONNECT_TIMEOUT = 3.0
DEFAULT_TIMEOUT = 110.0
MAX_REPLY = 1 << 20
NO_ADDRESSES = "Delete: no addresses for"


class Unreachable(Exception):
    """Nothing answers on the router's address (or it stopped answering)."""


def _connect(addr: str, timeout: float) -> _socket.socket:
    if addr.startswith("/"):
        s = _socket.socket(_socket.AF_UNIX, _socket.SOCK_STREAM)
        target: str | tuple[str, int] = addr
    else:
        host, _, port = addr.rpartition(":")
        target = (host.strip("[]") or "127.0.0.1", int(port))
        s = _socket.socket(_socket.AF_INET6 if ":" in host else _socket.AF_INET, _socket.SOCK_STREAM)
    s.settimeout(CONNECT_TIMEOUT)
    try:
        s.connect(target)
    except OSError:
        s.close()
        raise
    s.settimeout(timeout)
    return s


def _dechunk(body: bytes) -> bytes:
    out, rest = [], body
    while rest:
        size_line, _, rest = rest.partition(b"\r\n")
        size = int(size_line.split(b";")[0] or b"0", 16)
        if size == 0:
            break
        out.append(rest[:size])
        rest = rest[size + 2 :]
    return b"".join(out)


def request(method: str, path: str, addr: str, timeout: float = DEFAULT_TIMEOUT) -> tuple[int, str]:
    """(status, body) of one request; :class:`Unreachable` if there is no answer."""
    try:
        s = _connect(addr, timeout)
    except (OSError, ValueError) as e:
        raise Unreachable(getattr(e, "strerror", None) or str(e)) from e
    try:
        s.sendall(f"{method} {path} HTTP/1.1\r\nHost: weave\r\nConnection: close\r\nContent-Length: 0\r\n\r\n".encode())
        chunks, size = [], 0
        while size < MAX_REPLY:
            data = s.recv(65536)
            if not data:
                break
            chunks.append(data)
            size += len(data)
    except TimeoutError as e:
        raise Unreachable(f"no answer within {timeout:g}s") from e
    except OSError as e:
        raise Unreachable(e.strerror or str(e)) from e
    finally:
        s.close()
    raw = b"".join(chunks)
    head, _, body = raw.partition(b"\r\n\r\n")
    lines = head.decode("latin-1").split("\r\n")
    parts = lines[0].split(" ", 2)
    if len(parts) < 2 or not parts[0].startswith("HTTP/") or not parts[1].isdigit():
        raise Unreachable(f"not an HTTP answer: {lines[0][:60]!r}")
    if any(h.lower().replace(" ", "") == "transfer-encoding:chunked" for h in lines[1:]):
        body = _dechunk(body)
    return int(parts[1]), body.decode("utf-8", "replace")


class Router:
    """The calls the plugins make; failures become :class:`CniError`."""

    def __init__(self, env: Mapping[str, str]) -> None:
        self.addr = env.get("WEAVE_HTTP_ADDR") or DEFAULT_ADDR
        try:
            self.timeout = float(env.get("WEAVE_CNI_TIMEOUT") or DEFAULT_TIMEOUT)
        except ValueError:
            self.timeout = DEFAULT_TIMEOUT

    def _call(self, method: str, path: str) -> tuple[int, str]:
        try:
            return request(method, path, self.addr, self.timeout)
        except Unreachable as e:
            raise CniError(
                TRY_AGAIN_LATER,
                f"weave router not reachable at {self.addr}: {e}",
                "is weave running? ('weave launch', or the weave-net pod on this node)",
            ) from e

    def allocate(self, ident: str, subnet: tuple[int, int] | None) -> tuple[int, int]:
        """``POST /ip/<ident>[/<subnet>]`` (no check-alive: a pod is no Docker container): its CIDR."""
        path = f"/ip/{ident}" + (f"/{fmt_cidr(*subnet)}" if subnet else "")
        status, body = self._call("POST", path)
        text = body.strip()
        if status == 404:
            raise CniError(INTERNAL, "unable to allocate IP address: IP address allocation is disabled in weave")
        if status != 200 or text == "cancelled":
            raise CniError(INTERNAL, f"unable to allocate IP address: {text or f'HTTP {status}'}")
        try:
            return parse_cidr(text, "the router's answer")
        except CniError as e:
            raise CniError(INTERNAL, f"unable to allocate IP address: unexpected answer {text[:60]!r}") from e

    def release(self, ident: str) -> str | None:
        """``DELETE /ip/<ident>``; nothing to release is no error. Returns a warning if the router released but
        could not save yet (it keeps trying)."""
        status, body = self._call("DELETE", f"/ip/{ident}")
        text = body.strip()
        if status in (200, 204) or (status == 400 and text.startswith(NO_ADDRESSES)):
            return None
        if status == 404:  # IPAM disabled: nothing was allocated
            return None
        if status == 507:
            return f"released, not saved yet: {text}"
        raise CniError(INTERNAL, f"unable to release IP address: {text or f'HTTP {status}'}")

    def lookup(self, ident: str) -> list[tuple[int, int]]:
        """``GET /ip/<ident>``: the addresses the ring holds for it."""
        status, body = self._call("GET", f"/ip/{ident}")
        if status != 200:
            return []
        out = []
        for word in body.split():
            try:
                out.append(parse_cidr(word, "address"))
            except CniError:
                continue
        return out

    def expose(self, cidr: tuple[int, int]) -> None:
        """``POST /expose/<cidr>``: the address on the bridge (with Weave's NAT rules)."""
        status, body = self._call("POST", f"/expose/{fmt_cidr(*cidr)}")
        if status not in (200, 204):
            raise CniError(INTERNAL, f"unable to expose bridge address {fmt_cidr(*cidr)}: {body.strip()}")

    def status(self) -> None:
        """Error 50 unless the router answers and its IPAM is on."""
        try:
            status, _ = self._call("GET", "/ipinfo/defaultsubnet")
        except CniError as e:
            raise CniError(NOT_AVAILABLE, e.msg, e.details) from e
        if status == 404:
            raise CniError(NOT_AVAILABLE, "IP address allocation is disabled in weave", "launched without IPAM")
        if status != 200:
            raise CniError(NOT_AVAILABLE, f"weave router at {self.addr} answered HTTP {status}")
