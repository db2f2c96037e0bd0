"""A router SIGKILLed and relaunched: the containers' traffic over the fast datapath does not stop
(``core/fastdp_keep.py``). The peer keeps its VXLAN device forwarding while the router is gone, the relaunched
router adopts its own devices untouched (same interfaces, same VNIs) and its new connection takes them over; a
router stopped on purpose says goodbye, and its peer drops the path at once, as before."""

from __future__ import annotations

import contextlib
import itertools
import json
import os
import re
import signal
import subprocess
import threading
import time
from pathlib import Path

import pytest

from tests.integration.test_fastdp import all_fastdp
from tests.integration.test_switch import container, wait_until
from weavenet.testbed import Host

pytestmark = [pytest.mark.netns, pytest.mark.slow]


class Pinger:
    """``ping -D`` every 20 ms from a container, in the background; the times of the answers."""

    def __init__(self, netns: str, ip: str) -> None:
        self.replies: list[float] = []
        self.proc = subprocess.Popen(
            ["ip", "netns", "exec", netns, "ping", "-D", "-n", "-i", "0.02", "-W", "1", ip],
            stdout=subprocess.PIPE,
            stderr=subprocess.DEVNULL,
            text=True,
        )
        self.thread = threading.Thread(target=self._read, daemon=True)
        self.thread.start()

    def _read(self) -> None:
        assert self.proc.stdout is not None
        for line in self.proc.stdout:
            if m := re.match(r"\[(\d+\.\d+)\] \d+ bytes from", line):
                self.replies.append(float(m.group(1)))

    def stop(self) -> None:
        self.proc.terminate()
        self.proc.wait(10)
        self.thread.join(5)
        if self.proc.stdout is not None:
            self.proc.stdout.close()

    def longest_silence(self, start: float, end: float) -> float:
        times = [start, *(t for t in self.replies if start <= t <= end), end]
        return max(b - a for a, b in itertools.pairwise(times))


def router_pids(h: Host) -> list[int]:
    """The router's processes on the host: the daemon and its data-plane workers."""
    out = []
    for pid in h.pids():
        with contextlib.suppress(FileNotFoundError):
            cmd = Path(f"/proc/{pid}/cmdline").read_bytes()
            if b"weavenet.daemon" in cmd or b"weavenet.dataplane" in cmd:
                out.append(pid)
    return out


def sigkill_router(h: Host) -> None:
    pids = router_pids(h)
    assert pids
    for pid in pids:
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signal.SIGKILL)
    wait_until(lambda: not router_pids(h), 10, "the router's processes gone")


def vxlan_devices(h: Host) -> dict[str, tuple[int, int, str]]:
    """name -> (ifindex, VNI, alias) of the host's VXLAN devices."""
    links = json.loads(h.run(["ip", "-d", "-j", "link", "show", "type", "vxlan"]).stdout or "[]")
    return {
        link["ifname"]: (link["ifindex"], link["linkinfo"]["info_data"]["id"], link.get("ifalias", ""))
        for link in links
    }


def fastdp_report(h: Host) -> dict:  # type: ignore[type-arg]
    return json.loads(h.weave("report").stdout)["Router"]["OverlayDiagnostics"]["fastdp"]  # type: ignore[no-any-return]


def log_since(h: Host, mark: int) -> str:
    return h.run(["cat", "/run/weave/weaver.log"]).stdout[mark:]


def log_size(h: Host) -> int:
    return len(h.run(["cat", "/run/weave/weaver.log"]).stdout)


