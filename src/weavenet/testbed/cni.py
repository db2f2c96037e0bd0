"""A CNI runtime for tests and benchmarks: it executes plugins exactly as libcni does for kubelet and podman.

For a network configuration list (``.conflist``) it runs each plugin's executable (found by ``type`` in the plugin
directories) with ``CNI_COMMAND``, ``CNI_CONTAINERID``, ``CNI_NETNS``, ``CNI_IFNAME``, ``CNI_ARGS`` (kubelet's
``IgnoreUnknown=1;K8S_POD_NAMESPACE=...;K8S_POD_NAME=...;K8S_POD_INFRA_CONTAINER_ID=...;K8S_POD_UID=...``) and
``CNI_PATH`` in its environment and the plugin's configuration on stdin: the plugin object with the list's
``cniVersion`` and ``name`` injected, ``runtimeConfig`` made of the capabilities it declares and the runtime
supplies (``portMappings``), ``capabilities`` removed, and ``prevResult``: the previous plugin's result on ADD,
the cached final result on CHECK and (from 0.4.0) DEL. ADD and CHECK go through the list in order, DEL in reverse;
GC (1.1.0) gets ``cni.dev/valid-attachments``. Results are cached per attachment, as libcni caches them on disk.

No cnitool is packaged for Debian, so this is the test bed's: it runs plugins inside a simulated host (``enter``:
the argv prefix that gets there) or in the calling process's namespaces. Each call returns what the plugin said
(:class:`Exec`), and a failure raises :class:`CniFailed` with the plugin's error object.
"""

from __future__ import annotations

import copy
import json
import os
import subprocess
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any


class CniFailed(RuntimeError):
    """A plugin failed: its exit status and error object (``code``, ``msg``, ``details``)."""

    def __init__(self, plugin: str, command: str, status: int, error: dict[str, Any], stderr: str) -> None:
        self.plugin, self.command, self.status, self.error, self.stderr = plugin, command, status, error, stderr
        self.code = error.get("code")
        super().__init__(f"{plugin} {command}: exit {status}: {json.dumps(error)} {stderr.strip()[-300:]}")


@dataclass(slots=True)
class Exec:
    """One plugin execution: what went in, what came out, how long it took."""

    plugin: str
    command: str
    status: int
    stdout: str
    stderr: str
    seconds: float
    stdin: dict[str, Any] = field(default_factory=dict)

    def json(self) -> Any:
        return json.loads(self.stdout) if self.stdout.strip() else None


@dataclass(frozen=True, slots=True)
class Pod:
    """The attachment parameters of one pod (kubelet's)."""

    container_id: str
    netns: str
    ifname: str = "eth0"
    namespace: str = "default"
    name: str = ""
    uid: str = ""

    def cni_args(self) -> str:
        return ";".join(
            [
                "IgnoreUnknown=1",
                f"K8S_POD_NAMESPACE={self.namespace}",
                f"K8S_POD_NAME={self.name or 'pod-' + self.container_id[:8]}",
                f"K8S_POD_INFRA_CONTAINER_ID={self.container_id}",
                f"K8S_POD_UID={self.uid or self.container_id[:8]}",
            ]
        )


