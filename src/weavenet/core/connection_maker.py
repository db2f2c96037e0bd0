"""Which addresses to dial, and when: direct peers, discovered peers, and retry backoff.

Port of mesh ``connection_maker.go``, with time passed in. Targets come from two places:

* **direct peers**: what ``weave launch PEER...`` and ``weave connect`` named (``host[:port]``); kept until
  ``weave forget``, and *suspended* rather than dropped when they become pointless;
* **discovery**: for every connection any known peer reports to a peer we are not connected to, the remote TCP
  address if that connection was outbound (it is a listening address), else ``<ip>:<our port>``. Of two peers
  that discover each other, the one with the lower name dials; the other waits ``DISCOVERED_DEFER`` first.

A failed or terminated target is retried after a random delay in [i/2, 3i/2), with ``i`` starting at 2 s and
growing ×1.5 up to 6 minutes; a connection that lived for more than a minute is retried at once. A peer-name
collision or a connection to ourselves is never retried. A dial that has not connected within ``DIAL_TIMEOUT``
fails (left to the kernel, its SYNs would back off for two minutes, so a path that healed meanwhile would wait
for the next one).

The backoff is blind to the path healing; a *sign of life* from a target's IP (a datagram on the mesh port, such
as a liveness beacon, or a peer there becoming reachable in the topology) tells it: the
target is dialled at once, and a dial pending for over ``REDIAL_AFTER`` is abandoned and started again (its next
SYN may be seconds away). At most once per backoff step, so a flood of signs cannot make a dial loop: the rate
stays within twice the backoff's.

Name resolution is I/O, so the adapter resolves ``host`` before calling :meth:`ConnectionMaker.initiate`.
"""

from __future__ import annotations

import random
from collections.abc import Iterable
from dataclasses import dataclass
from enum import Enum
from ipaddress import IPv4Address, ip_address

from weavenet.core.topology import Topology

INITIAL_INTERVAL = 2.0
MAX_INTERVAL = 6 * 60.0
RESET_AFTER = 60.0
DIAL_TIMEOUT = 10.0
REDIAL_AFTER = 1.0
# Two peers that learn of each other by discovery would dial each other at once, and one of the two connections
# is then dropped as a duplicate (work for both, and Weave's routers could stall on it for a minute). The one
# with the lower name dials at once; the higher one waits this long, so it dials only if the other did not.
DISCOVERED_DEFER = 3.0


class TargetState(Enum):
    WAITING = "waiting"
    ATTEMPTING = "attempting"
    CONNECTED = "connected"
    SUSPENDED = "suspended"


@dataclass(slots=True)
class Target:
    state: TargetState = TargetState.WAITING
    last_error: str | None = None
    try_after: float | None = None  # None: never (Go's zero time)
    try_interval: float = INITIAL_INTERVAL
    last_error_wall: float | None = None
    attempt_started: float | None = None  # when the current (or last) dial began
    hurried: bool = False  # a sign of life brought this backoff step forward; cleared by the next scheduled dial
    hurry_now: bool = False  # the next dial is that hurried one

    def next_try_now(self, now: float) -> None:
        self.try_after = now
        self.try_interval = INITIAL_INTERVAL

    def next_try_never(self) -> None:
        self.try_after = None
        self.try_interval = MAX_INTERVAL

    def next_try_later(self, now: float, rng: random.Random) -> None:
        self.try_after = now + self.try_interval / 2 + rng.random() * self.try_interval
        self.try_interval = min(self.try_interval * 1.5, MAX_INTERVAL)


@dataclass(slots=True, frozen=True)
class PeerAddr:
    """A direct peer as given by the user, with its resolved address (port 0: "not given")."""

    spec: str
    ip: str
    port: int


@dataclass(slots=True, frozen=True)
class LiveConnection:
    """What the connection maker needs to know about one of our connections."""

    remote_name: int
    remote_tcp_addr: str
    outbound: bool


def split_host_port(spec: str) -> tuple[str, str] | None:
    """Go's ``net.SplitHostPort`` subset: ``host:port``, ``[v6]:port``; None if there is no port part."""
    if spec.startswith("["):
        end = spec.find("]")
        if end < 0 or not spec[end + 1 :].startswith(":"):
            return None
        return spec[1:end], spec[end + 2 :]
    if spec.count(":") != 1:
        return None
    host, port = spec.split(":")
    return host, port


