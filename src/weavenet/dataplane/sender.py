"""Encoding frames for a link and sending them: fast format or Weave's classic sleeve packets.

One ``Sender`` per sending process. It owns the sequence counters and encryptors it uses, so no nonce is ever
used by two processes: the transmit worker owns stream 0 and all classic encryptors, the receive worker relays
over fast links on stream 1 (classic relays are handed to the transmit worker).
"""

from __future__ import annotations

import os
import socket
import struct
from dataclasses import dataclass, field

from weavenet.core.sleeve_codec import NACL_OVERHEAD, PLAIN_OVERHEAD, Encryptor, encode_frames
from weavenet.dataplane import fastcrypto, fastwire, frames, gso, udp
from weavenet.dataplane.tables import Link

FRAME_HDR = 14
# A super-frame that fits one datagram, unsealed: its chunk header (count 1, index 0) and the super-frame header
# (source and destination peer) in one pack. Same bytes as the general path; far fewer steps, which counts on an
# idle machine where every step of a round trip runs with cold caches (measured: ~10x slower than warm).
SINGLE = struct.Struct(">6s2sBBBQB6s6s")
CHUNK_HEAD = struct.Struct(">6s2sBBBQB")  # a sealed one's chunk header; the super-frame header is sealed with it
# sendmsg flag (linux/socket.h; not in Python's socket module): the UDP send path as far as the route, then nothing
# is sent. What a rehearsal (worker.REHEARSAL) does instead of sending.
MSG_PROBE = 0x10


@dataclass
class SendStats:
    frames: int = 0
    super_frames: int = 0
    datagrams: int = 0
    bytes: int = 0
    no_address: int = 0
    too_big: int = 0
    errors: int = 0
    pmtu_updates: list[tuple[int, int]] = field(default_factory=list)  # (peer, max payload) to report
    # bytes sent to each peer (the next hop, UDP payloads): per-connection throughput for the web view and
    # /metrics; only peers with a link now (``Sender.forget`` drops the others, so it stays as small as the tables)
    by_peer: dict[int, int] = field(default_factory=dict)


class _LinkState:
    __slots__ = ("decoy_key", "enc", "enc_df", "fast_flags", "fast_key", "fast_overhead", "seq")

    def __init__(self, link: Link) -> None:
        self.seq = 0
        self.fast_key = fastcrypto.cipher_key(link.cipher, link.key) if link.key else None
        # what a rehearsal seals with: the same work under a key of its own, so that even a network stack that
        # ignored MSG_PROBE would put nothing on the wire under the next real nonce and the link's key
        self.decoy_key = os.urandom(len(self.fast_key)) if self.fast_key else None
        self.fast_flags = fastwire.cipher_flags(link.cipher) if link.key else 0
        self.fast_overhead = fastcrypto.overhead(link.cipher) if link.key else 0
        self.enc = Encryptor(link.key, link.outbound, df=False) if link.key else None
        self.enc_df = Encryptor(link.key, link.outbound, df=True) if link.key else None


