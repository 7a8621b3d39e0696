"""The scale run's document (`<run>/scale.json`), from the trials measured at each size: one
point per trial, then per pattern and figure the fit, the held-out largest size and the
projection. Which figures are fitted, in which counts, and how close the held-out prediction
must come is declared once here (SCALE_FIGURES); the figures' paths are figures.py's.

Pure functions over summary entries: nothing here touches a cluster.
"""

from __future__ import annotations

from contextlib import suppress
from dataclasses import dataclass
from typing import Any, Sequence

from patternbench.errors import UsageError
from patternbench.options import parse_count
from patternbench.scale_model import INTERCEPT, Fit, crossover, fit, holdout, term_value
from patternbench.specs.figures import figure
from patternbench.specs.generated_topology import MAX_SERVICES


@dataclass(frozen=True)
class ScaleFigure:
    """A figure fitted against size: the counts it grows with, and the largest relative error
    its held-out prediction may have (None: stated, not held to a bound)."""

    name: str  # a figures.py figure
    terms: tuple[str, ...]
    target: float | None


# The counts each figure is fitted in. "nodes" only enters a fit whose points span several node
# counts (the node axis); without it the node count is constant and folds into the intercept.
SCALE_FIGURES: tuple[ScaleFigure, ...] = (
    ScaleFigure("containers_total", ("1", "pods", "nodes"), 0.15),
    ScaleFigure("agent_memory_mib_total", ("1", "pods", "nodes"), 0.15),
    ScaleFigure("apiserver_endpointslice_watchers", ("1", "pods", "nodes"), 0.15),
    ScaleFigure("agent_cpu_m_total", ("1", "pods", "nodes"), None),
    ScaleFigure("apiserver_cpu_cores", ("1", "pods", "nodes"), None),
    # Every endpoint change goes to every watcher: pods x changes, and a sidecar roll changes every pod.
    ScaleFigure("apiserver_upgrade_endpointslice_events", ("1", "pods", "pods*pods", "nodes"), None),
    # A sidecar roll recreates every pod; a DaemonSet's replaces one agent per node.
    ScaleFigure("upgrade_duration_s", ("1", "pods", "nodes"), None),
    ScaleFigure("app_pod_start_p50_s", ("1", "pods"), None),
)
# The patterns a scale run measures unless --pattern says otherwise (the five).
DEFAULT_SCALE_PATTERNS = ("none", "sidecar", "daemonset", "hybrid", "ambient-l4")
DEFAULT_SIZES = "3,6,12,24,48"
# Counts a projection is made at (the 100, 300 and 1000 services on 10 and 50 nodes).
PROJECT_TO = (100, 300, 1000)
PROJECT_NODES = (10, 50)
# The two axes of a scale run: services at a fixed node count, nodes at a fixed service count.
SERVICES_AXIS, NODES_AXIS = "services", "nodes"
MAX_AXIS_NODES = 200


@dataclass(frozen=True)
class NodeAxis:
    """The node axis: the cluster rebuilt (resized) at each count, `services` measured there."""

    counts: tuple[int, ...]
    services: int


def parse_sizes(text: object, option: str = "--services", most: int = MAX_SERVICES) -> list[int]:
    """'3,6,12,24,48' -> [3, 6, 12, 24, 48]: at least three rising sizes (two to fit a line,
    one held out)."""
    parts = [p.strip() for p in str(text).split(",")]
    if any(not p for p in parts):
        raise UsageError(f"{option}: an empty size in {str(text)!r}")
    sizes = [parse_count(p, option, 1, most) for p in parts]
    if sizes != sorted(set(sizes)):
        raise UsageError(f"{option}: give the sizes rising, each once, e.g. 3,6,12,24,48 (got {text})")
    if len(sizes) < 3:
        raise UsageError(f"{option}: at least three sizes (two to fit, the largest held out), got {len(sizes)}")
    return sizes


def parse_nodes(text: object) -> tuple[int, list[int]]:
    """scale's --nodes: one count (every point on that many nodes, no node axis) or the node
    axis, three or more rising counts. Returns (the count the services axis runs on, the axis
    or [])."""
    if "," not in str(text):
        return parse_count(str(text).strip(), "--nodes", 1, MAX_AXIS_NODES), []
    return 3, parse_sizes(text, "--nodes", MAX_AXIS_NODES)


def point(entry: dict[str, Any], services: int, axis: str = SERVICES_AXIS) -> dict[str, Any]:
    """One trial's point: its counts and, by name, every SCALE_FIGURES figure it measured."""
    out: dict[str, Any] = {
        "pattern": entry["pattern"], "trial": entry.get("trial", 1), "axis": axis, "services": services,
        "nodes": entry.get("nodes"), "pods": entry.get("app_pods"),
        "containers_formula": entry.get("containers_formula"),
        "apiserver_watchers": (entry.get("apiserver") or {}).get("watchers"),
        "failed_requests": entry.get("failed_requests"), "app_pods_recreated": entry.get("app_pods_recreated"),
    }
    for scaled in SCALE_FIGURES:
        value = figure(scaled.name).of(entry)
        out[scaled.name] = value if isinstance(value, (int, float)) else None
    return out


