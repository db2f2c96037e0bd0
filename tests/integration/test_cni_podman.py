"""A real runtime drives the CNI plugins: podman (Debian's, with its CNI backend) in simulated hosts runs
``podman run --network weave`` containers, with the plugins and Weave's ``10-weave.conflist`` (``portmap``
chained) installed by ``weave setup-cni`` (``weavenet.testbed.podman_engine`` keeps podman inside the test bed).
"""

from __future__ import annotations

import json
import sys
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import pytest

from weavenet.testbed import Host
from weavenet.testbed.podman_engine import PodmanEngine, podman_unavailable

pytestmark = [
    pytest.mark.netns,
    pytest.mark.slow,
    pytest.mark.skipif(podman_unavailable() is not None, reason=podman_unavailable() or ""),
]

API = r"""
import sys, urllib.request as u
print(u.urlopen(u.Request("http://127.0.0.1:6784" + sys.argv[1]), timeout=10).read().decode(), end="")
"""


def wait_until(pred: Callable[[], bool], timeout: float, what: str, interval: float = 0.3) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if pred():
            return
        time.sleep(interval)
    raise AssertionError(f"timed out after {timeout:.0f}s waiting for {what}")


def owned(host: Host) -> dict[str, list[str]]:
    out = host.run([sys.executable, "-c", API, "/ip"]).stdout
    return {m["containerid"]: m["addrs"] for m in json.loads(out)["owned"] or []}


def start(host: Host) -> PodmanEngine:
    pm = host.start_podman()
    res = host.weave("setup-cni", "--plugin-dir", str(pm.plugin_dir), "--conf-dir", str(pm.conf_dir))
    assert res.returncode == 0, res.stderr
    return pm


def address(pm: PodmanEngine, name: str) -> str:
    return pm.podman("exec", name, "ip", "-4", "-o", "addr", "show", "eth0").stdout.split()[3]


def ping(pm: PodmanEngine, name: str, ip: str) -> bool:
    return pm.podman("exec", name, "ping", "-c", "1", "-W", "2", ip, check=False).returncode == 0


def test_podman_containers_on_three_hosts(make_testbed: Callable[..., Any]) -> None:
    tb = make_testbed(3)
    h1, h2, h3 = tb.hosts
    assert h1.weave("launch").returncode == 0
    for h in (h2, h3):
        assert h.weave("launch", h1.ip).returncode == 0
    pms = {h.name: start(h) for h in tb.hosts}
    assert "cni" in pms["h1"].podman("info", "--format", "{{.Host.NetworkBackend}}").stdout
    ids = {h.name: pms[h.name].run("c1") for h in tb.hosts}
    ips = {n: address(pm, "c1") for n, pm in pms.items()}
    assert len(set(ips.values())) == 3
    for h in tb.hosts:
        assert owned(h)[ids[h.name]] == [ips[h.name]]  # the ring's address, held by podman's container ID
    peers = {n: ip.split("/")[0] for n, ip in ips.items()}
    wait_until(lambda: ping(pms["h1"], "c1", peers["h2"]) and ping(pms["h1"], "c1", peers["h3"]), 60,
               "containers to reach each other across hosts")  # fmt: skip
    assert ping(pms["h2"], "c1", peers["h3"]) and ping(pms["h3"], "c1", peers["h1"])
    gateway = pms["h1"].podman("exec", "c1", "ip", "-4", "route").stdout
    assert gateway.startswith("default via 10.32.") and "dev eth0" in gateway

    # upstream 830's variants as networks of their own: ipam.routes (no default route), hairpin mode off
    pm1 = pms["h1"]
    for name, plugin in (
        ("weave-routes", {"type": "weave-net", "ipam": {"routes": [{"dst": "10.32.0.0/12"}]}}),
        ("weave-nohairpin", {"type": "weave-net", "hairpinMode": False}),
    ):
        conflist = {"cniVersion": "0.3.0", "name": name, "plugins": [plugin]}
        (pm1.conf_dir / f"20-{name}.conflist").write_text(json.dumps(conflist))
    c2 = pm1.run("c2", network="weave-routes")
    c3 = pm1.run("c3", network="weave-nohairpin")
    assert "default" not in pm1.podman("exec", "c2", "ip", "-4", "route").stdout
    assert ping(pm1, "c1", h1.ip) and not ping(pm1, "c2", h1.ip)  # an address outside weave: default route only
    assert ping(pm1, "c2", peers["h2"])
    brif = "/sys/class/net/weave/brif/vethwepl{}/hairpin_mode"
    modes = [h1.run(["cat", brif.format(i[:7])]).stdout.strip() for i in (ids["h1"], c2, c3)]
    assert modes == ["1", "1", "0"]

    # a container restarted (podman: CNI DEL, then ADD in a new namespace) keeps working
    pm1.podman("restart", "-t", "0", "c1")
    wait_until(lambda: ping(pm1, "c1", peers["h2"]), 30, "the restarted container to reach h2's")
    assert ping(pms["h3"], "c1", address(pm1, "c1").split("/")[0])

    # podman rm releases the address (and the host's end of the pair goes)
    pm1.podman("rm", "-f", "-t", "0", "c1")
    assert ids["h1"] not in owned(h1)
    pm1.podman("rm", "-f", "-t", "0", "c2", "c3")
    assert sorted(owned(h1)) == ["weave:expose"]
    assert "vethwepl" not in h1.run(["ip", "-o", "link"]).stdout


def test_fifty_podman_containers_at_once(make_testbed: Callable[..., Any]) -> None:
    (h,) = make_testbed(1).hosts
    assert h.weave("launch").returncode == 0
    pm = start(h)
    names = [f"p{i}" for i in range(50)]
    with ThreadPoolExecutor(50) as pool:
        ids = list(pool.map(lambda n: pm.run(n, timeout=600), names))
    got = owned(h)
    addrs = [got[i] for i in ids]
    assert len({a[0] for a in addrs}) == 50 and all(len(a) == 1 for a in addrs)
    with ThreadPoolExecutor(50) as pool:
        list(pool.map(lambda n: pm.podman("rm", "-f", "-t", "0", n, timeout=600), names))
    assert sorted(owned(h)) == ["weave:expose"]
