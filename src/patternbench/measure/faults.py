"""Faults: what a fault hit and cost in its window, from the requests and the pod watch.

Pure functions from records to numbers: nothing here talks to a cluster."""

from __future__ import annotations

from typing import Any

from patternbench.measure.records import Record, ok
from patternbench.measure.via import parse_via


def touches(record: Record, instance: str) -> bool:
    """Whether a request's Via trails name this proxy instance ('sidecar/<pod>', 'node/<node>')."""
    if instance in {e.instance for e in parse_via(record.get("via"))}:
        return True
    return any(instance in {e.instance for e in parse_via(c.get("via"))} for c in record.get("calls") or [])


def recovered_at(pod_records: list[Record], pod: str, container: str, start: float) -> float | None:
    """When the fault's target was serving again: the first Ready record of the pod after the
    start (for a DaemonSet that deleted it, of its successor on the same node is not tracked)
    that follows a not-Ready one or shows the container restarted."""
    before = None
    for r in sorted(pod_records, key=lambda r: r["t"]):
        if r.get("pod") != pod:
            continue
        if r["t"] < start:
            before = (r.get("restarts") or {}).get(container, 0)
            continue
        restarted = before is not None and (r.get("restarts") or {}).get(container, 0) > before
        if r.get("ready") and (restarted or went_down_since(pod_records, pod, start, r["t"])):
            return r["t"]
    return None


def went_down_since(pod_records: list[Record], pod: str, start: float, until: float) -> bool:
    return any(r.get("pod") == pod and start <= r["t"] < until and not r.get("ready") for r in pod_records)


def affected(pod_records: list[Record], start: float, end: float) -> tuple[list[str], list[str]]:
    """Pods that were not Ready, or whose containers restarted, in [start, end); their nodes."""
    last_restarts: dict[str, int] = {}
    pods, nodes = set(), set()
    for r in sorted(pod_records, key=lambda r: r["t"]):
        total = sum((r.get("restarts") or {}).values())
        if start <= r["t"] < end and r.get("event") != "DELETED" and (not r.get("ready") or total > last_restarts.get(r["pod"], total)):
            pods.add(r["pod"])
            if r.get("node"):
                nodes.add(r["node"])
        last_restarts[r["pod"]] = total
    return sorted(pods), sorted(nodes)


def fault_impact(
    users: list[Record], probes: list[Record], pod_records: list[Record],
    fault_start: float, fault_end: float, end: float, instance: str | None,
    target_pod: str | None = None, target_container: str | None = None,
) -> dict[str, Any]:
    """What one fault cost, from the records alone.

    The fault's window runs from its injection to the latest of: its end, the target's
    recovery (Ready again, from the pod watch), the last failed request. `blast_radius` is
    the share of requests (users and probes) started in that window that failed;
    `expected_blast_radius` the share of requests before the fault whose trail passed the
    faulted proxy instance (what the model says a dead instance can fail at most; None when
    the fault is not on the request path). By path: the failed share of the user requests
    per entry pod and per the node it ran on (failed requests that never reached an app
    have no trail: `unattributed`)."""
    recovered = recovered_at(pod_records, target_pod, target_container or "", fault_start) if target_pod else None
    failures = [r["t"] for r in users + probes if fault_start <= r["t"] < end and not ok(r)]
    window_end = min(end, max([fault_end, recovered or fault_end, *(t + 1e-6 for t in failures)]))
    window = [r for r in users + probes if fault_start <= r["t"] < window_end]
    failed = [r for r in window if not ok(r)]
    by_node: dict[str, dict[str, Any]] = {}
    by_pod: dict[str, dict[str, Any]] = {}
    unattributed = 0
    for r in window:
        if r.get("kind") != "user":
            continue
        entry = r.get("entry") or [None, None]
        if not entry[0]:
            unattributed += 0 if ok(r) else 1
            continue
        for table, key in ((by_node, entry[1] or "?"), (by_pod, entry[0])):
            row = table.setdefault(key, {"requests": 0, "failed": 0})
            row["requests"] += 1
            row["failed"] += 0 if ok(r) else 1
    for row in [*by_node.values(), *by_pod.values()]:
        row["share_failed"] = round(row["failed"] / row["requests"], 4)
    expected = None
    if instance is not None:
        before = [r for r in users if r["t"] < fault_start and ok(r)]
        expected = round(sum(touches(r, instance) for r in before) / len(before), 4) if before else None
    pods, nodes = affected(pod_records, fault_start, window_end)
    return {
        "window_s": round(window_end - fault_start, 3),
        "requests_in_window": len(window),
        "failed_in_window": len(failed),
        "blast_radius": round(len(failed) / len(window), 4) if window else 0.0,
        "expected_blast_radius": expected,
        "blast_radius_by_node": dict(sorted(by_node.items())),
        "blast_radius_by_entry_pod": dict(sorted(by_pod.items())),
        "unattributed_failures": unattributed,
        "affected_pods": pods,
        "affected_nodes": nodes,
        "detect_s": round(min(failures) - fault_start, 3) if failures else None,
        "failure_span_s": round(max(failures) - min(failures), 3) if failures else None,
        "recovery_s": round(recovered - fault_start, 3) if recovered is not None else None,
    }
