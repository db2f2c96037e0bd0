"""Framed, pickled messages over a stream socket: how the router and its data-plane workers talk.

Each message is ``u32 length ‖ pickle``. Only our own processes (root, same host, a socketpair) are on either
end, so pickle is safe here; nothing from the network ever goes through it.
"""

from __future__ import annotations

import pickle
import socket
import struct
from typing import Any

_LEN = struct.Struct(">I")
MAX_MESSAGE = 64 * 1024 * 1024
# One read's buffer. A message larger than this takes several reads (the poll loop comes back); a 1 MB buffer
# was allocated, and mostly given back, on every read, for messages of a few hundred bytes (specials, heartbeats).
READ_SIZE = 64 * 1024


class Channel:
    """Blocking sender, non-blocking receiver (for a poll loop)."""

    def __init__(self, sock: socket.socket) -> None:
        self.sock = sock
        self._buf = bytearray()
        sock.setblocking(True)

    def fileno(self) -> int:
        return self.sock.fileno()

    def send(self, msg: Any) -> None:
        data = pickle.dumps(msg, protocol=pickle.HIGHEST_PROTOCOL)
        self.sock.sendall(_LEN.pack(len(data)) + data)

    def receive(self) -> list[Any]:
        """Read what is available (call when poll says readable); raises EOFError when the other end closed."""
        try:
            chunk = self.sock.recv(READ_SIZE, socket.MSG_DONTWAIT)
        except BlockingIOError:
            return []
        if not chunk:
            raise EOFError("channel closed")
        self._buf += chunk
        return self._drain()

    def feed(self, data: bytes) -> list[Any]:
        """For an asyncio reader: add bytes read elsewhere, return complete messages."""
        self._buf += data
        return self._drain()

    def _drain(self) -> list[Any]:
        out = []
        buf = self._buf
        while len(buf) >= 4:
            (n,) = _LEN.unpack_from(buf)
            if n > MAX_MESSAGE:
                raise EOFError("oversized channel message")
            if len(buf) < 4 + n:
                break
            out.append(pickle.loads(bytes(buf[4 : 4 + n])))
            del buf[: 4 + n]
        return out
