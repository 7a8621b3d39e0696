"""A figure is declared once (figures.FIGURES) and reaches the intervals over trials, the
sidecar-vs-DaemonSet differences, the baselines and their comparison, and the report."""

from __future__ import annotations

import pytest

from patternbench.results import baseline, report, trials
from patternbench.specs.figures import FIGURES, Figure, Tolerance, baselined, columns, figure, plotted, with_interval


def _trial(pattern: str, toy: float) -> dict:
    return {"case": f"{pattern}-mesh", "pattern": pattern, "agent": "mesh", "naive": False, "missing": [], "toy": {"ms": toy}}


def test_a_toy_figure_declared_in_one_place_reaches_every_reader(monkeypatch: pytest.MonkeyPatch) -> None:
    toy = Figure("toy_ms", "ms", ("toy", "ms"), interval=True, baseline="toy", tolerance=Tolerance(1.0, 0.0), column="toy ms", plotted=True)
    monkeypatch.setattr("patternbench.specs.figures.FIGURES", {"toy_ms": toy})
    cases = {f"{p}-mesh": trials.aggregate([_trial(p, v + (5 if p == "sidecar" else 0)) for v in (1.0, 2.0, 3.0)]) for p in ("sidecar", "daemonset")}
    assert cases["sidecar-mesh"]["toy_ms_ci95"] is not None
    (row,) = trials.differences(cases)
    assert row["metric"] == "toy_ms" and row["difference"] == 5.0
    doc = baseline.update_baseline(None, [{"cases": cases}], "local", today="2026-01-01")
    assert doc["cases"]["sidecar-mesh"]["toy"]["value"] == 7.0
    worse = {"cases": {name: {**e, "toy": {"ms": 99.0}} for name, e in cases.items()}}
    assert {c.figure for c in baseline.compare(doc, worse) if c.regressed} == {"toy"}
    table = report.trials_text({"cases": cases})
    assert any("| toy ms |" in line for line in table) and "| sidecar-mesh | 3 | 7.00 [6.00, 8.00] |" in table


def test_the_registry_answers_each_reader_in_declaration_order() -> None:
    assert [f.name for f in with_interval()][:2] == ["downtime_s", "error_downtime_s"]
    assert list(baselined()) == ["downtime_s", "failed_requests", "latency_p99_ms", "agent_memory_mib", "log_lines_lost"]
    assert all(f.tolerance is not None for f in baselined().values())
    assert columns()["error / slow downtime s"] == [FIGURES["error_downtime_s"], FIGURES["slow_downtime_s"]]
    assert [f.name for f in plotted()] == [figs[0].name for figs in columns().values() if len(figs) == 1]
    assert figure("latency_p99_ms").of({"latency_ms": {"before": {"p99": 12.5}}}) == 12.5
    assert figure("latency_p99_ms").of({"latency_ms": {}}) is None


def test_an_unknown_figure_is_an_error() -> None:
    with pytest.raises(KeyError, match="unknown figure 'nope'"):
        figure("nope")
    with pytest.raises(ValueError, match="needs its tolerance"):
        Figure("toy", "ms", ("toy",), baseline="toy")
