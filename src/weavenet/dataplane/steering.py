"""Which TAP queue a frame from the bridge lands on: small frames to the rx worker, the rest to the tx worker.

Why: on an idle machine every process woken for a packet runs its first instructions with cold caches, so a
round trip costs in proportion to the processes it wakes and the code they touch. With one TAP queue, a ping
wakes the tx worker of the pinging host to send the request and its rx worker to take the reply; the tx worker
of the answering host is woken too, for the reply that its rx worker reads itself right after injecting the
request. With a second queue read by the rx worker and a steering program that hands it frames of up to
``SMALL_FRAME`` bytes (everything but super-frames: pings, ACKs, DNS, ARP, requests and answers), a conversation
wakes only the rx workers, and the process that sent a request is the one that receives its answer. Bulk (TCP
super-frames) stays with the tx worker, so the two directions of a transfer still run on two cores.

The program is a six-instruction classic socket filter (``BPF_PROG_TYPE_SOCKET_FILTER``), attached with
``TUNSETSTEERINGEBPF``; the kernel takes its return value modulo the number of queues. Where the kernel refuses
BPF (no ``bpf()``, a seccomp profile, no privilege), the TAP keeps one queue and everything goes to the tx worker
as before. Links to Go peers are sent by the tx worker only (it owns the classic format's sequence numbers and
nonces), so while one exists a second program sends every frame to the tx worker's queue.
"""

from __future__ import annotations

import ctypes
import errno
import fcntl
import os
import platform
import struct

from weavenet.dataplane.tables import Tables

# Bytes of Ethernet frame, at most, steered to the rx worker: every frame of a 1500-byte MTU, so everything but
# super-frames (and jumbo frames). Why not only the smallest: a request or an answer of a few hundred bytes to a
# full frame (HTTP, a database query) is a conversation too, and on the tx worker it cost the wake of a second,
# cold process: with 1 KB pings 10 ms apart, 0.617 ms per round trip with 256 here, 0.385 ms with 1536. Bulk TCP
# is unchanged (its data are super-frames, measured 3.52 / 3.48 Gbit/s), and so is TCP without segmentation
# offload, every data frame now with the rx worker, which also takes the ACKs (0.25 / 0.28 Gbit/s).
SMALL_FRAME = 1536
TX_QUEUE, RX_QUEUE = 0, 1
TUNSETSTEERINGEBPF = 0x800454E0

_BPF_PROG_LOAD = 5
_BPF_PROG_TYPE_SOCKET_FILTER = 1
_SYS_BPF = {"x86_64": 321, "aarch64": 280, "armv7l": 386, "ppc64le": 361, "s390x": 351, "riscv64": 280}
_LOG_SIZE = 4096


def _insn(code: int, dst: int = 0, src: int = 0, off: int = 0, imm: int = 0) -> bytes:
    """One eBPF instruction: opcode, registers (dst low nibble, src high), offset, immediate."""
    return struct.pack("<BBhi", code, (src << 4) | dst, off, imm)


_LDX_W, _JGT_K, _MOV_K, _EXIT = 0x61, 0x25, 0xB7, 0x95


def split_program(small: int = SMALL_FRAME) -> bytes:
    """``return skb->len > small ? TX_QUEUE : RX_QUEUE`` (``len`` is the first field of ``__sk_buff``)."""
    return b"".join(
        (
            _insn(_LDX_W, dst=0, src=1, off=0),  # r0 = ((struct __sk_buff *)r1)->len
            _insn(_JGT_K, dst=0, off=2, imm=small),  # if r0 > small: skip to the tx queue
            _insn(_MOV_K, dst=0, imm=RX_QUEUE),
            _insn(_EXIT),
            _insn(_MOV_K, dst=0, imm=TX_QUEUE),
            _insn(_EXIT),
        )
    )


def single_program() -> bytes:
    """``return TX_QUEUE``: every frame to the tx worker (a Go peer is linked)."""
    return _insn(_MOV_K, dst=0, imm=TX_QUEUE) + _insn(_EXIT)


def load(program: bytes) -> int:
    """Load a socket-filter program; returns its fd. OSError (with the verifier's log if any) when refused."""
    nr = _SYS_BPF.get(platform.machine())
    if nr is None:
        raise OSError(errno.ENOSYS, f"bpf() syscall number unknown on {platform.machine()}")
    libc = ctypes.CDLL(None, use_errno=True)
    insns = ctypes.create_string_buffer(program, len(program))
    license_ = ctypes.create_string_buffer(b"GPL")
    log = ctypes.create_string_buffer(_LOG_SIZE)
    attr = struct.pack(
        "<IIQQIIQ",
        _BPF_PROG_TYPE_SOCKET_FILTER,
        len(program) // 8,
        ctypes.addressof(insns),
        ctypes.addressof(license_),
        1,  # log level: the verifier says why, if it refuses
        _LOG_SIZE,
        ctypes.addressof(log),
    )
    buf = ctypes.create_string_buffer(attr.ljust(128, b"\0"), 128)
    fd = libc.syscall(ctypes.c_long(nr), ctypes.c_long(_BPF_PROG_LOAD), buf, ctypes.c_uint(128))
    if fd < 0:
        err = ctypes.get_errno()
        detail = log.value.decode(errors="replace").strip().splitlines()
        raise OSError(err, os.strerror(err) + (f" ({detail[-1]})" if detail else ""))
    return int(fd)


def wanted(tables: Tables) -> bool:
    """Small frames may go to the rx worker: no link speaks the classic format (see the module docstring)."""
    return all(link.fast for link in tables.links.values())


class TapSteering:
    """The two programs, loaded once, and which of them a multi-queue TAP runs."""

    def __init__(self) -> None:
        self._split = load(split_program())
        try:
            self._single = load(single_program())
        except BaseException:
            os.close(self._split)
            raise
        self.split: bool | None = None  # what the TAP runs; None before the first attach

    def attach(self, tap_fd: int, split: bool) -> bool:
        """Make the TAP run the split or the single program; True if that changed what it runs."""
        if split == self.split:
            return False
        fcntl.ioctl(tap_fd, TUNSETSTEERINGEBPF, struct.pack("i", self._split if split else self._single))
        self.split = split
        return True

    def close(self) -> None:
        for fd in (self._split, self._single):
            try:
                os.close(fd)
            except OSError:
                pass
