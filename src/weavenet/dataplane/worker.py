"""The data-plane worker processes: one moves frames bridge → peers (tx), one peers → bridge (rx).

Why processes and blocking syscalls: per-packet work in Python is bound by the interpreter, and two directions
in one process contend for one GIL (measured: one process per direction moved ~1.3× more than two threads and
~1.5× more than an asyncio loop). The control plane (gossip, API) stays in the router process and tells the
workers what they need through a channel: links (peer, UDP address, key, format) and routes. The workers tell
each other the MACs they learn, and the rx worker hands the router the sleeve's special frames (heartbeats, MTU
probes). Started as ``python -m weavenet.dataplane.worker tx|rx`` with the TAP, UDP socket and channel fds
inherited.

With the fast datapath the rx worker also reads the VXLAN sniffer (``weavenet.dataplane.vxlan``): heartbeats go
to the router; broadcasts that came over VXLAN are passed on along the sender's broadcast routes through the
sleeve (the kernel delivered them locally already), or injected here if no kernel device took them.
"""

from __future__ import annotations

import argparse
import contextlib
import errno
import os
import select
import signal
import socket
import sys
import time
import traceback
from typing import Any

from weavenet.core.fastdp_codec import is_special, parse_ipv4_vxlan, split_vni
from weavenet.core.sleeve_codec import NAME_SIZE, Decryptor, iter_frames
from weavenet.dataplane import fastwire, forward, frames, gso, steering, toobig, udp
from weavenet.dataplane.channel import Channel
from weavenet.dataplane.frames import ETH_HLEN, VNET_LEN, ZERO_VNET
from weavenet.dataplane.gso import COUNT_AT, FLAGS_AT, IDX_AT, MAGIC_AT, SEQ_AT, STREAM_AT
from weavenet.dataplane.mac_cache import LOCAL, REFRESH, MacCache
from weavenet.dataplane.sender import Sender, classic_frames
from weavenet.dataplane.tables import Link, Tables
from weavenet.errors import RemoteProtocolError

TAP_READ = 65536 + VNET_LEN + 64
HOUSEKEEPING = 1.0
IDLE_POLL_MS = int(HOUSEKEEPING * 1000)
# After a unicast frame from or to the bridge (a conversation; heartbeats and group-address chatter such as router
# solicitations do not count) the workers that read small frames (the rx worker; the tx worker too unless TAP
# steering hands them all to the rx worker) wake every WARM_TICK_MS, with nothing to do, for WARM_FOR seconds. Why:
# on a VM whose CPUs halt when idle, a packet after 10 ms of silence meets a halted CPU, and the host's wake-up of it
# is the costliest step of a round trip; measured on this machine kind with pings 10 ms apart, 0.57 -> 0.51 ms per
# round trip (docs/benchmarks.md), while the worker's own CPU per ping stayed the same (the gain is the wake; warm
# caches are the rehearsal's, REHEARSAL below); a 0.4 ms tick gained little more for 2.5 times the cost. Cost while
# warm: a wake per millisecond, ~3 % of a core per ticking worker. Nothing when idle (measured: no tick in 30 s of an
# idle test bed, whose heartbeats and router solicitations had kept it warm ~40 % of the time when any datagram
# counted), nothing in bulk (poll returns with events before the tick). With steering, only super-frames and jumbo
# frames (over steering.SMALL_FRAME) go to the tx worker, which then does not tick. WEAVE_NO_WARM_TICK turns it off.
WARM_TICK_MS = 1
WARM_FOR = 1.0
# REHEARSAL: on each warm tick the worker also rehearses its part of a round trip: a non-blocking read of what it
# waits on (what is there is handled for real) and a replay of the last frame each of its express paths delivered,
# with the final syscall left out (the UDP send becomes a MSG_PROBE: the kernel's send path as far as the route,
# nothing sent; the TAP write is skipped) and nothing changed (no sequence number, replay window, counter or MAC
# entry; a sealed frame is opened again, or sealed again under a throwaway key, see sender._LinkState). Why: the
# tick keeps the CPU from halting, not the round trip's code and data in its caches, and on this VM every step of a
# round trip after 10 ms of silence ran ~3 times slower than after 2 ms (docs/benchmarks.md: express_out's checks
# 28 us against 8 us). Measured, pings 10 ms apart: 0.457 -> 0.357 ms per round trip, encrypted 0.550 -> 0.390 ms;
# the reads, the replay and the probe each gave part of it. Cost while warm: ~35 us per tick, ~3.5 % of a core per
# ticking worker on top of the tick's 3 %. WEAVE_NO_REHEARSAL turns it off (the tick stays); WEAVE_NO_WARM_TICK both.
CHORES = 0.1  # seconds between the rx worker's checks for expired reassemblies and housekeeping
# A wake this soon after the last one means traffic is dense: read until EAGAIN (one failed read per batch).
# Otherwise the rx worker reads one datagram or small frame and goes back to poll, which returns at once if more
# are queued: on an idle machine the failed read, its exception included, is one more cold step of a round trip.
BURST_GAP = 0.0002  # 5,000 wakes per second: above that, the poll per datagram would cost more than it saves
STATS_INTERVAL = 2.0
STRANGER_GAP = 0.5  # the router hears of datagrams from one IP without a link at most this often
TX_STREAM, RX_STREAM = 0, 1
ANNOUNCE_EVERY = 60.0
ANSWER_READS = 1  # frames the rx worker takes from the TAP after each injection (more: the poll loop sees them)
# The express paths (``express_out``, ``RxWorker.express_in``) take the frames of a conversation between MACs
# the workers know (a ping, an ACK, a DNS query once ARP is done) in one step each, and leave everything else
# (learning, announcing, group addresses, relays, classic links, encryption, reassembly in progress) to the
# general path, whose outcome they equal for their case. Why: on an idle machine every step of a round trip runs
# with cold caches, so a round trip costs in proportion to the code and data it touches (measured: one datagram
# in and its answer out took ~1,100 bytecodes through the general path; a bare-bones path was 0.12 ms faster
# per round trip with pings 10 ms apart).
EXPRESS_MAX = 2048  # bytes read or received, at most: bulk goes through the general path anyway
IN_PEERS = fastwire.HDR_LEN  # in a one-datagram super-frame: source and destination peer,
IN_VNET = IN_PEERS + fastwire.SUPER_LEN  # the virtio-net header,
IN_FRAME = IN_VNET + VNET_LEN  # the frame