class Runtime:
    """One network (a configuration list) as a container runtime drives it."""

    def __init__(
        self,
        conflist: Mapping[str, Any],
        plugin_dirs: Sequence[str],
        enter: Sequence[str] = (),
        env: Mapping[str, str] | None = None,
        timeout: float = 120.0,
    ) -> None:
        self.conflist = dict(conflist)
        self.version = str(self.conflist.get("cniVersion", "0.1.0"))
        self.name = str(self.conflist["name"])
        self.plugins = list(self.conflist["plugins"])
        self.plugin_dirs = list(plugin_dirs)
        self.enter = list(enter)
        self.env = dict(env or {})
        self.timeout = timeout
        self.cache: dict[tuple[str, str], dict[str, Any]] = {}
        self.log: list[Exec] = []

    @classmethod
    def from_file(cls, path: str, plugin_dirs: Sequence[str], **kw: Any) -> Runtime:
        with open(path) as f:
            return cls(json.load(f), plugin_dirs, **kw)

    # -- executing one plugin -------------------------------------------------------------------------------------

    def find(self, kind: str) -> str:
        for d in self.plugin_dirs:
            p = os.path.join(d, kind)
            if os.access(p, os.X_OK):
                return p
        raise FileNotFoundError(f"failed to find plugin {kind!r} in path {self.plugin_dirs}")

    def exec_plugin(
        self,
        plugin: Mapping[str, Any],
        command: str,
        pod: Pod | None = None,
        prev: dict[str, Any] | None = None,
        capability_args: Mapping[str, Any] | None = None,
        extra: Mapping[str, Any] | None = None,
        env: Mapping[str, str] | None = None,
        stdin: bytes | None = None,
    ) -> Exec:
        """Execute one plugin; raises :class:`CniFailed` on a non-zero exit. ``stdin``/``env`` override what the
        runtime would send (for tests of bad input)."""
        conf = copy.deepcopy(dict(plugin))
        caps = conf.pop("capabilities", None) or {}
        conf["cniVersion"], conf["name"] = self.version, self.name
        runtime_config = {k: v for k, v in (capability_args or {}).items() if caps.get(k)}
        if runtime_config:
            conf["runtimeConfig"] = runtime_config
        if prev is not None:
            conf["prevResult"] = prev
        conf.update(extra or {})
        full_env = {"PATH": os.environ.get("PATH", "/usr/sbin:/usr/bin:/sbin:/bin"), **self.env}
        full_env["CNI_COMMAND"] = command
        full_env["CNI_PATH"] = ":".join(self.plugin_dirs)
        if pod is not None:
            full_env.update(
                CNI_CONTAINERID=pod.container_id, CNI_NETNS=pod.netns, CNI_IFNAME=pod.ifname, CNI_ARGS=pod.cni_args()
            )
        full_env.update(env or {})
        kind = str(plugin["type"])
        data = json.dumps(conf).encode() if stdin is None else stdin
        start = time.perf_counter()
        res = subprocess.run(
            [*self.enter, self.find(kind)], input=data, env=full_env, capture_output=True, timeout=self.timeout
        )
        took = time.perf_counter() - start
        out, err = res.stdout.decode(errors="replace"), res.stderr.decode(errors="replace")
        ex = Exec(kind, command, res.returncode, out, err, took, conf)
        self.log.append(ex)
        if res.returncode != 0:
            try:
                error = json.loads(ex.stdout)
            except ValueError:
                error = {"msg": ex.stdout.strip()}
            raise CniFailed(kind, command, res.returncode, error if isinstance(error, dict) else {}, ex.stderr)
        return ex

    # -- the network configuration's operations (spec, section 3) -------------------------------------------------

    def add(self, pod: Pod, capability_args: Mapping[str, Any] | None = None) -> dict[str, Any]:
        prev: dict[str, Any] | None = None
        for plugin in self.plugins:
            out = self.exec_plugin(plugin, "ADD", pod, prev, capability_args).json()
            if not isinstance(out, dict):
                raise CniFailed(str(plugin["type"]), "ADD", 0, {"msg": "no result"}, "")
            if out.get("cniVersion") != self.version:
                raise CniFailed(str(plugin["type"]), "ADD", 0, {"msg": f"result version {out.get('cniVersion')}"}, "")
            prev = out
        assert prev is not None
        self.cache[(pod.container_id, pod.ifname)] = prev
        return prev

    def _cached(self, pod: Pod) -> dict[str, Any] | None:
        return self.cache.get((pod.container_id, pod.ifname))

    def delete(self, pod: Pod, capability_args: Mapping[str, Any] | None = None) -> None:
        prev = self._cached(pod) if _at_least(self.version, "0.4.0") else None
        for plugin in reversed(self.plugins):
            self.exec_plugin(plugin, "DEL", pod, prev, capability_args)
        self.cache.pop((pod.container_id, pod.ifname), None)

    def check(self, pod: Pod, capability_args: Mapping[str, Any] | None = None) -> None:
        if not _at_least(self.version, "0.4.0") or self.conflist.get("disableCheck"):
            return
        prev = self._cached(pod)
        for plugin in self.plugins:
            self.exec_plugin(plugin, "CHECK", pod, prev, capability_args)

    def status(self) -> None:
        for plugin in self.plugins:
            self.exec_plugin(plugin, "STATUS")

    def gc(self, valid: Sequence[Pod]) -> list[CniFailed]:
        """GC every plugin (errors collected, execution continues, as the spec says)."""
        attachments = [{"containerID": p.container_id, "ifname": p.ifname} for p in valid]
        errors = []
        for plugin in self.plugins:
            try:
                self.exec_plugin(plugin, "GC", extra={"cni.dev/valid-attachments": attachments})
            except CniFailed as e:
                errors.append(e)
        return errors

    def version_info(self, kind: str) -> dict[str, Any]:
        out = self.exec_plugin({"type": kind}, "VERSION", stdin=json.dumps({"cniVersion": self.version}).encode())
        return out.json()  # type: ignore[no-any-return]


def _at_least(version: str, minimum: str) -> bool:
    return tuple(int(p) for p in version.split(".")) >= tuple(int(p) for p in minimum.split("."))
