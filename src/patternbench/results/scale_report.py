"""The scale run's report (`<run>/report.md`, section "At scale") and its plot (scale.png),
from scale.json alone: what was measured at each size, the held-out largest size against its
prediction, the projection, and where the sidecar line crosses the others."""

from __future__ import annotations

import statistics
from pathlib import Path
from typing import Any

from patternbench.results.plots import pyplot, save
from patternbench.results.report_format import fmt, pct
from patternbench.scale_model import term_value
from patternbench.scale_points import SCALE_FIGURES

SCALE_REPORT = "report.md"
SCALE_PLOT = "scale.png"
SHOWN = ("containers_total", "apiserver_endpointslice_watchers", "agent_memory_mib_total", "agent_cpu_m_total",
         "upgrade_duration_s", "app_pod_start_p50_s", "failed_requests")


def _mean(values: list[Any]) -> float | None:
    numbers = [v for v in values if isinstance(v, (int, float))]
    return statistics.fmean(numbers) if numbers else None


def measured_table(points: list[dict[str, Any]]) -> list[str]:
    rows = ["| pattern | services | pods | containers live / formula | " + " | ".join(SHOWN[1:]) + " |", "|---" * (4 + len(SHOWN) - 1) + "|"]
    keys = dict.fromkeys((p["pattern"], p["services"]) for p in points)
    for pattern, services in keys:
        mine = [p for p in points if p["pattern"] == pattern and p["services"] == services]
        live, formula = _mean([p["containers_total"] for p in mine]), _mean([p["containers_formula"] for p in mine])
        cells = [fmt(_mean([p.get(name) for p in mine]), 2) for name in SHOWN[1:]]
        rows.append(f"| {pattern} | {services} | {fmt(_mean([p['pods'] for p in mine]), 0)} | {fmt(live, 0)} / {fmt(formula, 0)} | " + " | ".join(cells) + " |")
    return rows


def holdout_table(held: dict[str, dict[str, Any]]) -> list[str]:
    rows = ["| pattern | figure | held-out size | predicted [95 % band] | measured | error | bound |", "|---|---|---|---|---|---|---|"]
    for pattern, figures in held.items():
        for name, h in figures.items():
            bound = "stated" if h["target"] is None else f"±{h['target']:.0%}" + (" held" if h["error"] is not None and abs(h["error"]) <= h["target"] else " **not held**")
            rows.append(f"| {pattern} | {name} | {fmt(h['services'], 0)} | {fmt(h['predicted'])} [{fmt(h['band'][0])}, {fmt(h['band'][1])}] | {fmt(h['measured'])} | {pct(h['error']) if h['error'] is not None else 'n/a'} | {bound} |")
    return rows


def projection_table(projection: dict[str, dict[str, Any]]) -> list[str]:
    rows = ["| services | pattern | figure | projected [95 % band] |", "|---|---|---|---|"]
    for services, patterns in projection.items():
        for pattern, figures in patterns.items():
            for name, p in figures.items():
                rows.append(f"| {services} | {pattern} | {name} | {fmt(p['predicted'])} [{fmt(p['band'][0])}, {fmt(p['band'][1])}] |")
    return rows


def crossover_lines(crossovers: list[dict[str, Any]]) -> list[str]:
    lines = []
    for c in crossovers:
        order = "below" if c["a_below_at_1"] else "above"
        if c["crosses_at_services"] is None:
            lines.append(f"- {c['figure']}: the {c['a']} pattern stays {order} {c['b']} from 1 to 1000 services.")
        else:
            lines.append(f"- {c['figure']}: the {c['a']} pattern is {order} {c['b']} up to {c['crosses_at_services'] - 1} services and no longer from {c['crosses_at_services']} on.")
    return lines


def plot(doc: dict[str, Any], path: Path) -> Path | None:
    """Each fitted figure against services, per pattern: the measured points (the held-out
    largest size hollow) and the fit's line."""
    plt = pyplot()
    points = doc["points"]
    if plt is None or not points:
        return None
    names = [f.name for f in SCALE_FIGURES if any(p.get(f.name) is not None for p in points)]
    if not names:
        return None
    fig, axes = plt.subplots(len(names), 1, figsize=(7, 2.6 * len(names)), squeeze=False)
    largest = max(p["services"] for p in points)
    for ax, name in zip(axes[:, 0], names):
        for pattern in dict.fromkeys(p["pattern"] for p in points):
            mine = [p for p in points if p["pattern"] == pattern and p.get(name) is not None]
            if not mine:
                continue
            line = ax.plot([p["services"] for p in mine if p["services"] < largest], [p[name] for p in mine if p["services"] < largest], "o", label=pattern)[0]
            ax.plot([p["services"] for p in mine if p["services"] == largest], [p[name] for p in mine if p["services"] == largest], "o", mfc="none", color=line.get_color())
            terms = doc["fits"].get(pattern, {}).get(name, {}).get("terms")
            if terms:
                xs = list(range(1, largest + 1))
                pods = [x * mine[0]["pods"] / mine[0]["services"] for x in xs]
                ys = [sum(t["coef"] * term_value({"pods": pod, "services": x}, k) for k, t in terms.items()) for x, pod in zip(xs, pods)]
                ax.plot(xs, ys, "-", color=line.get_color(), linewidth=0.8)
        ax.set_title(name, fontsize=9)
        ax.set_xlabel("services")
        ax.legend(fontsize=7)
    return save(fig, path)


def write_scale_report(doc: dict[str, Any], run_dir: Path) -> Path:
    """report.md (and scale.png) of a scale run; returns the report's path."""
    plotted = plot(doc, run_dir / SCALE_PLOT)
    lines = ["# At scale", ""]
    lines += ["Each pattern measured at every size: a generated topology (an entry, then levels of services; each request calls one service per level), its mesh agent upgraded under load. Means over the trials of each size; the API server's figures over the steady phase (watchers) and the upgrade (events).", ""]
    lines += ["## Measured", ""] + measured_table(doc["points"]) + [""]
    lines += ["## The largest size, held out and predicted from the others", ""] + holdout_table(doc.get("holdout", {})) + [""]
    lines += ["## Projection", ""] + projection_table(doc.get("projection", {})) + [""]
    lines += ["## Where the lines cross", ""] + (crossover_lines(doc.get("crossovers", [])) or ["No crossover computed (the sidecar pattern was not measured, or nothing could be fitted)."]) + [""]
    if plotted:
        lines += [f"Plot: {SCALE_PLOT} (measured points, the held-out size hollow, and each fit's line).", ""]
    path = run_dir / SCALE_REPORT
    path.write_text("\n".join(lines))
    return path
