"""The fast datapath's host side: keeps the kernel's VXLAN devices in step with the router's forwarders.

The router core decides, per connection, whether fastdp works (``weavenet.core.fastdp``); this module makes the
kernel match, asynchronously (each change is an ``ip``/``bridge`` command), and only then tells the others:

* a device per live fast-datapath forwarder, created receive-only; once it exists the forwarder may acknowledge
  the peer's heartbeats (which invites the peer's traffic);
* kernel forwarding (learning, broadcast flooding) on for peers whose connection is on fastdp and that are
  direct neighbours, off for the rest;
* the data plane's tables say which peers the kernel floods to (the sleeve leaves them out of broadcasts) --
  narrowed *before* flooding is switched off and widened *after* it is switched on, so a change of path may
  duplicate a broadcast for a moment but never drops one.

It also probes the host at start: whether a VXLAN device can bind UDP port+1 (else the router offers only the
sleeve, as Weave does without the ODP module), and whether the kernel has IPsec ESP.

Across a restart (``core/fastdp_keep.py``): a device forwarding to a peer that keeps paths carries the alias
``weavenet/<peer>/keeps``. A relaunched router adopts such devices untouched -- the kernel goes on forwarding the
containers' traffic while the new process starts -- and takes back the short ID their VNIs were made of
(:func:`find_leftovers`, before the router is built), so the new connection's device is the same one and taking
it over changes nothing in the kernel; other leftovers are deleted. A path the router keeps (adopted, or kept
for a peer whose router died) keeps its device forwarding until a new connection takes it over.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import logging
import time
from collections.abc import Callable
from dataclasses import dataclass

from weavenet.core.connection import LocalConnection
from weavenet.core.fastdp import FastdpForwarder, SendVxlan
from weavenet.core.fastdp_codec import split_vni
from weavenet.core.fastdp_keep import KEEP_FEATURE, KeptPath
from weavenet.core.names import PeerName
from weavenet.core.router import MeshRouter
from weavenet.daemon.datapath_link import DatapathLink, Run
from weavenet.errors import ConfigError, HostError
from weavenet.host import netdev
from weavenet.host import vxlan as host
from weavenet.status.overlay import EspStatus, FastdpConnection, FastdpDiagnostics, ForwarderStatus, VniPair, Vport
from weavenet.status.router import MACStatus, RouterStatus, mac_text

log = logging.getLogger("weavenet.fastdp")

Entry = tuple[str, tuple[host.DeviceSpec, int, int]]  # device name, (spec, peer, connection UID)
MAC_REFRESH = 10.0  # how often the MACs learned behind VXLAN ports are read for `weave report`
OVERLAYS = ("fastdp", "sleeve")


def overlays(no_fastdp: bool) -> tuple[str, ...]:
    """The overlays a router offers: Weave's ``fastdp sleeve``, or just the sleeve with ``--no-fastdp``."""
    return ("sleeve",) if no_fastdp else OVERLAYS


@dataclass(frozen=True)
class Adoption:
    """What a relaunched router takes back from the devices its previous process left: its short ID, and the
    devices (with the peer and the peer's short ID) it keeps as they are; the rest are deleted at start."""

    short_id: int | None = None
    devices: tuple[tuple[host.Leftover, int, int], ...] = ()  # (device, peer, the peer's short ID)


def adoptable(left: list[host.Leftover], bridge: str) -> Adoption:
    """The leftovers a relaunched router adopts: forwarding to a peer that keeps paths (their alias), ports of our
    bridge, VNIs consistent with their name, and all made with one short ID of ours (the most common one)."""
    candidates = []
    for dev in left:
        spec = dev.spec
        if not (dev.keeps and spec.forwarding and dev.master == bridge and spec.remote_ip):
            continue
        try:
            peer = int(PeerName.parse(dev.peer))
        except (ConfigError, ValueError):
            continue
        them, us = split_vni(spec.rx_vni)  # their frames: their short ID | ours << 12
        if spec.tx_vni != (us | them << 12) or spec.name != host.device_name(them):
            continue
        candidates.append((dev, peer, them, us))
    if not candidates:
        return Adoption()
    ours = [c[3] for c in candidates]
    short_id = max(set(ours), key=ours.count)
    return Adoption(short_id, tuple((d, p, t) for d, p, t, u in candidates if u == short_id))


