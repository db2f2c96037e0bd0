"""The CNI service: a resident process that runs the plugins' executions handed over by :mod:`.client`.

``python -m weavenet.cni.server <address>``, started by the router (:mod:`weavenet.daemon.cni_service`) with a
pipe on its standard input: it ends when the pipe does, so a router that dies (even killed) takes it along. It has
every module an execution needs imported once; each request gets a worker forked from it, which takes on what the
client handed over (:mod:`.handover`): its mount and network namespaces (``setns``, so a router in a container
sees the host's files and links as the plugin would), working directory, umask, environment and standard
streams, runs the plugin (:func:`weavenet.cni.main.respond`) and sends back its exit status. A fork is a process
of the plugin's own (its locks, its namespaces, its children are its own, as an exec'd plugin's would be) without
the interpreter's start-up and the imports.

Only root may hand over (``SO_PEERCRED``, in the service's user namespace), and, where the service can see the
client's process, only with ``CAP_SYS_ADMIN``: the worker acts as root in the namespaces it is given. A request
that is malformed, comes from another user or whose namespaces cannot be joined is refused with its one-line
reason (logged, counted) before anything is read: the client then runs the plugin itself.
"""

from __future__ import annotations

import encodings.idna  # noqa: F401  (loaded before any fork, as all below: a host name in WEAVE_HTTP_ADDR)
import gc
import os
import select
import signal
import socket
import sys
import time
import traceback

import weavenet.cni.main as cni_main
import weavenet.cni.plugin  # noqa: F401  (what an execution imports: a worker in another mount namespace could not)
from weavenet.cni import handover, link
from weavenet.cni.client import service_address
from weavenet.host.netns import _setns

CLONE_NEWNS = 0x00020000
CLONE_NEWNET = 0x40000000
SO_PEERCRED = 17
CAP_SYS_ADMIN = 21
BACKLOG = 128
REAP_EVERY = 1.0  # seconds: how long an ended worker may stay a zombie
RECEIVE_TIMEOUT = 2.0  # seconds for a connected client's request to arrive (it sends it at once)


class Service:
    """The listening socket and the tally of refusals."""

    def __init__(self, address: bytes) -> None:
        self.address = address
        self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_SEQPACKET | socket.SOCK_CLOEXEC)
        if not address.startswith(b"\0"):
            try:
                os.unlink(address)
            except FileNotFoundError:
                pass
        self.sock.bind(address)
        if not address.startswith(b"\0"):
            os.chmod(address, 0o600)
        self.sock.listen(BACKLOG)
        self.served = 0
        self.refused = 0

    def serve(self, control: int) -> None:
        """Until ``control`` (the router's pipe) reaches its end."""
        listener = self.sock.fileno()
        while True:
            reap()
            ready, _, _ = select.select([listener, control], [], [], REAP_EVERY)
            if control in ready and not os.read(control, 512):
                return
            if listener in ready:
                try:
                    conn, _ = self.sock.accept()
                except OSError:
                    continue
                try:
                    self.take(conn)
                finally:
                    conn.close()

    def take(self, conn: socket.socket) -> None:
        """Receive one request and fork its worker, or refuse it."""
        fds: list[int] = []
        try:
            pid, uid = peer(conn)
            if uid != 0:  # not read at all: the descriptors it may send are never received
                raise handover.BadRequest(f"the client runs as uid {uid}, not root")
            if pid and not may_administer(pid):
                raise handover.BadRequest("the client lacks CAP_SYS_ADMIN")
            conn.settimeout(RECEIVE_TIMEOUT)  # a client that connects and says nothing holds up no one for long
            data, ancillary, flags, _ = conn.recvmsg(handover.MAX_REQUEST + 1, socket.CMSG_SPACE(handover.N_FDS * 4))
            for level, kind, raw in ancillary:
                if level == socket.SOL_SOCKET and kind == socket.SCM_RIGHTS:
                    n = len(raw) // 4
                    fds.extend(int.from_bytes(raw[i * 4 : i * 4 + 4], sys.byteorder) for i in range(n))
            request = self.check(data, flags, fds)
            self.served += 1
            if os.fork() == 0:
                worker(self.sock, conn, request, fds)  # never returns
        except (handover.BadRequest, OSError) as e:
            self.refused += 1
            log(f"refused a request ({self.refused} so far): {e}")
            try:
                conn.send(handover.refused_reply(str(e)))
                linger(conn)
            except OSError:
                pass
        finally:
            for fd in fds:
                os.close(fd)

    def check(self, data: bytes, flags: int, fds: list[int]) -> handover.Request:
        if flags & (socket.MSG_TRUNC | socket.MSG_CTRUNC):
            raise handover.BadRequest("request too large")
        if len(fds) != handover.N_FDS:
            raise handover.BadRequest(f"{len(fds)} descriptors, not {handover.N_FDS}")
        return handover.decode(data)


