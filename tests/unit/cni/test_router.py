"""The plugins' HTTP client of the router API and their attachment records, against a scripted HTTP server on a
unix socket (the real router's answers are exercised in ``tests/integration/test_cni.py``)."""

from __future__ import annotations

import socket
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest

from weavenet.cni import records
from weavenet.cni.router import Router, Unreachable, request
from weavenet.cni.spec import CniError, parse_cidr


class Scripted:
    """Answers each request with the next canned reply; records the request lines."""

    def __init__(self, path: Path) -> None:
        self.path = str(path)
        self.replies: list[bytes] = []
        self.requests: list[str] = []
        self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        self.sock.bind(self.path)
        self.sock.listen(8)
        self.thread = threading.Thread(target=self.serve, daemon=True)
        self.thread.start()

    def serve(self) -> None:
        while True:
            try:
                conn, _ = self.sock.accept()
            except OSError:
                return
            with conn:
                data = b""
                while b"\r\n\r\n" not in data:
                    data += conn.recv(4096)
                self.requests.append(data.split(b"\r\n")[0].decode())
                conn.sendall(self.replies.pop(0))


def reply(status: int, body: str, chunked: bool = False) -> bytes:
    if chunked:
        payload = b"".join(f"{len(p):x}\r\n".encode() + p.encode() + b"\r\n" for p in (body[:3], body[3:]) if p)
        return f"HTTP/1.1 {status} X\r\nTransfer-Encoding: chunked\r\n\r\n".encode() + payload + b"0\r\n\r\n"
    return f"HTTP/1.1 {status} X\r\nContent-Length: {len(body.encode())}\r\n\r\n{body}".encode()


@pytest.fixture
def server(tmp_path: Path) -> Iterator[Scripted]:
    s = Scripted(tmp_path / "api.sock")
    yield s
    s.sock.close()


def router(server: Scripted) -> Router:
    return Router({"WEAVE_HTTP_ADDR": server.path})


def test_requests_and_replies(server: Scripted) -> None:
    server.replies = [reply(200, "10.32.0.1/12"), reply(200, "10.32.0.1/12", chunked=True), b"garbage\r\n\r\n"]
    assert request("POST", "/ip/abc", server.path) == (200, "10.32.0.1/12")
    assert request("GET", "/ip/abc", server.path) == (200, "10.32.0.1/12")
    with pytest.raises(Unreachable, match="not an HTTP answer"):
        request("GET", "/x", server.path)
    assert server.requests == ["POST /ip/abc HTTP/1.1", "GET /ip/abc HTTP/1.1", "GET /x HTTP/1.1"]
    with pytest.raises(Unreachable):
        request("GET", "/", str(Path(server.path).with_name("nobody.sock")))
    with pytest.raises(Unreachable):
        request("GET", "/", "127.0.0.1:notaport")


def test_what_the_router_answers_becomes(server: Scripted) -> None:
    r = router(server)
    server.replies = [reply(200, "10.32.0.1/12\n")]
    assert r.allocate("abc", parse_cidr("10.32.0.0/12", "", network=True)) == parse_cidr("10.32.0.1/12", "")
    assert server.requests[-1] == "POST /ip/abc/10.32.0.0/12 HTTP/1.1"
    for status, body, needle in [(400, "range full\n", "range full"), (404, "404: Not Found", "disabled"),
                                 (200, "cancelled", "cancelled"), (200, "nonsense", "unexpected answer")]:  # fmt: skip
        server.replies = [reply(status, body)]
        with pytest.raises(CniError, match=needle) as e:
            r.allocate("abc", None)
        assert e.value.code == 999
    server.replies = [reply(204, ""), reply(400, "Delete: no addresses for abc\n"), reply(507, "disk full\n"),
                      reply(400, "weird\n")]  # fmt: skip
    assert r.release("abc") is None
    assert r.release("abc") is None  # DEL of a container the router does not know: no error (spec)
    assert "not saved yet: disk full" in (r.release("abc") or "")
    with pytest.raises(CniError, match="unable to release IP address: weird"):
        r.release("abc")
    server.replies = [reply(200, "10.32.0.1/12 10.40.0.1/12 junk"), reply(404, "")]
    assert r.lookup("abc") == [parse_cidr("10.32.0.1/12", ""), parse_cidr("10.40.0.1/12", "")]
    assert r.lookup("abc") == []
    server.replies = [reply(200, "10.32.0.0/12"), reply(404, "")]
    r.status()
    with pytest.raises(CniError, match="disabled") as e:
        r.status()
    assert e.value.code == 50


def test_a_router_that_is_not_there(tmp_path: Path) -> None:
    r = Router({"WEAVE_HTTP_ADDR": str(tmp_path / "none.sock")})
    with pytest.raises(CniError) as e:
        r.allocate("abc", None)
    assert e.value.code == 11 and "is weave running?" in e.value.details
    assert Router({}).addr == "127.0.0.1:6784"


def test_records(tmp_path: Path) -> None:
    env = {"WEAVE_STATE_DIR": str(tmp_path)}
    assert records.base_dir(env) == str(tmp_path / "cni")
    assert records.base_dir({"WEAVE_CNI_STATE_DIR": "/x", **env}) == "/x"
    recs = records.Records(env, "weave", "net")
    assert list(recs.all()) == []
    recs.add(records.Record("c0ffee-1.a_b", "eth0", "vethweplc0ffee-"))
    recs.add(records.Record("other", "net1"))
    got = [(r.container_id, r.ifname, r.host_end) for r in recs.all()]
    assert got == [("c0ffee-1.a_b", "eth0", "vethweplc0ffee-"), ("other", "net1", "")]
    recs.remove("other", "net1")
    recs.remove("other", "net1")  # again: nothing to remove is fine
    assert [r.container_id for r in recs.all()] == ["c0ffee-1.a_b"]
    (Path(recs.dir) / "c0ffee-1.a_b:eth0").write_text("{broken")
    assert [r.host_end for r in recs.all()] == [""]  # a damaged record still names its attachment
