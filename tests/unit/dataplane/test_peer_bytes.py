"""Bytes by peer, counted by the workers for per-connection throughput (the web view, ``/metrics``): real datagrams
through real sockets, only peers with a link counted, and the counts forgotten with the link."""

from __future__ import annotations

import socket
import time

from tests.unit.dataplane.test_rx_worker import FRAME, ME, ME_BIN, PEER, PEER_BIN, Rig, fast_datagrams
from weavenet.core.sleeve_codec import encode_frames
from weavenet.dataplane import udp
from weavenet.dataplane.sender import Sender
from weavenet.dataplane.tables import Link, Tables


def _drain(rig: Rig, expect: int) -> None:
    deadline = time.monotonic() + 5
    while sum(rig.worker.received.values()) < expect and time.monotonic() < deadline:
        rig.worker.read_socket(rig.worker._cmsg)
        time.sleep(0.01)


def test_rx_worker_counts_bytes_from_linked_peers_only() -> None:
    rig = Rig(None)
    rig.sock.setblocking(False)  # as the worker's poll loop keeps it
    try:
        out = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        dest = rig.sock.getsockname()
        sent = 0
        for d in fast_datagrams(1, FRAME + bytes(3000)):
            sent += out.sendto(d, dest)
        sent += out.sendto(PEER_BIN + encode_frames([(PEER_BIN, ME_BIN, FRAME)]), dest)
        stranger = (0xCE0000000009).to_bytes(6, "big")
        out.sendto(stranger + encode_frames([(stranger, ME_BIN, FRAME)]), dest)  # no link: not counted
        _drain(rig, sent)
        time.sleep(0.05)
        rig.worker.read_socket(rig.worker._cmsg)
        assert rig.worker.received == {PEER: sent}
        rig.worker.on_tables(Tables(me=ME))  # the link is gone: so is its count
        assert rig.worker.received == {}
        out.close()
    finally:
        rig.close()


def test_sender_counts_bytes_by_next_hop_and_forgets_gone_links() -> None:
    rx, _ = udp.open_socket("127.0.0.1", 0)
    tx = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    try:
        link = Link(PEER, 7, outbound=True, addr=rx.getsockname(), key=None, fast=False)
        sender = Sender(tx, ME, 0)
        sender.send_classic(link, [(ME, PEER, FRAME)])
        fast = Link(PEER, 7, outbound=True, addr=rx.getsockname(), key=None, fast=True)
        sender.send_fast(fast, ME, PEER, bytes(10), FRAME)
        assert sender.stats.by_peer == {PEER: sender.stats.bytes} and sender.stats.bytes > 2 * len(FRAME)
        sender.forget({(PEER, 7)})
        assert PEER in sender.stats.by_peer
        sender.forget(set())
        assert sender.stats.by_peer == {}
    finally:
        rx.close()
        tx.close()
