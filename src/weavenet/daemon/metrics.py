"""Prometheus metrics, computed from the same report snapshot as ``weave status`` (Weave's metrics.go).

Label names are declared in alphabetical order because Go's client sorts them and scripts (and Weave's own
tests) match the exposition text literally, e.g. ``weave_connections{encryption="yes",state="established",...}``.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import Any

from prometheus_client import CollectorRegistry, generate_latest
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric

CONNECTION_STATES = ("established", "pending", "retrying", "failed", "connecting")


class ReportCollector:
    """A custom collector: every scrape takes a fresh report."""

    def __init__(self, report: Callable[[], dict[str, Any]]) -> None:
        self._report = report

    def collect(self) -> Iterator[Metric]:
        report = self._report()
        router = report.get("Router") or {}
        conns = GaugeMetricFamily(
            "weave_connections", "Number of peer-to-peer connections.", labels=["encryption", "state", "type"]
        )
        counts: dict[tuple[str, str], list[int]] = {}
        for conn in router.get("Connections") or []:
            attrs = conn.get("Attrs") or {}
            key = (conn["State"], str(attrs.get("name", "unknown")))
            c = counts.setdefault(key, [0, 0])
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
            value=router.get("TerminationCount", 0),
        )
        peers = router.get("Peers") or []
        yield GaugeMetricFamily(
            "weave_peers", "Number of peers known in the mesh, this one included.", value=len(peers)
        )
        reachable = {r["Dest"] for r in router.get("UnicastRoutes") or []}
        yield GaugeMetricFamily(
            "weave_reachable_peers",
            "Number of peers reachable over established connections, this one included.",
            value=len(reachable),
        )
        counters = ((router.get("OverlayDiagnostics") or {}).get("sleeve") or {}).get("Counters") or {}
        dropped = CounterMetricFamily(
            "weave_sleeve_dropped_packets", "Sleeve UDP packets dropped, by reason.", labels=["reason"]
        )
        for reason, value in sorted(counters.items()):
            if reason != "packets":
                dropped.add_metric([reason], value)
        yield dropped
        yield from _dns_metrics(report.get("DNS"))
        yield from _ipam_metrics(report.get("IPAM"))


def _ipam_metrics(ipam: dict[str, Any] | None) -> Iterator[Metric]:
    """IPAM: Weave's gauges, and nothing at all when IPAM is off (Weave's collector dereferenced a nil status
    there and broke ``/metrics``); plus weavenet's reclaim and refusal counters."""
    if ipam is None:
        return
    ips = GaugeMetricFamily("weave_ips", "Number of IP addresses.", labels=["state"])
    ips.add_metric(["local-used"], ipam.get("ActiveIPs", 0))
    yield ips
    total = ipam.get("RangeNumIPs", 0)
    yield GaugeMetricFamily("weave_max_ips", "Size of IP address space used by allocator.", value=total)
    owners: dict[str, list[Any]] = {}
    for e in ipam.get("Entries") or []:
        o = owners.setdefault(e.get("Peer", ""), [0, bool(e.get("IsKnownPeer"))])
        o[0] += e.get("Size", 0)
    unreachable = [size for size, known in owners.values() if not known]
    yield GaugeMetricFamily("weave_ipam_unreachable_count", "Number of unreachable peers.", value=len(unreachable))
    yield GaugeMetricFamily(
        "weave_ipam_unreachable_percentage",
        "Percentage of IP addresses owned  by unreachable peers.",
        value=sum(unreachable) * 100.0 / total if total else 0.0,
    )
    for name, key, doc in (
        ("weave_ipam_pending_allocates", "PendingAllocates", "Number of pending allocates."),
        ("weave_ipam_pending_claims", "PendingClaims", "Number of pending claims."),
    ):
        yield GaugeMetricFamily(name, doc, value=len(ipam.get(key) or []))
    for name, key, doc in (
        ("weave_ipam_reclaims", "Reclaims", "Peers whose IP space this peer reclaimed automatically."),
        ("weave_ipam_reclaimed_ips", "ReclaimedIPs", "IP addresses this peer reclaimed automatically."),
        ("weave_ipam_refused_messages", "Refused", "IPAM messages refused (malformed, or conflicting with our ring)."),
    ):
        yield CounterMetricFamily(name, doc, value=ipam.get(key, 0))


def _dns_metrics(dns: dict[str, Any] | None) -> Iterator[Metric]:
    """weaveDNS: Weave's ``weave_dns_entries`` plus query, answer, refusal and upstream counters."""
    if dns is None:
        return
    diag = dns.get("Diagnostics") or {}
    yield GaugeMetricFamily(
        "weave_dns_entries", "Number of DNS entries registered at this peer.", value=diag.get("LocalEntries", 0)
    )
    queries = CounterMetricFamily("weave_dns_queries", "DNS queries received, by transport.", labels=["transport"])
    for transport in ("tcp", "udp"):
        queries.add_metric([transport], (diag.get("Queries") or {}).get(transport, 0))
    yield queries
    answers = CounterMetricFamily(
        "weave_dns_responses",
        "DNS responses sent, by query type, rcode and source.",
        labels=["rcode", "source", "type"],
    )
    for key, value in sorted((diag.get("Responses") or {}).items()):
        qtype, rcode, source = key.split(" ")
        answers.add_metric([rcode, source, qtype], value)
    yield answers
    for name, doc, key in (
        ("weave_dns_dropped", "DNS messages dropped without an answer, by reason.", "Dropped"),
        ("weave_dns_refused", "DNS queries answered FORMERR, NOTIMP or REFUSED, by reason.", "Refused"),
        ("weave_dns_upstream_failures", "Failed exchanges with upstream DNS servers, by reason.", "UpstreamFailures"),
    ):
        family = CounterMetricFamily(name, doc, labels=["reason"])
        for reason, value in sorted((diag.get(key) or {}).items()):
            family.add_metric([reason], value)
        yield family
    yield CounterMetricFamily("weave_dns_forwarded", "DNS queries forwarded upstream.", value=diag.get("Forwarded", 0))
    yield CounterMetricFamily(
        "weave_dns_truncated", "DNS answers cut to the client's size limit (TC set).", value=diag.get("Truncated", 0)
    )


def render(report: Callable[[], dict[str, Any]]) -> bytes:
    registry = CollectorRegistry(auto_describe=False)
    registry.register(ReportCollector(report))  # type: ignore[arg-type]
    return generate_latest(registry)
