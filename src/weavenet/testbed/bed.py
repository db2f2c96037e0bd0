"""Simulated hosts on one machine: network namespaces joined by an underlay switch.

Each host has its own network namespace and a persistent mount and UTS namespace in which ``/run`` (so
``/var/run``), ``/var/lib/weave`` and ``/etc/machine-id`` are private and ``/sys`` shows the host's links, so an
unmodified ``weave launch`` in each host behaves like on a separate machine. ``/run/netns`` stays visible inside
hosts (containers are addressed as ``/var/run/netns/NAME``). Hosts are plugged into a bridge in a switch
namespace of their own; impairments (cut, loss, port blocks) are iptables rules there, applied to bridged traffic,
so they act like the network, and nothing is configured in the machine's own network namespace. The underlay is
one flat subnet; every host has a fixed MAC and a permanent neighbour entry for every other host, since the
kernel's neighbour table, shared by all namespaces, holds only 1,024 learned entries (a full mesh of 33 hosts
needs more).

Python 3.11 has no ``os.setns``, so commands enter a host with ``nsenter``. Everything is torn down by
:meth:`Testbed.close`, and :func:`cleanup_stale` removes what a crashed run left behind.

Ownership: a prefix belongs to at most one live test bed at a time. Its work dir ``/tmp/<prefix>-<pid>`` holds
``state.json`` with the owner's pid and start time; a prefix whose owner is alive (or whose bed was kept by
``python -m weavenet.testbed up``) is *busy*, and :class:`Testbed` raises :class:`TestbedBusy` instead of wiping it.
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import os
import secrets
import shutil
import signal
import subprocess
import sys
import time
from collections.abc import Iterator, Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

from weavenet.testbed import plan

if TYPE_CHECKING:
    from weavenet.testbed.docker_engine import DockerEngine
    from weavenet.testbed.podman_engine import PodmanEngine

_CLAIM_LOCK = "/tmp/.weavenet-testbed.lock"


class TestbedError(RuntimeError):
    """A command needed to build or drive the test bed failed."""

    __test__ = False


class TestbedBusy(TestbedError):
    """Another live (or kept) test bed owns this prefix."""

    __test__ = False


def _run(argv: Sequence[str], check: bool = True, timeout: float = 30) -> subprocess.CompletedProcess[str]:
    res = subprocess.run(
        list(argv), capture_output=True, text=True, timeout=timeout, stdin=subprocess.DEVNULL, check=False
    )
    if check and res.returncode != 0:
        raise TestbedError(f"{' '.join(argv)} -> rc {res.returncode}: {res.stderr.strip() or res.stdout.strip()}")
    return res


# -- processes and namespaces --------------------------------------------------------------------------------------


def _proc_start(pid: int) -> str | None:
    """The start time of a process (field 22 of /proc/PID/stat), so a reused pid is not taken for the owner."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except (FileNotFoundError, ProcessLookupError):
        return None
    fields = stat.rsplit(")", 1)[1].split()
    return None if fields[0] == "Z" else fields[19]


def _alive(pid: int) -> bool:
    return _proc_start(pid) is not None


def _inode(path: str | Path) -> int | None:
    try:
        return os.stat(path).st_ino
    except OSError:
        return None


def _pids_in(net_inodes: set[int], mnt_inodes: frozenset[int] = frozenset()) -> list[int]:
    """Processes whose network namespace (or mount namespace) is one of the given ones, except ourselves."""
    me = os.getpid()
    out = []
    for entry in os.listdir("/proc"):
        if not entry.isdigit() or int(entry) == me:
            continue
        try:
            if os.stat(f"/proc/{entry}/ns/net").st_ino in net_inodes or (
                mnt_inodes and os.stat(f"/proc/{entry}/ns/mnt").st_ino in mnt_inodes
            ):
                out.append(int(entry))
        except OSError:
            continue
    return out


def pids_in_netns(name: str) -> list[int]:
    """Processes whose network namespace is the named one (``/run/netns/NAME``)."""
    ino = _inode(f"/run/netns/{name}")
    return [] if ino is None else _pids_in({ino})


