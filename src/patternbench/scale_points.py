"""The scale run's document (`<run>/scale.json`), from the trials measured at each size: one
point per trial, then per pattern and figure the fit, the held-out largest size and the
projection. Which figures are fitted, in which counts, and how close the held-out prediction
must come is declared once here (SCALE_FIGURES); the figures' paths are figures.py's.

Pure functions over summary entries: nothing here touches a cluster.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Sequence

from patternbench.errors import UsageError
from patternbench.options import parse_count
from patternbench.scale_model import Fit, crossover, fit, holdout
from patternbench.specs.figures import figure
from patternbench.specs.generated_topology import MAX_SERVICES


@dataclass(frozen=True)
class ScaleFigure:
    """A figure fitted against size: the counts it grows with, and the largest relative error
    its held-out prediction may have (None: stated, not held to a bound)."""

    name: str  # a figures.py figure
    terms: tuple[str, ...]
    target: float | None


SCALE_FIGURES: tuple[ScaleFigure, ...] = (
    ScaleFigure("containers_total", ("1", "pods"), 0.15),
    ScaleFigure("agent_memory_mib_total", ("1", "pods"), 0.15),
    ScaleFigure("apiserver_endpointslice_watchers", ("1", "pods"), 0.15),
    ScaleFigure("agent_cpu_m_total", ("1", "pods"), None),
    ScaleFigure("apiserver_cpu_cores", ("1", "pods"), None),
    # Every endpoint change goes to every watcher: pods x changes, and a sidecar roll changes every pod.
    ScaleFigure("apiserver_upgrade_endpointslice_events", ("1", "pods", "pods*pods"), None),
    ScaleFigure("upgrade_duration_s", ("1", "pods"), None),
    ScaleFigure("app_pod_start_p50_s", ("1", "pods"), None),
)
# The patterns a scale run measures unless --pattern says otherwise (the five).
DEFAULT_SCALE_PATTERNS = ("none", "sidecar", "daemonset", "hybrid", "ambient-l4")
DEFAULT_SIZES = "3,6,12,24,48"
# Counts a projection is made at (the 100, 300 and 1000 services).
PROJECT_TO = (100, 300, 1000)


def parse_sizes(text: object, option: str = "--services") -> list[int]:
    """'3,6,12,24,48' -> [3, 6, 12, 24, 48]: at least three rising sizes (two to fit a line,
    one held out)."""
    parts = [p.strip() for p in str(text).split(",")]
    if any(not p for p in parts):
        raise UsageError(f"{option}: an empty size in {str(text)!r}")
    sizes = [parse_count(p, option, 1, MAX_SERVICES) for p in parts]
    if sizes != sorted(set(sizes)):
        raise UsageError(f"{option}: give the sizes rising, each once, e.g. 3,6,12,24,48 (got {text})")
    if len(sizes) < 3:
        raise UsageError(f"{option}: at least three sizes (two to fit, the largest held out), got {len(sizes)}")
    return sizes


def point(entry: dict[str, Any], services: int) -> dict[str, Any]:
    """One trial's point: its counts and, by name, every SCALE_FIGURES figure it measured."""
    out: dict[str, Any] = {
        "pattern": entry["pattern"], "trial": entry.get("trial", 1), "services": services,
        "nodes": entry.get("nodes"), "pods": entry.get("app_pods"),
        "containers_formula": entry.get("containers_formula"),
        "apiserver_watchers": (entry.get("apiserver") or {}).get("watchers"),
        "failed_requests": entry.get("failed_requests"), "app_pods_recreated": entry.get("app_pods_recreated"),
    }
    for scaled in SCALE_FIGURES:
        value = figure(scaled.name).of(entry)
        out[scaled.name] = value if isinstance(value, (int, float)) else None
    return out


def scale_document(points: Sequence[dict[str, Any]]) -> dict[str, Any]:
    """points, and per pattern and figure: the fit on every point, the largest size held out
    and predicted from the rest, the projection to PROJECT_TO services at the points' replicas
    per service."""
    fits: dict[str, dict[str, Any]] = {}
    models: dict[tuple[str, str], Fit] = {}
    held: dict[str, dict[str, Any]] = {}
    projection: dict[str, dict[str, Any]] = {}
    replicas = 2.0
    for pattern in dict.fromkeys(p["pattern"] for p in points):
        mine = [p for p in points if p["pattern"] == pattern and p.get("pods")]
        if not mine:
            continue
        replicas = mine[0]["pods"] / mine[0]["services"]  # the same at every size of a scale run
        for scaled in SCALE_FIGURES:
            usable = [p for p in mine if p.get(scaled.name) is not None]
            if len({p["services"] for p in usable}) < len(scaled.terms) + 1:
                continue  # too few sizes measured to fit and hold one out
            try:
                model = fit(usable, scaled.name, scaled.terms)
                result = holdout(usable, scaled.name, scaled.terms).as_dict()
            except UsageError as exc:  # the points cannot be fitted (a count that never moved): said in the document
                fits.setdefault(pattern, {})[scaled.name] = {"figure": scaled.name, "error": str(exc)}
                continue
            models[pattern, scaled.name] = model
            fits.setdefault(pattern, {})[scaled.name] = model.as_dict()
            result["target"] = scaled.target
            held.setdefault(pattern, {})[scaled.name] = result
            for services in PROJECT_TO:
                value, low, high = model.predict({"pods": services * replicas, "services": services})
                projection.setdefault(str(services), {}).setdefault(pattern, {})[scaled.name] = {
                    "predicted": round(value, 3), "band": [round(low, 3), round(high, 3)]}
    return {"points": list(points), "fits": fits, "holdout": held, "projection": projection, "crossovers": crossovers(models, replicas)}


def crossovers(models: dict[tuple[str, str], Fit], replicas: float) -> list[dict[str, Any]]:
    """Per fitted figure, where the sidecar pattern's line crosses each other pattern's, in
    services (replicas pods each) from 1 up to the largest projection: the size from which
    the order of the two flips, or None if it does not up there."""
    out = []
    for (pattern, name), side in models.items():
        if pattern != "sidecar":
            continue
        for (other, other_name), model in models.items():
            if other_name != name or other in ("sidecar", "none"):
                continue

            def counts(services: int) -> dict[str, float]:
                return {"pods": services * replicas, "services": services}

            first = side.value(counts(1)) - model.value(counts(1))
            out.append({"figure": name, "a": "sidecar", "b": other, "a_below_at_1": first < 0,
                        "crosses_at_services": crossover(side, model, counts, 1, max(PROJECT_TO))})
    return out
