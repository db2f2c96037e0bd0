"""Every rendering of a report, byte for byte against files: the JSON report, 69 ``weave report -f``
templates, the seven ``weave status`` pages and ``/metrics``.

The files in ``golden/`` were written by the modules ``weavenet.status`` replaced (the daemon's report,
status-text and metrics modules), before it existed; they pin what scripts and dashboards read. Cases: the
troubleshooting guide's sample (plain and with a password), and two reports taken from routers on a 3-host
test bed (``input.json``, with the fields that stay on the router; ``testbed`` adds a saved-state problem,
a pending claim and allocation, unreachable IP space, refusals, a conflict and a failed target to one). Each
is rendered from the dataclass and from a dict (the sample's JSON read back, the test bed's as taken); both
must give the files.

After an intended change: ``python -m tests.unit.status.test_golden --write`` rewrites them (review the diff).
"""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Any

import pytest

from weavenet.gocompat import TemplateExecError, TemplateParseError
from weavenet.status import PAGES, StatusUnavailable, WeaveStatus, format_report, report_json, sample_report
from weavenet.status.metrics import render_metrics

GOLDEN = Path(__file__).parent / "golden"


def _as_dict(case: str) -> dict[str, Any]:
    """The case as a dict: the router's as taken (with the fields that stay on the router), or the JSON report."""
    given = GOLDEN / case / "input.json"
    if given.exists():
        return dict(json.loads(given.read_text()))
    return dict(json.loads(sample_report(encryption=case == "sample-encrypted").to_json()))


def _report(case: str) -> WeaveStatus:
    if case.startswith("sample"):
        return sample_report(encryption=case == "sample-encrypted")
    return WeaveStatus.from_dict(_as_dict(case))


def _template(report: WeaveStatus | dict[str, Any], fmt: str) -> dict[str, Any]:
    try:
        return {"template": fmt, "output": format_report(report, fmt), "error": None}
    except TemplateParseError as e:
        return {"template": fmt, "output": "", "error": f"parse: {e}"}
    except TemplateExecError as e:
        return {"template": fmt, "output": e.partial_output, "error": f"exec: {e}"}


def _page(report: WeaveStatus | dict[str, Any], name: str) -> str:
    try:
        return PAGES[name](report)
    except StatusUnavailable as e:
        return "HTTP 500\n" + e.body


def renderings(report: WeaveStatus | dict[str, Any], templates: list[str]) -> dict[str, str]:
    """file name -> its content."""
    out = {"report.json": report_json(report), "metrics.txt": render_metrics(report).decode()}
    out.update({f"status{'-' + name if name else ''}.txt": _page(report, name) for name in PAGES})
    rows = [_template(report, t) for t in templates]
    out["templates.json"] = json.dumps(rows, indent=1, ensure_ascii=False) + "\n"
    return out


CASES = sorted(p.name for p in GOLDEN.iterdir() if p.is_dir())


def _templates(case: str) -> list[str]:
    return [row["template"] for row in json.loads((GOLDEN / case / "templates.json").read_text())]


@pytest.mark.parametrize("case", CASES)
@pytest.mark.parametrize("form", ["dataclass", "dict"])
def test_renderings_match_the_files(case: str, form: str) -> None:
    given = _report(case) if form == "dataclass" else _as_dict(case)
    for name, text in renderings(given, _templates(case)).items():
        assert text == (GOLDEN / case / name).read_text(), f"{case}/{name} from the {form}"


def test_the_cases_cover_weavenets_own_sections() -> None:
    r = _report("testbed")
    assert r.router is not None and set(r.router.overlay_diagnostics or {}) == {"fastdp", "sleeve"}
    assert r.dns is not None and r.dns.diagnostics is not None and r.state is not None
    assert r.ipam is not None and r.ipam.unreachable and r.ipam.refusals and r.ipam.conflicts
    assert r.docker is not None and r.docker.plugin is not None and r.proxy is not None
    assert len(_templates("testbed")) == 69


if __name__ == "__main__" and sys.argv[1:] == ["--write"]:
    for case in CASES:
        for name, text in renderings(_report(case), _templates(case)).items():
            (GOLDEN / case / name).write_text(text)
