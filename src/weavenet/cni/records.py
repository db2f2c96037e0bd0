"""The attachments the plugins made on this host, so that GC knows what is theirs to clean up.

The router's ring knows which container ID holds which address, but not which of them came through CNI: a
``weave attach``-ed Docker container's ID looks like a pod's, and GC must never release its address. So ADD writes
one small file per attachment (``<dir>/<network>/<plugin>/<containerID>:<ifname>``, ``:`` being in neither name)
before it allocates, DEL removes it, and GC works from these files only. The directory is
``$WEAVE_CNI_STATE_DIR``, else ``cni`` under the router's state directory (``$WEAVE_STATE_DIR``, default
``/var/lib/weave``), which Weave's Kubernetes manifests already keep on the node.
"""

from __future__ import annotations

import os

from weavenet.cni import jsonc

TYPE_CHECKING = False
if TYPE_CHECKING:
    from collections.abc import Iterator, Mapping

DEFAULT_STATE_DIR = "/var/lib/weave"


def base_dir(env: Mapping[str, str]) -> str:
    return env.get("WEAVE_CNI_STATE_DIR") or os.path.join(env.get("WEAVE_STATE_DIR") or DEFAULT_STATE_DIR, "cni")


class Record:
    __slots__ = ("container_id", "host_end", "ifname")

    def __init__(self, container_id: str, ifname: str, host_end: str = "") -> None:
        self.container_id, self.ifname, self.host_end = container_id, ifname, host_end


class Records:
    """One plugin's attachments in one network."""

    def __init__(self, env: Mapping[str, str], network: str, plugin: str) -> None:
        self.dir = os.path.join(base_dir(env), network, plugin)

    def _path(self, container_id: str, ifname: str) -> str:
        return os.path.join(self.dir, f"{container_id}:{ifname}")

    def add(self, rec: Record) -> None:
        os.makedirs(self.dir, mode=0o700, exist_ok=True)
        tmp = self._path(rec.container_id, rec.ifname) + ".tmp"
        with open(tmp, "w") as f:
            f.write(jsonc.dumps({"host_end": rec.host_end}))
        os.replace(tmp, self._path(rec.container_id, rec.ifname))

    def remove(self, container_id: str, ifname: str) -> None:
        try:
            os.unlink(self._path(container_id, ifname))
        except FileNotFoundError:
            pass

    def all(self) -> Iterator[Record]:
        try:
            names = os.listdir(self.dir)
        except FileNotFoundError:
            return
        for name in sorted(names):
            cid, sep, ifname = name.partition(":")
            if not sep or name.endswith(".tmp"):
                continue
            try:
                with open(os.path.join(self.dir, name)) as f:
                    host_end = str(jsonc.loads(f.read()).get("host_end", ""))
            except (OSError, ValueError, AttributeError):
                host_end = ""
            yield Record(cid, ifname, host_end)
