"""Prometheus metrics (``/metrics``), computed from the same report as ``weave status`` (Weave's metrics.go).

Label names are declared in alphabetical order because Go's client sorts them and scripts (and Weave's own
tests) match the exposition text literally, e.g. ``weave_connections{encryption="yes",state="established",...}``.
The exposition text is ``prometheus_client``'s (a library with no I/O of its own here: a private registry, one
collector, rendered to bytes).
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from typing import Any

from prometheus_client import CollectorRegistry, generate_latest
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric

from weavenet.status.dns import DNSDiagnostics, DNSStatus
from weavenet.status.ipam import IPAMStatus
from weavenet.status.overlay import FastdpDiagnostics, SleeveDiagnostics
from weavenet.status.report import Report, WeaveStatus, as_report
from weavenet.status.router import RouterStatus
from weavenet.status.text import CONNECTION_STATES

__all__ = ["FALLBACK_KINDS", "fallback_kind", "render_metrics"]


class _ReportCollector:
    """A custom collector over one report."""

    def __init__(self, report: WeaveStatus) -> None:
        self._report = report

    def collect(self) -> Iterator[Metric]:
        report = self._report
        yield from _router_metrics(report.router or RouterStatus.from_dict({}))
        yield from _dns_metrics(report.dns)
        yield from _ipam_metrics(report.ipam)


def _router_metrics(router: RouterStatus) -> Iterator[Metric]:
    conns = GaugeMetricFamily(
        "weave_connections", "Number of peer-to-peer connections.", labels=["encryption", "state", "type"]
    )
    counts: dict[tuple[str, str], list[int]] = {}
    for conn in router.connections or ():
        attrs = conn.attrs or {}
        c = counts.setdefault((conn.state, str(attrs.get("name", "unknown"))), [0, 0])
        c[0 if attrs.get("encrypted") else 1] += 1
    for state in CONNECTION_STATES:
        for (st, kind), (enc, unenc) in sorted(counts.items()):
            if st == state:
                conns.add_metric(["yes", st, kind], enc)
                conns.add_metric(["", st, kind], unenc)
    yield conns
    yield CounterMetricFamily(
        "weave_connection_terminations",
        "Number of peer-to-peer connections terminated.",
        value=router.termination_count,
    )
    yield GaugeMetricFamily(
        "weave_peers", "Number of peers known in the mesh, this one included.", value=len(router.peers or ())
    )
    yield GaugeMetricFamily(
        "weave_reachable_peers",
        "Number of peers reachable over established connections, this one included.",
        value=len({r.dest for r in router.unicast_routes or ()}),
    )
    fallbacks = GaugeMetricFamily(
        "weave_sleeve_fallback_connections",
        "Established connections carried by the sleeve because the fast datapath does not work, by reason.",
        labels=["reason"],
    )
    by_reason: dict[str, int] = dict.fromkeys(FALLBACK_KINDS, 0)
    for conn in router.connections or ():
        reason = (conn.attrs or {}).get("fallback")
        if conn.state == "established" and reason:
            kind = fallback_kind(str(reason))
            by_reason[kind] += 1
    for kind, n in by_reason.items():
        fallbacks.add_metric([kind], n)
    yield fallbacks
    yield _overlay_bytes(router)
    sleeve = (router.overlay_diagnostics or {}).get("sleeve")
    counters = sleeve.counters if isinstance(sleeve, SleeveDiagnostics) else {}
    dropped = CounterMetricFamily(
        "weave_sleeve_dropped_packets", "Sleeve UDP packets dropped, by reason.", labels=["reason"]
    )
    for reason, value in sorted(counters.items()):
        if reason != "packets":
            dropped.add_metric([reason], value)
    yield dropped


# Why a connection is on the sleeve, in few words (the reason itself is free text, unfit for a label).
FALLBACK_KINDS = ("udp_blocked", "path_mtu", "encryption", "not_offered", "other")


def fallback_kind(reason: str) -> str:
    """The label of a fallback reason (``weave status connections`` shows the reason itself)."""
    text = reason.lower()
    if "blocked" in text or "no vxlan packets" in text or "heartbeats from the peer stopped" in text:
        return "udp_blocked"
    if "mtu" in text:
        return "path_mtu"
    if "encrypt" in text or "esp" in text or "ipsec" in text:
        return "encryption"
    if "offer" in text or "sleeve only" in text or "predates" in text or "fast datapath" in text:
        return "not_offered"
    return "other"


def _overlay_bytes(router: RouterStatus) -> Metric:
    """Bytes with each peer by overlay: the sleeve's (UDP payloads, from the data plane) and the fast datapath's
    (Ethernet frames through the peer's VXLAN device, from the kernel)."""
    family = CounterMetricFamily(
        "weave_overlay_bytes",
        "Bytes exchanged with each connected peer, by overlay and direction.",
        labels=["direction", "nickname", "overlay", "peer"],
    )
    overlays = router.overlay_diagnostics or {}
    nicks = {p.name: p.nick_name for p in router.peers or ()}
    sleeve = overlays.get("sleeve")
    if isinstance(sleeve, SleeveDiagnostics):
        for peer, c in sorted(sleeve.peers.items()):
            for direction, key in (("rx", "RxBytes"), ("tx", "TxBytes")):
                family.add_metric([direction, nicks.get(peer, ""), "sleeve", peer], c.get(key, 0))
    fastdp = overlays.get("fastdp")
    if isinstance(fastdp, FastdpDiagnostics):
        for port in sorted(fastdp.vports, key=lambda v: v.peer):
            if port.peer:
                family.add_metric(["rx", nicks.get(port.peer, ""), "fastdp", port.peer], port.rx_bytes)
                family.add_metric(["tx", nicks.get(port.peer, ""), "fastdp", port.peer], port.tx_bytes)
    return family


def _ipam_metrics(ipam: IPAMStatus | None) -> Iterator[Metric]:
    """IPAM: Weave's gauges, and nothing at all when IPAM is off (Weave's collector dereferenced a nil status
    there and broke ``/metrics``); plus weavenet's reclaim and refusal counters."""
    if ipam is None:
        return
    ips = GaugeMetricFamily("weave_ips", "Number of IP addresses.", labels=["state"])
    ips.add_metric(["local-used"], ipam.active_ips)
    yield ips
    total = ipam.range_num_ips
    yield GaugeMetricFamily("weave_max_ips", "Size of IP address space used by allocator.", value=total)
    owners: dict[str, list[int | bool]] = {}
    for e in ipam.entries or ():
        o = owners.setdefault(e.peer, [0, e.is_known_peer])
        o[0] += e.size
    unreachable = [size for size, known in owners.values() if not known]
    yield GaugeMetricFamily("weave_ipam_unreachable_count", "Number of unreachable peers.", value=len(unreachable))
    yield GaugeMetricFamily(
        "weave_ipam_unreachable_percentage",
        "Percentage of IP addresses owned  by unreachable peers.",
        value=sum(unreachable) * 100.0 / total if total else 0.0,
    )
    yield GaugeMetricFamily(
        "weave_ipam_pending_allocates", "Number of pending allocates.", value=len(ipam.pending_allocates or ())
    )
    yield GaugeMetricFamily(
        "weave_ipam_pending_claims", "Number of pending claims.", value=len(ipam.pending_claims or ())
    )
    refused = ipam.refused
    for name, doc, value in (
        ("weave_ipam_reclaims", "Peers whose IP space this peer reclaimed automatically.", ipam.reclaims),
        ("weave_ipam_reclaimed_ips", "IP addresses this peer reclaimed automatically.", ipam.reclaimed_ips),
        ("weave_ipam_refused_messages", "IPAM messages refused (malformed, or conflicting with our ring).", refused),
    ):
        yield CounterMetricFamily(name, doc, value=value)


def _dns_metrics(dns: DNSStatus | None) -> Iterator[Metric]:
    """weaveDNS: Weave's ``weave_dns_entries`` plus query, answer, refusal and upstream counters."""
    if dns is None:
        return
    diag = dns.diagnostics or DNSDiagnostics()
    yield GaugeMetricFamily(
        "weave_dns_entries", "Number of DNS entries registered at this peer.", value=diag.local_entries
    )
    queries = CounterMetricFamily("weave_dns_queries", "DNS queries received, by transport.", labels=["transport"])
    for transport in ("tcp", "udp"):
        queries.add_metric([transport], (diag.queries or {}).get(transport, 0))
    yield queries
    answers = CounterMetricFamily(
        "weave_dns_responses",
        "DNS responses sent, by query type, rcode and source.",
        labels=["rcode", "source", "type"],
    )
    for key, value in sorted((diag.responses or {}).items()):
        qtype, rcode, source = key.split(" ")
        answers.add_metric([rcode, source, qtype], value)
    yield answers
    failures = diag.upstream_failures
    for name, doc, by_reason in (
        ("weave_dns_dropped", "DNS messages dropped without an answer, by reason.", diag.dropped),
        ("weave_dns_refused", "DNS queries answered FORMERR, NOTIMP or REFUSED, by reason.", diag.refused),
        ("weave_dns_upstream_failures", "Failed exchanges with upstream DNS servers, by reason.", failures),
    ):
        family = CounterMetricFamily(name, doc, labels=["reason"])
        for reason, value in sorted((by_reason or {}).items()):
            family.add_metric([reason], value)
        yield family
    yield CounterMetricFamily("weave_dns_forwarded", "DNS queries forwarded upstream.", value=diag.forwarded)
    yield CounterMetricFamily(
        "weave_dns_truncated", "DNS answers cut to the client's size limit (TC set).", value=diag.truncated
    )


def render_metrics(report: Report, collectors: Iterable[Any] = ()) -> bytes:
    """The exposition text of ``/metrics`` for this report, then that of ``collectors`` (parts that read their
    own counters at each scrape, such as network policy's ``weavenpc_*`` from the kernel)."""
    registry = CollectorRegistry(auto_describe=False)
    registry.register(_ReportCollector(as_report(report)))
    for collector in collectors:
        registry.register(collector)
    return generate_latest(registry)
