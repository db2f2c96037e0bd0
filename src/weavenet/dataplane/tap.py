"""The TAP device through which the router captures and injects frames on the ``weave`` bridge.

Opened with ``IFF_VNET_HDR`` so every frame carries a virtio-net header, and with checksum and TSO offloads when
the kernel accepts them: the bridge then hands us TCP super-frames instead of MTU-sized frames (see
``frames.py``). Offload bits the kernel does not know are dropped one by one (probing), so older kernels work
with fewer offloads rather than not at all.

With ``multi_queue`` the device can take a second queue (``open_queue``), read by the rx worker; which frames
land on which queue is ``steering.py``'s business.
"""

from __future__ import annotations

import fcntl
import os
import struct

TUNSETIFF = 0x400454CA
TUNSETOFFLOAD = 0x400454D0
IFF_TAP = 0x0002
IFF_NO_PI = 0x1000
IFF_MULTI_QUEUE = 0x0100
IFF_VNET_HDR = 0x4000
TUN_F_CSUM = 0x01
TUN_F_TSO4 = 0x02
TUN_F_TSO6 = 0x04
TUN_F_TSO_ECN = 0x08

WANTED_OFFLOADS = (TUN_F_CSUM | TUN_F_TSO4, TUN_F_CSUM, 0)  # best first; TSO6 left to the kernel to segment


def _attach(name: str, flags: int) -> int:
    fd = os.open("/dev/net/tun", os.O_RDWR)
    try:
        fcntl.ioctl(fd, TUNSETIFF, struct.pack("16sH22x", name.encode(), flags))
    except BaseException:
        os.close(fd)
        raise
    return fd


def open_tap(name: str, offloads: bool = True, multi_queue: bool = False) -> tuple[int, int]:
    """Create/attach TAP ``name``; returns (fd, offload flags in effect)."""
    fd = _attach(name, IFF_TAP | IFF_NO_PI | IFF_VNET_HDR | (IFF_MULTI_QUEUE if multi_queue else 0))
    try:
        applied = 0
        for flags in WANTED_OFFLOADS if offloads else (0,):
            try:
                fcntl.ioctl(fd, TUNSETOFFLOAD, flags)
            except OSError:
                continue
            applied = flags
            break
        return fd, applied
    except BaseException:
        os.close(fd)
        raise


def open_queue(name: str) -> int:
    """One more queue of the multi-queue TAP ``name`` (same flags; offloads are the device's, already set)."""
    return _attach(name, IFF_TAP | IFF_NO_PI | IFF_VNET_HDR | IFF_MULTI_QUEUE)
