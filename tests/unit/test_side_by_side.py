"""scripts/side_by_side.py: two runs' cases in one table, each row from its own summary."""

from __future__ import annotations

import importlib.util
import json
from pathlib import Path

import pytest

SCRIPT = Path(__file__).resolve().parents[2] / "scripts" / "side_by_side.py"


def trial(failed: int, p99: float) -> dict:
    return {"failed_requests": failed, "total_requests": 100, "downtime_s": 0.1 * failed, "latency_ms": {"before": {"p50": 5.0, "p99": p99}, "during": None},
            "proxies_per_request": 4.0, "hops": {"cross_node": 1.0, "same_node": 5.0}, "upgrade_duration_s": 7.0}


def run(tmp: Path, name: str, load_from: str, trials: list[dict], failed_claims: dict | None = None) -> Path:
    d = tmp / name
    d.mkdir()
    (d / "summary.json").write_text(json.dumps({"cases": {"daemonset-mesh": {"load_from": load_from, "trials": trials}}, "failed_claims": failed_claims or {}}))
    return d


def test_two_runs_side_by_side(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    spec = importlib.util.spec_from_file_location("side_by_side", SCRIPT)
    assert spec and spec.loader
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    a = run(tmp_path, "run-a", "host", [trial(0, 30.0), trial(2, 50.0), trial(0, 40.0)])
    b = run(tmp_path, "run-b", "cluster", [trial(1, 60.0)], {"daemonset-mesh": ["downtime 0.1 s"]})
    assert module.main([str(a), str(b)]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert len(lines) == 4
    assert "| daemonset-mesh | run-a | host | 3 | 2 of 300 | 0.2 | 5 | 40 | – |" in lines[2]
    assert lines[2].endswith("| held |")
    assert "| run-b | cluster | 1 | 1 of 100 |" in lines[3] and lines[3].endswith("| downtime 0.1 s |")
    assert module.main([]) == 2
