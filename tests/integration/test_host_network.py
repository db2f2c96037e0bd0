"""The host side of the switch: bridge and iptables plumbing, the firewall canary, `weave reset`, the service
export/import/binding/routing recipes of Weave's documentation, and multicast isolation between subnets."""

from __future__ import annotations

import re
import subprocess
import sys
import time
from collections.abc import Callable

import pytest

pytestmark = [pytest.mark.netns, pytest.mark.slow]

# A TCP service that answers every connection with its tag and what it was sent, until killed.
SERVE = r"""
import socket, sys
s = socket.socket(); s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
s.bind(("0.0.0.0", int(sys.argv[1]))); s.listen(8); print("ready", flush=True)
while True:
    c, _ = s.accept(); c.settimeout(5)
    try: c.sendall(sys.argv[2].encode() + b":" + c.recv(100))
    except OSError: pass
    c.close()
"""
ASK = r"""
import socket, sys
c = socket.create_connection((sys.argv[1], int(sys.argv[2])), timeout=3); c.sendall(b"hello")
print(c.recv(100).decode())
"""
MCAST_RECV = r"""
import socket, struct, sys, time
s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM); s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
s.bind(("", 5007))
mreq = struct.pack("4s4s", socket.inet_aton("239.1.2.3"), socket.inet_aton(sys.argv[1]))
s.setsockopt(socket.IPPROTO_IP, socket.IP_ADD_MEMBERSHIP, mreq)
s.settimeout(0.5); seen = set(); print("ready", flush=True)
end = time.time() + float(sys.argv[2])
while time.time() < end:
    try: seen.add(s.recv(100).decode())
    except socket.timeout: pass
print(",".join(sorted(seen)))
"""
MCAST_SEND = r"""
import socket, sys, time
s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
s.setsockopt(socket.IPPROTO_IP, socket.IP_MULTICAST_TTL, 2)
for _ in range(10):
    s.sendto(sys.argv[1].encode(), ("239.1.2.3", 5007)); time.sleep(0.1)
"""


def wait_until(pred: Callable[[], bool], timeout: float, what: str) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if pred():
            return
        time.sleep(0.3)
    raise AssertionError(f"timed out after {timeout:.0f}s waiting for {what}")


def ok(host, *args: str) -> str:
    res = host.weave(*args)
    assert res.returncode == 0, f"weave {' '.join(args)}: {res.stderr}"
    return res.stdout


def serve(where, port: int, tag: str) -> subprocess.Popen[str]:
    """Start SERVE in a container (``ip netns exec``) or a host; wait until it listens."""
    argv = [sys.executable, "-c", SERVE, str(port), tag]
    if hasattr(where, "popen"):
        proc = where.popen(argv, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL)
    else:
        proc = subprocess.Popen(
            ["ip", "netns", "exec", where.netns, *argv], stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True
        )
    assert proc.stdout is not None and proc.stdout.readline().strip() == "ready"
    return proc


def ask(where, ip: str, port: int) -> str:
    res = where.run([sys.executable, "-c", ASK, ip, str(port)], check=False, timeout=10)
    return res.stdout.strip() if res.returncode == 0 else f"failed: {res.stderr.strip().splitlines()[-1:]}"


def forward_rules(host) -> list[str]:
    return [ln for ln in host.run(["iptables", "-S", "FORWARD"]).stdout.splitlines() if ln.startswith("-A")]


