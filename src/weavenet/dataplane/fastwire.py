"""weavenet's fast sleeve format, used between two weavenet peers (negotiated; Go peers never see it).

The kernel hands us TCP flows as 64 KB super-frames (TAP with TSO offload); we carry each one whole, with its
virtio-net header, so the receiving kernel delivers it as one large packet: one crypto operation, one syscall on
each side, instead of ~45 of each. A super-frame is::

    src peer (6) ‖ dst peer (6) ‖ virtio_net_hdr (10) ‖ Ethernet frame

optionally sealed (flag 1) with NaCl secretbox under the connection's session key, or, when both peers offer
it, with AEGIS-256 under a key derived from it (flags 1 | 2; see ``fastcrypto``), then cut into chunks that fit the path
MTU and sent with UDP GSO (one ``sendmsg`` for all chunks). Each UDP datagram is::

    sender name (6) ‖ FF FE ‖ stream (1) ‖ chunk count (1) ‖ flags (1) ‖ seq (8) ‖ chunk index (1) ‖ chunk

(the index comes last so all chunks of a super-frame share their first 19 bytes, built once).

``FF FE`` cannot start a classic sleeve packet body from a weavenet peer (classic plain frames begin with a peer
name, never FF FE; classic encrypted ones with a sequence number far below 2^63 or with bit 63 = 80). ``stream``
separates independent senders of one peer (its transmit and relay processes): each has its own sequence, nonces
(byte 0 = polarity 0x80 | 0x20 fast | stream) and replay window, so no nonce is ever used twice.
"""

from __future__ import annotations

import struct
from dataclasses import dataclass, field

from weavenet.core.sleeve_codec import ReplayWindow
from weavenet.dataplane import fastcrypto
from weavenet.errors import RemoteProtocolError

MAGIC = b"\xff\xfe"
COMMON = struct.Struct(">6s2sBBBQ")  # sender, magic, stream, count, flags, seq
HDR_LEN = COMMON.size + 1  # 20
SUPER = struct.Struct(">6s6s")
SUPER_LEN = SUPER.size  # 12
FLAG_ENCRYPTED = 1
FLAG_AEGIS = 2  # with FLAG_ENCRYPTED: sealed with AEGIS-256, not secretbox
MAX_CHUNKS = 255
REASSEMBLY_TIMEOUT = 1.0
MAX_PENDING = 512


def is_fast(datagram: bytes | memoryview) -> bool:
    return len(datagram) >= HDR_LEN and datagram[6:8] == MAGIC


def nonce(sender_outbound: bool, stream: int, seq: int) -> bytes:
    return bytes(((0x80 if sender_outbound else 0) | 0x20 | (stream & 3),)) + bytes(15) + seq.to_bytes(8, "big")


def seal(
    plain: bytes, key: bytes, sender_outbound: bool, stream: int, seq: int, cipher: str = fastcrypto.SECRETBOX
) -> bytes:
    """A sealed super-frame payload (``key`` is the session key; the cipher's own key is derived here)."""
    box = fastcrypto.make(cipher)
    return bytes(box.seal(plain, nonce(sender_outbound, stream, seq), fastcrypto.cipher_key(cipher, key)))


def cipher_flags(cipher: str) -> int:
    """The header flags of a super-frame sealed with ``cipher``."""
    return FLAG_ENCRYPTED | (FLAG_AEGIS if cipher == fastcrypto.AEGIS256 else 0)


def unpack_header(buf: bytes | memoryview, pos: int = 0) -> tuple[bytes, bytes, int, int, int, int, int]:
    """(sender, magic, stream, count, flags, seq, index) of the chunk at ``pos``."""
    return (*COMMON.unpack_from(buf, pos), buf[pos + HDR_LEN - 1])


@dataclass(slots=True)
class _Pending:
    count: int
    flags: int
    parts: dict[int, memoryview] = field(default_factory=dict)
    started: float = 0.0
    size: int = 0