def poll_timeout(now: float, last_traffic: float, tick_ms: int) -> int:
    """How long the poll loop may wait (ms): ``tick_ms`` for WARM_FOR seconds after traffic, else IDLE_POLL_MS."""
    if tick_ms and now - last_traffic < WARM_FOR:
        return tick_ms
    return IDLE_POLL_MS


def tick_settings(no_warm_tick: bool, no_rehearsal: bool) -> tuple[int, bool]:
    """The worker's tick (ms, 0 for none) and whether it rehearses, from its flags: no tick, no rehearsal."""
    return (0 if no_warm_tick else WARM_TICK_MS), not (no_warm_tick or no_rehearsal)


class _Base:
    express = True  # tests turn it off to check that the general path does the same
    sender: Sender
    warm_tick = WARM_TICK_MS  # 0: no wakes without events (--no-warm-tick)
    rehearse = True  # the warm tick rehearses (REHEARSAL); off with --no-rehearsal or --no-warm-tick

    def __init__(self, tap: int, sock: socket.socket, ctl: Channel, peer: Channel) -> None:
        self.tap = tap
        self.sock = sock
        self.ctl = ctl
        self.peer = peer
        self.tables = Tables(me=0)
        self.macs = MacCache()
        self.running = True
        self.counters: dict[str, int] = {}
        self._last_housekeeping = 0.0
        self._last_stats = 0.0
        self._announced: dict[bytes, float] = {}
        self._rbuf = bytearray(TAP_READ)
        self.unicast = False  # a unicast frame from or to our bridge since the poll loop looked (WARM_TICK_MS)
        self.rehearsing = False  # replaying (REHEARSAL): nothing is sent or written, nothing changes
        self._out = bytearray(EXPRESS_MAX)  # the last frame express_out sent (virtio-net header, frame)
        self._out_len = 0

    def count(self, what: str, n: int = 1) -> None:
        self.counters[what] = self.counters.get(what, 0) + n

    def internal_error(self) -> None:
        self.count("internal_errors")
        if self.counters["internal_errors"] <= 3:  # the first few, with their traceback, for the log
            traceback.print_exc(file=sys.stderr)

    def on_tables(self, tables: Tables) -> None:
        self.tables = tables

    def handle(self, msg: tuple[Any, ...]) -> None:
        kind = msg[0]
        if kind == "tables":
            self.on_tables(msg[1])
        elif kind == "stop":
            self.running = False
        else:
            self.on_message(msg)

    def on_message(self, msg: tuple[Any, ...]) -> None:
        pass

    def run(self) -> None:
        raise NotImplementedError

    def housekeeping(self, now: float) -> None:
        if now - self._last_housekeeping >= HOUSEKEEPING:
            self._last_housekeeping = now
            self.macs.expire(now)
        if now - self._last_stats >= STATS_INTERVAL:
            self._last_stats = now
            self.report()

    def report(self) -> None:
        pass

    # -- frames from our bridge (both workers: see RxWorker.frame_parts) ----------------------------------------

    def read_tap(self, limit: int = 64, queue: int = -1) -> int:
        """Read up to ``limit`` frames from a TAP queue (default: ours, the first) and send each where it goes;
        returns how many were read."""
        now = time.monotonic()
        rbuf = self._rbuf
        fd = self.tap if queue < 0 else queue
        for i in range(limit):
            try:
                n = os.readv(fd, [rbuf])  # into one reused buffer: what we read is sent before the next read
            except BlockingIOError:
                return i
            except OSError as e:
                if e.errno in (errno.EIO, errno.EBADFD):
                    self.count("tap_errors")
                    return i
                raise
            if n < VNET_LEN + ETH_HLEN:
                continue
            mv = memoryview(rbuf)[:n]
            if not rbuf[VNET_LEN] & 1:
                self.unicast = True  # a conversation (not the group-address chatter of idle hosts): stay warm
            try:
                if self.express and self.express_out(mv, n, now):
                    continue
            except Exception:
                self.internal_error()
                continue
            vnet, frame = bytes(mv[:VNET_LEN]), mv[VNET_LEN:]
            dst, src = bytes(frame[0:6]), bytes(frame[6:12])
            try:
                for hop, s, d in forward.from_local(self.tables, self.macs, dst, src, now):
                    self.send(hop, s, d, vnet, frame)
            except Exception:  # a bug must cost one frame, never the data plane
                self.internal_error()
            if self.macs.lookup(src) == LOCAL and now - self._announced.get(src, -1e9) > ANNOUNCE_EVERY:
                self._announced[src] = now  # the other worker needs our local MACs too (to relay unknown unicast)
                self.peer.send(("local", src))
        return limit

    def express_out(self, mv: memoryview, n: int, now: float) -> bool:
        """A frame from the bridge (``mv``: virtio-net header, frame) between a local MAC and one behind a fast
        link, sent in one step; False, having changed nothing, for anything else (see EXPRESS_MAX)."""
        if n > EXPRESS_MAX or mv[VNET_LEN] & 1:
            return False
        entries = self.macs.entries
        src = bytes(mv[VNET_LEN + 6 : VNET_LEN + 12])
        se = entries.get(src)
        if se is None or se.peer != LOCAL or now - se.seen > REFRESH:
            return False  # to learn or refresh
        if now - self._announced.get(src, -1e9) > ANNOUNCE_EVERY:
            return False  # to announce
        de = entries.get(bytes(mv[VNET_LEN : VNET_LEN + 6]))
        if de is None or de.peer == LOCAL:
            return False  # to flood, or to drop
        tables = self.tables
        hop = tables.unicast.get(de.peer)
        link = None if hop is None else tables.links.get(hop)
        if link is None or not link.fast:
            return False
        self.sender.send_fast(link, tables.me, de.peer, mv[:VNET_LEN], mv[VNET_LEN:n])
        if self.rehearse and not self.rehearsing:
            self._out[:n] = mv  # same length: no resize
            self._out_len = n
        return True

    def tick(self, now: float) -> None:
        """A warm tick (poll returned nothing): count it, and rehearse (REHEARSAL)."""
        self.count("warm_ticks")
        if not self.rehearse:
            return
        self.rehearse_reads()
        self.rehearsing = self.sender.rehearsing = True
        try:
            if self._out_len:
                self.express_out(memoryview(self._out)[: self._out_len], self._out_len, now)
            self.rehearse_in(now)
        except Exception:
            self.internal_error()
        finally:
            self.rehearsing = self.sender.rehearsing = False

    def rehearse_reads(self) -> None:
        """Non-blocking reads of what the poll loop waits on (each subclass); what they find is handled for real."""

    def rehearse_in(self, now: float) -> None:
        """Replay the last datagram the express path from peers took (the rx worker)."""

    def forget_rehearsal(self) -> None:
        """New tables: links may be gone or rekeyed, so the saved frames are not replayed (the next real ones are)."""
        self._out_len = 0

    def send(self, hop: int, src: int, dst: int, vnet: bytes, frame: bytes | memoryview) -> None:
        raise NotImplementedError

    def pump_channels(self, fd: int) -> None:
        for chan in (self.ctl, self.peer):
            if fd == chan.fileno():
                try:
                    for msg in chan.receive():
                        self.handle(msg)
                except EOFError:
                    self.running = False


