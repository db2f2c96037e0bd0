"""Simulated hosts on one machine: network namespaces joined by an underlay switch.

Each host has its own network namespace and a persistent mount and UTS namespace in which ``/run`` (so
``/var/run``), ``/var/lib/weave`` and ``/etc/machine-id`` are private and ``/sys`` shows the host's links, so an
unmodified ``weave launch`` in each host behaves like on a separate machine. ``/run/netns`` stays visible inside
hosts (containers are addressed as ``/var/run/netns/NAME``). Hosts are plugged into a bridge in a switch
namespace of their own; impairments (cut, loss, port blocks) are iptables rules there, applied to bridged traffic,
so they act like the network and nothing is configured in the machine's own network namespace.

Python 3.11 has no ``os.setns``, so commands enter a host with ``nsenter``. Everything is torn down by
:meth:`Testbed.close`, and :func:`cleanup_stale` removes what a crashed run left behind.
"""

from __future__ import annotations

import contextlib
import json
import os
import secrets
import shutil
import signal
import subprocess
import sys
import time
from collections.abc import Sequence
from pathlib import Path

from weavenet.testbed import plan

BRIDGE = "br0"


def _run(argv: Sequence[str], check: bool = True, **kw: object) -> subprocess.CompletedProcess[str]:
    res = subprocess.run(list(argv), capture_output=True, text=True, **kw)  # type: ignore[call-overload]
    if check and res.returncode != 0:
        raise RuntimeError(f"{' '.join(argv)} -> rc {res.returncode}: {res.stderr.strip() or res.stdout.strip()}")
    return res


def _netns_inode(name: str) -> int | None:
    try:
        return os.stat(f"/run/netns/{name}").st_ino
    except FileNotFoundError:
        return None


def pids_in_netns(name: str) -> list[int]:
    """Processes whose network namespace is the named one."""
    inode = _netns_inode(name)
    if inode is None:
        return []
    out = []
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            if os.stat(f"/proc/{entry}/ns/net").st_ino == inode:
                out.append(int(entry))
        except (FileNotFoundError, PermissionError, ProcessLookupError):
            continue
    return [p for p in out if p != os.getpid()]


def kill_netns_processes(name: str, timeout: float = 5.0) -> None:
    pids = pids_in_netns(name)
    for sig in (signal.SIGTERM, signal.SIGKILL):
        for pid in pids:
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, sig)
        deadline = time.monotonic() + (timeout if sig == signal.SIGTERM else 2.0)
        while time.monotonic() < deadline:
            pids = [p for p in pids if _alive(p)]
            if not pids:
                return
            time.sleep(0.05)


def _alive(pid: int) -> bool:
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except FileNotFoundError:
        return False
    return stat.rsplit(")", 1)[1].split()[0] != "Z"


def _mounts_under(path: str) -> list[str]:
    out = []
    with open("/proc/self/mountinfo") as f:
        for line in f:
            mp = line.split()[4].replace("\\040", " ")
            if mp == path or mp.startswith(path.rstrip("/") + "/"):
                out.append(mp)
    return out


def _unmount_all(path: str) -> None:
    for mp in sorted(_mounts_under(path), key=len, reverse=True):
        _run(["umount", "-l", mp], check=False)


class Container:
    """A container as a bare network namespace (``ip netns exec`` gives it /etc/netns/NAME files)."""

    def __init__(self, host: Host, name: str) -> None:
        self.host = host
        self.name = name
        self.netns = plan.ns_name(host.bed.prefix, f"{host.name}-{name}")
        self.netns_path = f"/var/run/netns/{self.netns}"
        _run(["ip", "netns", "add", self.netns])
        _run(["ip", "-n", self.netns, "link", "set", "lo", "up"])

    def run(
        self, argv: Sequence[str], check: bool = True, timeout: float = 30, **kw: object
    ) -> subprocess.CompletedProcess[str]:
        res = subprocess.run(
            ["ip", "netns", "exec", self.netns, *argv], capture_output=True, text=True, timeout=timeout, **kw
        )  # type: ignore[call-overload]
        if check and res.returncode != 0:
            raise RuntimeError(f"{self.netns}: {' '.join(argv)} -> rc {res.returncode}: {res.stderr.strip()}")
        return res

    def sh(self, cmd: str, **kw: object) -> subprocess.CompletedProcess[str]:
        return self.run(["sh", "-c", cmd], **kw)  # type: ignore[arg-type]

    def remove(self) -> None:
        kill_netns_processes(self.netns)
        _run(["ip", "netns", "del", self.netns], check=False)
        shutil.rmtree(f"/etc/netns/{self.netns}", ignore_errors=True)


