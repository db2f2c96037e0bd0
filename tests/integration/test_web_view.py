"""The web view in a real headless Chromium, on three routers of the test bed (acceptance of the web view).

The browser runs inside h1 and opens what ``weave status --web`` prints there (the router's API address by
default). The page must show the three peers and h1's two links over the fast datapath; traffic between
containers on h1 and h2 shows on the h1-h2 link's plot and not on h1-h3's; UDP 6784 blocked between h1 and h3
shows that link on the sleeve with the reason; a cut between h1 and h2 shows that link down within 5 s. Every
request the page makes is a GET to the router itself, and the view's routes refuse anything else. A screenshot is
saved at each step (``$WEAVENET_ARTIFACTS`` if set, else the test's temporary directory) and one is in docs/.

Also here, as they need a live router: every metric the deploy/ alerts and dashboard use exists on its /metrics;
``weave launch --foreground`` (the systemd unit's) and ``weave stop``; ``weave launch`` on a terminal says what it
waits for.
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

from tests.integration.browser import Browser, chromium
from tests.integration.test_fastdp import all_fastdp
from tests.integration.test_switch import RECV, container, ping, wait_until
from tests.unit.deploy.test_deploy import PROMETHEUS_OWN, alert_exprs, dashboard_exprs, exported_names, metric_names

pytestmark = [pytest.mark.netns, pytest.mark.slow]

DOWN = ("silent", "failed", "retrying", "lost")
# a steady stream for ``seconds`` (the plots sample once a second over 2.5 s windows: a burst would be a blip)
STREAM = r"""
import socket, sys, time
s = socket.create_connection((sys.argv[1], int(sys.argv[2])))
buf = b"x" * 65536
end = time.time() + float(sys.argv[3])
while time.time() < end:
    s.sendall(buf)
    time.sleep(0.002)
s.close()
"""


@pytest.fixture
def artifacts(tmp_path: Path) -> Path:
    where = Path(os.environ.get("WEAVENET_ARTIFACTS") or tmp_path / "screenshots")
    where.mkdir(parents=True, exist_ok=True)
    return where


@pytest.fixture
def browser_in() -> Iterator[Callable[[Any], Browser]]:
    if chromium() is None:
        pytest.skip("chromium is not installed (Debian package chromium; scripts/install-deps installs it)")
    made: list[Browser] = []

    def start(host: Any) -> Browser:
        b = Browser(host)
        made.append(b)
        return b

    yield start
    for b in made:
        b.close()


HTTP = r"""
import http.client, sys
c = http.client.HTTPConnection("127.0.0.1", 6784, timeout=10)
c.request(sys.argv[1], sys.argv[2], body=b"x" if sys.argv[1] != "GET" else None)
r = c.getresponse()
sys.stdout.write(f"{r.status}\n" + r.read().decode())
"""


def http(host: Any, method: str, path: str) -> tuple[int, str]:
    """A request to the router's API inside ``host``: (status, body)."""
    out = host.run([sys.executable, "-c", HTTP, method, path]).stdout
    status, _, body = out.partition("\n")
    return int(status), body


def links(page: Browser) -> dict[str, dict[str, str]]:
    """The links table: peer nickname -> state, datapath, fallback, plot peak (bit/s, last 30 s)."""
    rows = page.js(
        "[...document.querySelectorAll('#links tbody tr[data-peer]')].map(r => ({nick: r.dataset.nick, "
        "state: r.dataset.state, datapath: r.dataset.datapath, fallback: r.dataset.fallback, "
        "peak: (r.querySelector('canvas') || {dataset: {}}).dataset.peak || '0'}))"
    )
    return {r["nick"]: r for r in rows or []}


def peers(page: Browser) -> list[str]:
    return page.js("[...document.querySelectorAll('#peers tbody tr[data-peer]')].map(r => r.cells[0].textContent)")