def test_launch_plumbing_survives_a_firewall_flush_and_reset_removes_it(make_testbed) -> None:
    tb = make_testbed(1)
    (h1,) = tb.hosts
    ok(h1, "launch", "--no-masq-local")
    name = ok(h1, "report", "-f", "{{.Router.Name}}").strip()
    link = h1.run(["ip", "-d", "link", "show", "weave"]).stdout
    assert f"link/ether {name}" in link and "bridge" in link and re.search(r"mtu (\d+)", link)
    assert h1.run(["sysctl", "-n", "net.ipv6.conf.weave.accept_ra"]).stdout.strip() == "0"
    assert h1.run(["sysctl", "-n", "net.ipv4.neigh.weave.base_reachable_time"]).stdout.strip() == "5"
    expected = [
        "-A FORWARD -i weave -o weave -j ACCEPT",
        "-A FORWARD -o weave -j WEAVE-EXPOSE",
        "-A FORWARD -i weave ! -o weave -j ACCEPT",
        "-A FORWARD -o weave -m conntrack --ctstate RELATED,ESTABLISHED -j ACCEPT",
    ]
    assert forward_rules(h1)[:4] == expected
    assert "-A POSTROUTING -j WEAVE" in h1.run(["iptables", "-t", "nat", "-S", "POSTROUTING"]).stdout
    assert "Block non-local access to Weave Net control port" in h1.run(["iptables", "-S", "INPUT"]).stdout
    no_masq = "-A WEAVE -m set --match-set weaver-no-masq-local dst"
    assert h1.run(["iptables", "-t", "nat", "-S", "WEAVE"]).stdout.splitlines()[1].startswith(no_masq)

    c = h1.container("c")
    ok(h1, "attach", "10.2.1.1/24", c.netns_path)
    inside = c.run(["iptables", "-S", "INPUT"]).stdout
    assert "-A INPUT -s 10.2.1.0/24 -d 224.0.0.0/4 -i ethwe -j ACCEPT" in inside
    assert "-A INPUT -d 224.0.0.0/4 -i ethwe -j DROP" in inside
    assert "224.0.0.0/4 dev ethwe scope link" in c.run(["ip", "route"]).stdout

    # a firewall reload: everything flushed, other rules put first; the canary brings ours back, in order
    h1.sh(
        "iptables -I FORWARD 1 -j ACCEPT -m comment --comment other; for t in filter nat mangle; do "
        "iptables -t $t -F; iptables -t $t -X; done; iptables -I FORWARD 1 -s 192.0.2.1 -j DROP"
    )
    wait_until(lambda: forward_rules(h1)[:4] == expected, 40, "the FORWARD block restored at the top")
    assert "-A POSTROUTING -j WEAVE" in h1.run(["iptables", "-t", "nat", "-S", "POSTROUTING"]).stdout
    wait_until(lambda: no_masq in h1.run(["iptables", "-t", "nat", "-S", "WEAVE"]).stdout, 20, "no-masq-local's rule")
    assert h1.weave("status").returncode == 0  # the router kept running

    ok(h1, "reset")
    links = h1.run(["ip", "-br", "link"]).stdout
    assert "weave" not in links and "vethwe" not in links, links
    rules = h1.run(["iptables-save"]).stdout
    assert "WEAVE" not in rules and "-o weave" not in rules, rules
    assert "weaver-no-masq-local" not in h1.run(["ipset", "list", "-n"]).stdout
    assert h1.weave("status").returncode != 0