class Host:
    """One simulated host."""

    def __init__(self, bed: Testbed, index: int) -> None:
        self.bed = bed
        self.index = index
        self.name = plan.host_name(index)
        self.ip = plan.host_ip(bed.subnet, index)
        self.netns = plan.ns_name(bed.prefix, self.name)
        self.dir = bed.workdir / self.name
        self.mnt_ns = bed.workdir / "ns" / f"{self.name}.mnt"
        self.uts_ns = bed.workdir / "ns" / f"{self.name}.uts"
        self.containers: list[Container] = []

    # -- setup ------------------------------------------------------------------------------------------------

    def create(self) -> None:
        bed = self.bed
        _run(["ip", "netns", "add", self.netns])
        _run(
            [
                "ip",
                "link",
                "add",
                plan.switch_port(self.name),
                "netns",
                bed.switch_ns,
                "type",
                "veth",
                "peer",
                "name",
                "eth0",
                "netns",
                self.netns,
            ]
        )
        _run(["ip", "-n", bed.switch_ns, "link", "set", plan.switch_port(self.name), "master", BRIDGE, "up"])
        _run(["ip", "-n", self.netns, "addr", "add", f"{self.ip}/{plan.prefixlen(bed.subnet)}", "dev", "eth0"])
        for dev in ("lo", "eth0"):
            _run(["ip", "-n", self.netns, "link", "set", dev, "up"])
        _run(["ip", "netns", "exec", self.netns, "sysctl", "-qw", "net.ipv4.ip_forward=1"])
        for sub in ("run", "lib-weave"):
            (self.dir / sub).mkdir(parents=True, exist_ok=True)
        (self.dir / "run" / "netns").mkdir(exist_ok=True)
        (self.dir / "machine-id").write_text(secrets.token_hex(16) + "\n")
        self.mnt_ns.touch()
        self.uts_ns.touch()
        Path("/var/lib/weave").mkdir(parents=True, exist_ok=True)
        d = str(self.dir)
        setup = " && ".join(
            [
                f"hostname {self.name}",
                f"mount --rbind /run/netns {d}/run/netns",
                f"mount --rbind {d}/run /run",
                f"mount --bind {d}/lib-weave /var/lib/weave",
                f"mount --bind {d}/machine-id /etc/machine-id",
                "mount -t sysfs sysfs /sys",
            ]
        )
        _run(
            [
                "nsenter",
                f"--net=/run/netns/{self.netns}",
                "unshare",
                f"--mount={self.mnt_ns}",
                f"--uts={self.uts_ns}",
                "--propagation",
                "slave",
                "sh",
                "-c",
                setup,
            ]
        )

    # -- running things ---------------------------------------------------------------------------------------

    def enter(self) -> list[str]:
        """The argv prefix that runs a command inside this host."""
        return ["nsenter", f"--net=/run/netns/{self.netns}", f"--mount={self.mnt_ns}", f"--uts={self.uts_ns}", "--"]

    def run(
        self,
        argv: Sequence[str],
        *,
        check: bool = True,
        timeout: float = 30,
        env: dict[str, str] | None = None,
        input: str | None = None,
    ) -> subprocess.CompletedProcess[str]:
        full_env = {**os.environ, **(env or {})}
        res = subprocess.run(
            [*self.enter(), *argv], capture_output=True, text=True, timeout=timeout, env=full_env, input=input
        )
        if check and res.returncode != 0:
            raise RuntimeError(f"{self.name}: {' '.join(argv)} -> rc {res.returncode}: {res.stderr.strip()}")
        return res

    def sh(self, cmd: str, **kw: object) -> subprocess.CompletedProcess[str]:
        return self.run(["sh", "-c", cmd], **kw)  # type: ignore[arg-type]

    def popen(self, argv: Sequence[str], **kw: object) -> subprocess.Popen[str]:
        return subprocess.Popen([*self.enter(), *argv], text=True, **kw)  # type: ignore[call-overload]

    def weave(
        self, *args: str, env: dict[str, str] | None = None, check: bool = False, timeout: float = 60
    ) -> subprocess.CompletedProcess[str]:
        return self.run([sys.executable, "-m", "weavenet.cli", *args], check=check, timeout=timeout, env=env)

    def pids(self) -> list[int]:
        return pids_in_netns(self.netns)

    def kill_all(self, sig: int = signal.SIGTERM) -> None:
        for pid in self.pids():
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, sig)

    def container(self, name: str) -> Container:
        c = Container(self, name)
        self.containers.append(c)
        return c

    def set_mtu(self, mtu: int) -> None:
        _run(["ip", "-n", self.netns, "link", "set", "eth0", "mtu", str(mtu)])
        _run(["ip", "-n", self.bed.switch_ns, "link", "set", plan.switch_port(self.name), "mtu", str(mtu)])

    def __repr__(self) -> str:
        return f"Host({self.name}, {self.ip})"


