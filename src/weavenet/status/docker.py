"""The Docker integration's sections: Weave's ``Proxy`` and ``Plugin``, and weavenet's ``weave status docker``.

Weave's report has fixed ``Proxy`` and ``Plugin`` sections that scripts parse, so what an operator needs when
containers do not get on the network (is the engine answering, is the event stream up, what failed last) is
kept on the router in :class:`DockerDiagnostics` (never in the JSON report) and shown by its own page,
:func:`render_docker`.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from weavenet.status.schema import GoRecord, go

__all__ = [
    "DockerAttach",
    "DockerDiagnostics",
    "DockerEvents",
    "DockerPlugin",
    "DockerProxy",
    "DockerReport",
    "PluginConfig",
    "PluginStatus",
    "ProxyStatus",
    "render_docker_diagnostics",
]


@dataclass
class ProxyStatus(GoRecord):
    """proxy ``Status``: normalised listen addresses (``unix:///var/run/weave/weave.sock``, ``tcp://...``)."""

    GO_TYPE = "proxy.Status"

    addresses: list[str] = field(default_factory=list, metadata=go("Addresses", "[]string", "slice"))


@dataclass
class PluginConfig(GoRecord):
    """plugin ``Config``."""

    GO_TYPE = "plugin.Config"

    socket: str = field(default="/run/docker/plugins/weave.sock", metadata=go("Socket", "string"))
    mesh_socket: str = field(default="/run/docker/plugins/weavemesh.sock", metadata=go("MeshSocket", "string"))
    enable: bool = field(default=True, metadata=go("Enable", "bool"))
    enable_v2: bool = field(default=False, metadata=go("EnableV2", "bool"))
    enable_v2_multicast: bool = field(default=False, metadata=go("EnableV2Multicast", "bool"))
    dns: bool = field(default=True, metadata=go("DNS", "bool"))
    default_subnet: str = field(default="", metadata=go("DefaultSubnet", "string"))
    proc_path: str = field(default="/proc", metadata=go("ProcPath", "string"))


@dataclass
class PluginStatus(GoRecord):
    """plugin ``Status``; driver names are the socket basenames without ``.sock``."""

    GO_TYPE = "plugin.Status"

    config: PluginConfig = field(
        default_factory=PluginConfig, metadata=go("Config", "plugin.Config", "struct", elem=PluginConfig)
    )
    driver_name: str = field(default="weave", metadata=go("DriverName", "string"))
    mesh_driver_name: str = field(default="weavemesh", metadata=go("MeshDriverName", "string", omitempty=True))


# --------------------------------------------------------------------------------------------- weavenet's own
# Each part is shown as one line of ``key=value`` pairs (rows(), in this order); from_dict reads the flat
# mapping those pairs make back.


@dataclass
class DockerEvents:
    """The engine's event stream: connected or the last error, and how many events of each kind came."""

    connected: bool = False
    last_error: str = ""
    counts: dict[str, int] = field(default_factory=dict)  # start, die, destroy

    def rows(self) -> list[tuple[str, object]]:
        return [("Connected", self.connected), ("LastError", self.last_error), *self.counts.items()]

    @classmethod
    def from_dict(cls, d: Mapping[str, Any]) -> DockerEvents:
        counts = {k: v for k, v in d.items() if k not in ("Connected", "LastError")}
        return cls(bool(d.get("Connected")), str(d.get("LastError", "")), counts)


@dataclass
class DockerProxy:
    """The proxy's request counters and how many requests are in flight."""

    stats: dict[str, int] = field(default_factory=dict)
    active: int = 0

    def rows(self) -> list[tuple[str, object]]:
        return [*self.stats.items(), ("Active", self.active)]

    @classmethod
    def from_dict(cls, d: Mapping[str, Any]) -> DockerProxy:
        return cls({k: v for k, v in d.items() if k != "Active"}, int(d.get("Active", 0)))


@dataclass
class DockerAttach:
    """Containers attached by the proxy or the event watcher, failures and the last error."""

    stats: dict[str, int] = field(default_factory=dict)
    last_error: str = ""

    def rows(self) -> list[tuple[str, object]]:
        return [*self.stats.items(), ("LastError", self.last_error)]

    @classmethod
    def from_dict(cls, d: Mapping[str, Any]) -> DockerAttach:
        return cls({k: v for k, v in d.items() if k != "LastError"}, str(d.get("LastError", "")))


@dataclass
class DockerPlugin:
    """The network plugin: its driver scope, the calls libnetwork made, the last error."""

    scope: str = ""
    calls: dict[str, int] = field(default_factory=dict)
    last_error: str = ""

    def rows(self) -> list[tuple[str, object]]:
        return [("Scope", self.scope), ("Calls", self.calls), ("LastError", self.last_error)]

    @classmethod
    def from_dict(cls, d: Mapping[str, Any]) -> DockerPlugin:
        return cls(str(d.get("Scope", "")), dict(d.get("Calls") or {}), str(d.get("LastError", "")))


@dataclass
class DockerDiagnostics:
    """``weave status docker``: the engine endpoint, whether the integration runs (else why not), a problem
    with the ``weavewait`` program, and each running part's counters."""

    docker_api: str = ""
    enabled: bool = False
    disabled_reason: str = ""
    wait_program: str = ""  # why the proxy cannot hand containers weavewait
    events: DockerEvents | None = None
    proxy: DockerProxy | None = None
    attach: DockerAttach | None = None
    plugin: DockerPlugin | None = None

    @classmethod
    def from_dict(cls, d: Mapping[str, Any]) -> DockerDiagnostics:
        def part(key: str, kind: Any) -> Any:
            sub = d.get(key)
            return kind.from_dict(sub) if isinstance(sub, Mapping) else None

        return cls(
            str(d.get("DockerAPI") or ""),
            bool(d.get("Enabled")),
            str(d.get("DisabledReason") or ""),
            str(d.get("WaitProgram") or ""),
            part("Events", DockerEvents),
            part("Proxy", DockerProxy),
            part("Attach", DockerAttach),
            part("Plugin", DockerPlugin),
        )


@dataclass
class DockerReport:
    """What the Docker integration adds to the report: Weave's sections (``None`` for a part that does not run)
    and weavenet's diagnostics."""

    proxy: ProxyStatus | None
    plugin: PluginStatus | None
    diagnostics: DockerDiagnostics


def _line(key: str, value: Any) -> str:
    return f"{key:>16}: {value}\n"


def render_docker_diagnostics(d: DockerDiagnostics | None) -> str:
    """The body of ``GET /status/docker``."""
    if d is None:
        return _line("Docker", "not configured")
    out = [_line("DockerAPI", d.docker_api or "(none)"), _line("Enabled", str(d.enabled).lower())]
    if d.disabled_reason:
        out.append(_line("DisabledReason", d.disabled_reason))
    if d.wait_program:
        out.append(_line("WaitProgram", d.wait_program))
    for section, part in (("Events", d.events), ("Proxy", d.proxy), ("Attach", d.attach), ("Plugin", d.plugin)):
        if part is None:
            continue
        pairs = []
        for k, v in part.rows():
            if isinstance(v, Mapping):
                v = ",".join(f"{a}={b}" for a, b in sorted(v.items())) or "none"
            pairs.append(f"{k}={v}" if v != "" else f"{k}=-")
        out.append(_line(section, " ".join(pairs)))
    return "".join(out)
