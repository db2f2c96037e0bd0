"""IPAM on simulated hosts: consensus, unique addresses, partitions, restarts, reset and rmpeer, subnets.

Two beds: three hosts with the default range (the acceptance list of the IPAM issue, in one story, with the
bad-input checks along the way), and two hosts with ``--ipalloc-range 10.2.0.0/16 --ipalloc-default-subnet
10.2.1.0/24`` for subnets and their isolation.
"""

from __future__ import annotations

import json
import sys
import time
from collections.abc import Callable
from ipaddress import IPv4Interface, IPv4Network

import pytest

pytestmark = [pytest.mark.netns, pytest.mark.slow]

API = r"""
import sys, urllib.request as u
req = u.Request("http://127.0.0.1:6784" + sys.argv[2], method=sys.argv[1])
try:
    print(u.urlopen(req, timeout=10).read().decode(), end="")
except u.HTTPError as e:
    print(e.code, e.read().decode(), end="")
"""


def wait_until(pred: Callable[[], bool], timeout: float, what: str, interval: float = 0.5) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if pred():
            return
        time.sleep(interval)
    raise AssertionError(f"timed out after {timeout:.0f}s waiting for {what}")


def api(host, method: str, path: str) -> str:
    return host.run([sys.executable, "-c", API, method, path]).stdout


def attach(host, name: str, *addrs: str) -> tuple[object, list[str]]:
    c = host.container(name)
    res = host.weave("attach", *addrs, c.netns_path, timeout=90)
    assert res.returncode == 0, res.stderr
    return c, res.stdout.split()


def ping(c, ip: str) -> bool:
    return c.run(["ping", "-n", "-q", "-c", "1", "-W", "2", ip], check=False).returncode == 0


def ipam_lines(host) -> list[str]:
    """``weave status ipam`` without the ``(N active)`` column, which differs per host by design."""
    out = host.weave("status", "ipam").stdout
    return sorted(line.split(" IPs ")[0] + " IPs" for line in out.splitlines() if " IPs (" in line)


def owned(host) -> dict[str, list[str]]:
    data = json.loads(api(host, "GET", "/ip"))
    return {m["containerid"]: m["addrs"] for m in data["owned"] or []}


def one_line_error(res) -> str:
    assert res.returncode != 0
    lines = res.stderr.strip().splitlines()
    assert len(lines) == 1, res.stderr
    return lines[0]


