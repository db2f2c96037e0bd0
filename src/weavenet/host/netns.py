"""Working inside a container's network namespace, with the standard library only.

Shared by ``weave attach`` (:mod:`weavenet.host.attach`) and the CNI plugin (:mod:`weavenet.cni`). The plugin is
executed once per pod, so everything here stays cheap to import: no pyroute2, no weavenet configuration, no
``ipaddress``. What a container gets from both is Weave's: short ARP cache lifetimes, no IPv6 router adverts,
multicast accepted only from the container's own subnets (application isolation), a gratuitous ARP per new
address so other hosts forget the address's previous owner at once.

:func:`in_netns` runs a function in a fresh thread that joined the namespace with ``setns(2)``: sysctl writes,
sockets and child processes (``ip``, ``iptables-restore``) made there are the container's, and no other code ever
runs in the wrong namespace because the thread ends afterwards.
"""

from __future__ import annotations

import contextlib
import ctypes
import fcntl
import os
import socket
import struct
import subprocess
import threading
from collections.abc import Callable
from typing import Any, TypeVar

from weavenet.errors import HostError

NS_GET_NSTYPE = 0xB703  # ioctl on a namespace file: which kind of namespace it is
CLONE_NEWNET = 0x40000000
MULTICAST = "224.0.0.0/4"
IPTABLES_TIMEOUT = 30.0
# Short ARP cache lifetimes (``net/ipv4/neigh/<ifname>/<key>``), for the bridge and every container interface, so
# an address re-used by a new container is re-learned quickly.
ARP_SYSCTLS = (("base_reachable_time", "5"), ("delay_first_probe_time", "2"), ("ucast_solicit", "1"))
SIOCGIFHWADDR = 0x8927
T = TypeVar("T")

_libc: ctypes.CDLL | None = None


def _setns(fd: int) -> int:
    """``setns(fd, CLONE_NEWNET)`` for the calling thread (Python 3.11 has no ``os.setns``): 0 or an errno."""
    global _libc
    if _libc is None:
        _libc = ctypes.CDLL(None, use_errno=True)
    return 0 if _libc.setns(fd, CLONE_NEWNET) == 0 else ctypes.get_errno()


def ns_inode(path: str) -> int:
    """The namespace's inode, checking that ``path`` really is a network namespace (HostError otherwise)."""
    try:
        fd = os.open(path, os.O_RDONLY)
    except FileNotFoundError as e:
        raise HostError(f"{path}: no such file") from e
    except PermissionError as e:
        raise HostError(f"{path}: permission denied") from e
    except OSError as e:
        raise HostError(f"{path}: {e.strerror}") from e
    try:
        try:
            kind = fcntl.ioctl(fd, NS_GET_NSTYPE)
        except OSError:
            kind = 0
        st = os.fstat(fd)
    finally:
        os.close(fd)
    if kind != CLONE_NEWNET:
        raise HostError(f"{path} is not a network namespace")
    return st.st_ino


def own_netns_inode() -> int:
    """The calling thread's network namespace (the process's may differ when a caller runs us in a thread of its
    own, as the tests do)."""
    return os.stat("/proc/thread-self/ns/net").st_ino


def in_netns(netns_path: str, fn: Callable[[], T]) -> T:
    """Run ``fn`` in a new thread that has joined the network namespace at ``netns_path``; its result or error."""
    result: list[Any] = []
    error: list[BaseException] = []

    def body() -> None:
        try:
            fd = os.open(netns_path, os.O_RDONLY)
        except OSError as e:
            error.append(HostError(f"{netns_path}: {e.strerror}"))
            return
        try:
            err = _setns(fd)
            if err:
                error.append(HostError(f"setns {netns_path}: {os.strerror(err)}"))
                return
            result.append(fn())
        except BaseException as e:
            error.append(e)
        finally:
            os.close(fd)

    t = threading.Thread(target=body, name="weave-netns", daemon=True)
    t.start()
    t.join()
    if error:
        raise error[0]
    return result[0]  # type: ignore[no-any-return]


def write_sysctl(key: str, value: str, must: bool = True) -> None:
    """Write ``/proc/sys/<key>`` (slashes) of the calling thread's namespace; a missing key is an error only if
    ``must`` (IPv6 keys are absent on hosts without IPv6)."""
    try:
        with open(f"/proc/sys/{key}", "w") as f:
            f.write(value)
    except OSError as e:
        if must:
            raise HostError(f"setting {key}={value}: {e.strerror}") from e


def interface_sysctls(ifname: str) -> None:
    """Weave's settings for a container interface, in the calling thread's namespace."""
    write_sysctl(f"net/ipv6/conf/{ifname}/accept_ra", "0", must=False)
    for key, value in ARP_SYSCTLS:
        write_sysctl(f"net/ipv4/neigh/{ifname}/{key}", value, must=False)


def hw_address(ifname: str) -> bytes:
    """The interface's MAC (``SIOCGIFHWADDR``), in the calling thread's namespace."""
    with contextlib.closing(socket.socket(socket.AF_INET, socket.SOCK_DGRAM)) as s:
        try:
            res = fcntl.ioctl(s.fileno(), SIOCGIFHWADDR, struct.pack("256s", ifname.encode()[:15]))
        except OSError as e:
            raise HostError(f"{ifname}: {e.strerror}") from e
    return res[18:24]


def gratuitous_arp(ifname: str, mac: bytes, ip: bytes) -> None:
    """A gratuitous ARP (broadcast request, sender and target both ``ip``) as ``arping -U`` sends it, without
    that process and the second it waits for answers."""
    frame = b"\xff" * 6 + mac + b"\x08\x06" + struct.pack("!HHBBH", 1, 0x0800, 6, 4, 1) + mac + ip + b"\x00" * 6 + ip
    with contextlib.closing(socket.socket(socket.AF_PACKET, socket.SOCK_RAW)) as s:
        s.bind((ifname, 0))
        s.send(frame)


# -- multicast isolation (iptables in the container) -----------------------------------------------------------------


def accept_rule(subnet: str, ifname: str) -> list[str]:
    return ["INPUT", "-i", ifname, "-s", subnet, "-d", MULTICAST, "-j", "ACCEPT"]


def drop_rule(ifname: str) -> list[str]:
    return ["INPUT", "-i", ifname, "-d", MULTICAST, "-j", "DROP"]


def isolation_rules(subnets: list[str], new_link: bool, ifname: str = "ethwe", undo: bool = False) -> str:
    """The container's multicast isolation as one ``iptables-restore --noflush`` input: accept from its own
    subnets (inserted first), drop the rest (appended, once, with a new interface); ``undo`` deletes them."""
    lines = ["*filter"]
    for s in subnets:
        rule = accept_rule(s, ifname)
        lines.append(" ".join(["-D", *rule] if undo else ["-I", rule[0], "1", *rule[1:]]))
    if new_link:
        lines.append(" ".join(["-D" if undo else "-A", *drop_rule(ifname)]))
    lines.append("COMMIT")
    return "\n".join(lines) + "\n"


def run_tool(argv: list[str], input: str | None = None) -> subprocess.CompletedProcess[str]:
    """A tool (``ip``, ``iptables-restore``) forked from the calling thread, so it runs in that thread's
    namespace; HostError if it is missing or hangs (its exit status is the caller's to judge)."""
    try:
        return subprocess.run(argv, input=input, capture_output=True, text=True, timeout=IPTABLES_TIMEOUT, check=False)
    except FileNotFoundError as e:
        raise HostError(f"{argv[0]} is not installed") from e
    except subprocess.TimeoutExpired as e:
        raise HostError(f"{argv[0]}: timed out") from e
