"""The test bed itself: isolation of hosts, impairments, cleanup."""

from __future__ import annotations

import os
import signal
import subprocess
import time
from pathlib import Path

import pytest

from weavenet.testbed import Testbed, cleanup_stale

pytestmark = pytest.mark.netns


def ping(host, ip: str, size: int | None = None, df: bool = False, count: int = 1) -> bool:
    argv = ["ping", "-n", "-q", "-c", str(count), "-W", "1"]
    if size is not None:
        argv += ["-s", str(size)]
    if df:
        argv += ["-M", "do"]
    return host.run([*argv, ip], check=False).returncode == 0


UDP_RECV = (
    "import socket,sys;s=socket.socket(socket.AF_INET,socket.SOCK_DGRAM);s.bind(('0.0.0.0',int(sys.argv[1])));"
    "s.settimeout(2);\ntry:\n print(s.recv(100).decode())\nexcept OSError:\n print('timeout')"
)
UDP_SEND = (
    "import socket,sys;socket.socket(socket.AF_INET,socket.SOCK_DGRAM).sendto(b'hello',(sys.argv[1],int(sys.argv[2])))"
)


def udp_gets_through(src, dst, port: int) -> bool:
    recv = dst.popen(["python3", "-c", UDP_RECV, str(port)], stdout=subprocess.PIPE)
    time.sleep(0.3)
    for _ in range(3):
        src.run(["python3", "-c", UDP_SEND, dst.ip, str(port)])
        time.sleep(0.1)
    out, _ = recv.communicate(timeout=5)
    return "hello" in out


def test_hosts_are_isolated_machines(make_testbed) -> None:
    tb = make_testbed(3)
    h1, h2, h3 = tb.hosts
    assert ping(h1, h2.ip) and ping(h3, h1.ip)
    assert h1.run(["hostname"]).stdout.strip() == "h1"
    ids = {h.run(["cat", "/etc/machine-id"]).stdout for h in tb.hosts}
    assert len(ids) == 3
    assert h1.run(["ls", "-A", "/var/lib/weave"]).stdout == ""
    h1.sh("echo x > /run/only-h1")
    assert not Path("/run/only-h1").exists()
    assert h2.run(["test", "-e", "/run/only-h1"], check=False).returncode != 0
    assert "eth0" in h2.run(["ls", "/sys/class/net"]).stdout
    c = h1.container("c1")
    assert c.netns in h2.run(["ls", "/var/run/netns"]).stdout  # containers are visible from hosts
    assert c.run(["ip", "-o", "link"]).stdout.count(": lo") == 1


def test_impairments(make_testbed) -> None:
    tb = make_testbed(3)
    h1, h2, h3 = tb.hosts
    tb.cut(h1, h3)
    assert not ping(h1, h3.ip) and ping(h1, h2.ip) and ping(h2, h3.ip)
    tb.restore(h1, h3)
    assert ping(h1, h3.ip)
    tb.block(h2, h3, "udp", 6784)
    assert not udp_gets_through(h2, h3, 6784)
    assert udp_gets_through(h2, h3, 6785) and ping(h2, h3.ip)
    tb.unblock(h2, h3, "udp", 6784)
    assert udp_gets_through(h2, h3, 6784)
    tb.loss(h1, h2, 0.5)
    res = h1.run(["ping", "-n", "-q", "-c", "200", "-i", "0.002", "-W", "1", h2.ip], check=False).stdout
    lost = int(res.split("% packet loss")[0].split()[-1])
    assert 50 <= lost <= 90  # each ping crosses the lossy link twice: 1 - 0.5**2 = 75 % expected
    tb.loss(h1, h2, 0)
    tb.heal_all()
    assert ping(h1, h2.ip, count=3)
    tb.set_mtu(h3, 1300)
    assert not ping(h1, h3.ip, size=1400, df=True) and ping(h1, h3.ip, size=1200, df=True)


def test_close_removes_everything_and_stale_cleanup() -> None:
    tb = Testbed(2, prefix="wntc")
    proc = tb.hosts[0].popen(["sleep", "300"])
    deadline = time.monotonic() + 5
    while proc.pid not in tb.hosts[0].pids() and time.monotonic() < deadline:
        time.sleep(0.02)  # nsenter has joined the host's namespaces once its pid shows up there
    workdir = tb.workdir
    tb.close()
    assert proc.wait(timeout=10) is not None
    assert not [n for n in os.listdir("/run/netns") if n.startswith("wntc-")]
    assert not workdir.exists()
    assert str(workdir) not in Path("/proc/self/mountinfo").read_text()
    subprocess.run(["ip", "netns", "add", "wntc-leaked"], check=True)
    cleanup_stale("wntc")
    assert "wntc-leaked" not in os.listdir("/run/netns")


def test_kill_all(make_testbed) -> None:
    tb = make_testbed(1)
    (h1,) = tb.hosts
    proc = h1.popen(["sleep", "300"])
    deadline = time.monotonic() + 5
    while proc.pid not in h1.pids() and time.monotonic() < deadline:
        time.sleep(0.02)
    assert proc.pid in h1.pids()
    h1.kill_all(signal.SIGKILL)
    assert proc.wait(timeout=5) == -signal.SIGKILL