class TxWorker(_Base):
    """Bridge → peers: read the TAP, decide, encode, send. Also sends what the router and rx hand it."""

    def __init__(self, tap: int, sock: socket.socket, ctl: Channel, peer: Channel) -> None:
        super().__init__(tap, sock, ctl, peer)
        self.sender = Sender(sock, 0, TX_STREAM)
        # small frames from the bridge come to us (not all to the rx worker's queue): the warm tick is ours too
        self.reads_small = True  # until the data plane says the TAP runs the split program ("steering")

    def on_tables(self, tables: Tables) -> None:
        self.tables = tables
        self.sender.me_bin = tables.me.to_bytes(6, "big")
        self.sender.forget({(lk.peer, lk.conn_uid) for lk in tables.links.values()})
        self.forget_rehearsal()

    def on_message(self, msg: tuple[Any, ...]) -> None:
        kind = msg[0]
        if kind == "mac":  # learned by rx: a remote MAC and its peer
            self.macs.add_forced(msg[1], msg[2], time.monotonic())
        elif kind == "local":  # rx read a frame of a local MAC from the TAP
            self.macs.add_local(msg[1], time.monotonic())
        elif kind == "special":  # from the router: (peer, conn_uid, frame, df[, more frames for the datagram])
            link = self.tables.links.get(msg[1])
            if link is not None and link.conn_uid == msg[2]:
                frames = [msg[3], *(msg[5] if len(msg) > 5 else ())]
                self.sender.send_classic(link, [(self.tables.me, msg[1], f) for f in frames], df=msg[4])
        elif kind == "relay":  # from rx: a classic relay (hop, src, dst, vnet, frame)
            self.send(msg[1], msg[2], msg[3], msg[4], msg[5])
        elif kind == "steering":  # from the router: whether the TAP hands every small frame to the rx worker
            self.reads_small = not msg[1]

    def run(self) -> None:
        os.set_blocking(self.tap, False)
        poller = select.poll()
        for fd in (self.tap, self.ctl.fileno(), self.peer.fileno()):
            poller.register(fd, select.POLLIN)
        now, traffic = 0.0, float("-inf")  # no traffic yet: no ticks
        while self.running:
            timeout = poll_timeout(now, traffic, self.warm_tick if self.reads_small else 0)
            events = poller.poll(timeout)
            now = time.monotonic()
            if not events and timeout != IDLE_POLL_MS:
                self.tick(now)
            for fd, _ in events:
                if fd == self.tap:
                    self.read_tap()
                else:
                    self.pump_channels(fd)
            if self.unicast:
                traffic, self.unicast = now, False
            self.housekeeping(now)

    def rehearse_reads(self) -> None:
        self.read_tap(1)

    def send(self, hop: int, src: int, dst: int, vnet: bytes, frame: bytes | memoryview) -> None:
        link = self.tables.links.get(hop)
        if link is None:
            self.count("no_link")
            return
        if link.fast:
            self.sender.send_fast(link, src, dst, vnet, frame)
            return
        mtu = self.sender.classic_mtu(link)
        items: list[tuple[int, int, bytes]] = []
        for f in classic_frames(vnet, frame):
            if len(f) - ETH_HLEN <= mtu:
                items.append((src, dst, f))
                continue
            frags, reply = toobig.handle(f, mtu)
            items.extend((src, dst, piece) for piece in frags)
            if reply is not None and src == self.tables.me:
                self.count("icmp_frag_needed")
                self.inject(reply)
            elif not frags:
                self.count("too_big_dropped")
        self.sender.send_classic(link, items)

    def inject(self, frame: bytes) -> None:
        with contextlib.suppress(OSError):
            os.writev(self.tap, [ZERO_VNET, frame])

    def report(self) -> None:
        st = self.sender.stats
        stats = {"tx_" + k: v for k, v in self.counters.items()}
        stats.update(
            tx_frames=st.frames,
            tx_super_frames=st.super_frames,
            tx_datagrams=st.datagrams,
            tx_bytes=st.bytes,
            tx_no_address=st.no_address,
            tx_too_big=st.too_big,
            tx_errors=st.errors,
        )
        macs = [(mac.hex(), peer) for mac, peer, _ in self.macs.items()]
        peers = {peer: (0, n) for peer, n in st.by_peer.items()}  # (received, sent) bytes by peer
        self.ctl.send(("stats", "tx", stats, macs, list(st.pmtu_updates), peers))
        st.pmtu_updates.clear()


