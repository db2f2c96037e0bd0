"""Prebuilt scatter/gather lists for the fast format: a 64 KB super-frame in or out in a handful of Python steps.

A super-frame travels as ~45 UDP datagrams, each ``chunk header (20) ‖ piece``. Building that interleaving per
super-frame (a memoryview slice and three iovec entries per chunk on send, a slice per chunk on receive) cost more
interpreter time than everything else the workers do: measured, over half their CPU went to it. Both sides can
instead keep one list of buffer views, made once, and reuse it for every super-frame of the same chunk size:

* sending: the payload is copied (one memcpy) into a fixed buffer, all chunk headers are written into a fixed
  header buffer with two C-level operations (repeat, then the chunk indexes by extended slice), and ``sendmsg``
  gets a slice of the prebuilt list ``[hdr0, piece0, hdr1, piece1, ...]`` whose last piece is cut to length;
* receiving: ``recvmsg_into`` scatters a GRO run into the prebuilt list ``[hdr0, body0, hdr1, body1, ...]``, so
  the headers land in one buffer and the pieces end up contiguous in another; comparing the headers with the
  pattern they must follow (C-level again) proves the run is one whole super-frame, which is then handed on as
  one view, without a copy.

Anything that does not fit the pattern (a chunk size the prebuilt list does not match, a partial or mixed run,
a classic-format packet) is turned back into the datagram's bytes and takes the general path.

The scatter list has ~90 pieces and every ``recvmsg_into`` walks all of them, the final EAGAIN one too: ~4 us
warm, ~18 us in a wake after 10 ms idle (measured in the rx worker). After a receive that brought a single
datagram (pings, ACKs, DNS: what arrives when the machine is idle) the reader therefore receives into one plain
buffer instead, and goes back to the scatter list as soon as a run arrives (``follow``).
"""

from __future__ import annotations

import socket

from weavenet.dataplane.fastwire import HDR_LEN, MAGIC, MAX_CHUNKS

IDXS = bytes(range(256))
SENDER, MAGIC_AT, STREAM_AT, COUNT_AT, FLAGS_AT, SEQ_AT, IDX_AT = 0, 6, 8, 9, 10, 11, 19
MAX_DATAGRAM = 65535


def _interleave(hdrs: memoryview, body: memoryview, room: int, cap: int) -> list[memoryview]:
    """``[hdr0, piece0, hdr1, piece1, ...]``: views of ``cap`` chunk headers and ``room``-byte pieces."""
    return [v for i in range(cap) for v in (hdrs[i * HDR_LEN : (i + 1) * HDR_LEN], body[i * room : (i + 1) * room])]


