"""Podman in a simulated host, with its CNI backend: a real container runtime that drives the CNI plugins.

Debian's podman 4.3 executes CNI plugins through libcni, as kubelet's runtimes do. Everything it keeps is under the
host's work directory (``--root``, ``--runroot``, its ``containers.conf`` through ``CONTAINERS_CONF``: CNI backend,
our plugin and configuration directories, cgroupfs, file events) and it never touches its default network.

Two paths podman cannot be told to move are given to it by a mount namespace of its own, made once per host and
kept by a process that only sleeps in it, which every podman command enters: ``/run/netns``, where it mounts each
container's network namespace (``netns-<uuid>``: shared by all hosts and the machine otherwise), and
``/var/lib/cni``, where libcni caches results and host-local keeps leases. The plugins it executes see the same
namespace, so the paths it passes them (``CNI_NETNS``) resolve. (A namespace file bound by ``unshare --mount=FILE``
from inside a host failed with EINVAL about one time in twelve here; the keeper process has no such race, and the
test bed's teardown kills it with the host's other processes.)

Two pitfalls of this machine kind (the design notes' test rigs, section 8): runc cannot raise ``RLIMIT_NOFILE``
and ``RLIMIT_NPROC`` to podman's default (no ``CAP_SYS_RESOURCE``), hence ``default_ulimits``; and netavark must not
be installed (podman would prefer it). Containers run in cgroups under ``/<prefix>-<host>-podman`` so the test
bed's teardown kills them whatever state podman is in; ``NET_RAW`` is added for ``ping``.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import time
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING

from weavenet.testbed.docker_engine import busybox_path, cgroup_parent, kill_containers, remove_cgroups, rootfs_tar

if TYPE_CHECKING:
    from weavenet.testbed.bed import Host

IMAGE = "localhost/weavenet/busybox:latest"
NETWORK = "weave"
PRIVATE = {"netns": "/run/netns", "cni-cache": "/var/lib/cni"}  # podman's own directory -> where it is bound


class PodmanUnavailable(RuntimeError):
    """Podman (with its CNI backend) cannot run here."""


def podman_unavailable() -> str | None:
    """Why podman cannot be used here, or None."""
    if os.geteuid() != 0:
        return "needs root"
    for tool in ("podman", "conmon", "runc"):
        if shutil.which(tool) is None:
            return f"needs {tool} (scripts/install-deps installs podman)"
    if shutil.which("netavark") is not None:
        return "netavark is installed: podman would use it instead of CNI"
    if not os.path.exists("/usr/lib/cni/portmap"):
        return "needs containernetworking-plugins (portmap, chained in Weave's conflist)"
    if busybox_path() is None:
        return "needs a static busybox (scripts/install-deps installs busybox-static)"
    return None


class PodmanEngine:
    """Podman of one simulated host: its directories, its mount namespace, and the ``podman`` command in it."""

    def __init__(self, host: Host) -> None:
        self.host = host
        self.root = host.dir / "podman"
        self.plugin_dir = self.root / "cni-bin"
        self.conf_dir = self.root / "cni-net.d"
        self.conf = self.root / "containers.conf"
        self.keeper: subprocess.Popen[str] | None = None
        self.service: subprocess.Popen[bytes] | None = None
        self.socket = self.root / "podman.sock"
        self.cgroup_parent = cgroup_parent(host.bed.prefix, host.name, "podman")

    def start(self) -> PodmanEngine:
        """Directories, configuration, mount namespace, the image. The CNI plugins are the caller's to install
        (``weave setup-cni --plugin-dir <plugin_dir> --conf-dir <conf_dir>``)."""
        reason = podman_unavailable()
        if reason:
            raise PodmanUnavailable(reason)
        for d in ("storage", "run", "tmp", "netns", "cni-cache", "cni-bin", "cni-net.d"):
            (self.root / d).mkdir(parents=True, exist_ok=True)
        self.conf.write_text(
            "\n".join(
                [
                    "[network]",
                    'network_backend = "cni"',
                    f'cni_plugin_dirs = ["{self.plugin_dir}", "/usr/lib/cni"]',
                    f'network_config_dir = "{self.conf_dir}"',
                    f'default_network = "{NETWORK}"',
                    "[containers]",
                    'default_ulimits = ["nofile=4096:4096", "nproc=4096:4096"]',
                    "[engine]",
                    'cgroup_manager = "cgroupfs"',
                    'events_logger = "file"',
                    f'tmp_dir = "{self.root / "tmp"}"',
                    "",
                ]
            )
        )
        for p in PRIVATE.values():
            Path(p).mkdir(parents=True, exist_ok=True)  # mount points; they stay empty in the machine's namespace
        binds = " && ".join(f"mount --bind {self.root / d} {p}" for d, p in PRIVATE.items())
        keep = f"{binds} && echo ready && exec sleep infinity"
        self.keeper = self.host.popen(
            ["unshare", "--mount", "--propagation", "slave", "sh", "-c", keep],
            stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
        )  # fmt: skip
        keeper = self.keeper
        with keeper.stdout, keeper.stderr:  # type: ignore[union-attr]
            if keeper.stdout.readline().strip() != "ready":  # type: ignore[union-attr]
                keeper.kill()
                error = keeper.stderr.read().strip()  # type: ignore[union-attr]
                keeper.wait(10)
                self.keeper = None
                raise PodmanUnavailable(f"podman's mount namespace: {error}")
        rootfs = self.root / "rootfs.tar"
        busybox = busybox_path()
        assert busybox is not None
        rootfs.write_bytes(rootfs_tar(busybox))
        self.podman("import", "--change", 'CMD ["sh"]', str(rootfs), IMAGE, timeout=120)
        rootfs.unlink()
        return self

    def start_service(self, timeout: float = 60) -> str:
        """``podman system service`` on a socket of this host (podman.socket's, elsewhere): its Docker-compatible
        API, where the router reads the labels of the containers (``--podman-api``). Returns the API's address."""
        assert self.keeper is not None, "podman was not started"
        self.socket.unlink(missing_ok=True)
        with open(self.root / "service.log", "ab") as log:
            self.service = subprocess.Popen(
                self.argv("system", "service", "--time=0", f"unix://{self.socket}"),
                env={**os.environ, **self.env()}, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=log,
            )  # fmt: skip
        deadline = time.monotonic() + timeout
        while not self.socket.exists():
            if self.service.poll() is not None or time.monotonic() > deadline:
                raise PodmanUnavailable(f"podman system service did not start: see {self.root / 'service.log'}")
            time.sleep(0.1)
        return f"unix://{self.socket}"

    def stop_service(self) -> None:
        if self.service is not None:
            self.service.terminate()
            try:
                self.service.wait(10)
            except subprocess.TimeoutExpired:
                self.service.kill()
                self.service.wait(10)
            self.service = None

    def env(self) -> dict[str, str]:
        return {"CONTAINERS_CONF": str(self.conf)}

    def argv(self, *args: str) -> list[str]:
        """``podman ...`` inside the host, in podman's mount namespace."""
        assert self.keeper is not None, "podman was not started"
        store = ["--root", str(self.root / "storage"), "--runroot", str(self.root / "run"), "--storage-driver", "vfs"]
        h = self.host
        enter = ["nsenter", f"--net={h.netns_path}", f"--mount=/proc/{self.keeper.pid}/ns/mnt", f"--uts={h.uts_ns}"]
        return [*enter, "--wd=/", "--", "podman", *store, *args]

    def podman(
        self, *args: str, check: bool = True, timeout: float = 120, env: Mapping[str, str] | None = None
    ) -> subprocess.CompletedProcess[str]:
        res = subprocess.run(
            self.argv(*args),
            capture_output=True,
            text=True,
            timeout=timeout,
            env={**os.environ, **self.env(), **(env or {})},
            stdin=subprocess.DEVNULL,
            check=False,
        )
        if check and res.returncode != 0:
            raise PodmanUnavailable(f"podman {' '.join(args)} -> rc {res.returncode}: {res.stderr.strip()[-500:]}")
        return res

    def run(self, name: str, *cmd: str, network: str = NETWORK, extra: Sequence[str] = (), **kw: object) -> str:
        """``podman run -d`` of the busybox image (default command: sleep); returns the container's ID."""
        argv = ["run", "-d", "--name", name, "--network", network, f"--cgroup-parent=/{self.cgroup_parent}",
                "--cap-add=NET_RAW", *extra, IMAGE, *(cmd or ("sleep", "100000"))]  # fmt: skip
        return self.podman(*argv, **kw).stdout.strip()  # type: ignore[arg-type]

    def inspect(self, name: str, fmt: str) -> str:
        return self.podman("inspect", "--format", fmt, name).stdout.strip()

    def netns(self, name: str) -> str:
        """The container's network namespace as the machine can open it (``/proc/<pid>/ns/net``)."""
        return f"/proc/{self.inspect(name, '{{.State.Pid}}')}/ns/net"

    def stop(self) -> None:
        """Remove every container (CNI DEL runs), then kill whatever is left by cgroup."""
        if self.keeper is None:
            return
        self.podman("rm", "-a", "-f", "-t", "0", check=False, timeout=120)
        self.stop_service()
        kill_containers(self.host.bed.prefix, self.host.name, ("podman",))
        remove_cgroups(self.host.bed.prefix, self.host.name, ("podman",))
        self.keeper.kill()
        self.keeper.wait(10)
        self.keeper = None

    def reap(self) -> None:
        """Collect the keeper's (and the service's) exit status after the test bed killed it."""
        self.stop_service()
        if self.keeper is not None:
            self.keeper.kill()
            self.keeper.wait(10)