class RxWorker(_Base):
    """Peers → bridge: receive (GRO), decrypt, reassemble, inject or relay; specials go to the router.

    With TAP steering (``steering.py``) it also reads the TAP's second queue, where small frames from the bridge
    land, and sends them itself.
    """

    def __init__(
        self,
        tap: int,
        sock: socket.socket,
        ctl: Channel,
        peer: Channel,
        sniffer: socket.socket | None = None,
        tap_rx: int = -1,
    ) -> None:
        super().__init__(tap, sock, ctl, peer)
        self.sniffer = sniffer
        self.tap_rx = tap_rx  # our TAP queue, -1 without steering
        self.burst = True  # traffic is dense (see BURST_GAP); until the poll loop knows, read until EAGAIN
        self.answers = tap  # where the answer to an injected frame is read from: the queue small frames go to
        self.sender = Sender(sock, 0, RX_STREAM)
        self.reasm = fastwire.Reassembler()
        self.reader = gso.ChunkReader()
        self._by_bin: dict[bytes, Link] = {}
        self._classic_dec: dict[tuple[int, int], Decryptor] = {}
        self._fast_dec: dict[tuple[int, int], fastwire.FastDecryptor] = {}
        self.injected = 0
        self._in = bytearray(EXPRESS_MAX)  # the last datagram express_in delivered (REHEARSAL)
        self._in_len = 0
        self._cmsg = socket.CMSG_SPACE(4)
        self._strangers: dict[str, float] = {}  # IP -> when the router was last told of a datagram without a link
        # bytes received from each peer with a link (UDP payloads, GRO runs whole): per-connection throughput for the
        # web view and /metrics; keyed only by peers in the tables, so a stranger's datagrams cannot grow it
        self.received: dict[int, int] = {}

    def on_tables(self, tables: Tables) -> None:
        self.tables = tables
        self.sender.me_bin = tables.me.to_bytes(6, "big")
        self._by_bin = {peer.to_bytes(6, "big"): link for peer, link in tables.links.items()}
        live = {(lk.peer, lk.conn_uid) for lk in tables.links.values()}
        self.sender.forget(live)
        for cache in (self._classic_dec, self._fast_dec):
            for key in [k for k in cache if k not in live]:
                del cache[key]
        for peer in [p for p in self.received if p not in tables.links]:
            del self.received[peer]
        self.answers = self.tap_rx if self.tap_rx >= 0 and steering.wanted(tables) else self.tap
        self.forget_rehearsal()

    def forget_rehearsal(self) -> None:
        super().forget_rehearsal()
        self._in_len = 0

    def on_message(self, msg: tuple[Any, ...]) -> None:
        if msg[0] == "local":
            self.macs.add_local(msg[1], time.monotonic())

    def run(self) -> None:
        self.sock.setblocking(False)
        os.set_blocking(self.tap, False)  # it reads the TAP too (after injecting), never waiting on it
        poller = select.poll()
        for fd in (self.sock.fileno(), self.ctl.fileno(), self.peer.fileno()):
            poller.register(fd, select.POLLIN)
        sniff_fd = self.sniffer.fileno() if self.sniffer is not None else -1
        if sniff_fd >= 0:
            poller.register(sniff_fd, select.POLLIN)
        tap_rx = self.tap_rx
        if tap_rx >= 0:
            os.set_blocking(tap_rx, False)
            poller.register(tap_rx, select.POLLIN)
        cmsg = self._cmsg
        tick = self.warm_tick
        chores = last = now = 0.0
        traffic = float("-inf")  # no traffic yet: no ticks
        while self.running:
            timeout = poll_timeout(now, traffic, tick)
            events = poller.poll(timeout)
            now = time.monotonic()
            if events:  # a tick is no traffic: a packet right after one is no burst
                self.burst = now - last < BURST_GAP
                last = now
            elif timeout != IDLE_POLL_MS:
                self.tick(now)
            for fd, _ in events:
                if fd == tap_rx:
                    self.read_tap(64 if self.burst else 1, tap_rx)
                elif fd == sniff_fd:
                    self.read_sniffer()
                elif fd == self.sock.fileno():
                    self.read_socket(cmsg)
                else:
                    self.pump_channels(fd)
            if self.unicast:  # not heartbeats, not router solicitations: alone, they leave an idle router asleep
                traffic, self.unicast = now, False
            if now >= chores:  # not on every wake: each step of a wake costs (see EXPRESS_MAX)
                chores = now + CHORES
                self.reasm.expire(now)
                self.housekeeping(now)

    def rehearse_reads(self) -> None:
        self.read_socket(self._cmsg)
        if self.answers == self.tap_rx >= 0:  # our queue; without steering the one queue is the tx worker's to read
            self.read_tap(1, self.tap_rx)

    def rehearse_in(self, now: float) -> None:
        if self._in_len:
            self.express_in(self._in, self._in_len, now)

    def read_socket(self, cmsg: int) -> None:
        reader = self.reader
        for _ in range(64):
            try:
                nbytes, anc, addr = reader.receive(self.sock, cmsg)
            except (BlockingIOError, InterruptedError):
                return
            except OSError:
                self.count("recv_errors")
                return
            now = time.monotonic()
            # one run of datagrams comes from one sender, whose name starts every datagram of both formats
            link = self._by_bin.get(bytes((reader.plain if reader.in_plain else reader.hdrs)[:6]))
            if link is not None:
                self.received[link.peer] = self.received.get(link.peer, 0) + nbytes
            try:
                took = not anc and reader.in_plain and self.express and self.express_in(reader.plain, nbytes, now)
                if not took:
                    size = udp.gro_size(anc)
                    reader.follow(nbytes, size)  # a single datagram: the next receive skips the scatter list
                    whole = reader.whole(nbytes, size)
                    if whole is None:  # chunks of super-frames, or Weave's classic format: the general path
                        self.buffer(reader.data(nbytes), size, addr, now)
                        if size and size != reader.segment:
                            reader.set_segment(size)  # our peers' chunk size changed (path MTU): follow it
                        continue
                    self.whole_super_frame(*whole, now)  # the common case: one complete super-frame, contiguous
                if reader.single and not self.burst:
                    return  # one datagram (a ping, an ACK) and no burst: back to poll (see BURST_GAP)
            except RemoteProtocolError:
                self.count("malformed")
            except Exception:  # a bug must cost one packet, never the data plane
                self.internal_error()

    def express_in(self, buf: bytearray, nbytes: int, now: float) -> bool:
        """A one-datagram super-frame from a peer, handled in fewer steps: unsealed, from a known MAC for a local
        one, injected at once (``deliver_known``); sealed, opened at once (``sealed_or_plain``). False, having
        changed nothing, for anything else (see EXPRESS_MAX)."""
        if not IN_FRAME + ETH_HLEN <= nbytes <= EXPRESS_MAX or buf[COUNT_AT] != 1 or buf[IDX_AT]:
            return False
        if buf[MAGIC_AT : MAGIC_AT + 2] != fastwire.MAGIC or self.reasm.pending:
            return False  # not the fast format, or something to salvage
        link = self._by_bin.get(bytes(buf[:6]))
        if link is None:
            return False
        mv = memoryview(buf)
        flags = buf[FLAGS_AT]
        if flags & fastwire.FLAG_ENCRYPTED or link.key is not None:
            seq = int.from_bytes(buf[SEQ_AT:IDX_AT], "big")
            if self.sealed_or_plain(link, buf[STREAM_AT], seq, flags, mv[fastwire.HDR_LEN : nbytes], now):
                self._keep_for_rehearsal(mv, nbytes)
            return True
        if flags or buf[IN_PEERS + 6 : IN_VNET] != self.sender.me_bin:
            return False  # to relay
        src_peer = int.from_bytes(buf[IN_PEERS : IN_PEERS + 6], "big")
        if not self.deliver_known(src_peer, mv[IN_VNET:IN_FRAME], mv[IN_FRAME:nbytes], now):
            return False
        self._keep_for_rehearsal(mv, nbytes)
        return True

    def _keep_for_rehearsal(self, mv: memoryview, nbytes: int) -> None:
        if self.rehearse and not self.rehearsing:
            self._in[:nbytes] = mv[:nbytes]  # same length: no resize
            self._in_len = nbytes

    def deliver_known(self, src_peer: int, vnet: bytes | memoryview, frame: memoryview, now: float) -> bool:
        """A frame for us from a MAC known behind ``src_peer`` to a local one: inject it (and send what the kernel
        answers, see frame_parts); False, having changed nothing, for anything else (see EXPRESS_MAX)."""
        if not ETH_HLEN <= len(frame) <= EXPRESS_MAX or frame[0] & 1:
            return False
        entries = self.macs.entries
        de = entries.get(bytes(frame[0:6]))
        if de is None or de.peer != LOCAL:
            return False
        se = entries.get(bytes(frame[6:12]))
        if se is None or se.peer != src_peer or now - se.seen > REFRESH:
            return False  # to learn, refresh or move
        self.inject([vnet, frame], frame)
        return True

    def inject(self, bufs: list[bytes | memoryview], head: bytes | memoryview) -> None:
        """Write a frame (virtio-net header and pieces; ``head`` the first piece) into our bridge, then send what
        the container's kernel answered at once.

        What a container's kernel answers at once (an ACK, an echo reply) is already on the TAP when writev
        returns: it ran the container's stack inside it. Sending it from here saves waking another process, on an
        idle machine the costliest step of a round trip. Frames nobody answers at once (a bare ACK: what it
        releases is a sender's next data, the tx worker's bulk; an echo reply; a DNS query, answered by a process
        later) are not followed by a failed read.
        """
        if self.rehearsing:
            frames.answered_in_kernel(head)  # as far as a rehearsal goes: nothing is written (REHEARSAL)
            return
        try:
            os.writev(self.tap, bufs)
            self.injected += 1
            if not head[0] & 1:
                self.unicast = True
        except OSError:
            self.count("inject_errors")
            return
        if frames.answered_in_kernel(head):
            self.count("answers_sent", self.read_tap(ANSWER_READS, self.answers))

    def whole_super_frame(
        self, sender: bytes, stream: int, seq: int, flags: int, payload: memoryview, now: float
    ) -> None:
        link = self._by_bin.get(sender)
        if link is None:
            self.count("unknown_sender")
            return
        self.super_frame(link, stream, seq, flags, [payload], now)
        self.salvage(link, sender, stream, seq, now)

    def buffer(self, data: bytes, size: int, addr: tuple[str, int], now: float) -> None:
        """One ``recvmsg`` result: a single datagram, or (GRO) a run of ``size``-byte datagrams from one sender."""
        mv = memoryview(data)
        if not size or size >= len(data):
            self.datagram(mv, addr, now)
            return
        for item in fastwire.runs(mv, size):
            if isinstance(item, int):
                self.datagram(mv[item : item + size], addr, now)
                continue
            sender, stream, seq, count, idx, flags, pieces = item
            link = self._by_bin.get(sender)
            if link is None:
                self.count("unknown_sender")
                continue
            done = self.reasm.add_run(sender, stream, seq, count, idx, flags, pieces, now)
            if done is not None:
                self.super_frame(link, *done[1:], now)
                self.salvage(link, sender, stream, seq, now)

    def super_frame(self, link: Link, stream: int, seq: int, flags: int, pieces: list[memoryview], now: float) -> None:
        """A complete fast-format super-frame: decrypt (if sealed) and hand on; unsealed ones are not copied."""
        if flags & fastwire.FLAG_ENCRYPTED or link.key is not None:
            sealed = pieces[0] if len(pieces) == 1 else b"".join(pieces)
            self.sealed_or_plain(link, stream, seq, flags, sealed, now)
            return
        first = pieces[0]
        if len(first) < fastwire.SUPER_LEN + VNET_LEN + ETH_HLEN:
            self.count("malformed")
            return
        src_peer = int.from_bytes(first[0:6], "big")
        dst_peer = int.from_bytes(first[6:12], "big")
        vnet = bytes(first[12 : 12 + VNET_LEN])
        self.frame_parts(src_peer, dst_peer, vnet, [first[12 + VNET_LEN :], *pieces[1:]], now, link.peer)

    def datagram(self, dgram: memoryview, addr: tuple[str, int], now: float) -> None:
        self.count("packets")
        if len(dgram) < NAME_SIZE:
            self.count("too_short")
            return
        sender = bytes(dgram[:NAME_SIZE])
        link = self._by_bin.get(sender)
        if link is None:
            self.count("unknown_sender")
            self.stranger(addr[0], now)
            return
        if fastwire.is_fast(dgram):
            done = self.reasm.add(dgram, now)
            if done is not None:
                self.super_frame(link, *done[1:], now)
                self.salvage(link, sender, done[1], done[2], now)
            return
        self.classic(link, sender, dgram, addr, now)

    def stranger(self, ip: str, now: float) -> None:
        """Tell the router, at most every STRANGER_GAP per IP, that a peer we have no link to sent us something: a
        liveness beacon, or a peer that still thinks it is connected. Either is a sign the path works."""
        last = self._strangers.get(ip)
        if last is not None and now - last < STRANGER_GAP:
            return
        if len(self._strangers) >= 1024:
            self._strangers.clear()
        self._strangers[ip] = now
        self.ctl.send(("stranger", ip))

    def salvage(self, link: Link, sender: bytes, stream: int, seq: int, now: float) -> None:
        """A later super-frame completed: older incomplete ones lost chunks; rebuild the TCP segments that arrived."""
        for flags, count, parts in self.reasm.take_stale(sender, stream, seq):
            if flags & fastwire.FLAG_ENCRYPTED or link.key is not None or 0 not in parts:
                continue  # a sealed super-frame can only be opened whole
            first = parts[0]
            if len(first) < fastwire.SUPER_LEN + VNET_LEN + ETH_HLEN:
                continue
            src_peer = int.from_bytes(first[0:6], "big")
            dst_peer = int.from_bytes(first[6:12], "big")
            vnet = bytes(first[12 : 12 + VNET_LEN])
            rebuilt = frames.salvage(vnet, parts, len(first), fastwire.SUPER_LEN + VNET_LEN, count)
            self.count("salvaged_segments", len(rebuilt))
            for f in rebuilt:
                self.frame_parts(src_peer, dst_peer, ZERO_VNET, [memoryview(f)], now, link.peer)

    def sealed_or_plain(
        self, link: Link, stream: int, seq: int, flags: int, payload: bytes | memoryview, now: float
    ) -> bool:
        """A reassembled super-frame: open it if sealed (an encrypted link accepts nothing else); True if it was
        handed on (delivered by the express path, when it is one datagram)."""
        if flags & fastwire.FLAG_ENCRYPTED:
            if link.key is None:
                self.count("unexpected_encryption")
                return False
            dec = self._fast_decryptor(link)
            if flags != dec.flags:
                self.count("cipher_mismatch")  # not the cipher this link negotiated: refused, never downgraded
                return False
            try:
                plain = dec.open(stream, seq, payload, record=not self.rehearsing)
            except RemoteProtocolError:
                self.count("decrypt_failed")
                return False
            if plain is None:
                self.count("replayed")
                return False
        elif link.key is not None:
            self.count("unencrypted_refused")  # the link is encrypted: plaintext is refused
            return False
        else:
            plain = payload
        if len(plain) < fastwire.SUPER_LEN + VNET_LEN + ETH_HLEN:
            self.count("malformed")
            return False
        src_peer = int.from_bytes(plain[0:6], "big")
        dst_peer = int.from_bytes(plain[6:12], "big")
        vnet = bytes(plain[12 : 12 + VNET_LEN])
        return self.frame_parts(src_peer, dst_peer, vnet, [memoryview(plain)[12 + VNET_LEN :]], now, link.peer)

    def classic(self, link: Link, sender: bytes, dgram: memoryview, addr: tuple[str, int], now: float) -> None:
        if link.key is not None:
            dec = self._classic_decryptor(link)
            try:
                body = dec.open(dgram)
            except RemoteProtocolError:
                self.count("decrypt_failed")
                return
            if body is None:
                self.count("replayed")
                return
        else:
            body = bytes(dgram[NAME_SIZE:])
        for f in iter_frames(body):
            if f.special:
                if f.src == sender and f.dst == self.sender.me_bin:
                    self.ctl.send(("special", link.peer, link.conn_uid, f.data, addr))
                else:
                    self.count("bad_special")
                continue
            src_peer, dst_peer = int.from_bytes(f.src, "big"), int.from_bytes(f.dst, "big")
            self.frame_parts(src_peer, dst_peer, ZERO_VNET, [memoryview(f.data)], now, link.peer)

    def _classic_decryptor(self, link: Link) -> Decryptor:
        key = (link.peer, link.conn_uid)
        dec = self._classic_dec.get(key)
        if dec is None:
            assert link.key is not None
            dec = self._classic_dec[key] = Decryptor(link.key, remote_outbound=not link.outbound)
        return dec

    def _fast_decryptor(self, link: Link) -> fastwire.FastDecryptor:
        key = (link.peer, link.conn_uid)
        dec = self._fast_dec.get(key)
        if dec is None:
            assert link.key is not None
            dec = self._fast_dec[key] = fastwire.FastDecryptor(
                link.key, remote_outbound=not link.outbound, cipher=link.cipher
            )
        return dec

    def frame_parts(
        self, src_peer: int, dst_peer: int, vnet: bytes, parts: list[memoryview], now: float, via: int
    ) -> bool:
        """A frame (given as consecutive pieces) from the overlay, sent to us by the neighbour ``via``: inject it
        here and/or pass it on. True if the express path delivered it (``deliver_known``), the only path a rehearsal
        takes."""
        head = parts[0]
        if (
            len(parts) == 1
            and dst_peer == self.tables.me
            and self.express
            and self.deliver_known(src_peer, vnet, head, now)
        ):
            return True
        if self.rehearsing:
            return False  # a rehearsal takes the express path or none
        if len(head) < ETH_HLEN:
            self.count("malformed")
            return False
        src_mac = bytes(head[6:12])
        inject, hops, learned = forward.from_overlay(
            self.tables, self.macs, src_peer, dst_peer, bytes(head[0:6]), src_mac, now, via
        )
        if inject:
            if learned:
                # new, moved or refreshed: the tx worker learns remote MACs only from us, and without the refresh
                # its entry would expire while the MAC still talks (then its frames would be flooded)
                self.peer.send(("mac", src_mac, src_peer))
            self.inject([vnet, *parts], head)
        if hops:
            self.relay(hops, vnet, parts[0] if len(parts) == 1 else memoryview(b"".join(parts)))
        return False

    def send(self, hop: int, src: int, dst: int, vnet: bytes, frame: bytes | memoryview) -> None:
        """A frame from our bridge: fast links directly (stream 1), classic ones through the tx worker."""
        self._through_sleeve(hop, src, dst, vnet, frame)

    def relay(self, hops: list[tuple[int, int, int]], vnet: bytes, frame: bytes | memoryview) -> None:
        """Pass a frame on through the sleeve: (next hop, source peer, destination peer) each."""
        for hop, s, d in hops:
            if self._through_sleeve(hop, s, d, vnet, frame):
                self.count("relayed")

    def _through_sleeve(self, hop: int, src: int, dst: int, vnet: bytes, frame: bytes | memoryview) -> bool:
        link = self.tables.links.get(hop)
        if link is None:
            return False
        if link.fast:
            self.sender.send_fast(link, src, dst, vnet, frame)
        else:  # the tx worker owns the classic format's sequence numbers and nonces
            self.peer.send(("relay", hop, src, dst, vnet, bytes(frame)))
        return True

    def read_sniffer(self) -> None:
        assert self.sniffer is not None
        for _ in range(64):
            try:
                data = self.sniffer.recv(65535)
            except (BlockingIOError, InterruptedError):
                return
            except OSError:
                self.count("vxlan_recv_errors")
                return
            try:
                self.vxlan(data, time.monotonic())
            except RemoteProtocolError:
                self.count("vxlan_malformed")
            except Exception:  # a bug must cost one packet, never the data plane
                self.internal_error()

    def vxlan(self, data: bytes, now: float) -> None:
        """A special or broadcast frame that came over VXLAN (a copy: the kernel has it too)."""
        t = self.tables
        pkt = parse_ipv4_vxlan(data)
        src_short, dst_short = split_vni(pkt.vni)
        if t.me_short is None or dst_short != t.me_short:
            self.count("vxlan_not_for_us")
            return
        frame = pkt.frame
        if is_special(frame):
            self.ctl.send(("vxlan_special", pkt.src_ip, pkt.vni, bytes(frame[:64]), len(frame)))
            return
        src_peer = t.short_ids.get(src_short)
        if src_peer is None or src_peer == t.me:
            self.count("vxlan_unknown_sender")
            return
        src_mac = bytes(frame[6:12])
        if self.macs.add_forced(src_mac, src_peer, now):
            self.peer.send(("mac", src_mac, src_peer))  # new, moved or refreshed (see frame_parts)
        local = src_short not in t.vxlan_rx  # no device of ours took it (relayed by a Go peer): deliver it here
        hops = [(hop, src_peer, hop) for hop in t.broadcast.get(src_peer, ()) if hop != src_peer]
        # a copy without the skb's offload state: a partial UDP checksum must be finished where it lands
        vnet = frames.vnet_for_copy(frame) if local or hops else ZERO_VNET
        if local:
            try:
                os.writev(self.tap, [vnet, frame])
                self.count("vxlan_injected")
            except OSError:
                self.count("inject_errors")
        self.count("vxlan_broadcasts")
        if hops:
            if vnet != ZERO_VNET:
                self.count("vxlan_partial_csums")
            self.relay(hops, vnet, frame)

    def report(self) -> None:
        stats = {"rx_" + k: v for k, v in self.counters.items()}
        stats["rx_reassembly_dropped"] = self.reasm.dropped
        stats["rx_injected"] = self.injected
        st = self.sender.stats
        stats.update(rx_sent_super_frames=st.super_frames, rx_sent_datagrams=st.datagrams, rx_sent_bytes=st.bytes)
        sent = st.by_peer
        peers = {peer: (n, sent.get(peer, 0)) for peer, n in self.received.items()}
        peers.update((peer, (0, n)) for peer, n in sent.items() if peer not in peers)  # relayed only
        self.ctl.send(("stats", "rx", stats, [], list(st.pmtu_updates), peers))
        st.pmtu_updates.clear()


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="weavenet-dataplane")
    ap.add_argument("role", choices=["tx", "rx"])
    ap.add_argument("--tap-fd", type=int, required=True)
    ap.add_argument("--udp-fd", type=int, required=True)
    ap.add_argument("--ctl-fd", type=int, required=True)
    ap.add_argument("--peer-fd", type=int, required=True)
    ap.add_argument("--sniff-fd", type=int, default=-1)
    ap.add_argument("--tap-rx-fd", type=int, default=-1)
    ap.add_argument("--no-warm-tick", action="store_true", help="no wakes without events (see WARM_TICK_MS)")
    ap.add_argument("--no-rehearsal", action="store_true", help="warm ticks only wake (see REHEARSAL)")
    args = ap.parse_args(argv)
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(0))
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    sock = socket.socket(fileno=args.udp_fd)
    ctl = Channel(socket.socket(fileno=args.ctl_fd))
    peer = Channel(socket.socket(fileno=args.peer_fd))
    if args.role == "tx":
        worker: _Base = TxWorker(args.tap_fd, sock, ctl, peer)
    else:
        sniffer = socket.socket(fileno=args.sniff_fd) if args.sniff_fd >= 0 else None
        worker = RxWorker(args.tap_fd, sock, ctl, peer, sniffer, args.tap_rx_fd)
    worker.warm_tick, worker.rehearse = tick_settings(args.no_warm_tick, args.no_rehearsal)
    profile = os.environ.get("WEAVENET_DATAPLANE_PROFILE")  # a directory: write a cProfile per worker there
    prof = None
    if profile:
        import cProfile

        prof = cProfile.Profile()
        prof.enable()
    try:
        worker.run()
    except (BrokenPipeError, ConnectionResetError, EOFError, SystemExit):
        pass
    finally:
        if prof is not None:
            prof.disable()
            prof.dump_stats(os.path.join(str(profile), f"{args.role}-{os.getpid()}.prof"))
    return 0


if __name__ == "__main__":
    sys.exit(main())
