"""weaveDNS in the router daemon: the nameserver on the mesh, the DNS listeners, and what the API asks of them.

Wiring, as in Weave's ``prog/weaver/main.go``: the nameserver is registered on gossip channel ``nameserver``
before any connection forms; the topology's peer removals delete that peer's entries; container deaths (from the
container events) tombstone the dead container's names; tombstones older than 30 min are purged every 30 min.
Every local change runs through the shared driver's ``run`` so the broadcasts it causes go out at once; entries
carry wall-clock times (Weave gossips them): the nameserver makes them from the driver's ``now`` and its
``wall_offset``.

Where it listens (``--dns-listen-address``):

* given: that ``ip:port`` (failing to bind it stops the launch with a clear error);
* not given, Docker present (``docker0`` has an IPv4 address): ``<docker0 address>:53``, as ``weave launch`` does;
* not given, no Docker: every IPv4 address of the ``weave`` bridge (the ones ``weave expose`` adds), port 53,
  followed as addresses come and go. Containers on an exposed subnet reach it directly, and it never takes port
  53 of the host's own addresses, where a local resolver may listen.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import random
from functools import partial
from typing import TYPE_CHECKING, Any

from weavenet.aio.machine import MachineDriver
from weavenet.core.container_events import ContainerEvents
from weavenet.core.names import PeerName
from weavenet.daemon import dns_saved
from weavenet.dns.entries import Entry, addr_text, parse_addr
from weavenet.dns.index import fqdn
from weavenet.dns.nameserver import CHANNEL, PURGE_INTERVAL, Nameserver
from weavenet.dns.query import QueryEngine
from weavenet.dns.server import DNSServer, Forwarder, Upstreams
from weavenet.errors import ConfigError
from weavenet.status.dns import DNSDiagnostics, DNSEntryStatus, DNSStatus

if TYPE_CHECKING:
    from weavenet.core.container_events import ContainerEvent
    from weavenet.core.router import MeshRouter
    from weavenet.core.topology import Peer

log = logging.getLogger("weavenet.dns")

DNS_PORT = 53
DOCKER_BRIDGE = "docker0"
BRIDGE_POLL = 5.0
NO_CHECK_IDENTS = ("weave:expose", "weave:extern")


def container_alive(ident: str) -> bool:
    """``check-alive``: is the container still there? A PID must exist, a namespace path too; other idents
    (Docker IDs without a Docker client, ``weave:expose``) are taken as alive."""
    if ident.isdigit():
        return os.path.exists(f"/proc/{ident}")
    if ident.startswith("/"):
        return os.path.exists(ident)
    return True


class DNSService:
    def __init__(
        self,
        router: MeshRouter,
        driver: MachineDriver,
        events: ContainerEvents,
        *,
        domain: str,
        ttl: int,
        listen_address: str = "",
        upstream: list[str] | None = None,
        resolv_conf: str = "",
        fallback_timeout: float = 5.0,
        bridge: str = "weave",
        run_dir: str = "",
    ) -> None:
        """``listen_address`` "" chooses automatically (see the module docstring); ``upstream`` given: those
        servers, else the ``nameserver``\\ s of ``resolv_conf``, followed as it changes."""
        self.name = router.name
        self.router = router
        self.driver = driver
        self.bridge = bridge
        self.run_dir = run_dir  # where our live names are kept for a restarted router ("" none: tests)
        topo = self.router.topology
        self.nameserver = Nameserver(
            router.name, domain, lambda peer: topo.get(peer) is not None, wall_offset=driver.wall_offset
        )
        self.nameserver.set_sink(self.router.new_gossip(CHANNEL, self.nameserver))
        self.router.on_peer_removed.append(self._peer_removed)
        self.engine = QueryEngine(self.nameserver.index, self.nameserver.domain, ttl, random.Random())
        static = [_host_port(u, DNS_PORT) for u in upstream or []]
        self.upstreams = Upstreams(
            None if static else resolv_conf, static, exclude=self._own_ips, clock=driver.loop.time
        )
        self.server = DNSServer(self.engine, Forwarder(self.engine, self.upstreams, fallback_timeout))
        self.listen_spec = listen_address
        self.mode = ""
        self.listen_errors: dict[str, str] = {}
        self._tasks: list[asyncio.Task[None]] = []
        self.events = events
        events.subscribe(self._on_container_event)

    # -- lifecycle ----------------------------------------------------------------------------------------------

    async def start(self) -> None:
        loop = asyncio.get_running_loop()
        await self._restore()
        if self.listen_spec:
            self.mode = "given"
            host, port = _host_port(self.listen_spec, DNS_PORT)
            try:
                await self.server.listen(host, port)
            except OSError as e:
                raise ConfigError(f"Unable to start DNS server on {host}:{port}: {e.strerror or e}") from e
        else:
            docker = await asyncio.to_thread(_ipv4_addrs, DOCKER_BRIDGE)
            if docker:
                self.mode = "docker"
                try:
                    await self.server.listen(docker[0], DNS_PORT)
                except OSError as e:
                    raise ConfigError(f"Unable to start DNS server on {docker[0]}:53: {e.strerror or e}") from e
            else:
                self.mode = "bridge"
                await self.refresh_listeners()
                self._tasks.append(loop.create_task(self._follow_bridge()))
        self._tasks.append(loop.create_task(self._purge_loop()))

    async def close(self) -> None:
        for task in self._tasks:
            task.cancel()
        await self.server.close()

    @property
    def domain(self) -> str:
        return self.nameserver.domain

    async def _restore(self) -> None:
        """Register again the names this host's router had before a restart (see ``dns_saved``)."""
        if not self.run_dir:
            return
        saved = await asyncio.to_thread(dns_saved.load, self.run_dir)
        if not saved:
            return
        keep = await asyncio.to_thread(dns_saved.still_there, saved, self.bridge)
        for ident, addr, name in keep:
            self.driver.run(partial(self._add_saved, ident, addr, name))
        log.info(
            "[nameserver %s] %d names of containers attached before restored (%d gone)",
            self.name,
            len(keep),
            len(saved) - len(keep),
        )
        self._save()

    def _add_saved(self, ident: str, addr: str, name: str, now: float) -> Entry | None:
        return self.nameserver.add(name, ident, parse_addr(addr), now)

    def _peer_removed(self, peer: Peer) -> None:
        """The topology forgot a peer: its names go with it."""
        self.nameserver.peer_gone(peer.name)

    def _save(self) -> None:
        """Keep our live names in the runtime directory, for a restarted router."""
        if not self.run_dir:
            return
        ours = int(self.name)
        names = [
            (e.container_id, addr_text(e.addr), e.hostname)
            for e in self.nameserver.entries
            if e.live and e.origin == ours
        ]
        dns_saved.save(self.run_dir, names)

    def _own_ips(self) -> set[str]:
        return {host for host, _ in self.server.addresses}

    async def refresh_listeners(self) -> None:
        """Bridge mode: listen on exactly the bridge's current addresses."""
        if self.mode != "bridge":
            return
        want = set(await asyncio.to_thread(_ipv4_addrs, self.bridge))
        have = {host for host, _ in self.server.addresses}
        for host in sorted(have - want):
            await self.server.unlisten((host, DNS_PORT))
        for host in sorted(want - have):
            try:
                await self.server.listen(host, DNS_PORT)
                self.listen_errors.pop(host, None)
            except OSError as e:
                if host not in self.listen_errors:
                    log.warning("weaveDNS cannot listen on %s:53: %s", host, e.strerror or e)
                self.listen_errors[host] = str(e.strerror or e)

    async def _follow_bridge(self) -> None:
        while True:
            await asyncio.sleep(BRIDGE_POLL)
            with contextlib.suppress(Exception):
                await self.refresh_listeners()

    async def _purge_loop(self) -> None:
        while True:
            await asyncio.sleep(PURGE_INTERVAL)
            self.driver.run(self.nameserver.purge_tombstones)

    def _on_container_event(self, event: ContainerEvent) -> None:
        if event.kind in ("die", "destroy"):
            ident = event.ident
            # not inside whatever input published the event: the broadcast goes out on its own turn
            asyncio.get_running_loop().call_soon(self._died, ident)

    def _died(self, ident: str) -> None:
        self.driver.run(lambda now: self.nameserver.container_died(ident, now))
        self._save()

    # -- what the API asks ----------------------------------------------------------------------------------------

    @property
    def address(self) -> str:
        """``ip:port`` clients should use (Weave's ``/dns-address-port``), "" if not listening anywhere."""
        addrs = self.server.addresses
        if not addrs:
            return ""
        host, port = addrs[0]
        return f"[{host}]:{port}" if ":" in host else f"{host}:{port}"

    def add(self, container: str, ip: str, name: str, check_alive: bool) -> Entry | None:
        """``PUT /name/{container}/{ip}``; raises ValueError for a bad address or name."""
        addr = parse_addr(ip)
        host = _check_name(name)
        entry = self.driver.run(lambda now: self.nameserver.add(host, container, addr, now))
        if check_alive and container not in NO_CHECK_IDENTS and not container_alive(container):
            log.info("[nameserver %s] container '%s' is not running: removing", self.name, container)
            self.delete(container, ip, host)
        self._save()
        return entry

    def delete(self, container: str | None, ip: str | None, name: str | None) -> list[Entry]:
        """``DELETE /name[/{container}[/{ip}]][?fqdn=]``: missing parts match anything."""
        addr = parse_addr(ip) if ip is not None else None
        host = fqdn(name) if name else None
        out = self.driver.run(lambda now: self.nameserver.delete(host, container, addr, now)) or []
        self._save()
        return out

    def entries_json(self) -> list[dict[str, Any]]:
        """``GET /name``: every entry, tombstones included, as Weave's JSON encodes them."""
        return [
            {
                "ContainerID": e.container_id,
                "Origin": str(PeerName(e.origin)),
                "Addr": addr_text(e.addr),
                "Hostname": e.hostname,
                "Version": e.version,
                "Tombstone": e.tombstone,
            }
            for e in self.nameserver.entries
        ]

    def status(self) -> DNSStatus:
        """The ``DNS`` part of ``weave report`` (Weave's ``nameserver.Status``) plus our counters."""
        stats = self.engine.stats
        entries = [
            DNSEntryStatus(
                e.hostname, str(PeerName(e.origin)), e.container_id, addr_text(e.addr), e.version, e.tombstone
            )
            for e in self.nameserver.entries
        ]
        diagnostics = DNSDiagnostics(
            queries=dict(stats.queries),
            responses={f"{t} {r} {s}": n for (t, r, s), n in sorted(stats.responses.items())},
            forwarded=stats.forwarded,
            truncated=stats.truncated,
            dropped=dict(stats.dropped),
            refused=dict(stats.refused),
            upstream_failures=dict(stats.upstream_failures),
            gossip=dict(self.nameserver.counters),
            listen_errors=dict(self.listen_errors),
            upstream_error=self.upstreams.error,
            local_entries=self.nameserver.local_live_count(),
        )
        return DNSStatus(
            self.nameserver.domain,
            self.upstreams.names(),
            self.address,
            self.engine.ttl,
            entries or None,
            diagnostics,
        )