def test_the_page_shows_the_mesh_live(make_testbed, browser_in, artifacts: Path) -> None:
    tb = make_testbed(3)
    h1, h2, h3 = tb.hosts
    assert h1.weave("launch").returncode == 0
    for h in (h2, h3):
        assert h.weave("launch", h1.ip).returncode == 0
    wait_until(lambda: all_fastdp(tb), 40, "fastdp on every connection")
    url = h1.weave("status", "--web").stdout.strip()
    assert url == "http://127.0.0.1:6784/ui/"

    page = browser_in(h1)
    page.goto(url)
    wait_until(lambda: page.js("document.body && document.body.dataset.ready") == "1", 30, "the page to load")
    wait_until(
        lambda: (
            sorted(peers(page)) == ["h1", "h2", "h3"]
            and {n: (r["state"], r["datapath"]) for n, r in links(page).items()}
            == {"h2": ("established", "fastdp"), "h3": ("established", "fastdp")}
        ),
        20,
        "three peers, h1's two links on the fast datapath",
    )
    graph = page.js(
        "[...document.querySelectorAll('#graph .node')].length + ' ' + "
        "document.querySelectorAll('#graph line.link.state-established.dp-fastdp').length"
    )
    assert graph == "3 2"  # three peers drawn, two of h1's links green
    page.screenshot(artifacts / "1-mesh.png")

    # a container on h3 with an address from IPAM and a name: the ring, DNS and the peers' shares on h1's page
    c3 = h3.container("c3")
    attached = h3.weave("attach", c3.netns_path, timeout=90)
    assert attached.returncode == 0, attached.stderr
    assert h3.weave("dns-add", attached.stdout.strip(), c3.netns_path, "-h", "db.weave.local").returncode == 0
    wait_until(
        lambda: (
            page.js("document.querySelectorAll('#owners tbody tr[data-peer]').length") >= 1
            and "db.weave.local." in page.js("document.getElementById('dns').textContent")
        ),
        30,
        "the IPAM ring and the DNS name on the page",
    )

    # traffic between containers on h1 and h2 shows on the h1-h2 plot, not on h1-h3's
    c1, c2 = container(h1, "c1", "10.2.1.1/24"), container(h2, "c2", "10.2.1.2/24")
    wait_until(lambda: ping(c1, "10.2.1.2"), 20, "c1 reaches c2")
    sink = subprocess.Popen(
        ["ip", "netns", "exec", c2.netns, sys.executable, "-c", RECV, "5001"], stdout=subprocess.DEVNULL
    )
    time.sleep(0.5)
    stream = subprocess.Popen(["ip", "netns", "exec", c1.netns, sys.executable, "-c", STREAM, "10.2.1.2", "5001", "8"])
    try:
        wait_until(lambda: float(links(page)["h2"]["peak"]) > 20e6, 12, "the h1-h2 plot to show the stream")
        shown = links(page)
        assert float(shown["h3"]["peak"]) < float(shown["h2"]["peak"]) / 20, shown
        page.screenshot(artifacts / "2-traffic.png")
    finally:
        stream.wait(timeout=30)
        sink.wait(timeout=30)
    # the bytes the plot showed are on /metrics too (read now: once h1-h2 is cut below, its device may be gone)
    status, metrics = http(h1, "GET", "/metrics")
    assert status == 200
    assert 'weave_overlay_bytes_total{direction="tx",nickname="h2",overlay="fastdp"' in metrics

    # UDP 6784 blocked between h1 and h3: that link falls back to the sleeve, and the page says why
    tb.block(h1, h3)
    wait_until(lambda: links(page)["h3"]["datapath"] == "sleeve", 40, "h1-h3 on the sleeve")
    assert "UDP port 6784" in links(page)["h3"]["fallback"]
    wait_until(
        lambda: "UDP port 6784" in page.js("document.getElementById('timeline').textContent"), 15, "the timeline"
    )
    downs = page.js("window.weavenetView.timeline.filter(e => e.kind === 'link-down').map(e => e.text)")
    assert not [t for t in downs if "link to h3" in t], downs  # a blocked UDP port is no link failure
    page.screenshot(artifacts / "3-fallback.png")
    # the sleeve counts its bytes by peer (what the plots and weave_overlay_bytes_total read): h1-h3 now moves there
    h3_name = h3.weave("report", "-f", "{{.Router.Name}}").stdout.strip()
    wait_until(
        lambda: all(
            v > 0
            for v in json.loads(h1.weave("report").stdout)["Router"]["OverlayDiagnostics"]["sleeve"]["Peers"]
            .get(h3_name, {"RxBytes": 0, "TxBytes": 0})
            .values()
        ),
        15,
        "sleeve bytes with h3 in h1's report",
    )

    # the h1-h2 link cut: down on the page within 5 s
    tb.cut(h1, h2)
    cut_at = time.monotonic()
    while links(page)["h2"]["state"] not in DOWN:
        assert time.monotonic() - cut_at < 15, links(page)
        time.sleep(0.1)
    shown_after = time.monotonic() - cut_at
    print(f"cut h1-h2 shown as {links(page)['h2']['state']} after {shown_after:.1f} s")
    assert shown_after <= 5.0, f"the cut link showed as down after {shown_after:.1f} s"
    assert page.js("document.querySelector('#graph line.link[data-peer]:not(.state-established)') !== null")
    wait_until(lambda: "link to h2" in page.js("document.getElementById('timeline').textContent"), 15, "timeline")
    page.screenshot(artifacts / "4-cut.png")

    # only GETs, all to the router itself; the view's routes refuse anything else
    requests = page.requests()
    assert requests and {m for m, _ in requests} == {"GET"}, requests
    assert all(u.startswith("http://127.0.0.1:6784/") or u.startswith("data:") for _, u in requests), requests
    for method in ("POST", "PUT", "DELETE"):
        for path in ("/ui/", "/ui/events", "/ui/snapshot", "/ui/url"):
            status, _ = http(h1, method, path)
            assert status == 405, (method, path, status)

    # every metric the alerts and the dashboard use is on this live router's /metrics
    status, metrics = http(h1, "GET", "/metrics")
    assert status == 200
    used = metric_names(alert_exprs() + dashboard_exprs())
    assert used - exported_names(metrics) - PROMETHEUS_OWN == set()
    fallbacks = [line for line in metrics.splitlines() if line.startswith("weave_sleeve_fallback_connections{")]
    blocked = [float(line.split()[-1]) for line in fallbacks if 'reason="udp_blocked"' in line]
    assert blocked and blocked[0] >= 1, fallbacks  # h1-h3 (and h1-h2 too, until the cut connection is torn down)


