"""Working inside a container's network namespace, with the standard library's cheapest parts only.

Shared by ``weave attach`` (:mod:`weavenet.host.attach`) and the CNI plugin (:mod:`weavenet.cni`). The plugin is
executed once per pod, so this module keeps to what costs nothing to import: ``_thread`` rather than
``threading``, ``_socket`` rather than ``socket`` (whose enums cost more than the rest), ``os.posix_spawnp`` rather
than ``subprocess`` (together about 8 ms of every execution on this kind of machine). What a container gets from
both is Weave's: short ARP cache lifetimes, no IPv6 router adverts, multicast accepted only from the container's
own subnets (application isolation), a gratuitous ARP per new address so other hosts forget the address's
previous owner at once.

:func:`in_netns` runs a function in a fresh thread that joined the namespace with ``setns(2)``: sysctl writes,
sockets and child processes (``ip``, ``iptables-restore``: spawned by that thread, they start in its namespace)
made there are the container's, and no other code ever runs in the wrong namespace because the thread ends
afterwards.
"""

from __future__ import annotations

import _socket
import _thread
import fcntl
import os
import select
import struct
import time

from weavenet.errors import HostError

# A container's TCP builds super-frames no larger than its interface's gso_max_size allows: at most gso_max_size
# - 321 bytes of payload (the kernel keeps MAX_TCP_HEADER + 1 for headers), in whole segments. The cap is the
# largest that keeps every super-frame within one UDP GSO send of the fast sleeve on a 1500-byte underlay: 44
# datagrams (65487 // 1472) of 1452 bytes of room carry 63888 bytes, less the sleeve's 22 bytes of headers and
# AEGIS-256's 32-byte tag leave 63834 for the frame, i.e. 63768 after Ethernet, IP and TCP headers with timestamps
# (66), so 64089 = 63768 + 321. One sendmsg and one GRO receive per super-frame instead of two, which the sleeve
# needs (a super-frame split over two sends costs it a third of its throughput). At the default MTU that is 48
# segments of 1324 bytes: the kernel's VXLAN path, which would take 49, then moves 2 % more packets (measured:
# 63488, which allowed 47, cost fastdp 2-3 % of its CPU per byte; bench/fastdp_ab.py).
# Only the container's end is capped. The bridge's end keeps the default: a port's gso_max_size is also the
# largest GSO packet the bridge hands it whole, and larger ones (merged by GRO on a NIC, or from a Go peer's
# containers) would be cut into MTU-sized packets on their way into the container.
CONTAINER_GSO_MAX_SIZE = 64089

TYPE_CHECKING = False
if TYPE_CHECKING:
    from collections.abc import Callable, Mapping
    from typing import Any, TypeVar

    T = TypeVar("T")

NS_GET_NSTYPE = 0xB703  # ioctl on a namespace file: which kind of namespace it is
CLONE_NEWNET = 0x40000000
MULTICAST = "224.0.0.0/4"
IPTABLES_TIMEOUT = 30.0
# Short ARP cache lifetimes (``net/ipv4/neigh/<ifname>/<key>``), for the bridge and every container interface, so
# an address re-used by a new container is re-learned quickly.
ARP_SYSCTLS = (("base_reachable_time", "5"), ("delay_first_probe_time", "2"), ("ucast_solicit", "1"))
SIOCGIFHWADDR = 0x8927
ETH_P_ALL = 3

_setns_call: Any = None


def _libc_setns() -> tuple[Callable[[int, int], int], Callable[[], int]]:
    """``setns`` and ``get_errno`` through ``_ctypes`` itself: the ``ctypes`` package costs 3 ms more to import
    (its many types), which a CNI plugin would pay per pod. ``ctypes`` if that ever fails."""
    try:
        import _ctypes

        class Int(_ctypes._SimpleCData):  # type: ignore[misc,name-defined]
            _type_ = "i"

        class Function(_ctypes.CFuncPtr):  # type: ignore[misc,name-defined]
            _flags_ = _ctypes.FUNCFLAG_CDECL | _ctypes.FUNCFLAG_USE_ERRNO
            _restype_ = Int

        class Libc:
            _handle = _ctypes.dlopen(None, os.RTLD_NOW)

        fn = Function(("setns", Libc))
        fn.argtypes = (Int, Int)
        return fn, _ctypes.get_errno
    except (ImportError, AttributeError, OSError, TypeError):
        import ctypes

        return ctypes.CDLL(None, use_errno=True).setns, ctypes.get_errno


def _setns(fd: int, nstype: int = CLONE_NEWNET) -> int:
    """``setns(fd, nstype)`` for the calling thread (Python 3.11 has no ``os.setns``): 0 or an errno."""
    global _setns_call
    if _setns_call is None:
        _setns_call = _libc_setns()
    setns, get_errno = _setns_call
    return 0 if setns(fd, nstype) == 0 else int(get_errno())


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
    done = _thread.allocate_lock()
    done.acquire()

    def body() -> None:
        try:
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
        finally:
            done.release()

    _thread.start_new_thread(body, ())
    done.acquire()
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
    s = _socket.socket(_socket.AF_INET, _socket.SOCK_DGRAM)
    try:
        res = fcntl.ioctl(s.fileno(), SIOCGIFHWADDR, struct.pack("256s", ifname.encode()[:15]))
    except OSError as e:
        raise HostError(f"{ifname}: {e.strerror}") from e
    finally:
        s.close()
    return res[18:24]


