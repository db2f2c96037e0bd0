"""weaveDNS on three simulated hosts (issue: containers find each other by name across hosts).

One bed is shared by the checks below (launching three routers is the slow part). The upstream resolver is the
test's own (``tests/integration/dns_upstream.py``) in host 3's namespace: weaveDNS never sees a real resolver.
Containers are namespaces whose hostname comes from ``/etc/netns/<name>/hostname`` and whose resolver is their
host's weave bridge address (``/etc/netns/<name>/resolv.conf``), as ``ip netns exec`` shows them.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.integration.conftest import PREFIXES, netns_unavailable
from weavenet.testbed import Testbed, TestbedBusy

pytestmark = [pytest.mark.netns, pytest.mark.slow]

REPO = Path(__file__).resolve().parents[2]
EXTERNAL = ("external.test.", "198.51.100.7")


def wait_until(pred: Callable[[], bool], timeout: float, what: str) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if pred():
            return
        time.sleep(0.2)
    raise AssertionError(f"timed out after {timeout:.0f}s waiting for {what}")


class Bed:
    def __init__(self, tb: Testbed, upstream: subprocess.Popen[str]) -> None:
        self.tb = tb
        self.hosts = tb.hosts
        self.upstream = upstream
        self.containers: dict[str, Any] = {}

    def dns_ip(self, host: Any) -> str:
        return f"10.2.1.{100 + host.index}"

    def dig(self, host: Any, *args: str) -> list[str]:
        res = host.run(["dig", f"@{self.dns_ip(host)}", "+short", "+time=2", "+tries=1", *args], check=False)
        return res.stdout.split()

    def dig_status(self, host: Any, name: str) -> str:
        res = host.run(["dig", f"@{self.dns_ip(host)}", "+time=3", "+tries=1", name], check=False)
        for line in res.stdout.splitlines():
            if "status:" in line:
                return line.split("status:")[1].split(",")[0].strip()
        return f"no answer: {res.stdout.strip()[-200:]}"

    def container(self, host: Any, name: str, ip: str, hostname: str | None = None) -> Any:
        c = host.container(name)
        os.makedirs(f"/etc/netns/{c.netns}", exist_ok=True)
        if hostname:
            Path(f"/etc/netns/{c.netns}/hostname").write_text(hostname + "\n")
        Path(f"/etc/netns/{c.netns}/resolv.conf").write_text(
            f"nameserver {self.dns_ip(host)}\nsearch weave.local.\noptions timeout:2 attempts:2\n"
        )
        res = host.weave("attach", f"{ip}/24", c.netns_path)
        assert res.returncode == 0, res.stderr
        self.containers[name] = c
        return c


def _make_bed() -> Testbed:
    for prefix in PREFIXES:
        try:
            return Testbed(3, prefix=prefix)
        except TestbedBusy:
            continue
    raise TestbedBusy("no free test bed prefix")


@pytest.fixture(scope="module")
def bed(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Bed]:
    if netns_unavailable():
        pytest.skip(netns_unavailable() or "")
    tb = _make_bed()
    upstream = None
    try:
        h1, h2, h3 = tb.hosts
        upstream = h3.popen(
            [
                sys.executable,
                "-m",
                "tests.integration.dns_upstream",
                "--listen",
                f"{h3.ip}:53",
                "--name",
                f"{EXTERNAL[0]}={EXTERNAL[1]}",
            ],
            cwd=REPO,
            stdout=subprocess.PIPE,
            stderr=subprocess.DEVNULL,
        )
        assert upstream.stdout is not None
        assert upstream.stdout.readline().startswith("listening"), "the test's upstream resolver did not start"
        conf = tmp_path_factory.mktemp("dns") / "resolv.conf"
        conf.write_text(f"# the test's own upstream, inside host 3\nnameserver {h3.ip}\n")
        opts = [f"--resolv-conf={conf}", "--dns-fallback-timeout=1s"]
        assert h1.weave("launch", *opts).returncode == 0
        for h in (h2, h3):
            res = h.weave("launch", *opts, h1.ip)
            assert res.returncode == 0, res.stderr
        b = Bed(tb, upstream)
        for h in tb.hosts:
            res = h.weave("expose", f"{b.dns_ip(h)}/24")
            assert res.returncode == 0, res.stderr
        b.container(h1, "a1", "10.2.1.1", "a1.weave.local")
        b.container(h3, "a3", "10.2.1.3", "a3.weave.local")
        yield b
    finally:
        if upstream is not None:
            if upstream.poll() is None:
                upstream.terminate()
                upstream.wait(10)
            if upstream.stdout is not None:
                upstream.stdout.close()
        tb.close()


def test_names_resolve_from_every_host_by_short_and_full_name(bed: Bed) -> None:
    for h in bed.hosts:
        for name, ip in (("a1", "10.2.1.1"), ("a3", "10.2.1.3")):
            wait_until(lambda h=h, name=name, ip=ip: bed.dig(h, name) == [ip], 15, f"{name} on {h.name}")
            assert bed.dig(h, f"{name}.weave.local") == [ip]
            assert bed.dig(h, f"{name.upper()}.Weave.Local.") == [ip]
        res = h.weave("dns-lookup", "a1")
        assert res.returncode == 0 and res.stdout.split() == ["10.2.1.1"], res.stderr
    status = bed.hosts[1].weave("status", "dns").stdout
    assert any(line.split()[:2] == ["a1", "10.2.1.1"] for line in status.splitlines()), status
    text = bed.hosts[1].weave("status").stdout
    assert "        Service: dns\n         Domain: weave.local.\n" in text and "        Entries: 2\n" in text


def test_containers_reach_each_other_by_name(bed: Bed) -> None:
    a1, a3 = bed.containers["a1"], bed.containers["a3"]
    wait_until(
        lambda: a1.run(["dig", "+short", "a3.weave.local"], check=False).stdout.split() == ["10.2.1.3"],
        15,
        "a3 from inside a1",
    )
    assert a3.run(["getent", "hosts", "a1"], check=False).stdout.split()[:1] == ["10.2.1.1"]
    res = a1.run(["ping", "-n", "-c", "1", "-W", "3", "a3"], check=False)
    assert res.returncode == 0, res.stdout + res.stderr
    res = a3.run(["ping", "-n", "-c", "1", "-W", "3", "a1.weave.local"], check=False)
    assert res.returncode == 0, res.stdout + res.stderr


def test_two_containers_one_name_both_answers_in_varying_order(bed: Bed) -> None:
    h1, h2, h3 = bed.hosts
    for h, name, ip in ((h1, "w1", "10.2.1.11"), (h2, "w2", "10.2.1.12")):
        c = bed.container(h, name, ip)
        res = h.weave("dns-add", c.netns_path, "-h", "web.weave.local")
        assert res.returncode == 0, res.stderr
    want = {"10.2.1.11", "10.2.1.12"}
    wait_until(lambda: set(bed.dig(h3, "web")) == want, 15, "both addresses of web on h3")
    orders = {tuple(bed.dig(h3, "web.weave.local")) for _ in range(12)}
    assert all(set(o) == want for o in orders) and len(orders) == 2, orders


def test_expose_with_a_name_and_attach_without_dns(bed: Bed) -> None:
    h1, h2, _ = bed.hosts
    res = h2.weave("expose", "10.2.1.202/24", "-h", "gw.weave.local")
    assert res.returncode == 0, res.stderr
    wait_until(lambda: bed.dig(h1, "gw") == ["10.2.1.202"], 15, "the exposed name on h1")
    assert h2.weave("hide", "10.2.1.202/24").returncode == 0
    wait_until(lambda: bed.dig(h1, "gw") == [], 15, "the hidden name gone on h1")
    c = h1.container("quiet")
    os.makedirs(f"/etc/netns/{c.netns}", exist_ok=True)
    Path(f"/etc/netns/{c.netns}/hostname").write_text("quiet.weave.local\n")
    assert h1.weave("attach", "--without-dns", "10.2.1.31/24", c.netns_path).returncode == 0
    time.sleep(1)
    assert all(bed.dig(h, "quiet") == [] for h in bed.hosts)


def test_reverse_lookup(bed: Bed) -> None:
    for h in bed.hosts:
        wait_until(lambda h=h: bed.dig(h, "-x", "10.2.1.3") == ["a3.weave.local."], 15, f"PTR on {h.name}")


def test_external_names_through_the_upstream_then_servfail_when_it_is_down(bed: Bed) -> None:
    h2 = bed.hosts[1]
    assert bed.dig(h2, EXTERNAL[0]) == [EXTERNAL[1]]
    assert bed.dig_status(h2, "nothing.test.") == "NXDOMAIN"
    assert json.loads(h2.weave("report").stdout)["DNS"]["Upstream"] == [bed.hosts[2].ip]
    bed.upstream.terminate()
    bed.upstream.wait(10)
    t = time.monotonic()
    assert bed.dig_status(h2, EXTERNAL[0]) == "SERVFAIL"
    assert time.monotonic() - t < 4  # refused at once (ICMP); dig itself gives up after 3 s
    fetch = "import urllib.request as u; print(u.urlopen('http://127.0.0.1:6784/metrics').read().decode())"
    metrics = h2.run([sys.executable, "-c", fetch]).stdout
    assert 'weave_dns_upstream_failures_total{reason="refused"}' in metrics
    assert 'weave_dns_responses_total{rcode="SERVFAIL",source="upstream",type="A"}' in metrics


def test_removal_stops_resolution_everywhere_and_survives_a_partition(bed: Bed) -> None:
    h1, h2, h3 = bed.hosts
    c = bed.container(h1, "gone", "10.2.1.21", "gone.weave.local")
    for h in bed.hosts:
        wait_until(lambda h=h: bed.dig(h, "gone") == ["10.2.1.21"], 15, f"gone on {h.name}")
    # detach removes the container's names; within seconds nobody answers them
    assert h1.weave("detach", c.netns_path).returncode == 0
    for h in bed.hosts:
        wait_until(lambda h=h: bed.dig(h, "gone") == [], 10, f"gone removed on {h.name}")
        assert bed.dig_status(h, "gone.weave.local") == "NXDOMAIN"
    # a name deleted while host 3 is cut off stays deleted once the partition heals
    c2 = bed.container(h1, "late", "10.2.1.22", "late.weave.local")
    wait_until(lambda: bed.dig(h3, "late") == ["10.2.1.22"], 15, "late on h3")
    bed.tb.cut(h1, h3)
    bed.tb.cut(h2, h3)
    try:
        assert h1.weave("dns-remove", c2.netns_path).returncode == 0
        wait_until(lambda: bed.dig(h2, "late") == [], 10, "late removed on h2")
        assert bed.dig(h3, "late") == ["10.2.1.22"]  # h3 has not heard yet
        time.sleep(3)
    finally:
        bed.tb.heal_all()
    wait_until(lambda: bed.dig(h3, "late") == [], 60, "the tombstone to reach h3 after the heal")
    for _ in range(5):  # and the name does not come back through anyone's gossip
        time.sleep(1)
        assert all(bed.dig(h, "late") == [] for h in bed.hosts)
    assert bed.dig(h3, "a1") == ["10.2.1.1"]
