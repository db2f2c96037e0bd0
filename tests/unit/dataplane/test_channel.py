"""The router <-> worker channel: small reads, and messages larger than one read arrive whole."""

from __future__ import annotations

import socket
import threading

from weavenet.dataplane.channel import READ_SIZE, Channel


class _Recording:
    """A socket that records the buffer size of every recv (a 1 MB buffer per read cost RSS and CPU)."""

    def __init__(self, sock: socket.socket) -> None:
        self.sock = sock
        self.sizes: list[int] = []

    def recv(self, size: int, flags: int = 0) -> bytes:
        self.sizes.append(size)
        return self.sock.recv(size, flags)

    def setblocking(self, flag: bool) -> None:
        self.sock.setblocking(flag)

    def fileno(self) -> int:
        return self.sock.fileno()


def test_large_messages_arrive_whole_through_small_reads() -> None:
    a, b = socket.socketpair()
    sender = Channel(a)
    rec = _Recording(b)
    receiver = Channel(rec)  # type: ignore[arg-type]
    big = {"links": list(range(60_000)), "blob": b"x" * 300_000}
    t = threading.Thread(target=lambda: (sender.send(big), sender.send(("special", 1))))
    t.start()
    got: list[object] = []
    while len(got) < 2:
        got += receiver.receive()
    t.join()
    assert got == [big, ("special", 1)]
    assert len(rec.sizes) > 1 and max(rec.sizes) <= READ_SIZE <= 64 * 1024
    a.close()
    b.close()