def gratuitous_arp(ifname: str, mac: bytes, ip: bytes) -> None:
    """A gratuitous ARP (broadcast request, sender and target both ``ip``) as ``arping -U`` sends it, without
    that process and the second it waits for answers."""
    frame = b"\xff" * 6 + mac + b"\x08\x06" + struct.pack("!HHBBH", 1, 0x0800, 6, 4, 1) + mac + ip + b"\x00" * 6 + ip
    s = _socket.socket(_socket.AF_PACKET, _socket.SOCK_RAW, 0)
    try:
        s.bind((ifname, 0))
        s.send(frame)
    finally:
        s.close()


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


# -- running tools -----------------------------------------------------------------------------------------------------


class Completed:
    """What a tool did: exit status (negative: killed by that signal) and its output."""

    __slots__ = ("argv", "returncode", "stderr", "stdout")

    def __init__(self, argv: list[str], returncode: int, stdout: str, stderr: str) -> None:
        self.argv, self.returncode, self.stdout, self.stderr = argv, returncode, stdout, stderr


def run_tool(
    argv: list[str],
    input: str | bytes | None = None,
    timeout: float = IPTABLES_TIMEOUT,
    env: Mapping[str, str] | None = None,
    capture_stderr: bool = True,
) -> Completed:
    """A tool (``ip``, ``iptables-restore``, a delegated CNI plugin) spawned by the calling thread, so it runs in
    that thread's namespace; HostError if it is missing or hangs (its exit status is the caller's to judge).
    Without ``capture_stderr`` its standard error is ours."""
    return start_tool(argv, input, env, capture_stderr).wait(timeout)


class Running:
    """A tool started by :func:`start_tool`, its input already written; :meth:`wait` for its output and end."""

    def __init__(self, argv: list[str], pid: int, out_r: int, err_r: int) -> None:
        self.argv, self.pid, self.out_r, self.err_r = argv, pid, out_r, err_r

    def wait(self, timeout: float = IPTABLES_TIMEOUT) -> Completed:
        chunks: dict[int, list[bytes]] = {self.out_r: [], self.err_r: []}
        open_fds = {self.out_r, self.err_r} - {-1}
        deadline = time.monotonic() + timeout
        try:
            while open_fds:
                ready, _, _ = select.select(list(open_fds), [], [], max(deadline - time.monotonic(), 0))
                if not ready:
                    os.kill(self.pid, 9)
                    os.waitpid(self.pid, 0)
                    raise HostError(f"{self.argv[0]}: timed out")
                for fd in ready:
                    data = os.read(fd, 65536)
                    if data:
                        chunks[fd].append(data)
                    else:
                        open_fds.discard(fd)
            _, status = os.waitpid(self.pid, 0)
        finally:
            os.close(self.out_r)
            if self.err_r >= 0:
                os.close(self.err_r)
        out, err = (b"".join(chunks[fd]).decode(errors="replace") for fd in (self.out_r, self.err_r))
        return Completed(self.argv, os.waitstatus_to_exitcode(status), out, err)


def start_tool(
    argv: list[str],
    input: str | bytes | None = None,
    env: Mapping[str, str] | None = None,
    capture_stderr: bool = True,
) -> Running:
    """Spawn a tool (from the calling thread, so in its namespace) and give it its input; the caller may do other
    work before it waits."""
    in_r, in_w = os.pipe()
    out_r, out_w = os.pipe()
    err_r, err_w = os.pipe() if capture_stderr else (-1, -1)
    actions = [(os.POSIX_SPAWN_DUP2, in_r, 0), (os.POSIX_SPAWN_DUP2, out_w, 1)]
    if capture_stderr:
        actions.append((os.POSIX_SPAWN_DUP2, err_w, 2))
    ours = [fd for fd in (in_r, in_w, out_r, out_w, err_r, err_w) if fd >= 0]
    try:
        pid = os.posix_spawnp(argv[0], argv, os.environ if env is None else env, file_actions=actions)
    except OSError as e:
        for fd in ours:
            os.close(fd)
        if isinstance(e, FileNotFoundError):
            raise HostError(f"{argv[0]} is not installed") from e
        raise HostError(f"{argv[0]}: {e.strerror}") from e
    for fd in (in_r, out_w, err_w):
        if fd >= 0:
            os.close(fd)
    data = input.encode() if isinstance(input, str) else input
    try:
        # at most a few kilobytes: within the pipe's buffer, so no deadlock with the child's output
        while data:
            data = data[os.write(in_w, data) :]
    except BrokenPipeError:
        pass
    finally:
        os.close(in_w)
    return Running(argv, pid, out_r, err_r)