class ChunkWriter:
    """The iovec of one super-frame: chunk headers interleaved with pieces of a payload buffer."""

    def __init__(self) -> None:
        self._hdrs = bytearray(HDR_LEN * MAX_CHUNKS)
        self._key: tuple[int, int, int] | None = None
        self._iov: list[memoryview] = []
        self._payload: memoryview = memoryview(b"")

    def iov(self, common: bytes, payload: bytearray, total: int, room: int) -> list[memoryview]:
        """Datagram buffers for ``payload[:total]`` in chunks of ``room`` bytes, each behind its header.

        ``common`` is the 19 bytes all chunk headers share; ``payload`` must stay the same object (and size)
        between calls for the prebuilt list to be reused.
        """
        n = max(1, -(-total // room))
        key = (id(payload), len(payload), room)
        if key != self._key:
            self._build(payload, room)
            self._key = key
        hdrs = self._hdrs
        end = n * HDR_LEN
        hdrs[:end] = (common + b"\x00") * n
        hdrs[IDX_AT:end:HDR_LEN] = IDXS[:n]
        iov = self._iov[: 2 * n - 1]
        iov.append(self._payload[(n - 1) * room : total])
        return iov

    def _build(self, payload: bytearray, room: int) -> None:
        hdrs, body = memoryview(self._hdrs), memoryview(payload)
        cap = min(MAX_CHUNKS, max(1, -(-len(payload) // room)))
        self._iov = _interleave(hdrs, body, room, cap)
        self._payload = body


class ChunkReader:
    """Receives datagram runs scattered so that a whole super-frame's payload is contiguous."""

    def __init__(self, segment: int = 1472) -> None:
        self.segment = 0
        self.set_segment(segment)
        self.single = False  # the next receive goes into the plain buffer
        self.plain = bytearray(MAX_DATAGRAM)
        self._plain = [self.plain]
        self.in_plain = False  # the last receive went there

    def set_segment(self, segment: int) -> None:
        """Expect runs of ``segment``-byte datagrams (the chunk size our peers' path MTU gives)."""
        segment = max(HDR_LEN + 1, min(segment, MAX_DATAGRAM))
        if segment == self.segment:
            return
        self.segment = segment
        room = segment - HDR_LEN
        cap = MAX_DATAGRAM // segment + 2
        self.hdrs = bytearray(HDR_LEN * cap)
        self.body = bytearray(room * cap)
        hdrs, body = memoryview(self.hdrs), memoryview(self.body)
        self._body = body
        self.scatter = _interleave(hdrs, body, room, cap)

    def receive(self, sock: socket.socket, cmsg_space: int) -> tuple[int, list, tuple[str, int]]:  # type: ignore[type-arg]
        self.in_plain = self.single
        nbytes, anc, _flags, addr = sock.recvmsg_into(self._plain if self.single else self.scatter, cmsg_space)
        return nbytes, anc, addr

    def follow(self, nbytes: int, gso: int) -> None:
        """Choose the buffer of the next receive from what this one brought: a run (GRO) or a single datagram."""
        self.single = not 0 < gso < nbytes

    def data(self, nbytes: int) -> bytes:
        """The received bytes as they were on the wire (the general path's input)."""
        if self.in_plain:
            return bytes(memoryview(self.plain)[:nbytes])
        seg, room = self.segment, self.segment - HDR_LEN
        out = []
        left = nbytes
        for i in range(-(-nbytes // seg)):
            take = min(left, seg)
            out.append(self.hdrs[i * HDR_LEN : i * HDR_LEN + min(take, HDR_LEN)])
            if take > HDR_LEN:
                out.append(self.body[i * room : i * room + take - HDR_LEN])
            left -= take
        return b"".join(out)

    def whole(self, nbytes: int, gso: int) -> tuple[bytes, int, int, int, memoryview] | None:
        """(sender, stream, seq, flags, payload) if the run is exactly one complete fast super-frame, else None.

        The payload is a view into the receive buffer, valid until the next ``receive``.
        """
        if self.in_plain:
            return self._whole_plain(nbytes, gso)
        seg = self.segment
        if gso:
            if gso != seg:
                return None
        elif nbytes > seg:
            return None  # one datagram larger than the layout expects: it was scattered across pieces
        if nbytes <= HDR_LEN:
            return None
        hdrs = self.hdrs
        if hdrs[MAGIC_AT : MAGIC_AT + 2] != MAGIC or hdrs[IDX_AT] != 0:
            return None
        n = -(-nbytes // seg)
        if hdrs[COUNT_AT] != n:
            return None
        end = n * HDR_LEN
        if n > 1:
            expected = bytearray(hdrs[:IDX_AT] + b"\x00") * n
            expected[IDX_AT:end:HDR_LEN] = IDXS[:n]
            if hdrs[:end] != expected:
                return None
        seq = int.from_bytes(hdrs[SEQ_AT:IDX_AT], "big")
        return bytes(hdrs[:6]), hdrs[STREAM_AT], seq, hdrs[FLAGS_AT], self._body[: nbytes - end]

    def _whole_plain(self, nbytes: int, gso: int) -> tuple[bytes, int, int, int, memoryview] | None:
        """``whole`` for a receive into the plain buffer: a super-frame that fits one datagram (a ping, an ACK)."""
        buf = self.plain
        if 0 < gso < nbytes or nbytes <= HDR_LEN or buf[MAGIC_AT : MAGIC_AT + 2] != MAGIC:
            return None
        if buf[COUNT_AT] != 1 or buf[IDX_AT] != 0:
            return None  # a chunk of a larger super-frame: the general path reassembles it
        seq = int.from_bytes(buf[SEQ_AT:IDX_AT], "big")
        return bytes(buf[:6]), buf[STREAM_AT], seq, buf[FLAGS_AT], memoryview(buf)[HDR_LEN:nbytes]
