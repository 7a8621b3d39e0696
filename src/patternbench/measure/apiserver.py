"""The API server's side of a pattern, from its own /metrics: open watches per resource (a
sidecar mesh proxy watches EndpointSlices from every pod, a node proxy once per node), the
watch events and bytes it sends, its requests by verb, its CPU and memory, and what etcd
holds. A snapshot is read at the start and the end of a steady phase; counters become rates
over the phase, gauges are read at its end.
"""

from __future__ import annotations

from collections import defaultdict
from dataclasses import dataclass, field
from typing import Any

from prometheus_client.parser import text_string_to_metric_families

MIB = 1024 * 1024
# The metrics parse_metrics reads: the scrapes keep these lines only.
READ_METRICS = frozenset({
    "apiserver_longrunning_requests", "apiserver_watch_events_total", "apiserver_watch_events_sizes_sum",
    "apiserver_request_total", "apiserver_storage_objects", "apiserver_storage_size_bytes",
    "process_cpu_seconds_total", "process_resident_memory_bytes",
})
STEADY = ("steady_start", "steady_end")  # the scrapes' labels, at the ends of the steady phase
UPGRADE = ("upgrade_start", "upgrade_end")  # ... and of the upgrade (every endpoint change, fanned out)


@dataclass(frozen=True)
class ApiServerSnapshot:
    watchers: dict[str, int] = field(default_factory=dict)  # resource -> open WATCH requests
    watch_events: dict[str, float] = field(default_factory=dict)  # resource -> events sent (counter)
    watch_bytes: dict[str, float] = field(default_factory=dict)  # resource -> bytes of those events (counter)
    requests: dict[str, float] = field(default_factory=dict)  # verb -> requests served (counter)
    cpu_s: float = 0.0
    rss_bytes: float = 0.0
    objects: dict[str, int] = field(default_factory=dict)  # resource -> objects in storage
    storage_bytes: float = 0.0  # etcd's database, as the API server last saw it


def short_resource(name: str) -> str:
    """'endpointslices.discovery.k8s.io' (storage metrics) -> 'endpointslices' (the others' label)."""
    return name.split(".", 1)[0]


def parse_metrics(text: str) -> ApiServerSnapshot:
    """A snapshot from the Prometheus text of the API server's /metrics."""
    watchers: dict[str, int] = defaultdict(int)
    events: dict[str, float] = defaultdict(float)
    sizes: dict[str, float] = defaultdict(float)
    requests: dict[str, float] = defaultdict(float)
    objects: dict[str, int] = {}
    cpu = rss = storage = 0.0
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            name, labels, value = sample.name, sample.labels, sample.value
            if name == "apiserver_longrunning_requests" and labels.get("verb") == "WATCH":
                watchers[labels.get("resource", "")] += int(value)
            elif name == "apiserver_watch_events_total":
                events[labels.get("resource") or labels.get("kind", "")] += value
            elif name == "apiserver_watch_events_sizes_sum":
                sizes[labels.get("resource") or labels.get("kind", "")] += value
            elif name == "apiserver_request_total":
                requests[labels.get("verb", "")] += value
            elif name == "apiserver_storage_objects":
                objects[short_resource(labels.get("resource", ""))] = int(value)
            elif name == "apiserver_storage_size_bytes":
                storage += value
            elif name == "process_cpu_seconds_total":
                cpu = value
            elif name == "process_resident_memory_bytes":
                rss = value
    return ApiServerSnapshot(dict(watchers), dict(events), dict(sizes), dict(requests), cpu, rss, objects, storage)


def _delta(start: dict[str, float], end: dict[str, float]) -> dict[str, float]:
    """What each counter gained (a counter that went down, the API server restarted: from 0)."""
    out = {}
    for k, v in sorted(end.items()):
        gained = v - start.get(k, 0.0) if v >= start.get(k, 0.0) else v
        if gained > 0:
            out[k] = gained
    return out


def _per_s(start: dict[str, float], end: dict[str, float], seconds: float) -> dict[str, float]:
    return {k: round(v / seconds, 3) for k, v in _delta(start, end).items()}


def phase_figures(start: ApiServerSnapshot, end: ApiServerSnapshot, seconds: float) -> dict[str, Any]:
    """What the API server did over a phase of `seconds`: rates from the counters, the
    gauges at its end (open watches: the larger of its two ends). A counter that went down (the API server restarted) counts from 0."""
    if seconds <= 0:
        raise ValueError(f"a phase of {seconds} s")
    return {
        # Open watches, the larger reading of the phase's two ends: a client whose watch broke
        # (the host starved for a few seconds) is missing until it re-opens it. Seen in a
        # control trial at 6 services: 9 EndpointSlice watches at the start, 8 at the end.
        "watchers": {k: max(start.watchers.get(k, 0), end.watchers.get(k, 0)) for k in sorted(set(start.watchers) | set(end.watchers))},
        "watch_events": {k: int(v) for k, v in _delta(start.watch_events, end.watch_events).items()},
        "watch_events_per_s": _per_s(start.watch_events, end.watch_events, seconds),
        "watch_kib_per_s": {k: round(v / 1024, 3) for k, v in _per_s(start.watch_bytes, end.watch_bytes, seconds).items()},
        "requests_per_s": _per_s(start.requests, end.requests, seconds),
        "cpu_cores": round(max(0.0, end.cpu_s - (start.cpu_s if end.cpu_s >= start.cpu_s else 0.0)) / seconds, 4),
        "rss_mib": round(end.rss_bytes / MIB, 1),
        "objects": dict(sorted(end.objects.items())),
        "storage_mib": round(end.storage_bytes / MIB, 2),
    }


def figures_between(records: list[dict[str, Any]], labels: tuple[str, str]) -> dict[str, Any] | None:
    """The API server's figures between two scrapes of a trial (apiserver.jsonl), by their
    labels (STEADY, UPGRADE); None without both, only `error` when the cluster refused them."""
    by_label = {r.get("label"): r for r in records}
    start, end = by_label.get(labels[0]), by_label.get(labels[1])
    if start is None or end is None:
        return None
    errors = [r["error"] for r in (start, end) if "error" in r]
    if errors:
        return {"error": errors[0]}
    try:
        figures = phase_figures(parse_metrics(start["text"]), parse_metrics(end["text"]), end["t"] - start["t"])
    except ValueError as exc:  # a scrape that does not parse, a phase of no length: said, not fatal to the report
        return {"error": f"{type(exc).__name__}: {exc}"[:300]}
    figures["seconds"] = round(end["t"] - start["t"], 2)
    return figures
