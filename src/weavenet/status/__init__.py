"""The router's status report: Weave's ``WeaveStatus`` as dataclasses, and every way it is shown.

The router builds one :class:`WeaveStatus` per request from its parts (the mesh core builds ``Router``, the
allocator ``IPAM``, the services ``DNS``, ``Proxy``, ``Plugin`` and weavenet's own sections); from that one value
come ``weave report`` (:func:`report_json`), ``weave report -f`` (:func:`format_report`), the ``weave status``
pages (:data:`PAGES`) and ``/metrics`` (:func:`render_metrics`). Every renderer also takes the report's JSON
read back as a dict, so a copy renders as the original did.

The package is pure (no I/O, no clock): it knows Go's JSON and template rules (through
:mod:`weavenet.gocompat`) and nothing of the router. Modules: ``schema`` (field metadata, JSON, Go template
view), one module per section (``router``, ``overlay``, ``ipam``, ``dns``, ``docker``), ``report`` (the whole
report, its JSON and templates), ``text`` (the status pages), ``metrics`` (Prometheus), ``sample`` (the
troubleshooting guide's cluster, for tests and docs).
"""

from typing import TYPE_CHECKING

from weavenet.status.dns import DNSDiagnostics, DNSEntryStatus, DNSStatus
from weavenet.status.docker import (
    DockerAttach,
    DockerDiagnostics,
    DockerEvents,
    DockerPlugin,
    DockerProxy,
    DockerReport,
    PluginConfig,
    PluginStatus,
    ProxyStatus,
)
from weavenet.status.ipam import (
    CIDRValue,
    IPAMClaimStatus,
    IPAMEntryStatus,
    IPAMStatus,
    IPAMUnreachable,
    PaxosStatus,
)
from weavenet.status.overlay import (
    EspStatus,
    FastdpConnection,
    FastdpDiagnostics,
    ForwarderStatus,
    OverlayDiagnostics,
    SleeveDiagnostics,
    VniPair,
    Vport,
)
from weavenet.status.policy import NetworkPolicyStatus
from weavenet.status.report import (
    VERSION,
    Report,
    StateStatus,
    VersionCheck,
    WeaveStatus,
    as_report,
    format_report,
    report_json,
    template_view,
    version_check_text,
)
from weavenet.status.router import (
    BroadcastRouteStatus,
    LocalConnectionStatus,
    MACStatus,
    PeerConnectionStatus,
    PeerStatus,
    RouterStatus,
    UnicastRouteStatus,
    mac_text,
)
from weavenet.status.sample import sample_report
from weavenet.status.text import (
    PAGES,
    STATUS_PAGES,
    StatusUnavailable,
    render_connections,
    render_dns,
    render_docker,
    render_ipam,
    render_peers,
    render_status,
    render_targets,
)

if TYPE_CHECKING:
    from weavenet.status.metrics import render_metrics


def __getattr__(name: str) -> object:
    """``render_metrics`` needs prometheus_client, which only ``/metrics`` uses: loaded on first use, so the
    cores and the CLI that import this package do not pay for it."""
    if name == "render_metrics":
        from weavenet.status.metrics import render_metrics

        return render_metrics
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


__all__ = [
    "PAGES",
    "STATUS_PAGES",
    "VERSION",
    "BroadcastRouteStatus",
    "CIDRValue",
    "DNSDiagnostics",
    "DNSEntryStatus",
    "DNSStatus",
    "DockerAttach",
    "DockerDiagnostics",
    "DockerEvents",
    "DockerPlugin",
    "DockerProxy",
    "DockerReport",
    "EspStatus",
    "FastdpConnection",
    "FastdpDiagnostics",
    "ForwarderStatus",
    "IPAMClaimStatus",
    "IPAMEntryStatus",
    "IPAMStatus",
    "IPAMUnreachable",
    "LocalConnectionStatus",
    "MACStatus",
    "NetworkPolicyStatus",
    "OverlayDiagnostics",
    "PaxosStatus",
    "PeerConnectionStatus",
    "PeerStatus",
    "PluginConfig",
    "PluginStatus",
    "ProxyStatus",
    "Report",
    "RouterStatus",
    "SleeveDiagnostics",
    "StateStatus",
    "StatusUnavailable",
    "UnicastRouteStatus",
    "VersionCheck",
    "VniPair",
    "Vport",
    "WeaveStatus",
    "as_report",
    "format_report",
    "mac_text",
    "render_connections",
    "render_dns",
    "render_docker",
    "render_ipam",
    "render_metrics",
    "render_peers",
    "render_status",
    "render_targets",
    "report_json",
    "sample_report",
    "template_view",
    "version_check_text",
]
