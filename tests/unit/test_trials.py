from __future__ import annotations

import json
from pathlib import Path

import pytest

from patternbench.calibration import Comparison, document
from patternbench.errors import UsageError
from patternbench.results.report import write_report
from patternbench.results.trials import aggregate, differences
from patternbench.specs.cases import Case, interleave
from patternbench.specs.topology import Pattern
from tests.unit.test_measure import NODE_CALL, call, probe, user, write_case

# One call f -> o through sidecars (both on n1), as test_report's sidecar case.
SIDECAR_CALL = call(("f", "n1"), ("o", "n1"), "1.1 sidecar/o (n1), 1.1 sidecar/f (n1)")


def trial(downtime: float, p99: float, cpu: float | None = 10.0, failed: int = 0, missing: list[str] | None = None, **extra: object) -> dict:
    return {
        "case": "x", "pattern": "sidecar", "agent": "mesh", "naive": False, "downtime_s": downtime, "error_downtime_s": downtime,
        "slow_downtime_s": 0.0, "failed_requests": failed, "agent_cpu_m_total": cpu, "agent_memory_mib_total": 20.0,
        "latency_ms": {"before": {"p50": 2.0, "p90": 3.0, "p99": p99}, "during": None, "after": {"p50": 2.0, "p90": 3.0, "p99": p99}},
        "hops": {"loopback": 2.0}, "missing": missing or [], "invalid": False, **extra,
    }


def test_interleaved_order_spreads_drift_over_every_case() -> None:
    a, b, c = Case(Pattern.NONE, None), Case(Pattern.SIDECAR, "mesh"), Case(Pattern.DAEMONSET, "mesh")
    order = interleave([a, b, c], 2)
    assert [(t.case.id, t.k) for t in order] == [
        ("none-control", 1), ("sidecar-mesh", 1), ("daemonset-mesh", 1), ("none-control", 2), ("sidecar-mesh", 2), ("daemonset-mesh", 2),
    ]
    assert order[0].dir_name == "none-control.t1" and interleave([a], 1)[0].dir_name == "none-control"
    with pytest.raises(UsageError, match="--repeat must be at least 1"):
        interleave([a], 0)


def test_aggregate_takes_medians_keeps_trials_and_gives_intervals() -> None:
    entry = aggregate([trial(0.9, 8.0), trial(0.1, 4.0, missing=["sink.json"]), trial(0.5, 6.0, invalid=True)])
    assert entry["downtime_s"] == 0.5 and entry["latency_ms"]["before"]["p99"] == 6.0
    assert [t["downtime_s"] for t in entry["trials"]] == [0.9, 0.1, 0.5]
    assert entry["downtime_s_ci95"] == pytest.approx([0.1, 0.9])
    assert entry["latency_p99_ms_ci95"] == pytest.approx([4.0, 8.0])
    assert entry["failed_requests_ci95"] == [0.0, 0.0]
    assert entry["missing"] == ["sink.json"] and entry["invalid"] is True
    assert entry["hops"] == {"loopback": 2.0}  # structural figures: the first trial's


def test_one_trial_has_no_interval_and_a_missing_figure_is_not_hidden() -> None:
    one = aggregate([trial(0.4, 5.0)])
    assert one["downtime_s"] == 0.4 and one["downtime_s_ci95"] is None
    gap = aggregate([trial(0.4, 5.0, cpu=None), trial(0.5, 5.0, cpu=12.0)])
    assert gap["agent_cpu_m_total"] is None  # a median of the trials that have it would hide the gap
    assert gap["agent_cpu_m_total_ci95"] is None  # one value left: no interval


def test_differences_count_only_when_the_interval_excludes_zero() -> None:
    side = aggregate([trial(d, p) for d, p in ((1.0, 9.0), (1.1, 9.5), (0.9, 9.2), (1.05, 9.1))])
    node = aggregate([{**trial(d, p), "pattern": "daemonset", "case": "y"} for d, p in ((0.0, 9.3), (0.05, 9.0), (0.0, 9.4), (0.02, 9.2))])
    side["case"] = "sidecar-mesh"
    rows = {r["metric"]: r for r in differences({"sidecar-mesh": side, "daemonset-mesh": node})}
    assert rows["downtime_s"]["a"] == "sidecar-mesh" and rows["downtime_s"]["b"] == "y"
    assert rows["downtime_s"]["difference"] == pytest.approx(1.025 - 0.01)
    assert rows["downtime_s"]["excludes_zero"] is True and rows["downtime_s"]["ci95"][0] > 0
    assert rows["latency_p99_ms"]["excludes_zero"] is False  # 9.15 vs 9.25: noise
    assert rows["downtime_s"]["trials"] == [4, 4]
    single = differences({"s": {**trial(1.0, 9.0), "case": "s"}, "d": {**trial(0.0, 9.0), "pattern": "daemonset", "case": "d"}})
    assert single and all(r["ci95"] is None and r["excludes_zero"] is None for r in single)


