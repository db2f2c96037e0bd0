"""The router's side of the data plane: creates the TAP and UDP socket, runs the two workers, talks to them.

Runs inside the router's asyncio loop; all of its I/O with the workers is non-blocking on the loop except
``Channel.send`` of small messages on a local socketpair. If a worker dies, the router logs it and restarts the
pair (the TAP and socket stay), so a data-plane crash never takes the control plane down.

With the fast datapath it also owns the VXLAN sniffer (handed to the rx worker) and the socket heartbeats are sent
from; the VXLAN devices themselves are the host side's (``weavenet.host.vxlan``).

The workers are forked from the router (:func:`fork_worker`), not started as new interpreters: a new interpreter
and its imports took 0.3-0.5 s on a loaded machine, and until both workers run the sleeve carries nothing, which
after a relaunch is the containers' traffic. The child keeps only the descriptors it is given, freezes the heap it
inherited (its garbage collector never walks the router's objects) and names itself ``weavenet-tx``/``-rx`` for
``ps`` and ``top``. ``WEAVENET_DATAPLANE_EXEC=1`` starts them as interpreters again (``python -m
weavenet.dataplane.worker``), as before.
"""

from __future__ import annotations

import asyncio
import contextlib
import gc
import logging
import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Callable
from typing import Any

from weavenet.dataplane import tap as tapdev
from weavenet.dataplane import udp, vxlan
from weavenet.dataplane.channel import READ_SIZE, Channel
from weavenet.dataplane.steering import SMALL_FRAME, TapSteering, wanted
from weavenet.dataplane.tables import Tables

log = logging.getLogger("weavenet.dataplane")

TAP_NAME = "vethwe-tap"