def test_pings_over_fastdp_keep_flowing_through_a_sigkill_and_relaunch(make_testbed) -> None:
    tb = make_testbed(2)
    h1, h2 = tb.hosts
    assert h1.weave("launch").returncode == 0
    assert h2.weave("launch", h1.ip).returncode == 0
    c1 = container(h1, "c", "10.2.1.1/24")
    container(h2, "c", "10.2.1.2/24")
    wait_until(lambda: all_fastdp(tb), 30, "fastdp on both connections")
    wait_until(lambda: all(vxlan_devices(h) for h in tb.hosts), 10, "the VXLAN devices")
    with contextlib.suppress(AssertionError):  # (a router that does not mark them: the test fails below)
        wait_until(lambda: all(a.endswith("/keeps") for h in tb.hosts for *_, a in vxlan_devices(h).values()), 10, "")
    devices = {h.name: vxlan_devices(h) for h in tb.hosts}

    pinger = Pinger(c1.netns, "10.2.1.2")
    try:
        wait_until(lambda: len(pinger.replies) > 20, 10, "pings answered")
        mark1 = log_size(h1)
        start = time.time()
        sigkill_router(h2)
        time.sleep(3)
        kept = fastdp_report(h1).get("Kept") or {}
        mark2 = log_size(h2)
        assert h2.weave("launch", h1.ip).returncode == 0
        wait_until(lambda: all_fastdp(tb), 30, "fastdp on both connections after the relaunch")
        time.sleep(3)
        end = time.time()
    finally:
        pinger.stop()
    silence = pinger.longest_silence(start, end)
    print(f"longest silence of the pings: {silence:.3f} s")
    assert silence < 1.0, f"pings stopped for {silence:.2f} s"
    assert "kept for up to 30s: its router went without a goodbye" in log_since(h1, mark1)
    assert len(kept) == 1 and "unless a connection takes it over" in next(iter(kept.values())), kept
    assert "adopted from the previous router process" in log_since(h2, mark2)
    for h, mark in ((h1, mark1), (h2, mark2)):
        wait_until(
            lambda h=h, m=mark: "taken over by the new connection" in log_since(h, m), 15, f"{h.name}: taken over"
        )
    # the very same devices, untouched by either router: same interfaces, same VNIs
    assert {h.name: vxlan_devices(h) for h in tb.hosts} == devices
    assert not fastdp_report(h1).get("Kept")


def test_a_router_stopped_on_purpose_is_not_kept(make_testbed) -> None:
    tb = make_testbed(2)
    h1, h2 = tb.hosts
    assert h1.weave("launch").returncode == 0
    assert h2.weave("launch", h1.ip).returncode == 0
    wait_until(lambda: all_fastdp(tb), 30, "fastdp on both connections")
    mark = log_size(h1)
    assert h2.weave("stop").returncode == 0
    wait_until(lambda: not vxlan_devices(h1), 10, "h1's device for h2 deleted")
    assert not vxlan_devices(h2)
    assert "kept for up to" not in log_since(h1, mark)


def test_data_plane_workers_are_forked_with_only_their_descriptors(make_testbed) -> None:
    """No interpreter start-up before the sleeve carries anything: the workers are the router's children, named
    for ``ps``, and hold none of the router's other descriptors (a listening socket kept by a worker would stop
    a relaunched router from binding its port)."""
    tb = make_testbed(1)
    (h,) = tb.hosts
    assert h.weave("launch", env={"WEAVE_NO_FASTDP": "1"}).returncode == 0
    daemon = int(h.sh("cat /run/weave/weaver.pid").stdout)
    workers = [p for p in router_pids(h) if p != daemon]
    assert len(workers) == 2
    names = sorted(Path(f"/proc/{p}/comm").read_text().strip() for p in workers)
    assert names == ["weavenet-rx", "weavenet-tx"]
    for pid in workers:
        assert Path(f"/proc/{pid}/stat").read_text().split()[3] == str(daemon)  # a child of the router
        sockets = {os.readlink(f"/proc/{pid}/fd/{fd}") for fd in os.listdir(f"/proc/{pid}/fd")}
        listening = h.run(["ss", "-Htlnpe", "sport", "= :6783"]).stdout
        assert f"pid={pid}," not in listening, listening
        assert len(sockets) <= 12, sockets  # the TAP queue(s), the UDP socket, two channels, the standard streams