def parse_peer_spec(spec: str) -> tuple[str, int]:
    """Split ``host[:port]`` into (host, port) with port 0 meaning "not given".

    Raises ValueError for specs Weave would refuse: its message for a malformed ``host[:port]``, and a clearer one
    than its ``lookup X: no such host`` for a host that is neither an IPv4 address nor a host name.
    """
    parts = split_host_port(spec)
    host, port = parts if parts is not None else (spec, "0")
    if host == "" or not (port == "" or port.isalnum()):
        raise ValueError(f'invalid peer name "{spec}", should be host[:port]')
    problem = host_problem(host)
    if problem is not None:
        raise ValueError(f'invalid peer address "{spec}": {problem}')
    if port and not port.isdigit():
        raise ValueError(f"lookup port {port}: unknown port")
    value = int(port or 0)
    if value > 65535:
        raise ValueError(f"address {spec}: invalid port")
    return host, value


MAX_NAME = 253
MAX_LABEL = 63


def host_problem(host: str) -> str | None:
    """Why ``host`` cannot be dialled, or None: an IPv4 address in full (``a.b.c.d``) or a host name.

    Weave's router (Go's resolver, built without cgo) takes exactly these: a dotted quad as an address, and as a
    name only what ``isDomainName`` accepts (ASCII letters, digits, ``-`` and ``_``, labels of 1 to 63
    characters not starting or ending with ``-``, 253 characters in all, not all digits); anything else is "no
    such host". So the C library's old shorthand (``1.2.3`` for 1.2.0.3, ``0`` for 0.0.0.0) is never dialled,
    and a name the IDNA codec cannot encode never reaches it.
    """
    try:
        IPv4Address(host)
        return None
    except ValueError:
        pass
    if ":" in host or host.startswith("["):
        return "IPv6 addresses are not supported"
    name = host.removesuffix(".")
    if len(name) > MAX_NAME:
        return f"host name longer than {MAX_NAME} characters"
    for label in name.split("."):
        if not label:
            return f'empty label in host name "{host}"'
        if len(label) > MAX_LABEL:
            return f'label "{label[:16]}..." of {len(label)} characters in host name (at most {MAX_LABEL})'
        bad = next((c for c in label if not (c.isascii() and (c.isalnum() or c in "-_"))), None)
        if bad is not None:
            return f"character {bad!r} not allowed in a host name"
        if label.startswith("-") or label.endswith("-"):
            return f'label "{label}" starts or ends with "-"'
    if all(c.isdigit() or c == "." for c in name):
        return f'"{host}" is not a full IPv4 address (a.b.c.d), and a host name cannot be all digits'
    return None


def join_host_port(ip: str, port: int) -> str:
    return f"[{ip}]:{port}" if ":" in ip else f"{ip}:{port}"


def host_of(addr: str) -> str | None:
    parts = split_host_port(addr)
    return parts[0] if parts else None