class Datapath:
    def __init__(
        self,
        bridge: str,
        host: str,
        port: int,
        on_special: Callable[[int, int, bytes, tuple[str, int]], None],
        tap_name: str = TAP_NAME,
        offloads: bool = True,
        vxlan_port: int | None = None,
        on_vxlan_special: Callable[[str, int, bytes, int], None] | None = None,
        steering: bool = True,
        warm_tick: bool = True,
        rehearsal: bool = True,
    ) -> None:
        self.bridge = bridge
        self.host = host
        self.port = port
        self.tap_name = tap_name
        self.on_special = on_special
        self.offloads_wanted = offloads
        self.offloads = 0
        self.gro = False
        self.tap_fd = -1
        self.steering_wanted = steering
        self.steering: TapSteering | None = None  # the TAP's second queue is the rx worker's (steering.py)
        self.rx_tap_fd = -1
        self.warm_tick = warm_tick  # the workers wake every millisecond for a while after traffic (worker.py)
        self.rehearsal = rehearsal  # and rehearse the express paths on those wakes (worker.REHEARSAL)
        self.sock: socket.socket | None = None
        self._procs: dict[str, subprocess.Popen[bytes] | ForkedWorker] = {}
        self._ctl: dict[str, Channel] = {}
        self._tables: Tables | None = None
        self.stats: dict[str, int] = {}
        self.macs: list[tuple[str, int]] = []
        self.pmtu: dict[int, int] = {}  # peer -> max UDP payload learned by the workers
        self._peer_bytes: dict[str, dict[int, tuple[int, int]]] = {}  # worker role -> peer -> (received, sent)
        self.on_pmtu: Callable[[int, int], None] | None = None
        self._stopping = False
        self.vxlan_port = vxlan_port  # None: no fast datapath
        self.on_vxlan_special = on_vxlan_special
        self.on_stranger: Callable[[str], None] | None = None  # a datagram from a peer name without a link
        self.sniffer: socket.socket | None = None
        self.vxlan_sender: socket.socket | None = None

    def peer_bytes(self) -> dict[int, tuple[int, int]]:
        """Bytes (received, sent) over the sleeve with each peer that has a link, as of the workers' last report
        (every ``STATS_INTERVAL``): the sum of both workers' counts (the rx worker relays too)."""
        out: dict[int, tuple[int, int]] = {}
        for peers in self._peer_bytes.values():
            for peer, (rx, tx) in peers.items():
                old_rx, old_tx = out.get(peer, (0, 0))
                out[peer] = (old_rx + rx, old_tx + tx)
        return out

    async def start(self) -> None:
        multi_queue = self.steering_wanted
        try:
            self.tap_fd, self.offloads = tapdev.open_tap(self.tap_name, self.offloads_wanted, multi_queue)
        except OSError as e:
            if not multi_queue:
                raise
            log.warning("TAP steering unavailable (multi-queue TAP refused: %s): one queue", e)
            self.tap_fd, self.offloads = tapdev.open_tap(self.tap_name, self.offloads_wanted)
            multi_queue = False
        if multi_queue:
            self._open_rx_queue()
        else:
            self.stats["tap_queues"] = 1
        bridge_mtu = await _link_mtu(self.bridge)
        for argv in (
            ["ip", "link", "set", self.tap_name, "mtu", str(bridge_mtu)],
            ["ip", "link", "set", self.tap_name, "master", self.bridge],
            # split horizon with the fast datapath's VXLAN ports: what one delivers, the other never forwards
            ["bridge", "link", "set", "dev", self.tap_name, "isolated", "on"],
            ["ip", "link", "set", self.tap_name, "up"],
        ):
            proc = await asyncio.create_subprocess_exec(*argv, stderr=asyncio.subprocess.PIPE)
            _, err = await proc.communicate()
            if proc.returncode != 0:
                raise OSError(f"{' '.join(argv)}: {err.decode().strip()}")
        self.sock, self.gro = udp.open_socket(self.host, self.port)
        if self.vxlan_port is not None:
            self.sniffer = vxlan.open_sniffer(self.vxlan_port)
            self.vxlan_sender = vxlan.open_sender(self.host)
        log.info(
            "sleeve data plane on %s, UDP %s:%d (offloads 0x%x, GRO %s, TAP queues %d)",
            self.tap_name,
            self.host or "0.0.0.0",
            self.port,
            self.offloads,
            "on" if self.gro else "off",
            2 if self.rx_tap_fd >= 0 else 1,
        )
        self._spawn()

    def _open_rx_queue(self) -> None:
        """The rx worker's TAP queue and the programs that steer small frames to it; without them, one queue."""
        try:
            steer = TapSteering()
            try:
                steer.attach(self.tap_fd, split=False)  # nothing goes to the new queue until the tables allow it
                self.rx_tap_fd = tapdev.open_queue(self.tap_name)
            except BaseException:
                steer.close()
                raise
        except OSError as e:
            log.warning("TAP steering unavailable (%s): every frame from the bridge goes to the tx worker", e)
            self.stats["tap_queues"] = 1
            return
        self.steering = steer
        self.stats["tap_queues"] = 2

    def _steer(self, tables: Tables) -> None:
        if self.steering is None:
            return
        split = wanted(tables)
        try:
            changed = self.steering.attach(self.tap_fd, split)
        except OSError as e:
            log.warning("TAP steering: could not attach the program (%s)", e)
            return
        self.stats["tap_steering"] = int(split)
        if changed and split:
            log.info("TAP steering: frames of up to %d bytes from the bridge go to the rx worker", SMALL_FRAME)
        elif changed:
            log.info("TAP steering off: a peer speaks Weave's classic format, whose frames only the tx worker sends")

    def _spawn(self) -> None:
        assert self.sock is not None
        loop = asyncio.get_running_loop()
        peer_tx, peer_rx = socket.socketpair()
        for role, peer_end in (("tx", peer_tx), ("rx", peer_rx)):
            ours, theirs = socket.socketpair()
            fds = [self.tap_fd, self.sock.fileno(), theirs.fileno(), peer_end.fileno()]
            extra: list[str] = []
            if role == "rx" and self.sniffer is not None:
                fds.append(self.sniffer.fileno())
                extra += ["--sniff-fd", str(self.sniffer.fileno())]
            if role == "rx" and self.rx_tap_fd >= 0:
                fds.append(self.rx_tap_fd)
                extra += ["--tap-rx-fd", str(self.rx_tap_fd)]
            if not self.warm_tick:
                extra.append("--no-warm-tick")
            if not self.rehearsal:
                extra.append("--no-rehearsal")
            args = [
                role,
                "--tap-fd",
                str(fds[0]),
                "--udp-fd",
                str(fds[1]),
                "--ctl-fd",
                str(fds[2]),
                "--peer-fd",
                str(fds[3]),
                *extra,
            ]
            proc: subprocess.Popen[bytes] | ForkedWorker
            if os.environ.get("WEAVENET_DATAPLANE_EXEC") == "1":
                argv = [sys.executable, "-m", "weavenet.dataplane.worker", *args]
                proc = subprocess.Popen(argv, pass_fds=fds, stdin=subprocess.DEVNULL)
            else:
                proc = fork_worker(args, fds)
            theirs.close()
            chan = Channel(ours)
            ours.setblocking(False)
            self._ctl[role] = chan
            self._procs[role] = proc
            loop.add_reader(ours.fileno(), self._readable, role)
        peer_tx.close()
        peer_rx.close()
        if self._tables is not None:
            self.update(self._tables)

    def _readable(self, role: str) -> None:
        chan = self._ctl[role]
        try:
            data = chan.sock.recv(READ_SIZE)
        except BlockingIOError:
            return
        except OSError:
            data = b""
        if not data:
            self._worker_gone(role)
            return
        for msg in chan.feed(data):
            self._message(msg)

    def _message(self, msg: tuple[Any, ...]) -> None:
        kind = msg[0]
        if kind == "special":
            _, peer, conn_uid, frame, addr = msg
            self.on_special(peer, conn_uid, frame, (str(addr[0]), int(addr[1])))
        elif kind == "stranger":
            if self.on_stranger is not None:
                self.on_stranger(str(msg[1]))
        elif kind == "vxlan_special":
            if self.on_vxlan_special is not None:
                _, src_ip, vni, head, length = msg
                self.on_vxlan_special(str(src_ip), int(vni), bytes(head), int(length))
        elif kind == "stats":
            _, _role, stats, macs, pmtus, peers = msg
            self.stats.update(stats)
            self._peer_bytes[_role] = peers
            if _role == "tx":
                self.macs = macs
            for peer, max_payload in pmtus:
                self.pmtu[peer] = max_payload
                if self.on_pmtu is not None:
                    self.on_pmtu(peer, max_payload)

    def _worker_gone(self, role: str) -> None:
        if self._stopping:
            return
        log.error("data plane worker %s exited; restarting the data plane", role)
        self._kill_workers()
        self._spawn()

    def _kill_workers(self) -> None:
        loop = asyncio.get_running_loop()
        for role, chan in self._ctl.items():
            with contextlib.suppress(Exception):
                loop.remove_reader(chan.sock.fileno())
            with contextlib.suppress(OSError):
                chan.sock.close()
            proc = self._procs.get(role)
            if proc is not None and proc.poll() is None:
                proc.terminate()
                try:
                    proc.wait(timeout=2)
                except subprocess.TimeoutExpired:
                    proc.kill()
                    proc.wait()
        self._ctl.clear()
        self._procs.clear()

    # -- commands ---------------------------------------------------------------------------------------------

    def _send(self, role: str, msg: tuple[Any, ...]) -> None:
        chan = self._ctl.get(role)
        if chan is None:
            return
        try:
            chan.sock.setblocking(True)
            chan.send(msg)
        except OSError:
            self._worker_gone(role)
        finally:
            with contextlib.suppress(OSError):
                chan.sock.setblocking(False)

    def update(self, tables: Tables) -> None:
        self._tables = tables
        self._steer(tables)
        for role in ("tx", "rx"):
            self._send(role, ("tables", tables))
        # what the TAP runs, not what the tables want: an attach can fail, and then the old program stays
        self._send("tx", ("steering", self.steering is not None and bool(self.steering.split)))

    def send_special(self, peer: int, conn_uid: int, frame: bytes, df: bool, more: tuple[bytes, ...] = ()) -> None:
        """Special frames of the router's for one datagram to a peer (``more``: after ``frame``, same datagram)."""
        self._send("tx", ("special", peer, conn_uid, frame, df, more))

    def send_datagram(self, addr: tuple[str, int], data: bytes) -> None:
        """A datagram of the router's own (a liveness beacon) from the mesh port; lost if the socket is full."""
        if self.sock is None:
            return
        try:
            self.sock.sendto(data, addr)
        except OSError as e:
            log.debug("sending to %s:%d: %s", addr[0], addr[1], e)

    def send_vxlan(self, addr: tuple[str, int], vni: int, frame: bytes) -> str | None:
        """Send a hand-made VXLAN packet (a heartbeat); returns why it could not leave, if so."""
        if self.vxlan_sender is None:
            return "no fast datapath"
        return vxlan.send(self.vxlan_sender, addr, vni, frame)

    def worker_pids(self) -> list[int]:
        return [p.pid for p in self._procs.values()]

    def worker_args(self, role: str) -> list[str]:
        """The command line the ``tx`` or ``rx`` worker runs with ([] if it does not run)."""
        proc = self._procs.get(role)
        if proc is None:
            return []
        args = proc.args
        return [str(a) for a in args] if isinstance(args, list) else [str(args)]

    async def stop(self) -> None:
        self._stopping = True
        for role in list(self._ctl):
            self._send(role, ("stop",))
        self._kill_workers()
        if self.sock is not None:
            self.sock.close()
        for extra in (self.sniffer, self.vxlan_sender):
            if extra is not None:
                extra.close()
        for fd in (self.rx_tap_fd, self.tap_fd):
            if fd >= 0:
                os.close(fd)
        self.tap_fd = self.rx_tap_fd = -1
        if self.steering is not None:
            self.steering.close()
            self.steering = None


