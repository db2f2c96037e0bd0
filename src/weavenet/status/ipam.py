"""The ``IPAM`` section: Weave's ``ipam.Status``, plus weavenet's reclaim, refusal and conflict notes.

The allocator builds it (``weavenet.ipam.allocator.Allocator.status``); the router's IPAM service adds its own
counters. weavenet's fields stay on the router (``server``): ``weave status ipam`` and ``/metrics`` show them,
Weave's JSON report does not carry them.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from weavenet.status.schema import GoRecord, OwnRecord, go, own

__all__ = ["CIDRValue", "IPAMClaimStatus", "IPAMEntryStatus", "IPAMStatus", "IPAMUnreachable", "PaxosStatus"]


@dataclass
class PaxosStatus(GoRecord):
    """paxos ``Status``: present only while IPAM awaits consensus (``Elector`` false for observers)."""

    GO_TYPE = "paxos.Status"

    elector: bool = field(default=False, metadata=go("Elector", "bool"))
    known_nodes: int = field(default=0, metadata=go("KnownNodes", "int"))
    quorum: int = field(default=0, metadata=go("Quorum", "uint"))


@dataclass
class IPAMEntryStatus(GoRecord):
    """ipam ``EntryStatus``: one ring entry (a range starting at ``Token``)."""

    GO_TYPE = "ipam.EntryStatus"

    token: str = field(default="", metadata=go("Token", "string"))
    size: int = field(default=0, metadata=go("Size", "uint32"))
    peer: str = field(default="", metadata=go("Peer", "string"))
    nickname: str = field(default="", metadata=go("Nickname", "string"))
    is_known_peer: bool = field(default=False, metadata=go("IsKnownPeer", "bool"))
    version: int = field(default=0, metadata=go("Version", "uint32"))


@dataclass
class CIDRValue(GoRecord):
    """address ``CIDR``; JSON ``{"Addr": "10.2.0.0", "PrefixLen": 24}``, printed ``10.2.0.0/24``."""

    GO_TYPE = "address.CIDR"

    addr: str = field(default="0.0.0.0", metadata=go("Addr", "address.Address"))
    prefix_len: int = field(default=0, metadata=go("PrefixLen", "int"))

    @staticmethod
    def go_stringer(d: Mapping[str, Any]) -> str:
        return f"{d.get('Addr')}/{d.get('PrefixLen')}"

    @classmethod
    def parse(cls, cidr: str) -> CIDRValue:
        addr, _, plen = cidr.partition("/")
        return cls(addr, int(plen))


@dataclass
class IPAMClaimStatus(GoRecord):
    """ipam ``ClaimStatus``: a pending claim of a specific address."""

    GO_TYPE = "ipam.ClaimStatus"

    ident: str = field(default="", metadata=go("Ident", "string"))
    cidr: CIDRValue = field(default_factory=CIDRValue, metadata=go("CIDR", "address.CIDR", "struct", elem=CIDRValue))


@dataclass
class IPAMUnreachable(OwnRecord):
    """weavenet: IP space stuck on a peer that cannot be reached, and what will become of it."""

    peer: str = field(default="", metadata=own("Peer"))
    nickname: str = field(default="", metadata=own("Nickname"))
    ips: int = field(default=0, metadata=own("IPs"))
    absent_for: float = field(default=0.0, metadata=own("AbsentFor"))  # seconds
    plan: str = field(default="", metadata=own("Plan"))  # who reclaims it when, or why nobody will
    reclaim_in: float | None = field(default=None, metadata=own("ReclaimIn"))  # seconds, if it will be


def _server(name: str, go_type: str, kind: str = "scalar", elem: type | None = None) -> dict[str, Any]:
    return go(name, go_type, kind, elem=elem, server=True)


@dataclass
class IPAMStatus(GoRecord):
    """ipam ``Status``. ``Range`` is the universe as a CIDR string; ``RangeNumIPs`` its size; ``ActiveIPs``
    the addresses we own that are in use; ``PendingAllocates`` are ``"<ident> <range>"`` strings. The fields
    after ``PendingAllocates`` are weavenet's and stay on the router (see the module doc)."""

    GO_TYPE = "ipam.Status"

    paxos: PaxosStatus | None = field(default=None, metadata=go("Paxos", "*paxos.Status", "ptr", elem=PaxosStatus))
    range: str = field(default="", metadata=go("Range", "string"))
    range_num_ips: int = field(default=0, metadata=go("RangeNumIPs", "int"))
    active_ips: int = field(default=0, metadata=go("ActiveIPs", "int"))
    default_subnet: str = field(default="", metadata=go("DefaultSubnet", "string"))
    entries: list[IPAMEntryStatus] | None = field(
        default=None,
        metadata=go("Entries", "[]ipam.EntryStatus", "slice", elem=IPAMEntryStatus, nil_empty=True),
    )
    pending_claims: list[IPAMClaimStatus] | None = field(
        default=None,
        metadata=go("PendingClaims", "[]ipam.ClaimStatus", "slice", elem=IPAMClaimStatus, nil_empty=True),
    )
    pending_allocates: list[str] | None = field(
        default=None, metadata=go("PendingAllocates", "[]string", "slice", nil_empty=True)
    )
    # weavenet's, from the allocator
    unreachable: list[IPAMUnreachable] = field(
        default_factory=list, metadata=_server("Unreachable", "[]IPAMUnreachable", "slice", IPAMUnreachable)
    )
    reclaim_after: float = field(default=0.0, metadata=_server("ReclaimAfter", "float64"))  # seconds
    reclaims: int = field(default=0, metadata=_server("Reclaims", "int"))  # peers whose space we reclaimed
    reclaimed_ips: int = field(default=0, metadata=_server("ReclaimedIPs", "int"))
    refused: int = field(default=0, metadata=_server("Refused", "int"))  # IPAM messages refused
    refusals: list[str] = field(default_factory=list, metadata=_server("Refusals", "[]string", "slice"))  # latest
    conflicts: list[str] = field(default_factory=list, metadata=_server("Conflicts", "[]string", "slice"))
    orphans: int = field(default=0, metadata=_server("Orphans", "int"))  # addresses waiting to be claimed again
    # weavenet's, from the router's IPAM service
    persist_failures: int = field(default=0, metadata=_server("PersistFailures", "int"))
    unsaved: str = field(default="", metadata=_server("Unsaved", "string"))  # why the last change is not saved
    container_deaths: int = field(default=0, metadata=_server("ContainerDeaths", "int"))