def test_three_hosts_consensus_partition_restart_reset_rmpeer(make_testbed) -> None:
    tb = make_testbed(3)
    h1, h2, h3 = tb.hosts
    assert h1.weave("launch").returncode == 0
    for h in (h2, h3):
        assert h.weave("launch", h1.ip).returncode == 0
    assert h3.weave("prime", timeout=60).returncode == 0  # forces the election; quorum of 2 of 3

    # containers on every host get distinct addresses from 10.32.0.0/12 and reach each other
    cs, ips = {}, {}
    for h in tb.hosts:
        cs[h.name], got = attach(h, "c1")
        ips[h.name] = got[0]
    assert len(set(ips.values())) == 3
    assert all(IPv4Interface(f"{ip}/12").network == IPv4Network("10.32.0.0/12") for ip in ips.values())
    wait_until(lambda: ping(cs["h1"], ips["h3"]) and ping(cs["h3"], ips["h2"]), 30, "containers to reach each other")
    wait_until(lambda: ipam_lines(h1) == ipam_lines(h2) == ipam_lines(h3), 20, "the same ring everywhere")
    assert "Status: ready" in h2.weave("status").stdout
    report = json.loads(h2.weave("report").stdout)["IPAM"]
    assert report["Range"] == "10.32.0.0/12" and report["ActiveIPs"] == 1 and len(report["Entries"]) >= 3
    metrics = api(h1, "GET", "/metrics")
    assert 'weave_ips{state="local-used"} 1.0' in metrics and "weave_max_ips 1.048576e+06" in metrics

    # bad input: one line, non-zero, nothing changed
    assert one_line_error(h1.weave("rmpeer", "h1")) == "cannot remove peer h1: it is this peer"
    assert "it is reachable" in one_line_error(h1.weave("rmpeer", "h2"))
    bad = h1.container("bad")
    err = one_line_error(h1.weave("attach", "net:10.2.3.2/30", bad.netns_path))
    assert "bits after network prefix are not all zero" in err
    assert "out of bounds" in one_line_error(h1.weave("attach", "net:10.2.3.0/24", bad.netns_path))
    assert "prefix length 0" in one_line_error(h1.weave("attach", "10.32.0.9/0", bad.netns_path))
    assert "network address" in api(h1, "PUT", "/ip/x/10.2.3.0/24")
    assert bad.netns_path not in owned(h1) and "x" not in owned(h1)

    # a container that goes away is released after the grace period (checked after the partition)
    gone, _ = attach(h1, "gone")
    gone.remove()
    t_gone = time.monotonic()

    # partition h3 away, allocate on both sides, heal: no address twice, one ring everywhere
    tb.cut(h1, h3)
    tb.cut(h2, h3)
    try:
        side_a = [attach(h, f"p{h.name}")[1][0] for h in (h1, h2)]
        side_b = [attach(h3, f"p{k}")[1][0] for k in range(2)]
    finally:
        tb.heal_all()
    every = list(ips.values()) + side_a + side_b
    assert len(set(every)) == len(every), every
    wait_until(lambda: ipam_lines(h1) == ipam_lines(h2) == ipam_lines(h3), 60, "one ring everywhere after the heal")
    wait_until(lambda: ping(cs["h3"], ips["h1"]), 60, "h3's containers to reach h1's again")
    remaining = 45 - (time.monotonic() - t_gone)
    wait_until(lambda: gone.netns_path not in owned(h1), max(remaining, 5), "the gone container's address freed")

    # restart h2's router: its containers keep their addresses, new ones avoid them
    before = owned(h2)
    assert h2.weave("stop").returncode == 0
    assert h2.weave("launch", h1.ip).returncode == 0
    assert owned(h2) == before
    _, fresh = attach(h2, "fresh")
    assert fresh[0] not in {a.split("/")[0] for addrs in before.values() for a in addrs}

    # weave reset on h2 hands its space over; rmpeer of a killed h3 takes h3's: the survivor owns it all
    assert h2.weave("reset").returncode == 0
    wait_until(lambda: "(h2)" not in h1.weave("status", "ipam").stdout, 20, "h2's space handed over")
    pid = int(h3.sh("cat /run/weave/weaver.pid").stdout)
    h3.run(["kill", "-9", str(pid)])
    wait_until(lambda: "unreachable" in h1.weave("status", "ipam").stdout, 30, "h3 shown unreachable")
    assert "weave rmpeer h3" in h1.weave("status", "ipam").stdout  # the remedy is shown
    res = h1.weave("rmpeer", "h3")
    assert res.returncode == 0 and res.stdout.strip().endswith("IPs taken over from h3"), res
    assert int(res.stdout.split()[0]) > 0
    lines = ipam_lines(h1)
    assert len(lines) == 1 and "(h1)" in lines[0] and "1048576 IPs" in lines[0]


def test_default_subnet_and_isolated_subnets(make_testbed) -> None:
    tb = make_testbed(2)
    h1, h2 = tb.hosts
    opts = ("--ipalloc-range", "10.2.0.0/16", "--ipalloc-default-subnet", "10.2.1.0/24")
    refused = h1.weave("launch", "--ipalloc-range", "10.2.0.0/16", "--ipalloc-default-subnet", "10.3.0.0/24")
    assert "does not overlap with allocation range" in one_line_error(refused)
    assert h1.weave("launch", *opts).returncode == 0
    assert h2.weave("launch", *opts, h1.ip).returncode == 0
    assert api(h1, "GET", "/ipinfo/defaultsubnet") == "10.2.1.0/24"
    a1, (ip_a1,) = attach(h1, "a1")
    _, (ip_a2,) = attach(h2, "a2", "net:default")
    b1, (ip_b1,) = attach(h1, "b1", "net:10.2.2.0/24")
    b2, (ip_b2,) = attach(h2, "b2", "net:10.2.2.0/24")
    assert all(IPv4Interface(f"{ip}/24").network == IPv4Network("10.2.1.0/24") for ip in (ip_a1, ip_a2))
    assert all(IPv4Interface(f"{ip}/24").network == IPv4Network("10.2.2.0/24") for ip in (ip_b1, ip_b2))
    assert ip_a1 == "10.2.1.1" and ip_b1 == "10.2.2.1"  # lowest free first
    wait_until(lambda: ping(a1, ip_a2) and ping(b1, ip_b2), 30, "each subnet connected across hosts")
    assert not ping(a1, ip_b2) and not ping(b2, ip_a1), "the two subnets are isolated"
    # an explicit address inside the range is claimed: IPAM does not hand it out again
    attach(h2, "c", "10.2.1.2/24")
    _, (ip_d,) = attach(h1, "d")
    assert ip_d not in ("10.2.1.1", "10.2.1.2", ip_a2)
    # detach releases: the next container gets the address again
    res = h1.weave("detach", a1.netns_path)
    assert res.returncode == 0 and res.stdout.split() == [ip_a1]
    _, (again,) = attach(h1, "e")
    assert again == ip_a1
    assert h2.weave("expose").stdout.split()[0].startswith("10.2.1.")
