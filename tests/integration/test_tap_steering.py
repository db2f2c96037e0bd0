"""TAP steering against the real kernel: which queue a frame from the host lands on, and the data plane's fallback.

A simulated host's namespace gets a multi-queue TAP; the host's own stack sends UDP datagrams to a neighbour
that lives behind the TAP (a static ARP entry), so each datagram comes out of the TAP as a frame, on the queue
the steering program chose. Nothing leaves the namespace.
"""

from __future__ import annotations

import asyncio
import logging
import os
import select
import socket
import time
from collections.abc import Callable, Iterator
from typing import Any, TypeVar

import pytest

from weavenet.dataplane import steering, tap
from weavenet.dataplane.frames import VNET_LEN
from weavenet.dataplane.supervisor import Datapath
from weavenet.dataplane.tables import Link, Tables
from weavenet.host.attach import in_netns
from weavenet.testbed import Host, Testbed

pytestmark = [pytest.mark.netns]
T = TypeVar("T")
TAP = "wnst0"
NEIGHBOUR = "10.77.0.2"
PORT = 9


@pytest.fixture
def host(make_testbed: Callable[..., Testbed]) -> Iterator[Host]:
    (h,) = make_testbed(1).hosts
    yield h


def on(h: Host, fn: Callable[[], T]) -> T:
    return in_netns(h.netns_path, fn)


def send(h: Host, sizes: list[int]) -> None:
    def go() -> None:
        with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
            for n in sizes:
                s.sendto(bytes(n), (NEIGHBOUR, PORT))

    on(h, go)


def datagrams(fd: int, want: int, timeout: float = 2.0) -> list[int]:
    """Payload sizes of the UDP datagrams to our port read from one TAP queue (other frames skipped)."""
    got: list[int] = []
    deadline = time.monotonic() + timeout
    while len(got) < want and time.monotonic() < deadline:
        if not select.select([fd], [], [], 0.1)[0]:
            continue
        frame = os.read(fd, 65536)[VNET_LEN:]
        if frame[12:14] == b"\x08\x00" and frame[23] == 17 and int.from_bytes(frame[36:38], "big") == PORT:
            got.append(len(frame) - 42)
    return got


def leftovers(fd: int) -> list[int]:
    return datagrams(fd, 1 << 30, timeout=0.3)


@pytest.fixture
def queues(host: Host) -> Iterator[tuple[int, int, steering.TapSteering]]:
    def open_both() -> tuple[int, int, steering.TapSteering]:
        q0, _ = tap.open_tap(TAP, offloads=False, multi_queue=True)
        steer = steering.TapSteering()
        steer.attach(q0, split=True)
        return q0, tap.open_queue(TAP), steer

    q0, q1, steer = on(host, open_both)
    host.sh(
        f"sysctl -qw net.ipv6.conf.{TAP}.disable_ipv6=1 && ip addr add 10.77.0.1/24 dev {TAP} && "
        f"ip link set {TAP} mtu 9000 up && ip neigh add {NEIGHBOUR} lladdr 02:00:00:00:00:02 dev {TAP}"
    )
    yield q0, q1, steer
    for fd in (q1, q0):
        os.close(fd)
    steer.close()


def test_small_frames_go_to_the_rx_queue_and_the_rest_to_the_tx_queue(
    host: Host, queues: tuple[int, int, steering.TapSteering]
) -> None:
    q0, q1, steer = queues
    small = steering.SMALL_FRAME - 42  # the largest payload whose frame is still small (a jumbo MTU: unfragmented)
    send(host, [18, 1000, small, small + 1, 4000])
    assert datagrams(q1, 3) == [18, 1000, small]
    assert datagrams(q0, 2) == [small + 1, 4000]
    assert leftovers(q0) == [] and leftovers(q1) == []

    assert steer.attach(q0, split=False)  # a classic link appeared: everything to the tx worker
    assert not steer.attach(q0, split=False)  # no change, no ioctl
    send(host, [18, 1000])
    assert datagrams(q0, 2) == [18, 1000]
    assert leftovers(q1) == []


