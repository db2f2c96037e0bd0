"""What is really on the bridge: its veth ports, the network namespace of each one's peer, and its addresses.

The router's records (the attach registry, the owned addresses in the state file) can be lost or unreadable; the
kernel's view cannot. Every container on the weave network has a veth pair whose outer end is a port of the
bridge (``vethwepl<id>`` from ``weave attach``, ``vethwl<id>`` from the Docker plugin) and whose inner end, in
the container's namespace, carries its addresses. The kernel tells us the peer's interface index and the peer
namespace's *id* as seen from ours (``IFLA_LINK_NETNSID``), but no path to that namespace; so we look for a
path whose namespace has that id (``RTM_GETNSID``), most likely first: the PID in the veth's name, the paths the
caller already knows (``hints``), namespaces bind-mounted anywhere (``/run/netns/NAME``), then every process.
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
from collections.abc import Iterable, Iterator
from dataclasses import dataclass

from weavenet.errors import HostError
from weavenet.host.run import run

log = logging.getLogger("weavenet.host")

PORT_PREFIXES = ("vethwepl", "vethwl")
NO_NSID = (None, -1, 0xFFFFFFFF)
NETNS_DIRS = ("/run/netns/", "/var/run/netns/")  # where ``ip netns`` keeps them: the names users know


@dataclass(frozen=True, slots=True)
class Port:
    """A container's veth on the bridge and what its other end carries."""

    host_end: str  # the bridge's side
    netns: str | None  # a path to the namespace of its peer, None when no process or mount leads there
    inode: int  # that namespace's inode (0 when not found)
    pid: int | None  # the process it was found through, when found through /proc/<pid>/ns/net
    ifname: str  # the peer's name in the container (ethwe)
    mac: str
    cidrs: tuple[str, ...]


def _mount_paths() -> Iterator[str]:
    """Network namespaces bind-mounted in our mount namespace (``ip netns add``, Docker's sandboxes, ...)."""
    try:
        with open("/proc/self/mountinfo") as f:
            lines = f.readlines()
    except OSError:
        return
    for line in lines:
        left, _, right = line.partition(" - ")
        if right.split(" ", 1)[0] == "nsfs":
            yield left.split()[4].encode().decode("unicode_escape")


def _proc_paths() -> Iterator[tuple[str, int]]:
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            yield f"/proc/{entry}/ns/net", int(entry)


def display_path(path: str) -> str:
    """A mount under ``/run`` as users name it, ``/var/run/...``, when that is the same directory."""
    if path.startswith("/run/") and os.path.realpath("/var/run") == "/run":
        return "/var" + path
    return path


def bridge_ports(bridge: str, hints: Iterable[str] = ()) -> list[Port]:
    """Every container veth on ``bridge`` with the namespace and addresses of its peer; [] without the bridge."""
    from pyroute2 import IPRoute

    with IPRoute() as ipr:
        found = ipr.link_lookup(ifname=bridge)
        if not found:
            return []
        wanted: dict[int, list[tuple[str, int]]] = {}  # nsid -> [(host end, peer index)]
        for link in ipr.get_links():
            name = link.get_attr("IFLA_IFNAME") or ""
            nsid = link.get_attr("IFLA_LINK_NETNSID")
            if link.get_attr("IFLA_MASTER") != found[0] or not name.startswith(PORT_PREFIXES) or nsid in NO_NSID:
                continue
            wanted.setdefault(nsid, []).append((name, link.get_attr("IFLA_LINK") or 0))
        located: dict[int, tuple[str, int, int | None]] = {}
        seen: set[int] = set()

        def consider(path: str, pid: int | None) -> None:
            try:
                fd = os.open(path, os.O_RDONLY | os.O_CLOEXEC)
            except OSError:
                return
            try:
                ino = os.fstat(fd).st_ino
                if ino in seen:
                    return
                seen.add(ino)
                with contextlib.suppress(Exception):  # not a network namespace, gone meanwhile
                    got = ipr.get_netnsid(fd=fd)
                    nsid = got.get("nsid") if got else None
                    if nsid in wanted and nsid not in located:
                        located[nsid] = (path, ino, pid)
            finally:
                os.close(fd)

        by_name = [
            (f"/proc/{n[len('vethwepl') :]}/ns/net", int(n[len("vethwepl") :]))
            for ports in wanted.values()
            for n, _ in ports
            if n.startswith("vethwepl") and n[len("vethwepl") :].isdigit()
        ]
        hinted = [(f"/proc/{h}/ns/net", int(h)) if h.isdigit() else (h, None) for h in hints]
        sources: list[Iterable[tuple[str, int | None]]] = [
            by_name,
            hinted,
            ((p, None) for p in sorted(_mount_paths(), key=lambda p: (not p.startswith(NETNS_DIRS), len(p)))),
            _proc_paths(),
        ]
        for source in sources:
            for path, pid in source:
                if len(located) == len(wanted):
                    break
                consider(path, pid)
    out: list[Port] = []
    for nsid, ports in sorted(wanted.items()):
        path, ino, pid = located.get(nsid, (None, 0, None))
        peers = _interfaces(path) if path is not None else {}
        for host_end, peer_index in ports:
            ifname, mac, cidrs = peers.get(peer_index, ("", "", ()))
            if path is None:
                log.warning("bridge port %s: its peer's namespace is not found, its addresses unknown", host_end)
            out.append(Port(host_end, path, ino, pid, ifname, mac, cidrs))
    return out


def _interfaces(netns: str) -> dict[int, tuple[str, str, tuple[str, ...]]]:
    """index -> (name, MAC, IPv4 CIDRs) of the interfaces in ``netns``."""
    try:
        data = json.loads(run(["ip", "-j", "addr", "show"], netns=netns) or "[]")
    except (HostError, ValueError):
        return {}
    out = {}
    for link in data:
        cidrs = tuple(f"{a['local']}/{a['prefixlen']}" for a in link.get("addr_info", []) if a.get("family") == "inet")
        out[int(link["ifindex"])] = (str(link.get("ifname", "")), str(link.get("address", "")), cidrs)
    return out