def linger(conn: socket.socket) -> None:
    """Keep a refused connection open until the client has read the refusal and closed its end (at most
    RECEIVE_TIMEOUT). Closing a socket whose request was never read resets it, and the client's next read then
    fails with ECONNRESET instead of returning the refusal already queued for it."""
    poller = select.poll()
    poller.register(conn.fileno(), select.POLLRDHUP)
    poller.poll(RECEIVE_TIMEOUT * 1000)


def peer(conn: socket.socket) -> tuple[int, int]:
    """The connected client's pid (0 when it is not in our pid namespace) and user, as we see them
    (``SO_PEERCRED``)."""
    creds = conn.getsockopt(socket.SOL_SOCKET, SO_PEERCRED, 12)
    return int.from_bytes(creds[0:4], sys.byteorder), int.from_bytes(creds[4:8], sys.byteorder)


def may_administer(pid: int) -> bool:
    """Whether the process has CAP_SYS_ADMIN (what the worker uses on its behalf): root in a container without
    it must not get it through us. Only a process we can see can be asked; one we cannot see (a host's plugin
    under a router in a container without the host's pid namespace) is trusted as root in the host's network
    namespace, as the router's API on 127.0.0.1 trusts it (docs/kubernetes.md)."""
    try:
        with open(f"/proc/{pid}/status", "rb") as f:
            for line in f:
                if line.startswith(b"CapEff:"):
                    return bool(int(line.split()[1], 16) >> CAP_SYS_ADMIN & 1)
    except (OSError, ValueError, IndexError):
        return False
    return False


def reap() -> None:
    """Collect the workers that ended (waited for, not ignored, so that their CPU time counts as the service's
    children's, where ``bench/cni_latency.py`` reads it)."""
    while True:
        try:
            pid, _ = os.waitpid(-1, os.WNOHANG)
        except ChildProcessError:
            return
        if pid == 0:
            return


def log(message: str) -> None:
    """A line in the router's log, in its layout."""
    t = time.time()
    stamp = time.strftime("%Y/%m/%d %H:%M:%S", time.localtime(t))
    sys.stderr.write(f"INFO: {stamp}.{int(t % 1 * 1e6):06d} cni service: {message}\n")
    sys.stderr.flush()


def _join(fd: int, nstype: int, own: str) -> None:
    """Enter the namespace of ``fd`` unless it is ours already."""
    if os.fstat(fd).st_ino == os.stat(own).st_ino:
        return
    err = _setns(fd, nstype)
    if err:
        raise OSError(err, f"joining the client's namespace: {os.strerror(err)}")


def worker(listener: socket.socket, conn: socket.socket, request: handover.Request, fds: list[int]) -> None:
    """The forked worker: become the client, run the execution, answer its exit status; never returns."""
    status = 1
    gc.disable()  # a worker lives for one execution
    null = os.open(os.devnull, os.O_RDWR)  # what takes the streams' place once answered
    try:
        listener.close()
        stdin, stdout, stderr, mnt, net, cwd = fds
        try:
            _join(mnt, CLONE_NEWNS, "/proc/self/ns/mnt")
            _join(net, CLONE_NEWNET, "/proc/self/ns/net")
            os.fchdir(cwd)
        except OSError as e:  # nothing read or changed yet: the client runs it
            conn.send(handover.refused_reply(str(e.strerror or e)))
            os._exit(0)
        for fd, std in ((stdin, 0), (stdout, 1), (stderr, 2)):
            os.dup2(fd, std)
        for fd in fds:
            os.close(fd)
        os.umask(request.umask)
        os.environb.clear()
        os.environb.update(request.env)
        link.LATER = []
        status = cni_main.respond(os.fsdecode(request.argv0), os.environ)
    except BaseException:
        traceback.print_exc()
    try:
        for std in (0, 1, 2):  # the runtime waits for the end of our output: here it is
            os.dup2(null, std)
        conn.send(handover.exit_reply(status))
        conn.close()
        link.announce_later()  # the pod's gratuitous ARPs, no longer anyone's wait
    finally:
        os._exit(0)


def main(argv: list[str] | None = None) -> None:
    args = sys.argv[1:] if argv is None else argv
    address = service_address(os.fsencode(args[0])) if args else None
    if address is None:
        sys.exit("usage: python -m weavenet.cni.server @<abstract name>|<socket path>")
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # the router's terminal's ^C: the router ends us
    try:
        service = Service(address)
    except OSError as e:
        sys.exit(f"cni service: cannot listen on {args[0]}: {e.strerror}")
    log(f"listening on {args[0]}")
    gc.freeze()  # what is loaded now stays: no collection in a worker touches (and copies) its pages
    os.write(1, b"listening\n")  # the router waits for this line (its pipe): then standard output goes nowhere
    null = os.open(os.devnull, os.O_WRONLY)
    os.dup2(null, 1)
    os.close(null)
    service.serve(0)
    log(f"stopped ({service.served} executions served, {service.refused} refused)")


if __name__ == "__main__":
    main()
