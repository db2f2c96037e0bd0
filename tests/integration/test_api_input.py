"""Bad input to a real router's API and commands: refused with one clear line, nothing left half-done, and no
client can make the router fill its log or hold its file descriptors.

Each test launches one router on a one-host bed; the clients are Python scripts run inside that host, speaking
raw HTTP to 127.0.0.1:6784 so they can send what no well-behaved client would.
"""

from __future__ import annotations

import os
import subprocess
import sys
import time
from collections.abc import Callable

import pytest

pytestmark = [pytest.mark.netns, pytest.mark.slow]

# One raw request (hex on argv) per line of output: "<status> <body in hex>".
RAW = r"""
import socket, sys
for hexreq in sys.argv[1:]:
    s = socket.create_connection(("127.0.0.1", 6784), timeout=10)
    s.sendall(bytes.fromhex(hexreq))
    data = b""
    while True:
        chunk = s.recv(65536)
        if not chunk:
            break
        data += chunk
    s.close()
    head, _, body = data.partition(b"\r\n\r\n")
    print(head.split(b" ")[1].decode() if head else "none", body.hex() or "-")
"""

# Opens N connections that send half a request and never finish it; prints "open" once all are connected, then,
# one line per connection as the server ends it: "closed <seconds>" or "answered <status> <seconds>".
HALF = r"""
import selectors, socket, sys, time
n, part = int(sys.argv[1]), bytes.fromhex(sys.argv[2])
sel = selectors.DefaultSelector()
start = time.monotonic()
for _ in range(n):
    s = socket.create_connection(("127.0.0.1", 6784), timeout=10)
    s.sendall(part)
    s.setblocking(False)
    sel.register(s, selectors.EVENT_READ)
print("open", flush=True)
left = n
while left and time.monotonic() - start < float(sys.argv[3]):
    for key, _ in sel.select(timeout=1):
        s = key.fileobj
        try:
            data = s.recv(4096)
        except ConnectionResetError:
            data = b""
        t = time.monotonic() - start
        print(f"answered {data.split(b' ')[1].decode()} {t:.1f}" if data else f"closed {t:.1f}", flush=True)
        sel.unregister(s)
        s.close()
        left -= 1
"""


class HalfSent:
    """``HALF`` running in a host: ``n`` connections that each send ``part`` of a request and wait."""

    def __init__(self, host, n: int, part: bytes, limit: float = 60) -> None:
        argv = [*host.enter(), sys.executable, "-c", HALF, str(n), part.hex(), str(limit)]
        self.proc = subprocess.Popen(argv, stdout=subprocess.PIPE, text=True)
        self.limit = limit

    def __enter__(self) -> HalfSent:
        assert self.proc.stdout is not None and self.proc.stdout.readline().strip() == "open"
        return self

    def ends(self) -> list[list[str]]:
        """How each connection ended, once all did (or the time limit passed)."""
        self.proc.wait(timeout=self.limit + 10)
        assert self.proc.stdout is not None
        return [line.split() for line in self.proc.stdout.read().splitlines()]  # what readline() left

    def __exit__(self, *exc: object) -> None:
        self.proc.kill()
        self.proc.wait()
        assert self.proc.stdout is not None
        self.proc.stdout.close()


def wait_until(pred: Callable[[], bool], timeout: float, what: str, interval: float = 0.5) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if pred():
            return
        time.sleep(interval)
    raise AssertionError(f"timed out after {timeout:.0f}s waiting for {what}")


def ok(host, *args: str) -> str:
    res = host.weave(*args)
    assert res.returncode == 0, f"weave {' '.join(args)}: {res.stderr}"
    return res.stdout


def refused(host, *args: str) -> str:
    """``weave args`` must fail with exactly one line on stderr; returns it."""
    res = host.weave(*args)
    lines = res.stderr.strip().splitlines()
    assert res.returncode != 0 and len(lines) == 1, f"weave {' '.join(args)} -> {res.returncode}: {res.stderr!r}"
    return lines[0]