class Testbed:
    __test__ = False  # not a pytest test class

    """N hosts and their underlay switch. Use as a context manager; ``close()`` always cleans up."""

    def __init__(self, n_hosts: int, prefix: str = "wnt", subnet: str = "192.168.48.0/24") -> None:
        if not 1 <= n_hosts <= 200:
            raise ValueError("between 1 and 200 hosts")
        self.prefix = prefix
        self.subnet = subnet
        self.switch_ns = plan.ns_name(prefix, "sw")
        cleanup_stale(prefix)
        self.workdir = Path(f"/tmp/{prefix}-{os.getpid()}")
        self.hosts: list[Host] = []
        self._closed = False
        try:
            self._create(n_hosts)
        except BaseException:
            self.close()
            raise

    def _create(self, n: int) -> None:
        ns_dir = self.workdir / "ns"
        ns_dir.mkdir(parents=True, exist_ok=True)
        _run(["mount", "--bind", str(ns_dir), str(ns_dir)])
        _run(["mount", "--make-private", str(ns_dir)])
        _run(["ip", "netns", "add", self.switch_ns])
        sw = ["ip", "-n", self.switch_ns]
        _run([*sw, "link", "add", BRIDGE, "type", "bridge"])
        _run([*sw, "link", "set", BRIDGE, "up"])
        _run([*sw, "link", "set", "lo", "up"])
        self._ipt_switch(["-N", plan.IMPAIR_CHAIN])
        self._ipt_switch(["-I", "FORWARD", "1", "-j", plan.IMPAIR_CHAIN])
        _run(
            ["ip", "netns", "exec", self.switch_ns, "sysctl", "-qw", "net.bridge.bridge-nf-call-iptables=1"],
            check=False,
        )
        for i in range(1, n + 1):
            host = Host(self, i)
            self.hosts.append(host)
            host.create()
        (self.workdir / "state.json").write_text(
            json.dumps({"prefix": self.prefix, "subnet": self.subnet, "hosts": [[h.name, h.ip] for h in self.hosts]})
        )

    def __enter__(self) -> Testbed:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def host(self, name: str) -> Host:
        return next(h for h in self.hosts if h.name == name)

    # -- impairments ----------------------------------------------------------------------------------------------

    def _ipt_switch(self, args: list[str], check: bool = True) -> subprocess.CompletedProcess[str]:
        return _run(["ip", "netns", "exec", self.switch_ns, "iptables", "-w", *args], check=check)

    def _add(self, rules: list[list[str]]) -> None:
        for r in rules:
            self._ipt_switch(["-A", plan.IMPAIR_CHAIN, *r])

    def _delete(self, rules: list[list[str]]) -> None:
        for r in rules:
            while self._ipt_switch(["-D", plan.IMPAIR_CHAIN, *r], check=False).returncode == 0:
                pass

    def cut(self, a: Host, b: Host) -> None:
        self._add(plan.cut_rules(a.name, b.name))

    def restore(self, a: Host, b: Host) -> None:
        self._delete(plan.cut_rules(a.name, b.name))

    def loss(self, a: Host, b: Host, fraction: float) -> None:
        """Drop ``fraction`` of the packets between a and b (both ways); 0 removes the loss."""
        out = self._ipt_switch(["-S", plan.IMPAIR_CHAIN]).stdout
        for line in out.splitlines():
            if f'"loss {a.name} {b.name}"' in line or f"loss {a.name} {b.name}" in line:
                self._ipt_switch(["-D", *line.split()[1:]], check=False)
        if fraction > 0:
            self._add(plan.loss_rules(a.name, b.name, fraction))

    def block(self, a: Host, b: Host, proto: str = "udp", dport: int = 6784) -> None:
        self._add(plan.block_rules(a.name, b.name, proto, dport))

    def unblock(self, a: Host, b: Host, proto: str = "udp", dport: int = 6784) -> None:
        self._delete(plan.block_rules(a.name, b.name, proto, dport))

    def heal_all(self) -> None:
        self._ipt_switch(["-F", plan.IMPAIR_CHAIN])

    def set_mtu(self, host: Host, mtu: int) -> None:
        host.set_mtu(mtu)

    # -- teardown ----------------------------------------------------------------------------------------------

    def close(self) -> None:
        if self._closed:
            return
        self._closed = True
        teardown(self.prefix, self.workdir)


def teardown(prefix: str, workdir: Path | None) -> None:
    """Kill, unmount and delete everything named with ``prefix`` (and ``workdir``)."""
    names = [n for n in list_netns() if n == prefix or n.startswith(prefix + "-")]
    for name in names:
        kill_netns_processes(name)
    for name in names:
        _run(["ip", "netns", "del", name], check=False)
        shutil.rmtree(f"/etc/netns/{name}", ignore_errors=True)
    dirs = [workdir] if workdir else []
    for d in dirs:
        if d.exists():
            _unmount_all(str(d))
            shutil.rmtree(d, ignore_errors=True)


def list_netns() -> list[str]:
    try:
        return sorted(os.listdir("/run/netns"))
    except FileNotFoundError:
        return []


def cleanup_stale(prefix: str = "wnt") -> None:
    """Remove what an earlier (crashed) run with this prefix left: namespaces, processes, mounts, work dirs."""
    for d in Path("/tmp").glob(f"{prefix}-*"):
        pid = d.name.rsplit("-", 1)[-1]
        if pid.isdigit() and int(pid) != os.getpid() and _alive(int(pid)):
            continue  # another live test bed
        teardown(prefix, d)
    teardown(prefix, None)