class ForkedWorker:
    """A worker forked from the router: the part of ``subprocess.Popen`` the supervisor uses."""

    def __init__(self, pid: int, args: list[str]) -> None:
        self.pid = pid
        self.args = ["weavenet.dataplane.worker", *args]  # what it runs, as ``worker_args`` reports it
        self.returncode: int | None = None

    def poll(self) -> int | None:
        if self.returncode is None:
            try:
                pid, status = os.waitpid(self.pid, os.WNOHANG)
            except ChildProcessError:
                self.returncode = -1
                return self.returncode
            if pid:
                self.returncode = os.waitstatus_to_exitcode(status)
        return self.returncode

    def wait(self, timeout: float | None = None) -> int:
        deadline = None if timeout is None else time.monotonic() + timeout
        while (code := self.poll()) is None:
            if deadline is not None and time.monotonic() >= deadline:
                raise subprocess.TimeoutExpired(self.args, timeout or 0.0)
            time.sleep(0.01)
        return code

    def _signal(self, sig: int) -> None:
        if self.poll() is None:
            with contextlib.suppress(ProcessLookupError):
                os.kill(self.pid, sig)

    def terminate(self) -> None:
        self._signal(signal.SIGTERM)

    def kill(self) -> None:
        self._signal(signal.SIGKILL)