class Sender:
    def __init__(self, sock: socket.socket, me: int, stream: int) -> None:
        self.sock = sock
        self.me_bin = me.to_bytes(6, "big")
        self.stream = stream
        self.stats = SendStats()
        self._state: dict[tuple[int, int], _LinkState] = {}  # (peer, conn uid) -> counters
        self._ciphers: dict[str, fastcrypto.Cipher] = {}
        self._plain = bytearray(70000)
        self._chunks = gso.ChunkWriter()
        # a rehearsal (worker.REHEARSAL): a one-datagram send goes as far as the kernel's route lookup, nothing is
        # sent and no counter moves; anything longer is not rehearsed
        self.rehearsing = False

    def _link_state(self, link: Link) -> _LinkState:
        key = (link.peer, link.conn_uid)
        st = self._state.get(key)
        if st is None:
            st = self._state[key] = _LinkState(link)
        return st

    def forget(self, live: set[tuple[int, int]]) -> None:
        for key in [k for k in self._state if k not in live]:
            del self._state[key]
        peers = {peer for peer, _ in live}
        by_peer = self.stats.by_peer
        for peer in [p for p in by_peer if p not in peers]:
            del by_peer[peer]

    def _sent(self, peer: int, n: int) -> None:
        self.stats.bytes += n
        by_peer = self.stats.by_peer
        by_peer[peer] = by_peer.get(peer, 0) + n

    # -- fast format ------------------------------------------------------------------------------------------

    def send_fast(self, link: Link, src: int, dst: int, vnet: bytes, frame: bytes | memoryview) -> None:
        if link.addr is None:
            if not self.rehearsing:
                self.stats.no_address += 1
            return
        st = self._state.get((link.peer, link.conn_uid)) or self._link_state(link)
        if SINGLE.size + frames.VNET_LEN + len(frame) + st.fast_overhead <= link.max_payload:
            seq = st.seq
            src_b, dst_b = src.to_bytes(6, "big"), dst.to_bytes(6, "big")
            if st.fast_key is None:
                bufs: tuple[bytes | memoryview, ...] = (
                    SINGLE.pack(self.me_bin, fastwire.MAGIC, self.stream, 1, 0, seq, 0, src_b, dst_b),
                    vnet,
                    frame,
                )
            else:
                nonce = fastwire.nonce(link.outbound, self.stream, seq)
                key = st.decoy_key if self.rehearsing else st.fast_key
                sealed = self._cipher(link.cipher).seal(src_b + dst_b + vnet + frame, nonce, key)
                head = CHUNK_HEAD.pack(self.me_bin, fastwire.MAGIC, self.stream, 1, st.fast_flags, seq, 0)
                bufs = (head, sealed)
            if self.rehearsing:
                try:
                    self.sock.sendmsg(bufs, (), MSG_PROBE, link.addr)
                except OSError:
                    pass
                return
            st.seq = seq + 1
            try:
                self._sent(link.peer, self.sock.sendmsg(bufs, (), 0, link.addr))
            except OSError:
                pass  # the general path below sorts it out (path MTU) and counts it
            else:
                self.stats.super_frames += 1
                self.stats.datagrams += 1
                return
        if self.rehearsing:
            return
        total = fastwire.SUPER_LEN + frames.VNET_LEN + len(frame)
        plain = self._plain
        if len(plain) < total:
            plain = self._plain = bytearray(total)
        fastwire.SUPER.pack_into(plain, 0, src.to_bytes(6, "big"), dst.to_bytes(6, "big"))
        plain[fastwire.SUPER_LEN : fastwire.SUPER_LEN + frames.VNET_LEN] = vnet
        plain[fastwire.SUPER_LEN + frames.VNET_LEN : total] = frame  # one copy; the chunks are views of it
        seq = st.seq
        st.seq += 1
        payload, flags = plain, 0
        if st.fast_key is not None:
            box = self._cipher(link.cipher)
            nonce = fastwire.nonce(link.outbound, self.stream, seq)
            total = len(box.seal(memoryview(plain)[:total], nonce, st.fast_key))
            payload, flags = box.buffer, st.fast_flags
        for _attempt in range(3):
            room = link.max_payload - fastwire.HDR_LEN
            count = max(1, -(-total // room))
            if count > fastwire.MAX_CHUNKS:
                self.stats.too_big += 1
                return
            common = fastwire.COMMON.pack(self.me_bin, fastwire.MAGIC, self.stream, count, flags, seq)
            iov = self._chunks.iov(common, payload, total, room)
            try:
                self._sent(link.peer, udp.send_gso(self.sock, link.addr, fastwire.HDR_LEN + room, iov))
            except OSError as e:
                if udp.is_too_big(e) and self._shrink(link):
                    continue
                self.stats.errors += 1
                return
            self.stats.super_frames += 1
            self.stats.datagrams += count
            return

    def _cipher(self, name: str) -> fastcrypto.Cipher:
        box = self._ciphers.get(name)
        if box is None:
            box = self._ciphers[name] = fastcrypto.make(name)
        return box

    def _shrink(self, link: Link) -> bool:
        """EMSGSIZE: adopt the kernel's path MTU for this destination. True if it got smaller."""
        assert link.addr is not None
        pmtu = udp.path_mtu(*link.addr)
        if pmtu is None or pmtu - 28 >= link.max_payload:
            return False
        link.max_payload = pmtu - 28
        self.stats.pmtu_updates.append((link.peer, link.max_payload))
        return True

    # -- classic (Weave 2.8) format ----------------------------------------------------------------------------

    def classic_mtu(self, link: Link) -> int:
        """Largest Ethernet payload (frame minus its 14-byte header) a classic packet can carry on this link."""
        overhead = NACL_OVERHEAD if link.key else PLAIN_OVERHEAD
        return link.max_payload - overhead - FRAME_HDR - frames.ETH_HLEN

    def send_classic(self, link: Link, items: list[tuple[int, int, bytes]], df: bool = True) -> list[bytes]:
        """Send frames (src peer, dst peer, frame) batched into as few packets as fit; returns frames too big."""
        if link.addr is None:
            self.stats.no_address += 1
            return []
        st = self._link_state(link)
        overhead = NACL_OVERHEAD if link.key else PLAIN_OVERHEAD
        limit = link.max_payload
        too_big: list[bytes] = []
        batch: list[tuple[bytes, bytes, bytes]] = []
        size = overhead
        for src, dst, frame in items:
            need = FRAME_HDR + len(frame)
            if overhead + need > limit:
                too_big.append(frame)
                continue
            if size + need > limit and batch:
                self._flush_classic(link, st, batch, df)
                batch, size = [], overhead
            batch.append((src.to_bytes(6, "big"), dst.to_bytes(6, "big"), frame))
            size += need
        if batch:
            self._flush_classic(link, st, batch, df)
        self.stats.too_big += len(too_big)
        return too_big

    def _flush_classic(self, link: Link, st: _LinkState, batch: list[tuple[bytes, bytes, bytes]], df: bool) -> None:
        assert link.addr is not None
        body = encode_frames(batch)
        enc = st.enc_df if df else st.enc
        packet = enc.seal(self.me_bin, body) if enc is not None else self.me_bin + body
        try:
            self._sent(link.peer, self.sock.sendto(packet, link.addr))
            self.stats.datagrams += 1
            self.stats.frames += len(batch)
        except OSError as e:
            if udp.is_too_big(e):
                self._shrink(link)
            self.stats.errors += 1


def classic_frames(vnet: bytes, frame: bytes | memoryview) -> list[bytes]:
    """What a Go peer can take: ordinary frames with complete checksums."""
    if vnet == frames.ZERO_VNET:
        return [bytes(frame)]
    return frames.segment(vnet, frame)