def _kill_all(net_inodes: set[int], mnt_inodes: frozenset[int] = frozenset(), grace: float = 3.0) -> None:
    """SIGTERM, wait, then SIGKILL every process in those namespaces; rescans catch processes forked meanwhile."""
    for sig, wait in ((signal.SIGTERM, grace), (signal.SIGKILL, 2.0), (signal.SIGKILL, 2.0)):
        pids = [p for p in _pids_in(net_inodes, mnt_inodes) if _alive(p)]
        if not pids:
            return
        for pid in pids:
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, sig)
        deadline = time.monotonic() + wait
        while time.monotonic() < deadline and any(_alive(p) for p in pids):
            time.sleep(0.02)


def list_netns() -> list[str]:
    try:
        return sorted(os.listdir("/run/netns"))
    except FileNotFoundError:
        return []


def _mounts_under(path: str) -> list[str]:
    out = []
    root = path.rstrip("/")
    with open("/proc/self/mountinfo") as f:
        for line in f:
            mp = line.split()[4].encode().decode("unicode_escape")
            if mp == root or mp.startswith(root + "/"):
                out.append(mp)
    return out


def _unmount_all(path: str) -> None:
    for _ in range(3):  # stacked mounts need one pass per layer
        mps = _mounts_under(path)
        if not mps:
            return
        for mp in sorted(mps, key=len, reverse=True):
            _run(["umount", "-l", mp], check=False)


# -- ownership of prefixes -------------------------------------------------------------------------------------------


@contextlib.contextmanager
def _claim_lock() -> Iterator[None]:
    """Serialises "is this prefix free? then take it" between concurrent test runs."""
    fd = os.open(_CLAIM_LOCK, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o644)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)
        yield
    finally:
        os.close(fd)


def _workdirs(prefix: str) -> list[tuple[Path, int, dict[str, Any]]]:
    out = []
    for d in Path(plan.WORK_ROOT).glob(f"{prefix}-*"):
        pid = plan.workdir_owner(prefix, d.name)
        if pid is None or not d.is_dir():
            continue
        try:
            state = json.loads((d / "state.json").read_text())
        except (OSError, ValueError):
            state = {}
        out.append((d, pid, state))
    return out


def _owner_alive(pid: int, state: Mapping[str, Any]) -> bool:
    start = _proc_start(pid)
    return start is not None and state.get("owner_start", start) == start


def _busy(prefix: str, include_kept: bool = True) -> str | None:
    """Why the prefix is not free (a description of its owner), or None."""
    for d, pid, state in _workdirs(prefix):
        if pid == os.getpid():
            return f"test bed {d} of this process"
        if _owner_alive(pid, state):
            return f"test bed {d} of live process {pid}"
        if include_kept and state.get("keep"):
            return f"kept test bed {d} (remove it with: python -m weavenet.testbed down --prefix {prefix})"
    return None


def _teardown(prefix: str, workdirs: Sequence[Path]) -> None:
    """Kill, delete and unmount everything of ``prefix``; the caller has checked that nobody live owns it."""
    names = [n for n in list_netns() if plan.owns_netns(prefix, n)]
    net = {i for n in names if (i := _inode(f"/run/netns/{n}")) is not None}
    mnt = frozenset(i for d in workdirs for f in (d / "ns").glob("*.mnt") if (i := _inode(f)) is not None)
    from weavenet.testbed import docker_engine

    docker_engine.kill_containers(prefix)  # Docker's and podman's containers have namespaces of their own: by cgroup
    _kill_all(net, mnt)
    docker_engine.remove_cgroups(prefix)
    for name in names:
        _run(["ip", "netns", "del", name], check=False)
        shutil.rmtree(f"/etc/netns/{name}", ignore_errors=True)
    for d in workdirs:
        _unmount_all(str(d))
        if not _mounts_under(str(d)):  # never rm -r through a mount that is still there
            shutil.rmtree(d, ignore_errors=True)


def _cleanup_locked(prefix: str, include_kept: bool) -> None:
    busy = _busy(prefix, include_kept=include_kept)
    if busy:
        raise TestbedBusy(f"prefix {prefix!r} is in use: {busy}")
    _teardown(prefix, [d for d, _, _ in _workdirs(prefix)])


