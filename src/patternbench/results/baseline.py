"""Baselines: accepted figures per provider and case, and the comparison that says "this got
worse, by this much". Like OpenShift's upgrade-disruption checks, a baseline is a high
percentile over the runs seen so far, not the last run, so one lucky night does not make
every later one a regression."""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from patternbench.errors import UsageError
from patternbench.results.rundir import SUMMARY
from patternbench.specs.figures import Figure, baselined
from patternbench.stats import percentile
from patternbench.user_files import read_json_object

SCHEMA_VERSION = 1
HISTORY = 30  # samples kept per figure
PERCENTILE = 99

def _value(f: Figure, entry: dict[str, Any]) -> float | None:
    value = f.of(entry)
    return None if value is None else float(value)


def load_summary(run_dir: Path) -> dict[str, Any]:
    path = run_dir / SUMMARY
    if not path.is_file():
        raise UsageError(f"{run_dir} has no summary.json (run `patternbench report {run_dir}` or pick a run directory)")
    summary = read_json_object(path, "summary")
    if summary.get("schema") != 1:
        raise UsageError(f"{path} has summary schema {summary.get('schema')!r}; this patternbench reads schema 1")
    return summary


def load_baseline(path: Path) -> dict[str, Any]:
    doc = read_json_object(path, "baseline")
    if doc.get("schema") != SCHEMA_VERSION:
        raise UsageError(f"baseline {path} has schema {doc.get('schema')!r}; this patternbench reads schema {SCHEMA_VERSION}")
    return doc


def update_baseline(baseline: dict[str, Any] | None, summaries: list[dict[str, Any]], provider: str, today: str | None = None) -> dict[str, Any]:
    """Fold runs into the baseline: each figure keeps its last HISTORY samples; its accepted
    value is their 99th percentile. Tolerances already in the file are kept."""
    today = today or dt.date.today().isoformat()
    doc = baseline or {"schema": SCHEMA_VERSION, "provider": provider, "cases": {}}
    for summary in summaries:
        for case, entry in summary["cases"].items():
            if entry.get("invalid") or entry.get("missing"):
                continue  # an untrustworthy run must not move the baseline
            figures = doc["cases"].setdefault(case, {})
            for name, f in baselined().items():
                value = _value(f, entry)
                if value is None:
                    continue
                tolerance = f.tolerance
                assert tolerance is not None  # Figure refuses a baseline without one
                fig = figures.setdefault(name, {"tolerance_abs": tolerance.absolute, "tolerance_rel": tolerance.relative, "samples": []})
                fig["samples"] = (fig["samples"] + [value])[-HISTORY:]
                fig["value"] = percentile(fig["samples"], PERCENTILE)
                fig["runs"] = len(fig["samples"])
                fig["updated"] = today
    return doc


@dataclass(frozen=True)
class Comparison:
    case: str
    figure: str
    baseline: float
    current: float
    limit: float

    @property
    def regressed(self) -> bool:
        return self.current > self.limit

    @property
    def delta(self) -> float:
        return self.current - self.baseline


def compare(baseline: dict[str, Any], summary: dict[str, Any], subset: bool = False) -> list[Comparison]:
    """Every baseline figure against the run's; lower is better for all of them. With
    `subset`, a run that ran only some cases is compared on those."""
    rows = []
    for case, figures in sorted(baseline["cases"].items()):
        entry = summary["cases"].get(case)
        if entry is None and subset:
            continue
        if entry is None:
            raise UsageError(f"case {case!r} is in the baseline but not in run {summary.get('run_id')}")
        for name, fig in sorted(figures.items()):
            if name not in baselined():
                raise UsageError(f"baseline figure {case}.{name} is unknown to this patternbench")
            current = _value(baselined()[name], entry)
            if current is None:
                raise UsageError(f"figure {case}.{name} is missing from run {summary.get('run_id')}")
            base = float(fig["value"])
            limit = base * (1 + float(fig.get("tolerance_rel", 0))) + float(fig.get("tolerance_abs", 0))
            rows.append(Comparison(case, name, base, current, limit))
    if not rows:
        raise UsageError(f"run {summary.get('run_id')} shares no case with the baseline")
    return rows


def format_table(rows: list[Comparison]) -> str:
    lines = [f"{'case':<24} {'figure':<18} {'baseline':>10} {'run':>10} {'limit':>10}  verdict"]
    for r in rows:
        verdict = f"REGRESSION (+{r.delta:.3g})" if r.regressed else "ok"
        lines.append(f"{r.case:<24} {r.figure:<18} {r.baseline:>10.3g} {r.current:>10.3g} {r.limit:>10.3g}  {verdict}")
    return "\n".join(lines)
