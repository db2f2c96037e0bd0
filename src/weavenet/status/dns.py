"""The ``DNS`` section: Weave's ``nameserver.Status``, plus weavenet's query and gossip counters."""

from __future__ import annotations

from dataclasses import dataclass, field

from weavenet.status.schema import GoRecord, OwnRecord, go, own

__all__ = ["DNSDiagnostics", "DNSEntryStatus", "DNSStatus"]


@dataclass
class DNSEntryStatus(GoRecord):
    """nameserver ``EntryStatus``: one DNS record; ``Tombstone`` is 0 for a live entry, else the deletion
    time in Unix seconds."""

    GO_TYPE = "nameserver.EntryStatus"

    hostname: str = field(default="", metadata=go("Hostname", "string"))  # fully qualified, with trailing dot
    origin: str = field(default="", metadata=go("Origin", "string"))  # peer name
    container_id: str = field(default="", metadata=go("ContainerID", "string"))
    address: str = field(default="", metadata=go("Address", "string"))
    version: int = field(default=0, metadata=go("Version", "int"))
    tombstone: int = field(default=0, metadata=go("Tombstone", "int64"))


@dataclass
class DNSDiagnostics(OwnRecord):
    """weavenet: what weaveDNS answered, refused, dropped and forwarded, gossip counters, where it could not
    listen and why the upstream servers could not be read. ``Responses`` keys are ``"<qtype> <rcode>
    <source>"``."""

    queries: dict[str, int] = field(default_factory=dict, metadata=own("Queries"))  # by transport
    responses: dict[str, int] = field(default_factory=dict, metadata=own("Responses"))
    forwarded: int = field(default=0, metadata=own("Forwarded"))
    truncated: int = field(default=0, metadata=own("Truncated"))
    dropped: dict[str, int] = field(default_factory=dict, metadata=own("Dropped"))  # by reason
    refused: dict[str, int] = field(default_factory=dict, metadata=own("Refused"))  # by reason
    upstream_failures: dict[str, int] = field(default_factory=dict, metadata=own("UpstreamFailures"))
    gossip: dict[str, int] = field(default_factory=dict, metadata=own("Gossip"))
    listen_errors: dict[str, str] = field(default_factory=dict, metadata=own("ListenErrors"))  # address -> error
    upstream_error: str = field(default="", metadata=own("UpstreamError"))
    local_entries: int = field(default=0, metadata=own("LocalEntries"))  # live entries of this peer


@dataclass
class DNSStatus(GoRecord):
    """nameserver ``Status``. ``Upstream`` comes from resolv.conf (never nil); ``Entries`` from gossip."""

    GO_TYPE = "nameserver.Status"

    domain: str = field(default="weave.local.", metadata=go("Domain", "string"))
    upstream: list[str] = field(default_factory=list, metadata=go("Upstream", "[]string", "slice"))
    address: str = field(default="", metadata=go("Address", "string"))  # listen address, e.g. 172.17.0.1:53
    ttl: int = field(default=1, metadata=go("TTL", "uint32"))
    entries: list[DNSEntryStatus] | None = field(
        default=None,
        metadata=go("Entries", "[]nameserver.EntryStatus", "slice", elem=DNSEntryStatus, nil_empty=True),
    )
    # weavenet's own (absent from Go's report, hence omitempty)
    diagnostics: DNSDiagnostics | None = field(
        default=None,
        metadata=go("Diagnostics", "interface {}", "iface", omitempty=True, decode=DNSDiagnostics.from_dict),
    )
