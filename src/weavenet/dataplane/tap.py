"""The TAP device through which the router captures and injects frames on the ``weave`` bridge.

Opened with ``IFF_VNET_HDR`` so every frame carries a virtio-net header, and with checksum and TSO offloads when
the kernel accepts them: the bridge then hands us TCP super-frames instead of MTU-sized frames (see
``frames.py``). Offload bits the kernel does not know are dropped one by one (probing), so older kernels work
with fewer offloads rather than not at all.
"""

from __future__ import annotations

import fcntl
import os
import struct

TUNSETIFF = 0x400454CA
TUNSETOFFLOAD = 0x400454D0
IFF_TAP = 0x0002
IFF_NO_PI = 0x1000
IFF_VNET_HDR = 0x4000
TUN_F_CSUM = 0x01
TUN_F_TSO4 = 0x02
TUN_F_TSO6 = 0x04
TUN_F_TSO_ECN = 0x08

WANTED_OFFLOADS = (TUN_F_CSUM | TUN_F_TSO4, TUN_F_CSUM, 0)  # best first; TSO6 left to the kernel to segment


def open_tap(name: str, offloads: bool = True) -> tuple[int, int]:
    """Create/attach TAP ``name``; returns (fd, offload flags in effect)."""
    fd = os.open("/dev/net/tun", os.O_RDWR)
    try:
        fcntl.ioctl(fd, TUNSETIFF, struct.pack("16sH22x", name.encode(), IFF_TAP | IFF_NO_PI | IFF_VNET_HDR))
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