def test_service_recipes_and_multicast_isolation(make_testbed) -> None:
    """Weave's docs, "Managing Services": export, import, binding and routing, with h3 outside the weave network."""
    tb = make_testbed(3)
    h1, h2, h3 = tb.hosts
    ok(h1, "launch")
    ok(h2, "launch", h1.ip)
    a1, a2 = h1.container("a1"), h2.container("a2")
    ok(h1, "attach", "10.2.1.1/24", a1.netns_path)
    ok(h2, "attach", "10.2.1.2/24", a2.netns_path)
    wait_until(lambda: a2.run(["ping", "-c", "1", "-W", "1", "10.2.1.1"], check=False).returncode == 0, 30, "a2->a1")
    procs = [serve(a1, 4422, "a1"), serve(h3, 2211, "host3"), serve(h3, 2212, "host3-moved")]
    try:
        # exporting: the outside world (h3) reaches a1's service through h2
        assert ok(h2, "expose", "10.2.1.132/24").strip() == "10.2.1.132"
        h2.run(
            [
                "iptables",
                "-t",
                "nat",
                "-A",
                "PREROUTING",
                "-p",
                "tcp",
                "-i",
                "eth0",
                "--dport",
                "2211",
                "-j",
                "DNAT",
                "--to-destination",
                "10.2.1.1:4422",
            ]
        )
        assert ask(h3, h2.ip, 2211) == "a1:hello"

        # importing: a2 (on h2) reaches a service on h3, which only h1 can reach, at h1's exposed address
        assert ok(h1, "expose", "10.2.1.3/24").strip() == "10.2.1.3"
        dnat = ["-p", "tcp", "-d", "10.2.1.3", "--dport", "3322", "-j", "DNAT"]
        h1.run(["iptables", "-t", "nat", "-A", "PREROUTING", *dnat, "--to-destination", f"{h3.ip}:2211"])
        assert ask(a2, "10.2.1.3", 3322) == "host3:hello"

        # routing: a host of h2's network (h3 itself here) reaches the imported service through the weave network
        h2.run(
            [
                "iptables",
                "-t",
                "nat",
                "-A",
                "PREROUTING",
                "-p",
                "tcp",
                "-i",
                "eth0",
                "--dport",
                "4433",
                "-j",
                "DNAT",
                "--to-destination",
                "10.2.1.3:3322",
            ]
        )
        assert ask(h3, h2.ip, 4433) == "host3:hello"

        # binding: move the service; only h1's NAT rule changes, the applications do not
        h1.run(["iptables", "-t", "nat", "-R", "PREROUTING", "1", *dnat, "--to-destination", f"{h3.ip}:2212"])
        assert ask(a2, "10.2.1.3", 3322) == "host3-moved:hello"
        assert ask(h3, h2.ip, 4433) == "host3-moved:hello"
    finally:
        for p in procs:
            p.kill()
            p.communicate()

    # multicast follows the subnets: a1 hears senders of its own subnet only
    b = h2.container("b")
    ok(h2, "attach", "10.2.2.1/24", b.netns_path)
    recv = subprocess.Popen(
        ["ip", "netns", "exec", a1.netns, sys.executable, "-c", MCAST_RECV, "10.2.1.1", "6"],
        stdout=subprocess.PIPE,
        text=True,
    )
    assert recv.stdout is not None and recv.stdout.readline().strip() == "ready"
    for c, tag in ((a2, "same-subnet"), (b, "other-subnet")):
        c.run([sys.executable, "-c", MCAST_SEND, tag], timeout=20)
    heard = recv.communicate(timeout=30)[0].strip().split(",")
    assert heard == ["same-subnet"], heard


# Many clients exposing one address at the same moment, as in Kubernetes mode the router's own expose at start and
# the CNI plugins' gateway exposes of the first pods do.
EXPOSE_AT_ONCE = r"""
import sys, threading, urllib.request
n = int(sys.argv[1]); start = threading.Barrier(n); answers = []
def expose():
    start.wait()
    req = urllib.request.Request("http://127.0.0.1:6784/expose/10.2.9.1/24", method="POST", data=b"")
    try:
        answers.append(urllib.request.urlopen(req, timeout=30).status)
    except urllib.error.HTTPError as e:
        answers.append(f"{e.code} {e.read().decode().strip()}")
threads = [threading.Thread(target=expose) for _ in range(n)]
for t in threads: t.start()
for t in threads: t.join()
print(answers)
"""


def test_the_same_address_exposed_by_many_at_once_is_exposed_once_and_no_one_fails(make_testbed) -> None:
    tb = make_testbed(1)
    (h1,) = tb.hosts
    assert h1.weave("launch").returncode == 0
    res = h1.run([sys.executable, "-c", EXPOSE_AT_ONCE, "12"], timeout=60)
    assert res.stdout.strip() == str([204] * 12), res.stdout
    assert h1.run(["ip", "-4", "-o", "addr", "show", "dev", "weave"]).stdout.count("10.2.9.1/24") == 1
    assert h1.weave("hide", "10.2.9.1/24").returncode == 0
