"""A real Docker engine per simulated host, and the busybox image every engine shares.

Each engine is a ``dockerd`` started *inside* its host (``nsenter`` into the host's network, mount and UTS
namespaces; not ``ip netns exec``, whose fresh mount namespace hides the cgroup tree and makes dockerd fail with
"Devices cgroup isn't mounted"). The host's mount namespace already gives it a private ``/run``, so the engine
has its own ``/run/docker/plugins`` (a plugin socket of one host is never seen by another engine),
``/var/run/docker.sock`` and ``/run/weave`` where an unmodified ``weave launch`` in that host looks for them.
Its data root, exec root, pid file and ``/etc/docker`` (a bind mount in a mount namespace of its own, for the
trust key dockerd writes there) live under the host's work directory; ``docker0`` gets an address of its
own per host (``--bip``), because weaveDNS listens on the docker bridge's address as in Weave. Docker's
iptables and masquerading are off: nothing may leave the namespaces the test bed made.

Containers run in cgroups under ``/<prefix>-<host>-docker`` (``--cgroup-parent``), so teardown can find and kill
them even when the engine crashed and its state is gone (their processes live in namespaces of their own and are
not found by the test bed's namespace sweep).

The image is made here, never pulled: Debian's static busybox with a link for every applet, imported into the
first engine (``docker import``) and saved once; every engine then ``docker load``\\ s the saved tar, cached in
``/tmp`` between runs and keyed by the busybox binary's hash.
"""

from __future__ import annotations

import contextlib
import hashlib
import io
import os
import re
import shlex
import shutil
import signal
import subprocess
import tarfile
import time
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from weavenet.testbed.bed import Host

IMAGE = "weavenet/busybox:latest"
CACHE_DIR = Path("/tmp/weavenet-images")
BUSYBOX_CANDIDATES = ("/bin/busybox", "/usr/bin/busybox")
START_TIMEOUT = 30.0
CGROUP_ROOT = Path("/sys/fs/cgroup")


class EngineUnavailable(RuntimeError):
    """No Docker engine can be started here (binary missing, dockerd refused to start)."""


def engine_unavailable() -> str | None:
    """Why an engine cannot be started on this machine, or None."""
    if os.geteuid() != 0:
        return "needs root"
    for tool in ("dockerd", "containerd", "runc", "docker"):
        if shutil.which(tool) is None:
            return f"needs {tool} (scripts/install-deps installs docker.io)"
    if busybox_path() is None:
        return "needs a static busybox (scripts/install-deps installs busybox-static)"
    return None


def busybox_path() -> str | None:
    for p in BUSYBOX_CANDIDATES:
        if os.path.exists(p):
            return p
    return None


ENGINES = ("docker", "podman")  # the container engines whose cgroups teardown sweeps


def cgroup_parent(prefix: str, host: str, engine: str = "docker") -> str:
    return f"{prefix}-{host}-{engine}"


def bridge_cidr(index: int) -> str:
    """``docker0`` of host i: 172.18.i.1/24 (inside the host's namespace only)."""
    if not 1 <= index <= 250:
        raise ValueError("host index out of range for a docker bridge address")
    return f"172.18.{index}.1/24"


# -- the image ----------------------------------------------------------------------------------------------------


def _applets(busybox: str) -> list[str]:
    out = subprocess.run([busybox, "--list-full"], capture_output=True, text=True, check=True, timeout=10).stdout
    return sorted({a.strip().lstrip("/") for a in out.split() if a.strip()})


def rootfs_tar(busybox: str) -> bytes:
    """A root filesystem: busybox, a symlink per applet, the directories and files Docker and tests expect."""
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w") as tar:

        def add_dir(name: str, mode: int = 0o755) -> None:
            ti = tarfile.TarInfo(name)
            ti.type, ti.mode, ti.mtime = tarfile.DIRTYPE, mode, 0
            tar.addfile(ti)

        def add_file(name: str, data: bytes, mode: int = 0o644) -> None:
            ti = tarfile.TarInfo(name)
            ti.size, ti.mode, ti.mtime = len(data), mode, 0
            tar.addfile(ti, io.BytesIO(data))

        for d in ("bin", "sbin", "usr", "usr/bin", "usr/sbin", "etc", "proc", "sys", "dev", "root", "var", "run"):
            add_dir(d)
        add_dir("tmp", 0o1777)
        add_file("bin/busybox", Path(busybox).read_bytes(), 0o755)
        add_file("etc/passwd", b"root:x:0:0:root:/root:/bin/sh\nnobody:x:65534:65534:nobody:/:/bin/false\n")
        add_file("etc/group", b"root:x:0:\nnogroup:x:65534:\n")
        for applet in _applets(busybox):
            if applet == "bin/busybox" or "/" not in applet:
                continue
            ti = tarfile.TarInfo(applet)
            ti.type, ti.linkname, ti.mtime = tarfile.SYMTYPE, "/bin/busybox", 0
            tar.addfile(ti)
    return buf.getvalue()