class ConnectionMaker:
    """Targets and their backoff. Call :meth:`check` after any change and when :meth:`next_deadline` passes."""

    def __init__(self, port: int, discovery: bool, rng: random.Random) -> None:
        self.port = port
        self.discovery = discovery
        self.rng = rng
        self.targets: dict[str, Target] = {}
        self.direct_peers: dict[str, PeerAddr] = {}
        self.termination_count = 0
        self._deadline: float | None = None

    # -- commands -----------------------------------------------------------------------------------------------

    def complete_addr(self, addr: PeerAddr) -> str:
        return join_host_port(addr.ip, addr.port or self.port)

    def initiate(self, addrs: Iterable[PeerAddr], replace: bool, now: float) -> None:
        """Add direct peers (``weave connect``); existing targets among them are retried at once."""
        if replace:
            self.direct_peers = {}
        for addr in addrs:
            self.direct_peers[addr.spec] = addr
            target = self.targets.get(self.complete_addr(addr))
            if target is not None:
                target.next_try_now(now)

    def forget(self, specs: Iterable[str]) -> None:
        for spec in specs:
            self.direct_peers.pop(spec, None)

    def direct_targets(self, active_only: bool = False) -> list[str]:
        """The direct peers as given (``weave status targets``); active ones are those not given up on."""
        out = []
        for spec, addr in self.direct_peers.items():
            if active_only:
                target = self.targets.get(self.complete_addr(addr))
                if target is not None and target.try_after is None:
                    continue
            out.append(spec)
        return out

    # -- events -------------------------------------------------------------------------------------------------

    def connection_aborted(self, address: str, error: str, now: float, wall: float) -> None:
        """A dial failed before a connection existed."""
        target = self.targets.get(address)
        if target is None:
            return
        target.state = TargetState.WAITING
        target.last_error = error
        target.last_error_wall = wall
        target.next_try_later(now, self.rng)

    def connection_created(self, address: str, outbound: bool) -> None:
        if outbound and (target := self.targets.get(address)) is not None:
            target.state = TargetState.CONNECTED
            target.hurried = target.hurry_now = False

    def sign_of_life(self, ip: str, now: float, dialling: Iterable[str] = ()) -> list[str]:
        """Something was heard from ``ip``: dial its waiting targets now (once per backoff step).

        ``dialling`` are the addresses with a dial still pending (TCP not yet connected). Of those, the ones
        pending for over ``REDIAL_AFTER`` are returned: the caller abandons those dials, and the next
        :meth:`check` starts them again.
        """
        pending = set(dialling)
        restart = []
        for address, target in self.targets.items():
            if target.hurried or host_of(address) != ip:
                continue
            if target.state is TargetState.WAITING and target.try_after is not None and target.try_after > now:
                target.try_after = now
            elif (
                target.state is TargetState.ATTEMPTING
                and address in pending
                and target.attempt_started is not None
                and now - target.attempt_started >= REDIAL_AFTER
            ):
                target.state = TargetState.WAITING
                target.try_after = now
                restart.append(address)
            else:
                continue
            target.hurried = target.hurry_now = True
        return restart

    def connection_terminated(
        self, address: str, outbound: bool, error: str, retry: bool, counts: bool, now: float, wall: float
    ) -> None:
        """A connection we had (or were handshaking) ended with ``error``; ``retry=False``: never again."""
        if counts:
            self.termination_count += 1
        if not outbound:
            return
        target = self.targets.get(address)
        if target is None:
            return
        target.state = TargetState.WAITING
        target.last_error = error
        target.last_error_wall = wall
        if not retry:
            target.next_try_never()
        elif target.try_after is not None and now > target.try_after + RESET_AFTER:
            target.next_try_now(now)
        else:
            target.next_try_later(now, self.rng)

    # -- the loop -------------------------------------------------------------------------------------------------

    def check(self, now: float, topology: Topology, connections: Iterable[LiveConnection]) -> list[tuple[str, bool]]:
        """Recompute targets; return the addresses to dial now as (address, is_direct_peer)."""
        valid: set[str] = set()
        direct: set[str] = set()
        our_peers: set[int] = set()
        our_targets: set[str] = set()
        our_inbound_ips: set[str] = set()
        for conn in connections:
            our_peers.add(conn.remote_name)
            our_targets.add(conn.remote_tcp_addr)
            if not conn.outbound and (ip := host_of(conn.remote_tcp_addr)) is not None:
                our_inbound_ips.add(ip)

        def add_target(address: str, defer: bool = False) -> None:
            if address in our_targets:
                return
            valid.add(address)
            if address not in self.targets:
                target = Target()
                target.next_try_now(now)
                if defer:
                    target.try_after = now + DISCOVERED_DEFER
                self.targets[address] = target

        for addr in self.direct_peers.values():
            address = self.complete_addr(addr)
            direct.add(address)
            if addr.port == 0 and addr.ip in our_inbound_ips:
                continue  # that peer already dialled us; no need to dial its (guessed) port
            add_target(address)

        if self.discovery:
            ourself = topology.ourself
            for peer in topology.by_name.values():
                if peer is ourself:
                    continue
                for other, summary in peer.connections.items():
                    if other == ourself.name or other in our_peers:
                        continue
                    defer = other < ourself.name  # it dials us first (see DISCOVERED_DEFER)
                    if summary.outbound:
                        add_target(summary.tcp_addr, defer)
                    elif (ip := host_of(summary.tcp_addr)) is not None and _is_ip(ip):
                        add_target(join_host_port(ip, self.port), defer)

        dial: list[tuple[str, bool]] = []
        deadline: float | None = None
        for address, target in list(self.targets.items()):
            if target.state not in (TargetState.WAITING, TargetState.SUSPENDED):
                continue
            if address not in valid:
                if address in direct:
                    target.state = TargetState.SUSPENDED
                else:
                    del self.targets[address]
                continue
            if target.try_after is None:
                continue
            target.state = TargetState.WAITING
            if target.try_after <= now:
                target.state = TargetState.ATTEMPTING
                target.attempt_started = now
                if target.hurry_now:
                    target.hurry_now = False
                else:
                    target.hurried = False  # a scheduled dial: the next sign of life may hurry again
                dial.append((address, address in direct))
            elif deadline is None or target.try_after < deadline:
                deadline = target.try_after
        self._deadline = deadline
        return dial

    def next_deadline(self) -> float | None:
        return self._deadline


def _is_ip(text: str) -> bool:
    try:
        ip_address(text)
    except ValueError:
        return False
    return True
