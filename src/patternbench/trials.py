"""Repeated trials of a case -> one summary entry (medians, 95 % bootstrap intervals, every
trial kept), and the sidecar-vs-DaemonSet differences that count only when their interval
excludes zero. Pure functions on summary entries."""

from __future__ import annotations

import copy
import statistics
from typing import Any, Callable

from patternbench.stats import bootstrap_ci, bootstrap_difference

Entry = dict[str, Any]


def _before(quantile: str) -> Callable[[Entry], float | None]:
    return lambda e: ((e.get("latency_ms") or {}).get("before") or {}).get(quantile)


def _key(name: str) -> Callable[[Entry], float | None]:
    return lambda e: e.get(name)


# The figures that get an interval: name in summary.json (`<name>_ci95`) -> how to read it
# from one trial's entry. Latency is the steady state, before the upgrade.
CI_METRICS: dict[str, Callable[[Entry], float | None]] = {
    "downtime_s": _key("downtime_s"),
    "error_downtime_s": _key("error_downtime_s"),
    "slow_downtime_s": _key("slow_downtime_s"),
    "failed_requests": _key("failed_requests"),
    "latency_p50_ms": _before("p50"),
    "latency_p99_ms": _before("p99"),
    "agent_cpu_m_total": _key("agent_cpu_m_total"),
    "agent_memory_mib_total": _key("agent_memory_mib_total"),
    "agent_cpu_m_per_instance": _key("agent_cpu_m_per_instance"),
    "agent_memory_mib_per_instance": _key("agent_memory_mib_per_instance"),
}

# Where each interval's metric sits as a point value in the entry (for the plots and tables).
UNITS = {
    "downtime_s": "s", "error_downtime_s": "s", "slow_downtime_s": "s", "failed_requests": "requests",
    "latency_p50_ms": "ms", "latency_p99_ms": "ms", "agent_cpu_m_total": "millicores",
    "agent_memory_mib_total": "MiB", "agent_cpu_m_per_instance": "millicores", "agent_memory_mib_per_instance": "MiB",
}


def _is_number(value: Any) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool)


def _median(values: list[Any]) -> Any:
    """Median of numbers (None if any trial lacks the figure: a median of the rest would hide it)."""
    if not values or any(not _is_number(v) for v in values):
        return None
    m = statistics.median(values)
    return round(m, 6) if isinstance(m, float) else m


def metric_values(trials: list[Entry], metric: str) -> list[float]:
    """One figure over the trials that measured it."""
    read = CI_METRICS[metric]
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
    entry["missing"] = sorted({m for t in trials for m in t.get("missing") or []})
    entry["invalid"] = any(t.get("invalid") for t in trials)
    entry["trials"] = [copy.deepcopy(t) for t in trials]
    for metric in CI_METRICS:
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
        for metric in CI_METRICS:
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