def _cache_key(busybox: str) -> str:
    return hashlib.sha256(Path(busybox).read_bytes()).hexdigest()[:16]


def saved_image_path(busybox: str) -> Path:
    return CACHE_DIR / f"busybox-{_cache_key(busybox)}.image.tar"


# -- engines ------------------------------------------------------------------------------------------------------


class DockerEngine:
    """``dockerd`` of one simulated host. ``docker()`` runs the CLI inside the host against it (or the proxy)."""

    def __init__(self, host: Host, sock: str = "/var/run/docker.sock") -> None:
        """``sock``: where the engine listens, inside the host (another path than Docker's default lets a test
        check that nothing falls back to the default)."""
        if not sock.startswith(("/run/", "/var/run/")):
            raise ValueError(f"{sock}: the engine's socket must be under /run, which is the host's own")
        self.host = host
        self.root = host.dir / "docker"
        self.data_root = self.root / "data"
        self.exec_root = self.root / "exec"
        self.pidfile = self.root / "dockerd.pid"
        self.log_path = self.root / "dockerd.log"
        self.config_dir = self.root / "cli"
        self.sock = sock  # as seen inside the host
        # the same socket from the machine's namespaces (the host's /run, which /var/run leads to, is host.dir/run)
        self.sock_outside = host.dir / "run" / sock.removeprefix("/var").removeprefix("/run/")
        self.bridge_cidr = bridge_cidr(host.index)
        self.bridge_ip = self.bridge_cidr.split("/")[0]
        self.cgroup_parent = cgroup_parent(host.bed.prefix, host.name)
        self.proc: subprocess.Popen[bytes] | None = None

    def start(self) -> DockerEngine:
        reason = engine_unavailable()
        if reason:
            raise EngineUnavailable(reason)
        for d in (self.data_root, self.exec_root, self.config_dir, self.sock_outside.parent):
            d.mkdir(parents=True, exist_ok=True)
        argv = [
            "dockerd",
            f"--data-root={self.data_root}",
            f"--exec-root={self.exec_root}",
            f"--pidfile={self.pidfile}",
            f"-H=unix://{self.sock}",
            f"--bip={self.bridge_cidr}",
            "--iptables=false",
            "--ip-masq=false",
            "--ip-forward=false",
            "--storage-driver=vfs",  # no overlay mounts to leak; the image is 2 MB
            f"--cgroup-parent=/{self.cgroup_parent}",
            "--exec-opt=native.cgroupdriver=cgroupfs",
        ]
        # dockerd writes its trust key to /etc/docker/key.json, which no flag moves: give it a private /etc/docker
        # in a mount namespace of its own (slave of the host's, so it sees everything the host mounts later)
        etc = self.root / "etc-docker"
        etc.mkdir(exist_ok=True)
        Path("/etc/docker").mkdir(exist_ok=True)  # a mount point; stays empty in the machine's own namespace
        wrapped = [
            "unshare",
            "--mount",
            "--propagation",
            "slave",
            "sh",
            "-c",
            f'mount --bind {shlex.quote(str(etc))} /etc/docker && exec "$@"',
            "sh",
            *argv,
        ]
        with open(self.log_path, "ab") as log:
            self.proc = self.host.popen(wrapped, stdin=subprocess.DEVNULL, stdout=log, stderr=log, text=False)
        deadline = time.monotonic() + START_TIMEOUT
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise EngineUnavailable(f"dockerd exited with {self.proc.returncode}: {self._log_tail()}")
            if self.docker("version", "--format", "{{.Server.Version}}", check=False, timeout=10).returncode == 0:
                return self
            time.sleep(0.1)
        self.stop()
        raise EngineUnavailable(f"dockerd did not answer within {START_TIMEOUT:.0f}s: {self._log_tail()}")

    def _log_tail(self) -> str:
        try:
            lines = self.log_path.read_text(errors="replace").strip().splitlines()
        except OSError:
            return ""
        return lines[-1] if lines else ""

    def env(self, docker_host: str | None = None) -> dict[str, str]:
        return {
            "DOCKER_HOST": docker_host or f"unix://{self.sock}",
            "DOCKER_CONFIG": str(self.config_dir),
            "DOCKER_CLI_HINTS": "false",
        }

    def docker(
        self,
        *args: str,
        check: bool = True,
        timeout: float = 60,
        env: Mapping[str, str] | None = None,
        input: str | None = None,
        docker_host: str | None = None,
    ) -> subprocess.CompletedProcess[str]:
        """The docker CLI in the host, against this engine (or ``docker_host``, e.g. the weave proxy)."""
        return self.host.run(
            ["docker", *args], check=check, timeout=timeout, env={**self.env(docker_host), **(env or {})}, input=input
        )

    def load_image(self) -> None:
        """Make ``IMAGE`` available: ``docker load`` of the cached saved image, built here on first use."""
        busybox = busybox_path()
        if busybox is None:
            raise EngineUnavailable("no busybox binary")
        saved = saved_image_path(busybox)
        if not saved.exists():
            CACHE_DIR.mkdir(parents=True, exist_ok=True)
            rootfs = self.root / "rootfs.tar"
            rootfs.write_bytes(rootfs_tar(busybox))
            self.docker("import", "--change", 'CMD ["sh"]', str(rootfs), IMAGE, timeout=120)
            tmp = saved.with_suffix(f".{os.getpid()}.tmp")
            self.docker("save", "-o", str(tmp), IMAGE, timeout=120)
            tmp.replace(saved)  # atomic: a concurrent run sees a whole tar or none
            rootfs.unlink()
            return
        self.docker("load", "-q", "-i", str(saved), timeout=120)

    def inspect(self, container: str, fmt: str) -> str:
        return self.docker("inspect", "--format", fmt, container).stdout.strip()

    def pid(self, container: str) -> int:
        return int(self.inspect(container, "{{.State.Pid}}") or 0)

    def stop(self, timeout: float = 10.0) -> None:
        """Stop the engine: containers killed first (fast), then dockerd and its containerd."""
        kill_containers(self.host.bed.prefix, self.host.name, ("docker",))
        pid = self._pid()
        if pid:
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGTERM)
        if self.proc is not None:
            try:
                self.proc.wait(timeout)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(5)
        remove_cgroups(self.host.bed.prefix, self.host.name, ("docker",))

    def reap(self, timeout: float = 5.0) -> None:
        if self.proc is not None and self.proc.returncode is None:
            try:
                self.proc.wait(timeout)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(timeout)

    def _pid(self) -> int | None:
        try:
            return int(self.pidfile.read_text().strip())
        except (OSError, ValueError):
            return self.proc.pid if self.proc is not None and self.proc.poll() is None else None


