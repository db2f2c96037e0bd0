"""What the HTTP API may ask of the router: small protocols, one per part, so routes never see the daemon.

The routes translate HTTP into calls on these and back; they decide nothing. The daemon's composition root
hands each route module the object that implements its protocol (the mesh service, the IPAM service, weaveDNS,
the Docker integration, the report), so a new route names what it needs here and an API test can serve a route
from any object with those methods.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, Protocol

from weavenet.dns.entries import Entry
from weavenet.ipam.address import CIDR
from weavenet.ipam.operations import Result
from weavenet.status import WeaveStatus

Disconnected = Callable[[], bool]  # has the client gone away? (long waits are cancelled then)


class StatusSource(Protocol):
    """The router's one report (``weave status``, ``weave report``, ``/metrics`` are functions of it)."""

    def report(self) -> WeaveStatus: ...


class RouterControl(Protocol):
    """The mesh and the host: peers to connect to or forget, ``weave expose``, ``weave reset``."""

    async def connect(self, peers: list[str], replace: bool) -> list[str]: ...

    def forget(self, peers: list[str]) -> None: ...

    async def expose(self, cidr: str, skip_nat: bool) -> None: ...

    def remove_from_cluster(self) -> None: ...


class DockerControl(Protocol):
    """What the API tells about the Docker integration (``weave env``, ``weave ps`` without an engine)."""

    def proxy_addresses(self) -> list[str]: ...

    def attached_containers(self) -> list[tuple[str, int]]: ...


class IpamControl(Protocol):
    """IPAM's operations (Weave's ``ipam/http.go``)."""

    @property
    def default_subnet(self) -> CIDR: ...

    async def allocate(
        self, ident: str, subnet: CIDR | None, check_alive: bool, disconnected: Disconnected
    ) -> Result: ...

    async def claim(
        self, ident: str, cidr: CIDR, check_alive: bool, no_error_on_unknown: bool, disconnected: Disconnected
    ) -> Result: ...

    async def prime(self, disconnected: Disconnected) -> Result: ...

    def lookup(self, ident: str, subnet: CIDR | None) -> list[CIDR]: ...

    def owned(self) -> dict[str, list[CIDR]]: ...

    def free(self, ident: str, addr: int) -> str | None: ...

    def delete(self, ident: str) -> str | None: ...

    def rmpeer(self, peer: str) -> int: ...


class DnsControl(Protocol):
    """weaveDNS's entries and where it listens (Weave's ``nameserver/http.go``)."""

    @property
    def domain(self) -> str: ...

    @property
    def address(self) -> str: ...

    def add(self, container: str, ip: str, name: str, check_alive: bool) -> Entry | None: ...

    def delete(self, container: str | None, ip: str | None, name: str | None) -> list[Entry]: ...

    def entries_json(self) -> list[dict[str, Any]]: ...


class PolicyControl(Protocol):
    """Network policy (``weave policy``, and the pods ``weave attach`` registers): ``weavenet.daemon.policy_service``.

    ``apply`` raises ``PolicyInvalid`` (kubectl's wording) and changes nothing then; ``put_pod`` raises
    ``ValueError`` for a malformed label; ``test`` raises ``ValueError`` for a source or destination that names
    nothing or several things. The answers that change something come once the change is in force on this host,
    with what went wrong otherwise."""

    async def apply(self, text: str) -> tuple[list[str], str]: ...

    async def delete(self, kind: str, namespace: str, name: str) -> str | None: ...

    def listing(self) -> dict[str, Any]: ...

    def test(self, src: str, dst: str, protocol: str, port: int) -> dict[str, Any]: ...

    async def put_pod(self, ident: str, name: str, labels: dict[str, str], ips: list[str]) -> str: ...

    async def delete_pod(self, ident: str) -> bool: ...

    async def kube_state(self, body: object, whole: bool) -> tuple[bool, str]: ...