def find_leftovers(no_fastdp: bool, bridge: str) -> tuple[list[host.Leftover], Adoption]:
    """At start, before the router is built (it takes the short ID): our devices left by a previous process, and
    what of them to adopt. Nothing with ``--no-fastdp`` (the start deletes them) or when they cannot be read."""
    if no_fastdp:
        return [], Adoption()
    try:
        left = host.leftovers()
    except (HostError, ValueError, KeyError, TypeError) as e:
        log.warning("fast datapath: cannot read the devices a previous router left (deleting them): %s", e)
        return [], Adoption()
    return left, adoptable(left, bridge)


@dataclass(frozen=True)
class FastdpHooks:
    """What the fast datapath needs installed elsewhere: the VXLAN port and special-frame callback for the data
    plane's sniffer, the heartbeat sender for the mesh transport, and a hook after every router input."""

    vxlan_port: int
    on_vxlan_special: Callable[[str, int, bytes, int], None]
    send_vxlan: Callable[[SendVxlan], None]
    after_input: Callable[[], None]


class FastdpLink:
    def __init__(
        self,
        router: MeshRouter,
        run: Run,
        now: Callable[[], float],
        link: DatapathLink,
        port: int,
        mtu: int,
        local: str,
        adoption: Adoption | None = None,
    ) -> None:
        """``port``: the VXLAN port (the mesh port + 1); ``local``: the address to send from ("" any);
        ``adoption``: the devices a previous process left, to keep as they are (:func:`find_leftovers`)."""
        self.router = router
        self._input = run  # one input to the router, then flush
        self._now = now
        self.link = link
        self.bridge = link.bridge
        self.port = port
        self.mtu = mtu
        self.local = local
        self.enabled = self.router.fastdp is not None
        self.unavailable: str | None = None  # why this host cannot run the fast datapath
        self.esp = (False, "not probed")
        self.applied: dict[str, host.DeviceSpec] = {}
        self.owners: dict[str, tuple[int, int]] = {}  # device -> (peer, connection UID) told it is ready
        self.failed: dict[tuple[int, int], str] = {}  # (peer, connection UID) -> why its device failed
        self.learned: list[tuple[str, int]] = []  # (MAC hex, peer) behind VXLAN ports
        self._macs_at = 0.0
        self._event = asyncio.Event()
        self._wanted: object = None
        self._task: asyncio.Task[None] | None = None
        self.adoption = adoption or Adoption()
        # kick() re-derives the whole desired state only when something it reads changed: a connection the router
        # reports (its entry is compared alone), the routes, the short IDs, or our own devices (_stale).
        self._touched = router.watch_connections()
        self._entries: dict[LocalConnection, Entry | None] = {}
        self._routes_generation = -1
        self._stale = True
        self._kept: dict[PeerName, KeptPath] = {}  # the kept paths as of the last derivation
        self.derivations = 0  # whole derivations (tests: not one per heartbeat)
        router.on_short_ids_changed.append(self._mark_stale)

    def hooks(self) -> FastdpHooks | None:
        """The callbacks to install (None when this router does not offer the fast datapath)."""
        if not self.enabled:
            return None
        return FastdpHooks(self.port, self._on_special, self._send, self.kick)

    # -- lifecycle ----------------------------------------------------------------------------------------------

    async def start(self) -> None:
        """Probe the host and clear devices a crashed router left; falls back to sleeve-only if VXLAN cannot run."""
        self.esp = await asyncio.to_thread(host.esp_support)
        self.router.config.esp = self.esp[0]
        if not self.enabled:
            return
        log.info("IPsec ESP: %s", "available" if self.esp[0] else f"unavailable ({self.esp[1]})")
        adopted = await self._adopt()
        problem = await asyncio.to_thread(host.probe, self.port, self.local)
        if problem is not None:
            for name in adopted:
                await asyncio.to_thread(host.delete, name)
            self.applied.clear()
            self.owners.clear()
            self.unavailable = problem
            log.warning("fast datapath unavailable, using the sleeve only: %s", problem)
            self.router.disable_overlay("fastdp", f"fast datapath unavailable on this peer: {problem}")
            self.link.datapath.vxlan_port = None  # the data plane does not sniff a port nobody receives on
            self.enabled = False
            return
        log.info("fast datapath: VXLAN on UDP port %d, MTU %d", self.port, self.mtu)
        self._task = asyncio.get_running_loop().create_task(self._run())

    async def _adopt(self) -> set[str]:
        """Keep the devices to adopt as they are (the router keeps their paths), delete the other leftovers."""
        keep = {dev.spec.name for dev, _, _ in self.adoption.devices}
        if self.adoption.devices and self.adoption.short_id != self.router.ourself.short_id:
            keep = set()  # the router could not take back the short ID: the devices' VNIs are not ours
        for name in [str(link["ifname"]) for link in await asyncio.to_thread(host.list_devices)]:
            if name not in keep:
                await asyncio.to_thread(host.delete, name)
        for dev, peer, short_id in self.adoption.devices:
            if dev.spec.name not in keep:
                continue
            spec = dev.spec
            self.applied[spec.name] = spec
            self.owners[spec.name] = (peer, 0)
            vnis, remote = (spec.rx_vni, spec.tx_vni), (spec.remote_ip, spec.remote_port)
            self._input(functools.partial(self.router.adopt_fastdp, peer, short_id, vnis, remote))
        return keep

    async def close(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await self._task
        if self.enabled:
            with contextlib.suppress(HostError):
                await asyncio.to_thread(host.delete_all)

    # -- I/O for the router -----------------------------------------------------------------------------------------

    def _send(self, action: SendVxlan) -> None:
        error = self.link.datapath.send_vxlan(action.addr, action.vni, action.frame)
        if error is not None:
            peer, uid = int(action.peer), action.conn_uid
            self._input(lambda now: self.router.fastdp_send_failed(peer, uid, error, now))

    def _on_special(self, src_ip: str, vni: int, head: bytes, length: int) -> None:
        self._input(lambda now: self.router.vxlan_special_received(src_ip, vni, head, length, now))

    # -- reconciliation ---------------------------------------------------------------------------------------------

    def _mark_stale(self) -> None:
        self._stale = True

    def _entry(self, conn: LocalConnection, fwd: FastdpForwarder) -> Entry | None:
        """The device a live fast-datapath forwarder should have: (name, (spec, peer, connection UID))."""
        vnis = fwd.vnis
        peer = int(fwd.remote.name)
        if vnis is None or fwd.remote_addr is None or (peer, fwd.conn_uid) in self.failed:
            return None
        routes = self.router.routes
        forwarding = fwd.healthy and conn.best_forwarder() is fwd and routes.unicast(fwd.remote.name) == fwd.remote.name
        name = host.device_name(fwd.remote.short_id)
        path = self.router.fastdp_keeps.paths.get(fwd.remote.name)
        if path is not None and host.device_name(path.short_id) == name and (path.rx_vni, path.tx_vni) == vnis:
            forwarding = True  # the kept path goes on carrying the traffic until this connection takes it over
        keeps = self.router.remote_feature(conn, KEEP_FEATURE) == "1"
        alias = host.alias_for(str(fwd.remote.name), forwarding, keeps)
        spec = host.DeviceSpec(name, vnis[0], vnis[1], fwd.remote_addr[0], fwd.remote_addr[1], forwarding, alias)
        return name, (spec, peer, fwd.conn_uid)

    def _entry_of(self, conn: LocalConnection) -> Entry | None:
        """A connection's entry as :meth:`desired` would give it (None if it has no live forwarder)."""
        if conn.remote is None or self.router.by_peer.get(conn.remote.name) is not conn:
            return None
        fwd = conn.fastdp_forwarder()
        if fwd is None or fwd.stopped or not fwd.confirmed:
            return None
        return self._entry(conn, fwd)

    def desired(self) -> dict[str, tuple[host.DeviceSpec, int, int]]:
        """device name -> (spec, peer, connection UID), from the router's live forwarders."""
        out: dict[str, tuple[host.DeviceSpec, int, int]] = {}
        for conn, fwd in self.router.fastdp_forwarders():
            entry = self._entry(conn, fwd)
            if entry is not None:
                out[entry[0]] = entry[1]
        for path in self.router.fastdp_keeps.paths.values():  # no connection yet, or one whose device is another
            name = host.device_name(path.short_id)  # (the peer's short ID changed)
            if name not in out:
                alias = host.alias_for(str(path.peer), True, True)
                spec = host.DeviceSpec(name, path.rx_vni, path.tx_vni, path.remote[0], path.remote[1], True, alias)
                out[name] = (spec, int(path.peer), 0)
        return out

    def _changed(self) -> bool:
        """Whether the desired devices may differ from the last derivation (cheap; see ``__init__``)."""
        routes = self.router.routes
        changed = (
            self._stale
            or routes.dirty
            or routes.generation != self._routes_generation
            or self.router.fastdp_keeps.paths != self._kept
        )
        touched = self._touched
        while touched and not changed:
            conn = touched.pop()
            changed = self._entry_of(conn) != self._entries.get(conn)
        touched.clear()
        return changed

    def kick(self) -> None:
        """After every router input: reconcile if what the kernel should look like changed."""
        if not self._changed() or self._task is None:
            return
        self._stale = False
        self.derivations += 1
        wanted = self.desired()
        self._routes_generation = self.router.routes.generation
        self._entries = {conn: self._entry_of(conn) for conn in self.router.by_peer.values()}
        self._kept = dict(self.router.fastdp_keeps.paths)
        if wanted != self._wanted or any(self.owners.get(n) != (p, u) for n, (_, p, u) in wanted.items()):
            self._wanted = wanted
            self._event.set()

    async def _run(self) -> None:
        while True:
            try:
                await asyncio.wait_for(self._event.wait(), timeout=MAC_REFRESH)
            except TimeoutError:
                pass
            self._event.clear()
            try:
                await self._reconcile()
                if time.monotonic() - self._macs_at >= MAC_REFRESH:
                    await self._refresh_macs()
            except Exception:  # a failed command must not end the loop that retries it
                log.exception("fast datapath: reconciling the VXLAN devices failed")
                await asyncio.sleep(1.0)
                self._event.set()

    async def _reconcile(self) -> None:
        desired = self.desired()
        tables = self.link.tables
        keep = {p for n, (spec, p, _) in desired.items() if spec.forwarding and self._forwarding(n)}
        if tables.fastdp - keep:  # the sleeve resumes these peers' broadcasts before the kernel stops
            tables.fastdp = frozenset(tables.fastdp & keep)
            self.link.push()
        for name in [n for n in self.applied if n not in desired]:
            await asyncio.to_thread(host.delete, name)
            del self.applied[name]
            self.owners.pop(name, None)
        for name, (spec, peer, uid) in desired.items():
            error = await self._apply(spec)
            if error is not None:
                self.failed[(peer, uid)] = error
                log.warning("fast datapath to %s: cannot create %s: %s", PeerName(peer), name, error)
                self._tell(peer, uid, error)
                continue
            if self.owners.get(name) != (peer, uid):
                self.owners[name] = (peer, uid)
                if uid:  # not for a kept path: no connection waits for it
                    self._tell(peer, uid, None)
        tables.fastdp = frozenset(p for n, (_, p, _) in desired.items() if self._forwarding(n))
        tables.vxlan_rx = frozenset(spec.rx_vni & 0xFFF for spec in self.applied.values())
        self._stale = True  # owners and failures changed: the next kick compares the whole desired state again
        self.link.push()

    def _forwarding(self, name: str) -> bool:
        spec = self.applied.get(name)
        return spec is not None and spec.forwarding

    async def _apply(self, spec: host.DeviceSpec) -> str | None:
        old = self.applied.get(spec.name)
        if old == spec:
            return None
        try:
            if old is None or (old.rx_vni, old.tx_vni) != (spec.rx_vni, spec.tx_vni):
                if old is not None:
                    await asyncio.to_thread(host.delete, spec.name)
                    self.applied.pop(spec.name, None)
                    self.owners.pop(spec.name, None)
                await asyncio.to_thread(host.create, spec, self.port, self.mtu, self.bridge, self.local)
                log.info("fast datapath: created %s (VNI in %#x, out %#x)", spec.name, spec.rx_vni, spec.tx_vni)
            else:
                if (old.remote_ip, old.remote_port) != (spec.remote_ip, spec.remote_port):
                    await asyncio.to_thread(host.set_remote, old, spec)
                if old.forwarding != spec.forwarding:
                    await asyncio.to_thread(host.set_forwarding, spec.name, self.bridge, spec.forwarding)
                if old.alias != spec.alias and spec.alias:
                    await asyncio.to_thread(host.set_alias, spec.name, spec.alias)
        except HostError as e:
            return str(e)
        self.applied[spec.name] = spec
        return None

    def _tell(self, peer: int, uid: int, error: str | None) -> None:
        self._input(lambda now: self.router.fastdp_device_ready(peer, uid, error, now))

    async def _refresh_macs(self) -> None:
        self._macs_at = time.monotonic()
        pairs = await asyncio.to_thread(host.learned_macs, self.bridge)
        self.learned = [
            (mac.replace(":", ""), self.owners[dev][0]) for mac, dev in pairs if dev in self.owners and len(mac) == 17
        ]

    # -- status -------------------------------------------------------------------------------------------------

    def diagnostics(self) -> FastdpDiagnostics:
        """``OverlayDiagnostics.fastdp`` of ``weave report``: the kernel's devices and each connection's state."""
        now = self._now()
        ov = self.router.fastdp
        devices = netdev.counters() if self.applied else {}
        conns = []
        for conn in self.router.by_peer.values():
            fwd = conn.fastdp_forwarder()
            best = conn.best_forwarder()
            forwarder = None
            if fwd is not None:
                vnis = fwd.vnis
                forwarder = ForwarderStatus(
                    established=fwd.established,
                    healthy=fwd.healthy,
                    remote=f"{fwd.remote_addr[0]}:{fwd.remote_addr[1]}" if fwd.remote_addr else "",
                    vnis=VniPair(vnis[0], vnis[1]) if vnis else None,
                    # heartbeat or probe: with lean liveness a full-size one comes only every few minutes
                    last_heartbeat=round(now - last, 1) if (last := fwd.last_any) is not None else None,
                    peer_receives=fwd.peer_flags,
                    weavenet=fwd.weavenet,
                )
            conns.append(
                FastdpConnection(
                    peer=str(conn.remote.name) if conn.remote else "",
                    nick_name=conn.remote.nickname if conn.remote else "",
                    using=best.name if best is not None else "none",
                    reason=self.router.fallback_reason(conn, now),
                    forwarder=forwarder,
                )
            )
        return FastdpDiagnostics(
            enabled=self.enabled,
            unavailable=self.unavailable,
            port=self.port,
            mtu=self.mtu,
            esp=EspStatus(self.esp[0], self.esp[1]),
            vports=[self._vport(s, devices) for s in self.applied.values()],
            flooding=sorted(str(PeerName(p)) for p in self.link.tables.fastdp),
            connections=conns,
            counters={
                **(ov.counters.as_dict() if ov is not None else {}),
                **{f"paths_{k}": v for k, v in self.router.fastdp_keeps.counters().items()},
            },
            macs=len(self.learned),
            failed={f"{PeerName(p)}/{u:x}": e for (p, u), e in self.failed.items()},
            kept={
                str(p.peer): f"{p.why}; kept {max(0.0, p.until - now):.1f}s more unless a connection takes it over"
                for p in self.router.fastdp_keeps.paths.values()
            },
        )

    def _vport(self, s: host.DeviceSpec, devices: dict[str, tuple[int, int]]) -> Vport:
        owner = self.owners.get(s.name)
        peer = str(PeerName(owner[0])) if owner else ""
        rx, tx = devices.get(s.name, (0, 0))
        return Vport(s.name, "vxlan", s.rx_vni, s.tx_vni, f"{s.remote_ip}:{s.remote_port}", s.forwarding, peer, rx, tx)

    def add_to_report(self, router: RouterStatus) -> None:
        """Our diagnostics beside the sleeve's, and the MACs learned behind VXLAN devices that the data plane
        did not learn itself."""
        if router.overlay_diagnostics is not None:
            router.overlay_diagnostics["fastdp"] = self.diagnostics()
        if self.learned:
            known = {m.mac for m in router.macs or ()}
            extra = []
            for mac_hex, peer in self.learned:
                mac = mac_text(mac_hex)
                if mac in known:
                    continue
                p = self.router.topology.get(PeerName(peer))
                extra.append(MACStatus(mac, str(PeerName(peer)), p.nickname if p else ""))
            router.macs = (router.macs or []) + extra or None
