"""``weave status docker``: the Docker integration's state (weavenet's own page; Weave has none).

Weave's report has fixed ``Proxy`` and ``Plugin`` sections that scripts parse, so what an operator needs when
containers do not get on the network (is the engine answering, is the event stream up, what failed last) is
shown here instead, from the report's ``DockerDiagnostics`` entry.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

KEY = "DockerDiagnostics"


def _line(key: str, value: Any) -> str:
    return f"{key:>16}: {value}\n"


def render(report: Mapping[str, Any]) -> str:
    d = report.get(KEY)
    if not isinstance(d, Mapping):
        return _line("Docker", "not configured")
    out = [_line("DockerAPI", d.get("DockerAPI") or "(none)"), _line("Enabled", str(bool(d.get("Enabled"))).lower())]
    if d.get("DisabledReason"):
        out.append(_line("DisabledReason", d["DisabledReason"]))
    if d.get("WaitProgram"):
        out.append(_line("WaitProgram", d["WaitProgram"]))
    for section in ("Events", "Proxy", "Attach", "Plugin"):
        sub = d.get(section)
        if isinstance(sub, Mapping):
            parts = []
            for k, v in sub.items():
                if isinstance(v, Mapping):
                    v = ",".join(f"{a}={b}" for a, b in sorted(v.items())) or "none"
                parts.append(f"{k}={v}" if v != "" else f"{k}=-")
            out.append(_line(section, " ".join(parts)))
    return "".join(out)