def varying_terms(points: Sequence[dict[str, Any]], terms: Sequence[str]) -> tuple[str, ...]:
    """The terms whose counts change over the points (the intercept always): a count that
    never moved cannot be told from the constant."""
    def moves(term: str) -> bool:
        return len({term_value(p, term) for p in points}) > 1

    return tuple(t for t in terms if t == INTERCEPT or moves(t))


def scale_document(points: Sequence[dict[str, Any]]) -> dict[str, Any]:
    """points, and per pattern and figure: the fit on every point, the largest service count
    (and, with a node axis, the largest node count) held out and predicted from the rest, the
    projection to PROJECT_TO services on PROJECT_NODES nodes (on the measured node count when
    the node count did not vary), and the crossovers."""
    fits: dict[str, dict[str, Any]] = {}
    models: dict[tuple[str, str], Fit] = {}
    held: dict[str, dict[str, Any]] = {}
    held_nodes: dict[str, dict[str, Any]] = {}
    projection: dict[str, dict[str, Any]] = {}
    replicas = 2.0
    measured_nodes = [p["nodes"] for p in points if p.get("axis", SERVICES_AXIS) == SERVICES_AXIS and p.get("nodes")]
    for pattern in dict.fromkeys(p["pattern"] for p in points):
        mine = [p for p in points if p["pattern"] == pattern and p.get("pods") and p.get("nodes")]
        if not mine:
            continue
        replicas = mine[0]["pods"] / mine[0]["services"]  # the same at every size of a scale run
        for scaled in SCALE_FIGURES:
            usable = [p for p in mine if p.get(scaled.name) is not None]
            terms = varying_terms(usable, scaled.terms)
            on_services = [p for p in usable if p.get("axis", SERVICES_AXIS) == SERVICES_AXIS]
            if len({p["services"] for p in on_services}) < len(terms) + 1 - ("nodes" in terms):
                continue  # too few sizes measured to fit and hold one out
            try:
                model = fit(usable, scaled.name, terms)
                result = holdout(usable, scaled.name, terms).as_dict()
            except UsageError as exc:  # the points cannot be fitted (a count that never moved): said in the document
                fits.setdefault(pattern, {})[scaled.name] = {"figure": scaled.name, "error": str(exc)}
                continue
            models[pattern, scaled.name] = model
            fits.setdefault(pattern, {})[scaled.name] = model.as_dict()
            result["target"] = scaled.target
            held.setdefault(pattern, {})[scaled.name] = result
            if "nodes" in terms:
                with suppress(UsageError):  # the node axis alone cannot be fitted without its largest count
                    result = holdout(usable, scaled.name, terms, size_key="nodes").as_dict()
                    result["target"] = scaled.target
                    held_nodes.setdefault(pattern, {})[scaled.name] = result
            at_nodes = PROJECT_NODES if "nodes" in terms else tuple(sorted(set(measured_nodes)))[:1]
            for services in PROJECT_TO:
                cell = projection.setdefault(str(services), {}).setdefault(pattern, {})[scaled.name] = {"nodes_in_model": "nodes" in terms, "nodes": {}}
                for nodes in at_nodes:
                    value, low, high = model.predict({"pods": services * replicas, "services": services, "nodes": nodes})
                    cell["nodes"][str(nodes)] = {"predicted": round(value, 3), "band": [round(low, 3), round(high, 3)]}
    return {"points": list(points), "fits": fits, "holdout": held, "holdout_nodes": held_nodes, "projection": projection,
            "crossovers": crossovers(models, replicas, measured_nodes[0] if measured_nodes else 3)}


def crossovers(models: dict[tuple[str, str], Fit], replicas: float, measured_nodes: int) -> list[dict[str, Any]]:
    """Per fitted figure, where the sidecar pattern's line crosses each other pattern's, in
    services (replicas pods each) from 1 up to the largest projection, on each PROJECT_NODES
    node count where both fits know the node count (else on the measured one): the size from
    which the order of the two flips, or None if it does not up there."""
    out = []
    for (pattern, name), side in models.items():
        if pattern != "sidecar":
            continue
        for (other, other_name), model in models.items():
            if other_name != name or other in ("sidecar", "none"):
                continue
            with_nodes = "nodes" in side.terms or "nodes" in model.terms
            for nodes in PROJECT_NODES if with_nodes else (measured_nodes,):

                def counts(services: int, nodes: int = nodes) -> dict[str, float]:
                    return {"pods": services * replicas, "services": services, "nodes": nodes}

                first = side.value(counts(1)) - model.value(counts(1))
                out.append({"figure": name, "a": "sidecar", "b": other, "nodes": nodes, "a_below_at_1": first < 0,
                            "crosses_at_services": crossover(side, model, counts, 1, max(PROJECT_TO))})
    return out