def _check_name(name: str) -> str:
    from weavenet.dns.index import name_to_wire

    if not name:
        raise ValueError("no hostname given (fqdn)")
    host = fqdn(name)
    if name_to_wire(host) is None or host == ".":
        raise ValueError(f"invalid hostname {name!r}")
    return host


def _host_port(text: str, default_port: int) -> tuple[str, int]:
    """``ip``, ``ip:port`` or ``[v6]:port``; ConfigError otherwise."""
    import ipaddress

    host, port = text, default_port
    if text.startswith("["):
        host, _, rest = text[1:].partition("]")
        if rest:
            port = int(rest.lstrip(":")) if rest.lstrip(":").isdigit() else -1
    elif text.count(":") == 1:
        host, _, p = text.partition(":")
        port = int(p) if p.isdigit() else -1
    try:
        ipaddress.ip_address(host or "0.0.0.0")
    except ValueError as e:
        raise ConfigError(f"invalid DNS address {text!r}: expected <ip>[:<port>]") from e
    if not 0 <= port <= 65535:
        raise ConfigError(f"invalid DNS address {text!r}: bad port")
    return host or "0.0.0.0", port


def _ipv4_addrs(dev: str) -> list[str]:
    from weavenet.host.expose import exposed

    try:
        return [c.split("/")[0] for c in exposed(dev)]
    except Exception:  # no such device, no ip tool: no addresses
        return []