def test_report_of_three_interleaved_trials(tmp_path: Path) -> None:
    """Trials on disk as <case>.t<k>/: one entry per case with its trials, intervals, the
    sidecar-vs-DaemonSet table, error bars, and the calibration the run carries."""
    downtimes = {"sidecar": (0.5, 0.7, 0.6), "daemonset": (0.0, 0.0, 0.05)}
    shapes = {"sidecar": ([SIDECAR_CALL], "1.1 sidecar/f (n1)"), "daemonset": ([NODE_CALL], "")}
    for pattern, (calls, via) in shapes.items():
        for k, down in enumerate(downtimes[pattern], 1):
            probes = [probe(1.0 + i * 0.05, good=not (4.0 <= 1.0 + i * 0.05 < 4.0 + down - 1e-9)) for i in range(180)]
            d = write_case(tmp_path, pattern, "mesh", [user(1.5 + i * 0.1, calls=calls, via=via, entry=("f", "n1")) for i in range(50)] + probes,
                           {"a": {"app": 0}}, {"a" if pattern == "daemonset" else "b": {"app": 0}}, (3.0, 7.0))
            case = json.loads((d / "case.json").read_text())
            (d / "case.json").write_text(json.dumps({**case, "id": f"{pattern}-mesh", "trial": k}))
            d.rename(tmp_path / f"{pattern}-mesh.t{k}")
    (tmp_path / "run.json").write_text(json.dumps({"cases_planned": ["sidecar-mesh", "daemonset-mesh"], "repeat": 3}))
    cal = document([Comparison("refused", 2.0, 2.0, 2.03, 30.0, 10.0, 40.0, 1, 2.03, 0.0)], "local 127.0.0.1", 1000.0, 0.05)
    (tmp_path / "calibration.json").write_text(json.dumps(cal))
    summary = write_report(tmp_path)
    side = summary["cases"]["sidecar-mesh"]
    assert [t["trial"] for t in side["trials"]] == [1, 2, 3] and side["downtime_s"] == pytest.approx(0.6, abs=0.01)
    assert side["downtime_s_ci95"] == pytest.approx([0.5, 0.7], abs=0.01)
    rows = {r["metric"]: r for r in summary["differences"]}
    assert rows["downtime_s"]["excludes_zero"] is True
    assert summary["calibration"]["max_error_ms"] == 30.0
    text = (tmp_path / "report.md").read_text()
    assert "## Repeated trials" in text and "## Sidecar vs DaemonSet" in text and "| downtime_s | sidecar-mesh | daemonset-mesh |" in text
    assert "±30.0 ms" in text
    assert (tmp_path / "intervals.png").stat().st_size > 1000
    # Claims are checked trial by trial: only the DaemonSet's third trial lost a probe.
    assert summary["failed_claims"]["daemonset-mesh"] == ["trial 3: 1 requests failed during the upgrade (threshold 0; causes: cut-in-flight 1); downtime 0.05s"]


def test_a_claim_failing_in_one_trial_names_the_trial(tmp_path: Path) -> None:
    for k in (1, 2):
        d = write_case(tmp_path, "daemonset", "logging", [user(1.5, calls=[NODE_CALL])],
                       {"a": {"app": 0}}, {"a": {"app": 0}} if k == 1 else {"z": {"app": 0}}, (4.0, 6.0),
                       sink={"total": {"missing": 0, "duplicated": 0, "received": 1}, "lag": {}})
        case = json.loads((d / "case.json").read_text())
        (d / "case.json").write_text(json.dumps({**case, "trial": k}))
        d.rename(tmp_path / f"daemonset-logging.t{k}")
    summary = write_report(tmp_path)
    [problem] = summary["failed_claims"]["daemonset-logging"]
    assert problem.startswith("trial 2: a node-agent upgrade touched the app")
    assert "No calibration found" in (tmp_path / "report.md").read_text()


def test_trials_of_a_pattern_share_one_deployment_in_their_interleaved_order() -> None:
    from patternbench.specs.cases import deployment_groups

    cases = [Case(Pattern.NONE, None), Case(Pattern.SIDECAR, "mesh"), Case(Pattern.SIDECAR, "logging"),
             Case(Pattern.SIDECAR, "mesh", fault="agent-kill"), Case(Pattern.SIDECAR, "mesh", upgrade="in-place"),
             Case(Pattern.DAEMONSET, "mesh"), Case(Pattern.DAEMONSET, "mesh", naive=True)]
    trials = interleave(cases, 2)
    groups = deployment_groups(trials)
    names = [[t.dir_name for t in g] for g in groups]
    assert names[0] == ["none-control.t1", "none-control.t2"]
    assert names[1] == ["sidecar-mesh.t1", "sidecar-logging.t1", "sidecar-mesh.t2", "sidecar-logging.t2"]
    # A fault and an in-place upgrade deploy fresh each trial; naive shares with naive only.
    assert ["sidecar-mesh-agent-kill.t1"] in names and ["sidecar-mesh-in-place.t2"] in names
    assert ["daemonset-mesh.t1", "daemonset-mesh.t2"] in names and ["daemonset-mesh-naive.t1", "daemonset-mesh-naive.t2"] in names
    assert sorted(t.dir_name for g in groups for t in g) == sorted(t.dir_name for t in trials)
    assert all(len(g) == 1 for g in deployment_groups(trials, share=False))