def raw(host, *requests: bytes) -> list[tuple[str, str]]:
    """Send each request on its own connection; (status, body) for each."""
    out = host.run([sys.executable, "-c", RAW, *(r.hex() for r in requests)], timeout=120).stdout.splitlines()
    result = []
    for line in out:
        status, body = line.split(" ")
        result.append((status, "" if body == "-" else bytes.fromhex(body).decode(errors="replace")))
    return result


def one_line(reply: tuple[str, str]) -> tuple[str, str]:
    """(status, the body's only line); fails if the body is not exactly one line."""
    status, body = reply
    assert body.endswith("\n") and body.count("\n") == 1, reply
    return status, body.strip()


def post(path: str, body: bytes = b"", ctype: str = "application/x-www-form-urlencoded") -> bytes:
    return (
        f"POST {path} HTTP/1.1\r\nHost: x\r\nContent-Type: {ctype}\r\nContent-Length: {len(body)}\r\n"
        "Connection: close\r\n\r\n"
    ).encode() + body


def get(path: str) -> bytes:
    return f"GET {path} HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n".encode()


def router_log(host) -> str:
    return host.run(["cat", "/run/weave/weaver.log"]).stdout


def router_fds(host) -> int:
    pid = int(host.run(["cat", "/run/weave/weaver.pid"]).stdout)
    return len(os.listdir(f"/proc/{pid}/fd"))


def expose_state(host) -> tuple[list[str], list[str], str]:
    """What an expose changes: the bridge's addresses, our firewall rules, IPAM's weave:expose addresses."""
    addrs = host.run(["ip", "-4", "-o", "addr", "show", "weave"]).stdout.split()
    rules = [
        ln for ln in host.run(["iptables-save"]).stdout.splitlines() if ln.startswith(("-A WEAVE ", "-A WEAVE-EXPOSE"))
    ]
    owned = raw(host, get("/ip"))[0][1]
    return [a for a in addrs if "/" in a], rules, owned


def test_expose_refuses_nonsense_and_leaves_nothing_behind(make_testbed) -> None:
    tb = make_testbed(1)
    (h,) = tb.hosts
    ok(h, "launch")
    before = expose_state(h)
    for cidr, why in [
        ("127.0.0.1/8", "loopback"),
        ("224.0.0.1/24", "multicast"),
        ("0.0.0.0/0", "prefix /0 is too short"),
        ("255.255.255.255/0", "prefix /0 is too short"),
        ("169.254.1.1/16", "link-local"),
        (f"{h.ip.rsplit('.', 1)[0]}.200/24", f"host's own address {h.ip} on eth0"),  # the underlay
        ("10.32.0.0/12", "network address"),
    ]:
        assert why in refused(h, "expose", cidr), cidr
        assert expose_state(h) == before, cidr
    # the API itself: 400 with one line, and nothing changed
    for path, why in [
        ("/expose/255.255.255.255/0", "prefix /0 is too short"),
        ("/expose/127.0.0.1/8", "loopback"),
        ("/expose/10.2.1.1/33", "invalid address"),
        ("/expose/10.2.1.1/24?skipNAT=perhaps", "unable to parse skipNAT"),
    ]:
        status, line = one_line(raw(h, post(path))[0])
        assert status == "400" and why in line, (path, line)
    assert expose_state(h) == before

    # a step failing on the host (the nat chain is gone) undoes the address, the rules and the IPAM claim
    h.sh("iptables -t nat -D POSTROUTING -j WEAVE && iptables -t nat -F WEAVE && iptables -t nat -X WEAVE")
    before = expose_state(h)
    for args in [("10.32.5.5/12",), (), ("10.2.1.1/24",)]:  # claimed in the range, from IPAM, outside the range
        line = refused(h, "expose", *args)
        assert "cannot expose" in line and "WEAVE" in line, line
        assert expose_state(h) == before, args
    h.sh("iptables -t nat -N WEAVE && iptables -t nat -A POSTROUTING -j WEAVE")

    # sensible ones still work, and hide takes them off again
    assert ok(h, "expose", "10.2.1.1/24").strip() == "10.2.1.1"
    assert ok(h, "expose", "--without-masquerade", "10.2.2.1/24").strip() == "10.2.2.1"
    addrs, rules, _ = expose_state(h)
    assert {"10.2.1.1/24", "10.2.2.1/24"} <= set(addrs) and "-A WEAVE-EXPOSE -d 10.2.2.0/24 -j ACCEPT" in rules
    ok(h, "hide", "10.2.1.1/24")
    ok(h, "hide", "10.2.2.1/24")
    assert "Traceback" not in router_log(h)


