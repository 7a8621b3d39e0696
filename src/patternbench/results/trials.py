"""Repeated trials of a case -> one summary entry (medians, 95 % bootstrap intervals, every
trial kept), and the sidecar-vs-DaemonSet differences that count only when their interval
excludes zero. Pure functions on summary entries."""

from __future__ import annotations

import copy
import statistics
from typing import Any

from patternbench.specs import figures
from patternbench.specs.figures import figure, with_interval
from patternbench.stats import bootstrap_ci, bootstrap_difference

Entry = dict[str, Any]


def _is_number(value: Any) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool)


def _median(values: list[Any]) -> Any:
    """Median of numbers (None if any trial lacks the figure: a median of the rest would hide it)."""
    if not values or any(not _is_number(v) for v in values):
        return None
    m = statistics.median(values)
    return round(m, 6) if isinstance(m, float) else m


def _set_median(entry: Entry, path: tuple[str, ...], values: list[Any]) -> None:
    """The median at `path`, where the entry (the first trial's copy) holds a number there."""
    *parents, leaf = path
    holder: Any = entry
    for key in parents:
        holder = holder.get(key) if isinstance(holder, dict) else None
    if isinstance(holder, dict) and _is_number(holder.get(leaf)):
        holder[leaf] = _median(values)


def metric_values(trials: list[Entry], metric: str) -> list[float]:
    """One figure over the trials that measured it."""
    read = figure(metric).of
    return [float(v) for v in (read(t) for t in trials) if _is_number(v)]


def aggregate(trials: list[Entry]) -> Entry:
    """One case's entry from its trials (in trial order): numeric figures and latency
    percentiles are the trials' medians; `missing` is every trial's; `invalid` if any trial
    was; structural figures (hop trails, requests per agent, containers) are the first
    trial's and every trial's own are in `trials`. `<metric>_ci95` is the 95 % bootstrap
    interval of the median, None with fewer than two trials."""
    if not trials:
        raise ValueError("no trials")
    entry = copy.deepcopy(trials[0])
    for key, value in trials[0].items():
        if _is_number(value) or (value is None and any(_is_number(t.get(key)) for t in trials)):
            entry[key] = _median([t.get(key) for t in trials])
    latency = copy.deepcopy(trials[0].get("latency_ms") or {})
    for phase, quantiles in latency.items():
        if isinstance(quantiles, dict):
            for q in quantiles:
                quantiles[q] = _median([((t.get("latency_ms") or {}).get(phase) or {}).get(q) for t in trials])
    entry["latency_ms"] = latency
    for f in figures.FIGURES.values():  # a figure deeper in the entry than these is a median too
        _set_median(entry, f.path, [f.of(t) for t in trials])
    entry["missing"] = sorted({m for t in trials for m in t.get("missing") or []})
    entry["invalid"] = any(t.get("invalid") for t in trials)
    entry["trials"] = [copy.deepcopy(t) for t in trials]
    for metric in (f.name for f in with_interval()):
        values = metric_values(trials, metric)
        ci = bootstrap_ci(values) if len(values) >= 2 else None
        entry[f"{metric}_ci95"] = [round(ci.low, 6), round(ci.high, 6)] if ci else None
    return entry


def differences(cases: dict[str, Entry], a: str = "sidecar", b: str = "daemonset") -> list[dict[str, Any]]:
    """Pattern `a` minus pattern `b`, per agent (and naive variant) and metric: the difference
    of the medians over their trials, its 95 % bootstrap interval, and whether that interval
    excludes zero. With fewer than two trials on a side there is no interval to judge by."""
    rows = []
    for name_a, ea in cases.items():
        if ea.get("pattern") != a:
            continue
        eb = next((e for e in cases.values() if e.get("pattern") == b and e.get("agent") == ea.get("agent") and e.get("naive") == ea.get("naive")), None)
        if eb is None:
            continue
        ta, tb = ea.get("trials") or [ea], eb.get("trials") or [eb]
        for metric in (f.name for f in with_interval()):
            va, vb = metric_values(ta, metric), metric_values(tb, metric)
            if not va or not vb:
                continue
            enough = len(va) >= 2 and len(vb) >= 2
            diff = bootstrap_difference(va, vb)
            assert diff is not None
            rows.append({
                "metric": metric,
                "a": name_a,
                "b": eb["case"],
                "difference": round(diff.value, 6),
                "ci95": [round(diff.low, 6), round(diff.high, 6)] if enough else None,
                "excludes_zero": diff.excludes_zero() if enough else None,
                "trials": [len(va), len(vb)],
            })
    return rows
