"""The nightly flow on the local cluster, short: run a case, fold it into a baseline,
compare; a figure made worse in the baseline's eyes is named as a regression."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from patternbench import cli

pytestmark = pytest.mark.cluster


def test_nightly_flow_on_the_local_cluster(cluster: object, tmp_path: Path, capsys) -> None:
    results = tmp_path / "results"
    code = cli.main(["run", "--pattern", "daemonset", "--agent", "mesh", "--profile", "short", "--duration", "2", "--results", str(results)])
    assert code in (0, 1)  # 1 would mean a claim failed; the flow itself still worked
    (run_dir,) = [p for p in results.iterdir() if p.is_dir()]
    summary = json.loads((run_dir / "summary.json").read_text())
    assert set(summary["cases"]) == {"daemonset-mesh", "daemonset-mesh-naive"}
    baseline = tmp_path / "baseline.json"
    assert cli.main(["baseline", "update", str(run_dir), "--baseline", str(baseline)]) == 0
    capsys.readouterr()
    assert cli.main(["compare", str(baseline), str(run_dir)]) == 0
    table = capsys.readouterr().out
    assert "daemonset-mesh" in table and "latency_p99_ms" in table
    # Tighten one figure far below what was measured: that run is now a regression.
    doc = json.loads(baseline.read_text())
    fig = doc["cases"]["daemonset-mesh"]["latency_p99_ms"]
    fig.update(value=0.001, tolerance_abs=0, tolerance_rel=0)
    baseline.write_text(json.dumps(doc))
    assert cli.main(["compare", str(baseline), str(run_dir)]) == 1
    assert "regression in daemonset-mesh: latency_p99_ms" in capsys.readouterr().err