# -- teardown by cgroup -------------------------------------------------------------------------------------------


def _engine_cgroups(prefix: str, host: str | None = None, engines: Sequence[str] = ENGINES) -> list[Path]:
    """Every cgroup directory (any v1 hierarchy, or v2) made for this prefix's engines (Docker's, podman's)."""
    kinds = "|".join(re.escape(e) for e in engines)
    pat = re.compile(re.escape(prefix) + (re.escape(f"-{host}") if host else r"-h\d+") + rf"-(?:{kinds})$")
    found: list[Path] = []
    for base in [CGROUP_ROOT, *(p for p in CGROUP_ROOT.iterdir() if p.is_dir())] if CGROUP_ROOT.is_dir() else []:
        with contextlib.suppress(OSError):
            found.extend(d for d in base.iterdir() if d.is_dir() and pat.match(d.name))
    return found


def _procs(cgroup: Path) -> set[int]:
    pids: set[int] = set()
    for f in cgroup.rglob("cgroup.procs"):
        with contextlib.suppress(OSError, ValueError):
            pids.update(int(x) for x in f.read_text().split())
    return pids


def kill_containers(prefix: str, host: str | None = None, engines: Sequence[str] = ENGINES) -> None:
    """SIGKILL every process of this prefix's (or host's) containers: they die with their pid namespace's init."""
    for _ in range(5):
        pids = set().union(*(_procs(c) for c in _engine_cgroups(prefix, host, engines)))
        if not pids:
            return
        for pid in pids:
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)
        time.sleep(0.1)


def remove_cgroups(prefix: str, host: str | None = None, engines: Sequence[str] = ENGINES) -> None:
    """Remove the (empty) cgroup directories, deepest first."""
    for cg in _engine_cgroups(prefix, host, engines):
        for d in sorted((p for p in cg.rglob("*") if p.is_dir()), key=lambda p: len(p.parts), reverse=True):
            with contextlib.suppress(OSError):
                d.rmdir()
        with contextlib.suppress(OSError):
            cg.rmdir()


def start_engines(hosts: Sequence[Host], **kw: Any) -> list[DockerEngine]:
    """Start an engine in each host and load the image into all of them (the first one builds it if needed)."""
    engines = [h.start_docker(**kw) for h in hosts]
    engines[0].load_image()
    for e in engines[1:]:
        e.load_image()
    return engines