def cleanup_stale(prefix: str = "wnt") -> None:
    """Remove what an earlier (crashed or kept) run with this prefix left: processes, namespaces, mounts, work dirs.

    Raises :class:`TestbedBusy` rather than touching a test bed whose owner process is still alive.
    """
    plan.check_prefix(prefix)
    with _claim_lock():
        _cleanup_locked(prefix, include_kept=False)


# -- hosts and containers ----------------------------------------------------------------------------------------


class Container:
    """A container as a bare network namespace (``ip netns exec`` gives it /etc/netns/NAME files)."""

    def __init__(self, host: Host, name: str, create: bool = True) -> None:
        self.host = host
        self.name = name
        self.netns = plan.container_ns(host.bed.prefix, host.name, name)
        self.netns_path = f"/var/run/netns/{self.netns}"
        if create:
            _run(["ip", "netns", "add", self.netns])
            _run(["ip", "-n", self.netns, "link", "set", "lo", "up"])

    def run(
        self,
        argv: Sequence[str],
        *,
        check: bool = True,
        timeout: float = 30,
        env: Mapping[str, str] | None = None,
        input: str | None = None,
    ) -> subprocess.CompletedProcess[str]:
        res = subprocess.run(
            ["ip", "netns", "exec", self.netns, *argv],
            capture_output=True,
            text=True,
            timeout=timeout,
            env={**os.environ, **(env or {})},
            input=input,
            stdin=None if input is not None else subprocess.DEVNULL,
            check=False,
        )
        if check and res.returncode != 0:
            raise TestbedError(f"{self.netns}: {' '.join(argv)} -> rc {res.returncode}: {res.stderr.strip()}")
        return res

    def sh(self, cmd: str, **kw: Any) -> subprocess.CompletedProcess[str]:
        return self.run(["sh", "-c", cmd], **kw)

    def pids(self) -> list[int]:
        return pids_in_netns(self.netns)

    def remove(self) -> None:
        ino = _inode(f"/run/netns/{self.netns}")
        if ino is not None:
            _kill_all({ino})
        _run(["ip", "netns", "del", self.netns], check=False)
        shutil.rmtree(f"/etc/netns/{self.netns}", ignore_errors=True)
        with contextlib.suppress(ValueError):
            self.host.containers.remove(self)

    def __repr__(self) -> str:
        return f"Container({self.netns})"


