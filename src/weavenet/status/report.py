"""The whole report, Weave's ``WeaveStatus``, and the ways it leaves the router: JSON and ``weave report -f``.

Why one value: ``weave status`` (and its sub-commands), ``weave report``, ``weave report -f FORMAT`` and
``/metrics`` are all functions of this report (in Weave, ``prog/weaver/http.go``). The router builds it once
per request; the JSON (:func:`report_json`), templates (:func:`format_report`), status pages
(:mod:`weavenet.status.text`) and metrics (:mod:`weavenet.status.metrics`) are rendered from it. Each also
takes the report as a dict read back from that JSON, so anything can be re-rendered from a copy.

Nil versus empty, key order and omissions follow Go's ``encoding/json`` (see :mod:`weavenet.status.schema`).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from weavenet import WEAVE_COMPAT_VERSION, __version__
from weavenet.gocompat import GoStruct, GoTime, Template, go_json
from weavenet.status.dns import DNSStatus
from weavenet.status.docker import DockerDiagnostics, PluginStatus, ProxyStatus
from weavenet.status.ipam import IPAMStatus
from weavenet.status.policy import NetworkPolicyStatus
from weavenet.status.router import RouterStatus
from weavenet.status.schema import GoRecord, OwnRecord, as_gotime, go, own, view

__all__ = [
    "VERSION",
    "Report",
    "StateStatus",
    "VersionCheck",
    "WeaveStatus",
    "as_report",
    "format_report",
    "report_json",
    "template_view",
    "version_check_text",
]

# what the router reports as its version: Weave's, whose behaviour it reproduces, then its own
VERSION = f"{WEAVE_COMPAT_VERSION}+weavenet.{__version__}"


@dataclass
class VersionCheck(GoRecord):
    """``main.VersionCheck``: the checkpoint (new-version) check. A Python port never phones home, so the
    daemon reports it disabled (``Enabled`` false), as Weave does when ``CHECKPOINT_DISABLE`` is set."""

    GO_TYPE = "main.VersionCheck"

    enabled: bool = field(default=False, metadata=go("Enabled", "bool"))
    success: bool = field(default=False, metadata=go("Success", "bool"))
    new_version: str = field(default="", metadata=go("NewVersion", "string"))
    next_check_at: GoTime = field(default_factory=GoTime.zero, metadata=go("NextCheckAt", "time.Time", "time"))

    @staticmethod
    def go_stringer(d: Mapping[str, Any]) -> str:
        return version_check_text(d)


def version_check_text(vc: VersionCheck | Mapping[str, Any] | None) -> str:
    """``VersionCheck.String()``, the text in parentheses on the ``Version:`` line."""
    if vc is None:
        return "<nil>"  # fmt's rendering of a nil *VersionCheck whose String() panics
    if isinstance(vc, Mapping):
        vc = VersionCheck.from_dict(vc)
    if not vc.enabled:
        return "version check update disabled"
    next_at = as_gotime(vc.next_check_at).format_check()
    if not vc.success:
        return f"failed to check latest version - see logs; next check at {next_at}"
    if vc.new_version:
        return f"version {vc.new_version} available - please upgrade!"
    return f"up to date; next check at {next_at}"


@dataclass
class StateStatus(OwnRecord):
    """weavenet: saved state found unreadable at launch (and what was done about it), and what could not be
    saved lately (what -> why). ``weave launch`` prints the problems; absent when all is well."""

    problems: list[str] = field(default_factory=list, metadata=own("Problems"))
    unsaved: dict[str, str] = field(default_factory=dict, metadata=own("Unsaved"))


@dataclass
class WeaveStatus(GoRecord):
    """``main.WeaveStatus``, the whole report. ``None`` sub-reports mean "service disabled" and are omitted
    from JSON (``omitempty``); ``weave status`` then skips their sections."""

    GO_TYPE = "main.WeaveStatus"

    ready: bool = field(default=False, metadata=go("Ready", "bool"))
    version: str = field(default="", metadata=go("Version", "string"))
    version_check: VersionCheck | None = field(
        default_factory=VersionCheck,
        metadata=go("VersionCheck", "*main.VersionCheck", "ptr", elem=VersionCheck, omitempty=True),
    )
    router: RouterStatus | None = field(
        default=None,
        metadata=go("Router", "*router.NetworkRouterStatus", "ptr", elem=RouterStatus, omitempty=True),
    )
    ipam: IPAMStatus | None = field(
        default=None, metadata=go("IPAM", "*ipam.Status", "ptr", elem=IPAMStatus, omitempty=True)
    )
    dns: DNSStatus | None = field(
        default=None, metadata=go("DNS", "*nameserver.Status", "ptr", elem=DNSStatus, omitempty=True)
    )
    proxy: ProxyStatus | None = field(
        default=None, metadata=go("Proxy", "*proxy.Status", "ptr", elem=ProxyStatus, omitempty=True)
    )
    plugin: PluginStatus | None = field(
        default=None, metadata=go("Plugin", "*plugin.Status", "ptr", elem=PluginStatus, omitempty=True)
    )
    # weavenet's own: saved state unreadable at launch, changes not saved (``weave launch`` prints them)
    state: StateStatus | None = field(
        default=None, metadata=go("State", "interface {}", "iface", omitempty=True, decode=StateStatus.from_dict)
    )
    # weavenet's own, kept on the router: ``weave status docker`` (Weave's report has no place for it)
    docker: DockerDiagnostics | None = field(
        default=None, metadata=go("DockerDiagnostics", "", "ptr", elem=DockerDiagnostics, server=True)
    )
    # weavenet's own, kept on the router: network policy on this host (``weave status``' section)
    network_policy: NetworkPolicyStatus | None = field(
        default=None, metadata=go("NetworkPolicy", "", "ptr", elem=NetworkPolicyStatus, server=True)
    )

    def to_json(self) -> str:
        """Exactly what ``GET /report`` (``Accept: application/json``) returns: 4-space MarshalIndent, Go's
        HTML-safe escaping, ``null`` for nil slices/maps, no trailing newline."""
        return report_json(self)

    def template_data(self) -> GoStruct:
        return template_view(self)


Report = WeaveStatus | Mapping[str, Any]


def as_report(report: Report) -> WeaveStatus:
    """The report itself, or read back from its JSON form (a dict)."""
    return report if isinstance(report, WeaveStatus) else WeaveStatus.from_dict(report)


def template_view(report: Report) -> GoStruct:
    """The report as Go-typed values for :mod:`weavenet.gocompat` (works on a dict read back from
    JSON too: absent keys become Go zero values / typed nils)."""
    if isinstance(report, GoStruct) and report.go_type == WeaveStatus.GO_TYPE:
        return report
    d = report.to_dict() if isinstance(report, WeaveStatus) else report
    return view(WeaveStatus, d)


def format_report(report: Report, fmt: str) -> str:
    """``weave report -f FMT``: raises ``TemplateParseError`` (weave: HTTP 400, message as body) or
    ``TemplateExecError`` (weave: HTTP 500 ``error during template execution``, after any partial output)."""
    return Template(fmt, "format").execute(template_view(report))


def report_json(report: Report) -> str:
    """``weave report``: ``json.MarshalIndent(status, "", "    ")`` -- no trailing newline."""
    return go_json(template_view(report), "    ")