class Reassembler:
    """Collects the chunks of super-frames from all peers; drops incomplete ones after a timeout.

    Chunks are kept as views into the receive buffers (no copies): a GRO ``recvmsg`` usually returns a run of
    consecutive chunks of one super-frame, which ``add_run`` takes in one go.
    """

    def __init__(self) -> None:
        self.pending: dict[tuple[bytes, int, int], _Pending] = {}  # empty: nothing to salvage or expire
        self.dropped = 0

    def add(self, datagram: memoryview, now: float) -> tuple[bytes, int, int, int, list[memoryview]] | None:
        """One datagram; returns (sender, stream, seq, flags, pieces) once a super-frame is complete."""
        if len(datagram) < HDR_LEN:
            raise RemoteProtocolError("fast sleeve datagram too short")
        sender, magic, stream, count, flags, seq, idx = unpack_header(datagram)
        if magic != MAGIC:
            raise RemoteProtocolError("malformed fast sleeve header")
        return self.add_run(sender, stream, seq, count, idx, flags, [datagram[HDR_LEN:]], now)

    def add_run(
        self,
        sender: bytes,
        stream: int,
        seq: int,
        count: int,
        idx: int,
        flags: int,
        pieces: list[memoryview],
        now: float,
    ) -> tuple[bytes, int, int, int, list[memoryview]] | None:
        """Consecutive chunks ``idx``, ``idx+1``, … of one super-frame."""
        if count == 0 or idx + len(pieces) > count:
            raise RemoteProtocolError("malformed fast sleeve chunk numbering")
        if idx == 0 and len(pieces) == count:
            return sender, stream, seq, flags, pieces
        key = (sender, stream, seq)
        pending = self.pending.get(key)
        if pending is None:
            if len(self.pending) >= MAX_PENDING:
                self.expire(now, force=True)
            pending = self.pending[key] = _Pending(count, flags, started=now)
        elif pending.count != count:
            del self.pending[key]
            raise RemoteProtocolError("fast sleeve chunk count changed")
        for i, piece in enumerate(pieces, idx):
            if i not in pending.parts:
                pending.parts[i] = piece
                pending.size += len(piece)
        if pending.size > 1 << 17:
            del self.pending[key]
            raise RemoteProtocolError("fast sleeve super-frame too large")
        if len(pending.parts) < count:
            return None
        del self.pending[key]
        return sender, stream, seq, pending.flags, [pending.parts[i] for i in range(count)]

    def take_stale(self, sender: bytes, stream: int, seq: int) -> list[tuple[int, int, dict[int, memoryview]]]:
        """Incomplete super-frames of this sender and stream older than ``seq``: their missing chunks are lost
        (chunks of one stream arrive in order on one path), so hand back what arrived, as (flags, count, parts),
        for salvage."""
        stale = [k for k in self.pending if k[0] == sender and k[1] == stream and k[2] < seq]
        out = []
        for k in stale:
            p = self.pending.pop(k)
            self.dropped += 1
            out.append((p.flags, p.count, p.parts))
        return out

    def expire(self, now: float, force: bool = False) -> None:
        cutoff = now - REASSEMBLY_TIMEOUT
        for key in [k for k, p in self.pending.items() if p.started < cutoff]:
            del self.pending[key]
            self.dropped += 1
        if force and len(self.pending) >= MAX_PENDING:
            oldest = min(self.pending, key=lambda k: self.pending[k].started)
            del self.pending[oldest]
            self.dropped += 1


def runs(buf: memoryview, size: int) -> list[tuple[bytes, int, int, int, int, int, list[memoryview]] | int]:
    """Split a GRO buffer of ``size``-byte datagrams into runs of consecutive fast chunks.

    Each item is either (sender, stream, seq, count, first idx, flags, pieces) or, for a datagram that is not a
    fast chunk, its offset in ``buf``. The common case, the rest of the buffer being consecutive chunks of one
    super-frame, is recognised from its first and last header alone.
    """
    out: list[tuple[bytes, int, int, int, int, int, list[memoryview]] | int] = []
    end = len(buf)
    pos = 0
    while pos < end:
        if end - pos < HDR_LEN or buf[pos + 6 : pos + 8] != MAGIC:
            out.append(pos)
            pos += size
            continue
        sender, _magic, stream, count, flags, seq, idx = unpack_header(buf, pos)
        left = -(-(end - pos) // size)  # datagrams from here to the end
        take = 1
        if left > 1:
            last = pos + (left - 1) * size
            if (
                end - last >= HDR_LEN
                and buf[last : last + HDR_LEN - 1] == buf[pos : pos + HDR_LEN - 1]
                and (buf[last + HDR_LEN - 1] == idx + left - 1)
            ):
                take = left
            else:
                expect, nxt, common = idx + 1, pos + size, buf[pos : pos + HDR_LEN - 1]
                while (
                    nxt + HDR_LEN <= end and buf[nxt + HDR_LEN - 1] == expect and buf[nxt : nxt + HDR_LEN - 1] == common
                ):
                    take += 1
                    expect += 1
                    nxt += size
        pieces = [buf[p + HDR_LEN : p + size] for p in range(pos, pos + take * size, size)]  # slices clamp at end
        out.append((sender, stream, seq, count, idx, flags, pieces))
        pos += take * size
    return out


class FastDecryptor:
    """Opens sealed super-frames of one link, with a replay window per stream."""

    def __init__(self, key: bytes, remote_outbound: bool, cipher: str = fastcrypto.SECRETBOX) -> None:
        self.cipher = cipher
        self.flags = cipher_flags(cipher)
        self.key = fastcrypto.cipher_key(cipher, key)
        self.remote_outbound = remote_outbound
        self._windows: dict[int, ReplayWindow] = {}
        self._opener = fastcrypto.make(cipher)

    def open(self, stream: int, seq: int, sealed: bytes | memoryview, record: bool = True) -> memoryview | None:
        """Plaintext (valid until the next call), or None for a replay; raises RemoteProtocolError for a forgery.

        ``record=False`` (a rehearsal of one already accepted, worker.REHEARSAL) opens without the replay window.
        """
        plain = self._opener.open(sealed, nonce(self.remote_outbound, stream, seq), self.key)
        if plain is None:
            raise RemoteProtocolError("fast sleeve decryption failed")
        if not record:
            return plain
        window = self._windows.setdefault(stream & 3, ReplayWindow())
        return plain if window.accept(seq) else None