class Host:
    """One simulated host: its own network, mount and UTS namespaces."""

    def __init__(self, bed: Testbed, index: int) -> None:
        self.bed = bed
        self.index = index
        self.name = plan.host_name(index)
        self.ip = plan.host_ip(bed.subnet, index)
        self.netns = plan.ns_name(bed.prefix, self.name)
        self.netns_path = f"/run/netns/{self.netns}"
        self.dir = bed.workdir / self.name
        self.mnt_ns = bed.workdir / "ns" / f"{self.name}.mnt"
        self.uts_ns = bed.workdir / "ns" / f"{self.name}.uts"
        self.port = plan.switch_port(self.name)
        self.containers: list[Container] = []
        self.docker: DockerEngine | None = None
        self.podman: PodmanEngine | None = None

    def _create(self) -> None:
        bed, sw = self.bed, self.bed.switch_ns
        _run(["ip", "netns", "add", self.netns])
        # Both ends are created directly in their namespaces: no name ever appears in the root namespace.
        mac = plan.host_mac(self.index)
        veth = ["type", "veth", "peer", "name", "eth0", "address", mac, "netns", self.netns]
        _run(["ip", "link", "add", self.port, "netns", sw, *veth])
        _run(["ip", "-n", sw, "link", "set", self.port, "master", plan.BRIDGE, "up"])
        _run(["ip", "-n", self.netns, "addr", "add", f"{self.ip}/{plan.prefixlen(bed.subnet)}", "dev", "eth0"])
        for dev in ("lo", "eth0"):
            _run(["ip", "-n", self.netns, "link", "set", dev, "up"])
        _run(["nsenter", f"--net={self.netns_path}", "sysctl", "-qw", "net.ipv4.ip_forward=1"])
        for sub in ("run/netns", "lib-weave", "cgroup"):
            (self.dir / sub).mkdir(parents=True, exist_ok=True)
        (self.dir / "machine-id").write_text(plan.machine_id(secrets.token_bytes(16)))
        Path("/var/lib/weave").mkdir(parents=True, exist_ok=True)  # mount point only; stays empty in the root ns
        self.mnt_ns.touch()
        self.uts_ns.touch()
        _run(
            [
                "nsenter",
                f"--net={self.netns_path}",
                "unshare",
                f"--mount={self.mnt_ns}",
                f"--uts={self.uts_ns}",
                "--propagation",
                "slave",
                "sh",
                "-c",
                plan.host_mount_script(self.name, str(self.dir)),
            ]
        )

    # -- running things -------------------------------------------------------------------------------------------

    def enter(self, cwd: str | None = None) -> list[str]:
        """The argv prefix that runs a command inside this host (nsenter execs it: same pid, no extra fork).

        Entering a mount namespace resets the working directory to its root, so the caller's one is passed on.
        """
        return [
            "nsenter",
            f"--net={self.netns_path}",
            f"--mount={self.mnt_ns}",
            f"--uts={self.uts_ns}",
            f"--wd={cwd or os.getcwd()}",
            "--",
        ]

    def run(
        self,
        argv: Sequence[str],
        *,
        check: bool = True,
        timeout: float = 30,
        env: Mapping[str, str] | None = None,
        input: str | None = None,
    ) -> subprocess.CompletedProcess[str]:
        res = subprocess.run(
            [*self.enter(), *argv],
            capture_output=True,
            text=True,
            timeout=timeout,
            env={**os.environ, **(env or {})},
            input=input,
            stdin=None if input is not None else subprocess.DEVNULL,
            check=False,
        )
        if check and res.returncode != 0:
            raise TestbedError(
                f"{self.name}: {' '.join(argv)} -> rc {res.returncode}: {res.stderr.strip() or res.stdout.strip()}"
            )
        return res

    def sh(self, cmd: str, **kw: Any) -> subprocess.CompletedProcess[str]:
        return self.run(["sh", "-c", cmd], **kw)

    def popen(self, argv: Sequence[str], **kw: Any) -> subprocess.Popen[str]:
        """Start a process in the host; ``cwd=`` works as usual, text mode unless told otherwise."""
        cwd = kw.pop("cwd", None)
        kw.setdefault("text", True)
        return subprocess.Popen([*self.enter(str(cwd) if cwd else None), *argv], **kw)

    def weave(
        self, *args: str, env: Mapping[str, str] | None = None, check: bool = False, timeout: float = 60
    ) -> subprocess.CompletedProcess[str]:
        """Run our ``weave`` CLI inside the host."""
        return self.run([sys.executable, "-m", "weavenet.cli", *args], check=check, timeout=timeout, env=env)

    def pids(self) -> list[int]:
        """Processes in this host's network namespace."""
        ino = _inode(self.netns_path)
        return [] if ino is None else _pids_in({ino})

    def kill_all(self, sig: int = signal.SIGTERM) -> None:
        for pid in self.pids():
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, sig)

    def container(self, name: str) -> Container:
        c = Container(self, name)
        self.containers.append(c)
        return c

    def start_docker(self, sock: str = "/var/run/docker.sock") -> DockerEngine:
        """A real Docker engine in this host (see ``docker_engine``), listening on ``sock``; started once, stopped
        with the bed."""
        from weavenet.testbed.docker_engine import DockerEngine

        if self.docker is None:
            self.docker = DockerEngine(self, sock).start()
        return self.docker

    def start_podman(self) -> PodmanEngine:
        """Podman with its CNI backend in this host (see ``podman_engine``); its containers go with the bed."""
        from weavenet.testbed.podman_engine import PodmanEngine

        if self.podman is None:
            self.podman = PodmanEngine(self).start()
        return self.podman

    def set_mtu(self, mtu: int) -> None:
        """MTU of this host's underlay link, both ends."""
        _run(["ip", "-n", self.netns, "link", "set", "eth0", "mtu", str(mtu)])
        _run(["ip", "-n", self.bed.switch_ns, "link", "set", self.port, "mtu", str(mtu)])

    def __repr__(self) -> str:
        return f"Host({self.name}, {self.ip})"


