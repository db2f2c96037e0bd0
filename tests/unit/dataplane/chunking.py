"""The fast format's chunking written the plain way: the reference the workers' prebuilt encoder is checked
against (``gso.ChunkWriter``), and a simple way for tests to make datagrams."""

from __future__ import annotations

from weavenet.dataplane.fastwire import COMMON, FLAG_ENCRYPTED, HDR_LEN, MAGIC, MAX_CHUNKS

_IDX = [bytes((i,)) for i in range(256)]


def chunks(
    sender: bytes,
    stream: int,
    seq: int,
    payload: bytes | memoryview,
    max_payload: int,
    encrypted: bool,
    prefix: bytes = b"",
) -> tuple[int, list[bytes | memoryview]]:
    """Split ``prefix + payload`` into datagrams: (segment size, [common0, index0, piece0, common1, ...]), three
    buffers per datagram.

    Only the first piece is copied (to join the short prefix); the rest are views into ``payload``.
    """
    room = max_payload - HDR_LEN
    total = len(prefix) + len(payload)
    n = max(1, -(-total // room))
    if n > MAX_CHUNKS:
        raise ValueError(f"super-frame of {total} bytes needs {n} chunks")
    mv = memoryview(payload)
    common = COMMON.pack(sender, MAGIC, stream, n, FLAG_ENCRYPTED if encrypted else 0, seq)
    first = room - len(prefix)
    iov: list[bytes | memoryview] = [common, _IDX[0], prefix + bytes(mv[:first])]
    iov += [x for i in range(1, n) for x in (common, _IDX[i], mv[first + (i - 1) * room : first + i * room])]
    return HDR_LEN + room, iov
