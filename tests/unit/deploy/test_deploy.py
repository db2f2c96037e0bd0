"""The operator's kit in deploy/: Prometheus alerts checked and unit-tested with promtool, the Grafana dashboard's
queries valid PromQL over metrics the router exports, the systemd unit verified by systemd-analyze.

Every metric name is also checked against a live router's ``/metrics`` in tests/integration/test_web_view.py;
here against the metrics of the test bed report kept in tests/unit/status/golden (no router needed).
"""

from __future__ import annotations

import json
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from weavenet.status import WeaveStatus
from weavenet.status.metrics import render_metrics

ROOT = Path(__file__).parents[3]
ALERTS = ROOT / "deploy/prometheus/alerts.yaml"
DASHBOARD = ROOT / "deploy/grafana/weavenet.json"
UNIT = ROOT / "deploy/systemd/weave.service"
PROMETHEUS_OWN = {"up"}  # series Prometheus makes itself for every target


def promtool() -> str:
    path = shutil.which("promtool")
    if path is None:
        pytest.skip("promtool is not installed (Debian package prometheus; scripts/install-deps installs it)")
    return path


def alert_exprs() -> list[str]:
    rules = yaml.safe_load(ALERTS.read_text())
    return [r["expr"] for g in rules["groups"] for r in g["rules"]]


def dashboard_exprs() -> list[str]:
    dash = json.loads(DASHBOARD.read_text())
    exprs = [t["expr"] for p in dash["panels"] for t in p["targets"]]
    exprs += [v["query"]["query"] for v in dash["templating"]["list"] if v["type"] == "query"]
    return exprs


def metric_names(exprs: list[str]) -> set[str]:
    """The metric names PromQL expressions use (weavenet's all start with ``weave_``; ``up`` is Prometheus's)."""
    names: set[str] = set()
    for e in exprs:
        e = re.sub(r'"[^"]*"', '""', e)  # not inside label values
        names |= set(re.findall(r"\b(weave_[a-z0-9_]+|up)\b(?!\s*\()", e))
    return names


def exported_names(text: str) -> set[str]:
    """Every metric family and sample name in an exposition text."""
    out = set()
    for line in text.splitlines():
        if line.startswith("# TYPE "):
            name, kind = line.split()[2:4]
            out.add(name)
            if kind == "counter" and not name.endswith("_total"):
                out.add(name + "_total")
        elif line and not line.startswith("#"):
            out.add(re.split(r"[{ ]", line, maxsplit=1)[0])
    return out


def test_promtool_checks_the_alert_rules() -> None:
    res = subprocess.run([promtool(), "check", "rules", str(ALERTS)], capture_output=True, text=True, timeout=60)
    assert res.returncode == 0, res.stdout + res.stderr
    assert "SUCCESS: 7 rules found" in res.stdout


def test_each_alert_fires_on_what_it_is_about() -> None:
    res = subprocess.run(
        [promtool(), "test", "rules", "alerts_test.yaml"],
        capture_output=True,
        text=True,
        timeout=60,
        cwd=Path(__file__).parent,
    )
    assert res.returncode == 0, res.stdout + res.stderr


def test_dashboard_queries_are_valid_promql(tmp_path: Path) -> None:
    exprs = [e for e in dashboard_exprs() if not e.startswith("label_values(")]
    rules = {
        "groups": [
            {"name": "dashboard", "rules": [{"record": f"dashboard:q{i}", "expr": e} for i, e in enumerate(exprs)]}
        ]
    }
    path = tmp_path / "dashboard-rules.yaml"
    path.write_text(yaml.safe_dump(rules))
    res = subprocess.run([promtool(), "check", "rules", str(path)], capture_output=True, text=True, timeout=60)
    assert res.returncode == 0, res.stdout + res.stderr


def test_dashboard_is_an_importable_grafana_dashboard() -> None:
    dash = json.loads(DASHBOARD.read_text())
    assert dash["__inputs"][0]["name"] == "DS_PROMETHEUS" and dash["uid"] == "weavenet"
    ids = [p["id"] for p in dash["panels"]]
    assert len(ids) == len(set(ids)) and all(p["targets"] for p in dash["panels"])


def test_every_metric_used_is_exported() -> None:
    report = WeaveStatus.from_dict(json.loads((ROOT / "tests/unit/status/golden/testbed/input.json").read_text()))
    exported = exported_names(render_metrics(report).decode())
    used = metric_names(alert_exprs() + dashboard_exprs())
    assert {"weave_overlay_bytes_total", "weave_sleeve_fallback_connections"} <= used
    assert used - exported - PROMETHEUS_OWN == set()


def test_systemd_unit_verifies(tmp_path: Path) -> None:
    analyze = shutil.which("systemd-analyze")
    if analyze is None:
        pytest.skip("systemd-analyze is not installed (Debian package systemd)")
    weave = Path(sys.executable).parent / "weave"  # where this checkout's `weave` is, for the executables' check
    unit = tmp_path / "weave.service"
    unit.write_text(UNIT.read_text().replace("/usr/local/bin/weave", str(weave)))
    res = subprocess.run([analyze, "verify", str(unit)], capture_output=True, text=True, timeout=60)
    assert res.returncode == 0, res.stderr
    assert str(unit) not in res.stderr and "weave.service" not in res.stderr, res.stderr
    text = UNIT.read_text()
    assert "ExecStart=/usr/local/bin/weave launch --foreground" in text and "ExecStop=/usr/local/bin/weave stop" in text
    assert "Restart=on-failure" in text
    broken = tmp_path / "broken.service"
    broken.write_text(unit.read_text().replace("Type=exec", "Type=forking-ish"))
    assert "broken.service" in subprocess.run([analyze, "verify", str(broken)], capture_output=True, text=True).stderr