class Testbed:
    """N hosts and their underlay switch. Use as a context manager; ``close()`` always cleans up.

    :meth:`leave_running` (the CLI's ``up``) keeps it after its owner exits; a later test bed with the same prefix
    then refuses to sweep it, while ``cleanup_stale``/``down`` still removes it.
    """

    __test__ = False  # not a pytest test class

    def __init__(self, n_hosts: int, prefix: str = "wnt", subnet: str = "192.168.48.0/24") -> None:
        plan.check_prefix(prefix)
        if not 1 <= n_hosts <= 200:
            raise ValueError("between 1 and 200 hosts")
        plan.host_ip(subnet, n_hosts)  # fail early if the subnet is too small
        self.prefix = prefix
        self.subnet = subnet
        self.keep = False
        self.switch_ns = plan.ns_name(prefix, "sw")
        self.workdir = Path(plan.workdir(prefix, os.getpid()))
        self.hosts: list[Host] = []
        self._closed = True
        with _claim_lock():
            _cleanup_locked(prefix, include_kept=True)  # raises TestbedBusy before anything is touched
            self._closed = False
            self.workdir.mkdir(parents=True)
            self._save()
        try:
            self._create(n_hosts)
        except BaseException:
            self.close()
            raise

    @classmethod
    def load(cls, prefix: str = "wnt") -> Testbed:
        """A handle on an existing bed (for the CLI): runs things in its hosts, never closes it."""
        for d, _, state in _workdirs(plan.check_prefix(prefix)):
            if state.get("hosts"):
                bed = cls.__new__(cls)
                bed.prefix, bed.subnet, bed.keep = prefix, state["subnet"], True
                bed.switch_ns = plan.ns_name(prefix, "sw")
                bed.workdir, bed._closed, bed.hosts = d, True, []
                for i in range(1, len(state["hosts"]) + 1):
                    bed.hosts.append(Host(bed, i))
                return bed
        raise TestbedError(f"no test bed with prefix {prefix!r} is up")

    def _save(self) -> None:
        state = {
            "prefix": self.prefix,
            "subnet": self.subnet,
            "owner": os.getpid(),
            "owner_start": _proc_start(os.getpid()),
            "keep": self.keep,
            "hosts": [[h.name, h.ip] for h in self.hosts],
        }
        tmp = self.workdir / "state.json.tmp"
        tmp.write_text(json.dumps(state))
        tmp.replace(self.workdir / "state.json")

    def _create(self, n: int) -> None:
        ns_dir = self.workdir / "ns"
        ns_dir.mkdir()
        # Persistent mount namespace files must live on a private mount (else the kernel refuses: loops).
        _run(["mount", "--bind", str(ns_dir), str(ns_dir)])
        _run(["mount", "--make-private", str(ns_dir)])
        _run(["ip", "netns", "add", self.switch_ns])
        sw = ["ip", "-n", self.switch_ns]
        _run([*sw, "link", "set", "lo", "up"])
        _run([*sw, "link", "add", plan.BRIDGE, "type", "bridge"])
        _run([*sw, "link", "set", plan.BRIDGE, "up"])
        self._nsexec_switch(["sysctl", "-qw", "net.bridge.bridge-nf-call-iptables=1"])
        if self._nsexec_switch(["sysctl", "-n", "net.bridge.bridge-nf-call-iptables"]).stdout.strip() != "1":
            raise TestbedError("bridge-nf-call-iptables is off in the switch namespace: impairments would not work")
        self._ipt(["-N", plan.IMPAIR_CHAIN])
        self._ipt(["-I", "FORWARD", "1", "-j", plan.IMPAIR_CHAIN])
        for i in range(1, n + 1):
            host = Host(self, i)
            self.hosts.append(host)
            host._create()
        self._neighbours()
        self._save()

    def _neighbours(self) -> None:
        """Every host knows every other host's MAC for good (see :func:`plan.neighbour_batch`: the kernel's shared
        ARP table would refuse a full mesh of more than about 32 hosts)."""
        everyone = [(h.index, h.ip) for h in self.hosts]
        for h in self.hosts:
            res = subprocess.run(
                ["ip", "-n", h.netns, "-batch", "-"],
                input=plan.neighbour_batch(h.index, everyone),
                capture_output=True,
                text=True,
                timeout=60,
                check=False,
            )
            if res.returncode != 0:
                raise TestbedError(f"permanent neighbours in {h.name}: {res.stderr.strip()}")

    def __enter__(self) -> Testbed:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def host(self, name: str) -> Host:
        for h in self.hosts:
            if h.name == name:
                return h
        raise KeyError(name)

    # -- impairments (iptables FORWARD in the switch netns; bridged frames pass it thanks to br_netfilter) -----------

    def _nsexec_switch(self, argv: Sequence[str], check: bool = True) -> subprocess.CompletedProcess[str]:
        return _run(["nsenter", f"--net=/run/netns/{self.switch_ns}", *argv], check=check)

    def _ipt(self, args: Sequence[str], check: bool = True) -> subprocess.CompletedProcess[str]:
        return self._nsexec_switch(["iptables", "-w", *args], check=check)

    def _add(self, rules: list[list[str]]) -> None:
        for r in rules:
            if self._ipt(["-C", plan.IMPAIR_CHAIN, *r], check=False).returncode != 0:
                self._ipt(["-A", plan.IMPAIR_CHAIN, *r])

    def _delete(self, rules: list[list[str]]) -> None:
        for r in rules:
            while self._ipt(["-D", plan.IMPAIR_CHAIN, *r], check=False).returncode == 0:
                pass

    def impairments(self) -> list[str]:
        """The current impairment rules, as ``iptables -S`` prints them."""
        return [ln for ln in self._ipt(["-S", plan.IMPAIR_CHAIN]).stdout.splitlines() if ln.startswith("-A ")]

    def cut(self, a: Host, b: Host) -> None:
        """Drop all IP traffic between a and b, both ways."""
        self._add(plan.cut_rules(a.name, b.name))

    def restore(self, a: Host, b: Host) -> None:
        self._delete(plan.cut_rules(a.name, b.name))

    def loss(self, a: Host, b: Host, fraction: float) -> None:
        """Drop ``fraction`` of the packets between a and b (each direction); 0 removes the loss."""
        listing = self._ipt(["-S", plan.IMPAIR_CHAIN]).stdout
        for args in plan.rules_with_comment(listing, plan.IMPAIR_CHAIN, plan.loss_comment(a.name, b.name)):
            self._ipt(["-D", plan.IMPAIR_CHAIN, *args])
        if fraction > 0:
            self._add(plan.loss_rules(a.name, b.name, fraction))

    def block(self, a: Host, b: Host, proto: str = "udp", dport: int = 6784) -> None:
        """Drop packets to ``proto`` port ``dport`` between a and b, both ways."""
        self._add(plan.block_rules(a.name, b.name, proto, dport))

    def unblock(self, a: Host, b: Host, proto: str = "udp", dport: int = 6784) -> None:
        self._delete(plan.block_rules(a.name, b.name, proto, dport))

    def heal_all(self) -> None:
        self._ipt(["-F", plan.IMPAIR_CHAIN])

    def set_mtu(self, host: Host, mtu: int) -> None:
        host.set_mtu(mtu)

    def leave_running(self) -> None:
        """Keep the bed after this process ends (``close()`` becomes a no-op); ``down``/``cleanup_stale`` remove it.

        Marked as kept in its state, so a later test bed with this prefix refuses to sweep it as a crashed run's.
        """
        if self._closed:
            raise TestbedError("test bed already closed")
        self.keep = True
        self._save()
        self._closed = True

    # -- teardown ---------------------------------------------------------------------------------------------------

    def close(self) -> None:
        """Kill every process in the bed, delete its namespaces, unmount and remove the work dir. Idempotent."""
        if self._closed:
            return
        self._closed = True
        with _claim_lock():
            _teardown(self.prefix, [self.workdir])
        for h in self.hosts:
            if h.docker is not None:
                h.docker.reap()  # dockerd was killed with the host: collect its exit status
            if h.podman is not None:
                h.podman.reap()
