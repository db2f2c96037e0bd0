"""What the runtime executes (``weave setup-cni`` installs a script that calls :func:`main`): the execution is
handed to the CNI service the router keeps (:mod:`.server`), else run here (:mod:`.main`).

Handing over costs this process a connection and one message (:mod:`.handover`): it imports nothing but built-in
modules and that one, where running the plugin here imports a dozen, and the work itself (the router's API, the
links, ``iptables-restore``) runs in a worker forked from a process that has all of them loaded. When nothing
listens (the router is down, or older, or ``WEAVE_CNI_SERVICE=off``) or the service refuses, nothing has been
read or changed: the plugin runs here, as before, with a remark on standard error (the runtime's log) saying why,
and gives the same answers (a router that is down: error 11, try again later). Once the request went over, the
worker's answer is the answer: a worker that ended without one is error 999, never a second execution.
"""

import _socket
import posix
import sys

from weavenet.cni import handover

DEFAULT_SERVICE = b"@weavenet-cni"
OFF = b"off"
SO_PEERCRED = 17
CAP_SYS_ADMIN = 21


def service_address(name: bytes) -> bytes | None:
    """The socket address of ``$WEAVE_CNI_SERVICE``: ``@name`` abstract (a host's network namespace has one, so
    it needs no shared directory between the router's container and the host), else a path; None for ``off``."""
    if not name or name == OFF:
        return None
    return b"\0" + name[1:] if name.startswith(b"@") else name


def _open_own(path: bytes, flags: int = 0) -> int:
    return posix.open(path, posix.O_RDONLY | posix.O_CLOEXEC | flags)


def hand_over(address: bytes, argv0: bytes, env: "dict[bytes, bytes]") -> "int | str":
    """The exit status of the execution the service ran, or the reason it was not handed over (a string: the
    caller runs it). Raises BadRequest for a worker that ended without answering."""
    try:
        umask = posix.umask(0o022)
        posix.umask(umask)
        message = handover.encode(argv0, env, umask)
        if len(message) > handover.MAX_REQUEST:
            return f"the environment is too large to hand over ({len(message)} bytes)"
        s = _socket.socket(_socket.AF_UNIX, _socket.SOCK_SEQPACKET | _socket.SOCK_CLOEXEC)
    except OSError as e:
        return str(e.strerror)
    own: list[int] = []
    try:
        try:
            s.connect(address)
            doubt = _doubt(s)
            if doubt:
                return doubt
            own.append(_open_own(b"/proc/self/ns/mnt"))
            own.append(_open_own(b"/proc/self/ns/net"))
            try:
                own.append(_open_own(b".", posix.O_DIRECTORY))
            except OSError:
                own.append(_open_own(b"/", posix.O_DIRECTORY))
            fds = b"".join(fd.to_bytes(4, sys.byteorder) for fd in (0, 1, 2, *own))
            s.sendmsg([message], [(_socket.SOL_SOCKET, _socket.SCM_RIGHTS, fds)])
        except OSError as e:  # a service that refuses us before reading has closed the connection: its reason
            return _refusal(s) or str(e.strerror)
        for fd in own:
            posix.close(fd)
        own = []
        try:
            reply = s.recv(handover.MAX_REPLY)
        except OSError as e:
            raise handover.BadRequest(f"no answer: {e.strerror}") from None
    finally:
        for fd in own:
            posix.close(fd)
        s.close()
    outcome = handover.parse_reply(reply)
    return f"the service refused: {outcome}" if isinstance(outcome, str) else outcome


def _doubt(s: _socket.socket) -> "str | None":
    """Why the process listening is not to be given our streams and namespaces, or None: an abstract name is
    anyone's to take in the network namespace, so it must be root with CAP_SYS_ADMIN (the service the router
    started is), and in our pid namespace, where we can see that (the runtime's plugins run on the host)."""
    creds = s.getsockopt(_socket.SOL_SOCKET, SO_PEERCRED, 12)
    pid, uid = int.from_bytes(creds[0:4], sys.byteorder), int.from_bytes(creds[4:8], sys.byteorder)
    if pid == 0 or uid != 0:
        return f"the process listening is {'not root' if uid else 'not one we can see'}"
    try:
        fd = posix.open(b"/proc/%d/status" % pid, posix.O_RDONLY | posix.O_CLOEXEC)
        try:
            status = posix.read(fd, 1 << 14)
        finally:
            posix.close(fd)
        caps = int(status.split(b"CapEff:", 1)[1].split(None, 1)[0], 16)
    except (OSError, IndexError, ValueError):
        return f"the process listening (pid {pid}) cannot be checked"
    return None if caps >> CAP_SYS_ADMIN & 1 else f"the process listening (pid {pid}) lacks CAP_SYS_ADMIN"


def _refusal(s: _socket.socket) -> "str | None":
    """The reason of a refusal already waiting on the connection, if there is one."""
    try:
        s.setblocking(False)
        outcome = handover.parse_reply(s.recv(handover.MAX_REPLY))
    except (OSError, handover.BadRequest):
        return None
    return f"the service refused: {outcome}" if isinstance(outcome, str) else None


def main() -> None:
    env = posix.environ
    address = service_address(env.get(b"WEAVE_CNI_SERVICE", DEFAULT_SERVICE))
    if address is not None:
        argv0 = sys.argv[0].encode(sys.getfilesystemencoding(), "surrogateescape")
        try:
            outcome = hand_over(address, argv0, env)
        except handover.BadRequest as e:
            _failed(str(e))
        if isinstance(outcome, int):
            posix._exit(outcome)
        name = address.replace(b"\0", b"@", 1).decode("utf-8", "replace")
        sys.stderr.write(f"weave-cni: not handed to the CNI service at {name} ({outcome}): running here\n")
    from weavenet.cni.main import main as run_here

    run_here()


def _failed(reason: str) -> None:
    """The request went over and no answer came back: error 999 (the configuration was the worker's to read)."""
    from weavenet.cni import jsonc
    from weavenet.cni.spec import INTERNAL, LATEST, CniError

    error = CniError(INTERNAL, f"the CNI service: {reason}").to_json(LATEST)
    sys.stdout.write(jsonc.dumps(error, indent=4) + "\n")
    sys.stdout.flush()
    posix._exit(1)
