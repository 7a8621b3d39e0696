from __future__ import annotations

import copy
import json
from pathlib import Path

import pytest

from patternbench import cli
from patternbench.errors import UsageError
from patternbench.results.baseline import compare, load_baseline, load_summary, update_baseline

ENTRY = {"downtime_s": 0.0, "failed_requests": 0, "latency_ms": {"before": {"p99": 20.0}}, "agent_memory_mib_total": 20.0, "log_lines_lost": 0, "invalid": False, "missing": []}
SUMMARY = {"schema": 1, "run_id": "pb-1", "cases": {"daemonset-mesh": ENTRY}}


def summary_with(**changes: object) -> dict:
    s = copy.deepcopy(SUMMARY)
    s["cases"]["daemonset-mesh"].update(changes)
    return s


def test_an_unchanged_run_passes() -> None:
    base = update_baseline(None, [SUMMARY], "local", today="2026-11-26")
    rows = compare(base, SUMMARY)
    assert len(rows) == 5 and not any(r.regressed for r in rows)
    assert base["cases"]["daemonset-mesh"]["downtime_s"] == {
        "tolerance_abs": 0.2, "tolerance_rel": 0.5, "samples": [0.0], "value": 0.0, "runs": 1, "updated": "2026-11-26"}


def test_one_worse_figure_fails_naming_it() -> None:
    base = update_baseline(None, [SUMMARY], "local")
    worse = summary_with(latency_ms={"before": {"p99": 60.0}})
    bad = [r for r in compare(base, worse) if r.regressed]
    assert [(r.case, r.figure, r.delta) for r in bad] == [("daemonset-mesh", "latency_p99_ms", 40.0)]


def test_within_tolerance_is_not_a_regression() -> None:
    base = update_baseline(None, [SUMMARY], "local")
    assert not any(r.regressed for r in compare(base, summary_with(latency_ms={"before": {"p99": 34.0}})))  # 20*1.5+5 = 35
    assert any(r.regressed for r in compare(base, summary_with(log_lines_lost=1)))  # zero tolerance


def test_baseline_is_a_high_percentile_over_runs_not_the_last() -> None:
    runs = [summary_with(failed_requests=n) for n in (0, 0, 9, 0, 1)]
    base = update_baseline(None, runs, "local")
    fig = base["cases"]["daemonset-mesh"]["failed_requests"]
    assert fig["value"] == 9 and fig["runs"] == 5
    assert not any(r.regressed for r in compare(base, summary_with(failed_requests=3)))


def test_invalid_or_incomplete_runs_do_not_move_the_baseline() -> None:
    base = update_baseline(None, [SUMMARY], "local")
    base = update_baseline(base, [summary_with(failed_requests=50, invalid=True), summary_with(failed_requests=50, missing=["x"])], "local")
    assert base["cases"]["daemonset-mesh"]["failed_requests"]["runs"] == 1


def test_missing_figures_and_cases_are_bad_input() -> None:
    base = update_baseline(None, [SUMMARY], "local")
    with pytest.raises(UsageError, match="missing from run"):
        compare(base, summary_with(agent_memory_mib_total=None))
    with pytest.raises(UsageError, match="in the baseline but not in run"):
        compare(base, {"schema": 1, "run_id": "x", "cases": {}})


def write_run(tmp: Path, summary: dict) -> Path:
    run = tmp / summary["run_id"]
    run.mkdir(parents=True)
    (run / "summary.json").write_text(json.dumps(summary))
    return run


def test_cli_compare_exit_codes(tmp_path: Path, capsys) -> None:
    good = write_run(tmp_path, SUMMARY)
    baseline = tmp_path / "baselines" / "local.json"
    assert cli.main(["baseline", "update", str(good), "--baseline", str(baseline)]) == 0
    assert cli.main(["compare", str(baseline), str(good)]) == 0
    bad = write_run(tmp_path, {**summary_with(downtime_s=3.0), "run_id": "pb-2"})
    assert cli.main(["compare", str(baseline), str(bad)]) == 1
    assert "regression in daemonset-mesh: downtime_s is 3" in capsys.readouterr().err


def test_cli_bad_input_is_one_line_exit_2(tmp_path: Path, capsys) -> None:
    good = write_run(tmp_path, SUMMARY)
    baseline = tmp_path / "b.json"
    baseline.write_text(json.dumps({"schema": 0, "cases": {}}))
    assert cli.main(["compare", str(baseline), str(good)]) == 2
    assert "schema 0" in capsys.readouterr().err
    baseline.write_text(json.dumps(update_baseline(None, [SUMMARY], "local")))
    (tmp_path / "empty").mkdir()
    assert cli.main(["compare", str(baseline), str(tmp_path / "empty")]) == 2
    assert "has no summary.json" in capsys.readouterr().err
    with pytest.raises(UsageError):
        load_summary(tmp_path / "nowhere")
    with pytest.raises(UsageError, match="cannot read baseline"):
        load_baseline(tmp_path / "nope.json")
    # JSON that is not an object, and a file that never ends: one line each (were tracebacks, or a hang).
    listed = tmp_path / "list"
    listed.mkdir()
    (listed / "summary.json").write_text("[1, 2]")
    (tmp_path / "list.json").write_text("[1, 2]")
    for argv, message in ((["compare", str(tmp_path / "list.json"), str(good)], "holds a JSON list, not an object"),
                          (["compare", str(baseline), str(listed)], "holds a JSON list, not an object"),
                          (["baseline", "update", str(listed), "--baseline", str(baseline)], "holds a JSON list, not an object"),
                          (["baseline", "update", str(good), "--baseline", str(tmp_path / "list.json")], "holds a JSON list, not an object"),
                          (["compare", "/dev/zero", str(good)], "is larger than")):
        assert cli.main(argv) == 2, argv
        err = capsys.readouterr().err.strip()
        assert message in err and "\n" not in err, err