def test_connect_refuses_what_weave_does_not_dial(make_testbed) -> None:
    tb = make_testbed(1)
    (h,) = tb.hosts
    ok(h, "launch", "--no-discovery")
    for peer, why in [
        ("a..b", "empty label"),
        ("a" * 64, "of 64 characters"),
        ("1.2.3", "not a full IPv4 address"),  # the C library's shorthand for 1.2.0.3
        ("0", "not a full IPv4 address"),  # and for 0.0.0.0
        ("x-.example", 'starts or ends with "-"'),
    ]:
        line = refused(h, "connect", peer)
        assert line.startswith(f'invalid peer address "{peer}"') and why in line, line
    for path in ("/connect", "/forget"):
        reply = one_line(raw(h, post(path, b"peer=\xff\xfe"))[0])
        assert reply == ("400", "unable to parse form: the body is not UTF-8"), path
    status, line = one_line(raw(h, post("/connect", b"peer=%ff"))[0])  # percent-encoded: decoded as U+FFFD
    assert status == "400" and "not allowed in a host name" in line
    assert ok(h, "status", "targets") == ""
    assert "Traceback" not in router_log(h)
    ok(h, "stop")
    assert "empty label" in refused(h, "launch", "a..b")  # the same check for launch's peers


def test_bad_and_half_sent_requests_cost_one_line_and_no_descriptors(make_testbed) -> None:
    tb = make_testbed(1)
    (h,) = tb.hosts
    ok(h, "launch")
    size = len(router_log(h))
    bad = [
        b"GET /\xff\xfe HTTP/1.1\r\nHost: x\r\n\r\n",
        b"GET /caf\xc3\xa9\xff HTTP/1.1\r\n\r\n",
        b"\x16\x03\x01\x00\x05hello",
    ]
    answers = raw(h, *(bad * 100))
    assert len(answers) == 300 and {status for status, _ in answers} == {"400"}
    log = router_log(h)[size:]
    assert "Traceback" not in log and len(log) < 2000, log[:3000]

    base = router_fds(h)
    n = 200
    with HalfSent(h, n, b"POST /connect HTTP/1.1\r\nHost: x\r\nContent-Le") as half:
        time.sleep(1)  # those beyond the limit are answered and closed as the router gets to them
        held = router_fds(h) - base
        assert held <= 128 + 10, held  # at most the connection limit, whatever the client opens
        wait_until(lambda: router_fds(h) <= base + 2, 45, f"the router's file descriptors back to {base}")
        ends = half.ends()
    assert len(ends) == n, ends
    over = [e for e in ends if e[0] == "answered"]
    assert over and {e[1] for e in over} == {"503"}  # those beyond the limit, at once
    closed = [float(e[1]) for e in ends if e[0] == "closed"]
    assert len(closed) + len(over) == n and max(closed) < 40  # the header timeout, 10 s, with room for a slow bed

    # a body that never comes: 408 after the body timeout, and the router answers everything else meanwhile
    with HalfSent(h, 1, post("/connect", b"peer=1.2.3.4")[:-4]) as slow:
        assert ok(h, "status", "targets") == ""
        ends = slow.ends()
    assert ends[0][:2] == ["answered", "408"], ends
    assert "Traceback" not in router_log(h)