def test_small_frames_may_go_to_the_rx_worker_only_while_every_link_is_fast() -> None:
    def link(peer: int, fast: bool) -> Link:
        return Link(peer, 1, outbound=True, addr=("10.0.0.9", 6783), key=None, fast=fast)

    assert steering.wanted(Tables(me=1))
    assert steering.wanted(Tables(me=1, links={2: link(2, True), 3: link(3, True)}))
    assert not steering.wanted(Tables(me=1, links={2: link(2, True), 3: link(3, False)}))


def _start_datapath(host: Host) -> tuple[int, dict[str, int], list[str], dict[str, int]]:
    """Start a data plane in the host, switch its tables to a classic link; what it had before and after (its
    stats, and as ``told_tx`` what it last told the tx worker about steering)."""

    async def go() -> tuple[int, dict[str, int], list[str], dict[str, int]]:
        dp = Datapath("wnstbr", "", 0, on_special=lambda *_: None, tap_name=TAP)
        await dp.start()
        told: list[bool] = []
        real_send = dp._send

        def send(role: str, msg: tuple[Any, ...]) -> None:
            if role == "tx" and msg[0] == "steering":
                told.append(msg[1])
            real_send(role, msg)

        dp._send = send  # type: ignore[method-assign]
        try:
            fast = Link(2, 1, outbound=True, addr=("10.77.1.2", 6783), key=None, fast=True)
            dp.update(Tables(me=1, links={2: fast}))
            before = {**dp.stats, "told_tx": told[-1]}
            argv = dp.worker_args("rx")
            classic = Link(3, 1, outbound=True, addr=("10.77.1.3", 6783), key=None, fast=False)
            dp.update(Tables(me=1, links={2: fast, 3: classic}))
            return dp.rx_tap_fd, before, argv, {**dp.stats, "told_tx": told[-1]}
        finally:
            await dp.stop()

    return on(host, lambda: asyncio.run(go()))


def test_the_data_plane_gives_the_rx_worker_its_queue_and_follows_the_links(host: Host) -> None:
    host.sh("ip link add wnstbr type bridge && ip link set wnstbr up")
    rx_fd, before, argv, after = _start_datapath(host)
    assert rx_fd >= 0 and "--tap-rx-fd" in argv
    assert before["tap_queues"] == 2 and before["tap_steering"] == 1
    assert after["tap_steering"] == 0  # a Go peer's link: its frames are the tx worker's
    assert before["told_tx"] is True and after["told_tx"] is False  # and so is the warm tick then


def test_where_bpf_is_refused_the_data_plane_keeps_one_queue_and_says_why(
    host: Host, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    def refused(program: bytes) -> int:
        raise PermissionError(1, "Operation not permitted")

    monkeypatch.setattr(steering, "load", refused)  # as under a seccomp profile that forbids bpf()
    host.sh("ip link add wnstbr type bridge && ip link set wnstbr up")
    with caplog.at_level(logging.WARNING, logger="weavenet.dataplane"):
        rx_fd, before, argv, _ = _start_datapath(host)
    assert rx_fd == -1 and "--tap-rx-fd" not in argv
    assert before["tap_queues"] == 1 and "tap_steering" not in before and before["told_tx"] is False
    assert any("TAP steering unavailable (" in r.getMessage() for r in caplog.records)


def test_where_a_multi_queue_tap_is_refused_the_data_plane_opens_one_queue(
    host: Host, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    real = tap.open_tap

    def one_queue_only(name: str, offloads: bool = True, multi_queue: bool = False) -> tuple[int, int]:
        if multi_queue:
            raise OSError(22, "Invalid argument")  # as a kernel without IFF_MULTI_QUEUE answers
        return real(name, offloads)

    monkeypatch.setattr(tap, "open_tap", one_queue_only)
    host.sh("ip link add wnstbr type bridge && ip link set wnstbr up")
    with caplog.at_level(logging.WARNING, logger="weavenet.dataplane"):
        rx_fd, before, argv, _ = _start_datapath(host)
    assert rx_fd == -1 and "--tap-rx-fd" not in argv and before["tap_queues"] == 1 and before["told_tx"] is False
    assert any("multi-queue TAP refused" in r.getMessage() for r in caplog.records)
