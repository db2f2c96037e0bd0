"""Sleeve UDP packets (Weave 2.8 format): framing, NaCl encryption, replay protection.

A packet is ``sender name (6) ‖ frames…`` with ``frame = src peer (6) ‖ dst peer (6) ‖ uint16 BE length ‖
Ethernet frame``. On untrusted connections with a password the frames are sealed with NaCl secretbox under the
connection's session key: ``sender (6) ‖ seqNoAndDF (uint64 BE) ‖ secretbox(frames)``. The nonce's first byte says
whether the *sender* dialled the connection (so the two directions never share a nonce) and its last 8 bytes are
the sequence field, whose bit 63 marks the DF path; each path has its own counter and its own replay window.

The replay window keeps two 2^20-bit sets (current and previous window of ``seq >> 20``), exactly as Weave does,
so a Go peer and we agree on which packets are replays. Window state only moves after a packet authenticates.
"""

from __future__ import annotations

import struct
from collections.abc import Iterator
from dataclasses import dataclass

from nacl.bindings import crypto_secretbox, crypto_secretbox_open
from nacl.exceptions import CryptoError

from weavenet.errors import RemoteProtocolError

NAME_SIZE = 6
FRAME_HEADER = 14  # src peer, dst peer, length
PLAIN_OVERHEAD = NAME_SIZE
NACL_OVERHEAD = NAME_SIZE + 8 + 16
UDP_OVERHEAD = 28
ETHERNET_OVERHEAD = 14
MAX_UDP_PACKET = 65535
WINDOW_BITS = 20
DF_BIT = 1 << 63
HEARTBEAT_FRAME_LEN = ETHERNET_OVERHEAD + 8
FRAG_TEST_SIZE = 60001
PMTU_DISCOVERY_SIZE = 60000

_ZERO_HEADER = bytes(ETHERNET_OVERHEAD)
_HDR = struct.Struct(">6s6sH")
_SEQ = struct.Struct(">Q")


def sleeve_nonce(sender_outbound: bool, seq_and_df: int) -> bytes:
    """24-byte nonce: byte 0 = 0x80 if the sender is the outbound side (bit 6 clear: not TCP), tail = seq."""
    return (b"\x80" if sender_outbound else b"\x00") + bytes(15) + _SEQ.pack(seq_and_df)


@dataclass(slots=True, frozen=True)
class Frame:
    src: bytes  # 6-byte peer name where the frame entered the overlay
    dst: bytes  # 6-byte destination peer (next hop peer for broadcasts)
    data: bytes  # the Ethernet frame

    @property
    def special(self) -> bool:
        """Heartbeats and MTU probes: frames whose Ethernet header is all zeros."""
        return self.data[:ETHERNET_OVERHEAD] == _ZERO_HEADER and len(self.data) >= ETHERNET_OVERHEAD


def encode_frames(frames: list[tuple[bytes, bytes, bytes]]) -> bytes:
    return b"".join(_HDR.pack(src, dst, len(data)) + data for src, dst, data in frames)


def iter_frames(body: bytes | memoryview) -> Iterator[Frame]:
    """Parse the frames part of a packet; raises ``RemoteProtocolError`` like Weave's decoder."""
    mv = memoryview(body)
    pos, end = 0, len(mv)
    while end - pos >= FRAME_HEADER:
        src, dst, length = _HDR.unpack_from(mv, pos)
        pos += FRAME_HEADER
        if pos + length > end:
            raise RemoteProtocolError(f"too short; expected frame of length {length}, got {end - pos}")
        yield Frame(src, dst, bytes(mv[pos : pos + length]))
        pos += length
    if pos != end:
        raise RemoteProtocolError(f"{end - pos} octets of trailing garbage")


class Encryptor:
    """Seals packets for one path (normal or DF) of one connection."""

    __slots__ = ("_df", "_key", "_outbound", "seq")

    def __init__(self, key: bytes, outbound: bool, df: bool, first_seq: int = 0) -> None:
        self._key = key
        self._outbound = outbound
        self._df = df
        self.seq = first_seq

    def seal(self, sender: bytes, frames_bytes: bytes) -> bytes:
        seq_and_df = self.seq | DF_BIT if self._df else self.seq
        self.seq += 1
        nonce = sleeve_nonce(self._outbound, seq_and_df)
        return sender + _SEQ.pack(seq_and_df) + crypto_secretbox(frames_bytes, nonce, self._key)


class ReplayWindow:
    """Two bit sets: offsets seen in the current and in the previous window of ``seq >> 20``."""

    __slots__ = ("current", "previous", "window")

    def __init__(self) -> None:
        self.window = 0
        self.current: set[int] = set()
        self.previous: set[int] | None = None

    def accept(self, seq: int) -> bool:
        """Advance the window for ``seq`` and record it; False if it is a replay or too old."""
        window, offset = seq >> WINDOW_BITS, seq & ((1 << WINDOW_BITS) - 1)
        delta = window - self.window
        used: set[int] | None
        if delta < -1:
            return False
        if delta == -1:
            used = self.previous
        elif delta == 0:
            used = self.current
        elif delta == 1:
            self.window, self.previous, self.current = window, self.current, set()
            used = self.current
        else:
            self.window, self.previous, self.current = window, set(), set()
            used = self.current
        if used is None or offset in used:
            return False
        used.add(offset)
        return True


class Decryptor:
    """Opens packets from the remote end of one connection, dropping replays (per path)."""

    __slots__ = ("_key", "_remote_outbound", "_windows")

    def __init__(self, key: bytes, remote_outbound: bool) -> None:
        self._key = key
        self._remote_outbound = remote_outbound
        self._windows = (ReplayWindow(), ReplayWindow())

    def open(self, packet: bytes | memoryview) -> bytes | None:
        """Return the frames part, or None for a replay; raise ``RemoteProtocolError`` if it is forged."""
        if len(packet) < NAME_SIZE + 8:
            raise RemoteProtocolError("sleeve packet too short for its sequence number")
        (seq_and_df,) = _SEQ.unpack_from(packet, NAME_SIZE)
        try:
            plain = crypto_secretbox_open(
                bytes(packet[NAME_SIZE + 8 :]), sleeve_nonce(self._remote_outbound, seq_and_df), self._key
            )
        except (CryptoError, ValueError) as e:
            raise RemoteProtocolError("UDP packet decryption failed") from e
        window = self._windows[1 if seq_and_df & DF_BIT else 0]
        return plain if window.accept(seq_and_df & ~DF_BIT) else None


def heartbeat_frame(connection_uid: int) -> bytes:
    return _ZERO_HEADER + _SEQ.pack(connection_uid)


# weavenet's ask (lean liveness, ``core/contact.py``): a heartbeat followed by this magic, answered at once with a
# heartbeat. Only sent to peers that announced lean liveness (to Weave 2.8 it would be a PMTU verification frame).
ASK_MAGIC = b"WNsa"
ASK_FRAME_LEN = HEARTBEAT_FRAME_LEN + len(ASK_MAGIC)


def ask_frame(connection_uid: int) -> bytes:
    return heartbeat_frame(connection_uid) + ASK_MAGIC


def parse_ask(frame: bytes) -> int | None:
    """The connection UID of a well-formed ask frame (zero Ethernet header, UID, magic), else None."""
    if len(frame) != ASK_FRAME_LEN or frame[:ETHERNET_OVERHEAD] != _ZERO_HEADER or frame[-4:] != ASK_MAGIC:
        return None
    (uid,) = _SEQ.unpack_from(frame, ETHERNET_OVERHEAD)
    return int(uid)
