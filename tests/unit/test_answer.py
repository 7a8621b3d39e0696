"""The report opens with the answer: per claim, who wins by how much, with its interval."""

from __future__ import annotations

from patternbench.results import trials
from patternbench.results.answer import answer_text


def _trial(pattern: str, k: int, cpu: float) -> dict:
    return {"case": f"{pattern}-mesh", "pattern": pattern, "agent": "mesh", "naive": False, "missing": [],
            "downtime_s": 0.0, "failed_requests": 0, "latency_ms": {"before": {"p50": 5.0 + k, "p99": 20.0}},
            "agent_cpu_m_total": cpu + k, "agent_memory_mib_total": 30.0, "app_pods_recreated": 6 if pattern == "sidecar" else 0}


def _summary(repeat: int, failed: dict | None = None) -> dict:
    cases = {f"{p}-mesh": trials.aggregate([_trial(p, k, 100.0 if p == "sidecar" else 40.0) for k in range(repeat)]) for p in ("sidecar", "daemonset")}
    return {"cases": cases, "differences": trials.differences(cases), "failed_claims": failed or {}}


def test_the_answer_names_the_winner_only_where_the_interval_excludes_zero() -> None:
    text = "\n".join(answer_text(_summary(3)))
    assert "| Resources | agent_cpu_m_total (millicores) | sidecar-mesh | 101.00 | 41.00 | 60.00 [58.00, 62.00] | **DaemonSet**, lower by 60.00 millicores |" in text
    assert "| Lifecycle | app_pods_recreated (pods) | sidecar-mesh | 6 | 0 | 6.00 [6.00, 6.00] | **DaemonSet**, lower by 6.00 pods |" in text
    assert "| Network distance | latency_p50_ms (ms) | sidecar-mesh | 6.00 | 6.00 | 0.00 [-2.00, 2.00] | no difference shown |" in text
    assert "Every asserted claim held" in text


def test_one_trial_gives_no_verdict_and_failed_claims_are_named() -> None:
    text = "\n".join(answer_text(_summary(1, {"sidecar-mesh": ["3 requests failed", "more"]})))
    assert "one trial each: no interval" in text and "**DaemonSet**" not in text
    assert "- sidecar-mesh: 3 requests failed (and 1 more)" in text


def test_no_answer_without_both_sides() -> None:
    cases = {"sidecar-mesh": trials.aggregate([_trial("sidecar", k, 100.0) for k in range(3)])}
    assert answer_text({"cases": cases, "differences": trials.differences(cases), "failed_claims": {}}) == []