def test_foreground_launch_stop_and_launch_progress_on_a_terminal(make_testbed) -> None:
    tb = make_testbed(1)
    (h1,) = tb.hosts
    fg = h1.popen(
        [sys.executable, "-m", "weavenet.cli", "launch", "--foreground", "--ui-addr", "off"],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
    )
    try:
        wait_until(lambda: h1.weave("status").returncode == 0, 40, "the foreground router to be ready")
        assert h1.weave("status", "--web").stderr.startswith("the web view is off")
        assert h1.weave("stop").returncode == 0
        assert fg.wait(timeout=20) == 0
        assert "weavenet router ready" in fg.communicate(timeout=10)[1]  # its log went to stderr (the journal)
    finally:
        if fg.poll() is None:
            fg.kill()
    # on a terminal (script(1) gives it one) weave launch says what it waits for; without one, nothing
    tty = h1.run(["script", "-qec", f"{sys.executable} -m weavenet.cli launch", "/dev/null"], timeout=90)
    assert "weave launch: waiting for the router's API" in tty.stdout or "weave launch: API up" in tty.stdout
    assert "weave launch: ready in" in tty.stdout and "no peers yet" in tty.stdout
    assert h1.weave("stop").returncode == 0
    quiet = h1.weave("launch")
    assert quiet.returncode == 0 and quiet.stderr == ""