PR_SET_NAME = 15


def fork_worker(args: list[str], fds: list[int]) -> ForkedWorker:
    """Fork a data-plane worker running ``weavenet.dataplane.worker.main(args)`` with only ``fds`` (and the
    standard streams) open. The worker's module is imported here first, so the child starts running at once."""
    from weavenet.dataplane import worker

    pid = os.fork()
    if pid:
        return ForkedWorker(pid, args)
    code = 1
    try:  # the child: never returns into the router's event loop
        _child_setup(args[0], fds)
        code = worker.main(args)
    except SystemExit as e:
        code = e.code if isinstance(e.code, int) else 0
    except BaseException:
        import traceback

        traceback.print_exc()
    finally:
        os._exit(code)


def _child_setup(role: str, fds: list[int]) -> None:
    """What a forked worker leaves of the router: the loop's signal wake-up (its pipe is the router's), every
    descriptor but its own (a listening socket held by a worker would keep a relaunched router from binding),
    the garbage collector's work on the inherited heap."""
    signal.set_wakeup_fd(-1)
    for sig in (signal.SIGTERM, signal.SIGINT, signal.SIGHUP, signal.SIGCHLD):
        signal.signal(sig, signal.SIG_DFL)
    keep = {0, 1, 2, *fds}
    for name in os.listdir("/proc/self/fd"):
        fd = int(name)
        if fd not in keep:
            with contextlib.suppress(OSError):
                os.close(fd)
    null = os.open(os.devnull, os.O_RDONLY)
    os.dup2(null, 0)
    os.close(null)
    gc.freeze()
    with contextlib.suppress(OSError, AttributeError):
        import ctypes

        ctypes.CDLL(None, use_errno=True).prctl(PR_SET_NAME, f"weavenet-{role}".encode(), 0, 0, 0)


async def _link_mtu(name: str) -> int:
    """A link's MTU (the TAP must not lower the bridge's: a bridge takes the smallest MTU of its ports)."""
    proc = await asyncio.create_subprocess_exec("ip", "-o", "link", "show", name, stdout=asyncio.subprocess.PIPE)
    out, _ = await proc.communicate()
    parts = out.decode().split()
    return int(parts[parts.index("mtu") + 1]) if "mtu" in parts else 1500
