from __future__ import annotations

import json
from pathlib import Path

import pytest

from patternbench.errors import UsageError
from patternbench.results.report import write_report
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


def test_report_shows_latency_and_cost_against_load(tmp_path: Path) -> None:
    """A run's sweeps (run --sweep) reach summary.json, a table in report.md and both plots."""
    rows = [
        {"offered_rps": 100.0, "achieved_rps": 99.6, "p50_ms": 4.0, "p99_ms": 9.5, "agent_vcpu_per_1k_rps": 0.41,
         "agent_memory_mib_per_instance": 12.0, "agent_instances": 6.0, "saturated": None},
        {"offered_rps": 400.0, "achieved_rps": 301.0, "p50_ms": 40.0, "p99_ms": 900.0, "agent_vcpu_per_1k_rps": 0.38,
         "agent_memory_mib_per_instance": 14.0, "agent_instances": 6.0, "saturated": "achieved 301/s of 400/s offered"},
    ]
    (tmp_path / "sweeps" / "daemonset").mkdir(parents=True)
    (tmp_path / "sweeps" / "daemonset" / "cost.json").write_text(json.dumps({"pattern": "daemonset", "max_sustained_rps": 100.0, "steps": rows}))
    summary = write_report(tmp_path)
    assert summary["cases"] == {} and summary["sweeps"]["daemonset"]["steps"] == rows
    text = (tmp_path / "report.md").read_text()
    assert "| daemonset | 100 | 99.6 | 4.00 | 9.50 | 0.410 | 12.0 | 6.0 | yes |" in text
    assert "no: achieved 301/s of 400/s offered" in text and "daemonset 100/s" in text
    assert (tmp_path / "latency-vs-load.png").exists() and (tmp_path / "cost-per-1k-rps.png").exists()


def test_lifecycle_section_answers_from_the_numbers() -> None:
    from patternbench.results.report import lifecycle_text

    def entry(pattern: str, strategy: str, duration: float, recreated: int, restarts: int, failed: int, naive: bool = False) -> dict:
        return {"pattern": pattern, "agent": "mesh", "naive": naive, "upgrade_strategy": strategy, "upgrade_duration_s": duration,
                "app_pods_recreated": recreated, "app_container_restarts": restarts, "failed_requests": failed, "downtime_s": 0.0,
                "log_lines_lost": None, "log_lines_duplicated": None}

    cases = {"a": entry("sidecar", "rolling", 8.0, 6, 0, 0), "b": entry("sidecar", "in-place", 36.0, 0, 6, 0), "c": entry("daemonset", "rolling", 4.5, 0, 0, 0)}
    text = "\n".join(lifecycle_text(cases))
    assert "| sidecar, in place | 36.00 | 0 | 6 | 0 |" in text and "| DaemonSet | 4.50 | 0 | 0 | 0 |" in text
    assert "still loses to the DaemonSet on lifecycle: it takes 8.0x as long" in text and "restarts 6 containers" in text
    cases["b"] = entry("sidecar", "in-place", 4.0, 0, 0, 0)
    assert "no longer loses" in "\n".join(lifecycle_text(cases))
    assert lifecycle_text({"a": cases["a"], "c": cases["c"]}) == []  # no in-place case, no section
    # A case a crash or kill left incomplete: the section says so (it was a TypeError on None).
    cases["b"] = {**entry("sidecar", "in-place", 4.0, 0, 0, 0), "app_container_restarts": None, "failed_requests": None, "missing": ["pods-after.json"]}
    assert "No verdict: sidecar, in place did not complete" in "\n".join(lifecycle_text(cases))


def test_injector_section_compares_with_the_same_rollout_without_the_fault() -> None:
    from patternbench.results.report import fault_sections as injector_text

    plain = {"pattern": "sidecar", "agent": "mesh", "naive": False, "upgrade_strategy": "rolling", "injection": "webhook",
             "upgrade_duration_s": 20.0, "failed_requests": 0, "downtime_s": 0.0, "fault": None}
    faulted = {**plain, "upgrade_duration_s": 31.5, "fault": {
        "kind": "injector-down-during-upgrade", "duration_s": 10.0, "pod_creations_refused": 9,
        "app_pods_created_during_fault": 0, "app_pods_without_sidecar": []}}
    assert injector_text({"plain": plain}) == []
    text = "\n".join(injector_text({"plain": plain, "down": faulted}))
    assert "| down | injector-down-during-upgrade (10 s) | 9 | 0 | 0 | 31.50 | 20.00 | 0 | 0.00 |" in text
    assert "the rollout took 31.50 s, 11.50 s longer than without it; 0 requests failed" in text


def test_no_silent_defaults_for_a_cut_short_case_or_a_borrowed_calibration(tmp_path: Path) -> None:
    """A case file cut short is listed as unreadable (not read as {}), a case without its
    deployment.json gets no claims checked against guessed agents, and a calibration that is
    not the run's own says so in the report."""
    requests = [user(1.5 + i * 0.1) for i in range(20)] + [probe(2.0)]
    run = tmp_path / "run"
    run.mkdir()
    d = write_case(run, "sidecar", "mesh", requests, {"a": {"app": 0}}, {"a": {"app": 0}}, (3.0, 7.0))
    (d / "load-summary.json").write_text('{"cpu_warn')
    (d / "deployment.json").unlink()
    (tmp_path / "calibration.json").write_text(json.dumps({"schema": 1, "when": "earlier", "target": "local", "rows": [], "max_error_ms": 12.0}))
    summary = write_report(run)
    entry = summary["cases"]["sidecar-mesh"]
    assert entry["missing"] == ["deployment.json", "load-summary.json (not valid JSON)"]
    assert summary["failed_claims"] == {"sidecar-mesh": ["the case is incomplete: missing deployment.json, load-summary.json (not valid JSON); its claims cannot be checked"]}
    assert summary["calibration"]["source"] == "beside the run"
    assert "This run carries no calibration of its own" in (run / "report.md").read_text()


def test_a_deployment_that_does_not_say_which_agents_ran_gets_no_claims_checked(tmp_path: Path) -> None:
    requests = [user(1.5 + i * 0.1) for i in range(20)] + [probe(2.0)]
    run = tmp_path / "run"
    run.mkdir()
    d = write_case(run, "sidecar", "mesh", requests, {"a": {"app": 0}}, {"a": {"app": 0}}, (3.0, 7.0))
    deployment = json.loads((d / "deployment.json").read_text())
    del deployment["agents"]
    (d / "deployment.json").write_text(json.dumps(deployment))
    summary = write_report(run)
    assert summary["failed_claims"] == {"sidecar-mesh": ["deployment.json does not say which agents ran; its claims cannot be checked"]}
