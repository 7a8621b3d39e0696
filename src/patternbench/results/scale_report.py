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
    rows = ["| pattern | services | nodes | pods | containers live / formula | " + " | ".join(SHOWN[1:]) + " |", "|---" * (5 + len(SHOWN) - 1) + "|"]
    keys = dict.fromkeys((p["pattern"], p["services"], p.get("nodes")) for p in points)
    for pattern, services, nodes in keys:
        mine = [p for p in points if p["pattern"] == pattern and p["services"] == services and p.get("nodes") == nodes]
        live, formula = _mean([p["containers_total"] for p in mine]), _mean([p["containers_formula"] for p in mine])
        cells = [fmt(_mean([p.get(name) for p in mine]), 2) for name in SHOWN[1:]]
        rows.append(f"| {pattern} | {services} | {fmt(nodes, 0)} | {fmt(_mean([p['pods'] for p in mine]), 0)} | {fmt(live, 0)} / {fmt(formula, 0)} | " + " | ".join(cells) + " |")
    return rows


def holdout_table(held: dict[str, dict[str, Any]], key: str = "services") -> list[str]:
    rows = [f"| pattern | figure | held-out {key} | predicted [95 % band] | measured | error | bound |", "|---|---|---|---|---|---|---|"]
    for pattern, figures in held.items():
        for name, h in figures.items():
            bound = "stated" if h["target"] is None else f"±{h['target']:.0%}" + (" held" if h["error"] is not None and abs(h["error"]) <= h["target"] else " **not held**")
            rows.append(f"| {pattern} | {name} | {fmt(h[key], 0)} | {fmt(h['predicted'])} [{fmt(h['band'][0])}, {fmt(h['band'][1])}] | {fmt(h['measured'])} | {pct(h['error']) if h['error'] is not None else 'n/a'} | {bound} |")
    return rows


def projection_table(projection: dict[str, dict[str, Any]]) -> list[str]:
    rows = ["| services | nodes | pattern | figure | projected [95 % band] |", "|---|---|---|---|---|"]
    for services, patterns in projection.items():
        for pattern, figures in patterns.items():
            for name, cell in figures.items():
                for nodes, p in cell["nodes"].items():
                    where = nodes if cell["nodes_in_model"] else f"{nodes} (as measured: no node axis)"
                    rows.append(f"| {services} | {where} | {pattern} | {name} | {fmt(p['predicted'])} [{fmt(p['band'][0])}, {fmt(p['band'][1])}] |")
    return rows


def crossover_lines(crossovers: list[dict[str, Any]]) -> list[str]:
    lines = []
    for c in crossovers:
        order = "below" if c["a_below_at_1"] else "above"
        on = f"on {c['nodes']} nodes"
        if c["crosses_at_services"] is None:
            lines.append(f"- {c['figure']} {on}: the {c['a']} pattern stays {order} {c['b']} from 1 to 1000 services.")
        else:
            at = c["crosses_at_services"]
            lines.append(f"- {c['figure']} {on}: the {c['a']} pattern is {order} {c['b']} up to {at - 1} services and no longer from {at} on "
                         f"({at / c['nodes']:.1f} services per node).")
    return lines


def _axis_panel(ax: Any, doc: dict[str, Any], name: str, axis: str) -> None:
    """One figure against one axis (services or nodes), per pattern: the measured points (the
    held-out largest count hollow) and the fit's line through the other count as measured."""
    points = [p for p in doc["points"] if p.get("axis", "services") == axis or (axis == "nodes" and p.get("axis", "services") == "services")]
    if axis == "nodes":  # the node axis, with the services axis's point at the same service count
        at = {p["services"] for p in doc["points"] if p.get("axis") == "nodes"}
        points = [p for p in points if p["services"] in at]
    largest = max(p[axis] for p in points)
    for pattern in dict.fromkeys(p["pattern"] for p in points):
        mine = sorted((p for p in points if p["pattern"] == pattern and p.get(name) is not None), key=lambda p: p[axis])
        if not mine:
            continue
        line = ax.plot([p[axis] for p in mine if p[axis] < largest], [p[name] for p in mine if p[axis] < largest], "o", label=pattern)[0]
        ax.plot([p[axis] for p in mine if p[axis] == largest], [p[name] for p in mine if p[axis] == largest], "o", mfc="none", color=line.get_color())
        terms = doc["fits"].get(pattern, {}).get(name, {}).get("terms")
        if terms:
            ref = mine[0]
            xs = list(range(1, int(largest) + 1))
            counts = [{"services": x, "pods": x * ref["pods"] / ref["services"], "nodes": ref["nodes"]} if axis == "services"
                      else {"services": ref["services"], "pods": ref["pods"], "nodes": x} for x in xs]
            ys = [sum(t["coef"] * term_value(c, k) for k, t in terms.items()) for c in counts]
            ax.plot(xs, ys, "-", color=line.get_color(), linewidth=0.8)
    ax.set_title(f"{name} against {axis}", fontsize=9)
    ax.set_xlabel(axis)
    ax.legend(fontsize=7)


def plot(doc: dict[str, Any], path: Path) -> Path | None:
    """Each fitted figure against services (and against nodes when the node axis ran), per
    pattern: the measured points (the held-out largest count hollow) and the fit's line."""
    plt = pyplot()
    points = doc["points"]
    if plt is None or not points:
        return None
    names = [f.name for f in SCALE_FIGURES if any(p.get(f.name) is not None for p in points)]
    if not names:
        return None
    axes_run = ["services"] + (["nodes"] if any(p.get("axis") == "nodes" for p in points) else [])
    fig, axes = plt.subplots(len(names), len(axes_run), figsize=(7 * len(axes_run), 2.6 * len(names)), squeeze=False)
    for row, name in enumerate(names):
        for col, axis in enumerate(axes_run):
            _axis_panel(axes[row, col], doc, name, axis)
    return save(fig, path)


def write_scale_report(doc: dict[str, Any], run_dir: Path) -> Path:
    """report.md (and scale.png) of a scale run; returns the report's path."""
    plotted = plot(doc, run_dir / SCALE_PLOT)
    lines = ["# At scale", ""]
    lines += ["Each pattern measured at every size: a generated topology (an entry, then levels of services; each request calls one service per level), its mesh agent upgraded under load; with a node axis, the cluster resized to each node count and the same measured at one service count. Means over the trials of each point; the API server's figures over the steady phase (watchers) and the upgrade (events). A fit has a nodes term only when the node count varied.", ""]
    lines += ["## Measured", ""] + measured_table(doc["points"]) + [""]
    lines += ["## The largest size, held out and predicted from the others", ""] + holdout_table(doc.get("holdout", {})) + [""]
    if doc.get("holdout_nodes"):
        lines += ["## The largest node count, held out and predicted from the others", ""] + holdout_table(doc["holdout_nodes"], "nodes") + [""]
    lines += ["## Projection", ""] + projection_table(doc.get("projection", {})) + [""]
    lines += ["## Where the lines cross", ""] + (crossover_lines(doc.get("crossovers", [])) or ["No crossover computed (the sidecar pattern was not measured, or nothing could be fitted)."]) + [""]
    if plotted:
        lines += [f"Plot: {SCALE_PLOT} (measured points, the held-out size hollow, and each fit's line).", ""]
    path = run_dir / SCALE_REPORT
    path.write_text("\n".join(lines))
    return path
