from __future__ import annotations

import json
from pathlib import Path

import pytest

from patternbench.errors import UsageError
from patternbench.report import write_report
from tests.unit.test_measure import probe, user, write_case


def test_report_rebuilds_summary_and_markdown_from_raw_records(tmp_path: Path) -> None:
    trail = [{"src": ["f", "n1"], "dst": ["o", "n2"], "via": "1.1 sidecar/o (n2), 1.1 sidecar/f (n1)"}]
    requests = [user(1.5 + i * 0.1, calls=trail, via="1.1 sidecar/f (n1)", entry=("f", "n1")) for i in range(50)] + [probe(2.0)]
    write_case(tmp_path, "sidecar", "mesh", requests, {"a": {"app": 0}, "b": {"app": 0}}, {"c": {"app": 0}, "d": {"app": 0}}, (3.0, 7.0))
    (tmp_path / "run.json").write_text(json.dumps({"profile": {"name": "short"}, "interrupted": True, "cases_planned": ["sidecar-mesh", "daemonset-mesh"]}))
    summary = write_report(tmp_path)
    assert summary["schema"] == 1
    entry = summary["cases"]["sidecar-mesh"]
    assert entry["app_pods_recreated"] == 2 and entry["proxies_per_request"] == 3
    assert summary["failed_claims"] == {}
    text = (tmp_path / "report.md").read_text()
    assert "| sidecar-mesh | 8 / 8 | 3.00 |" in text
    assert "interrupted" in text and "Every asserted claim held" in text
    assert summary["cases_not_run"] == ["daemonset-mesh"] and "planned but not run: daemonset-mesh" in text
    assert (tmp_path / "latency.png").stat().st_size > 1000
    assert json.loads((tmp_path / "summary.json").read_text())["cases"]["sidecar-mesh"]["upgrade_duration_s"] == 4.0


def test_report_of_a_directory_without_cases(tmp_path: Path) -> None:
    with pytest.raises(UsageError, match="no experiment case"):
        write_report(tmp_path)
    with pytest.raises(UsageError, match="not a run directory"):
        write_report(tmp_path / "nope")
