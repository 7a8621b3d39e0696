"""Rollouts: nodes down at once in a DaemonSet's rollout, app pods recreated and restarted,
pods admitted or refused.

Pure functions from records to numbers: nothing here talks to a cluster."""

from __future__ import annotations

import math
from dataclasses import dataclass

from patternbench.measure.records import Record


@dataclass(frozen=True)
class NodeRollout:
    """One node's agent replacement in a DaemonSet rollout, in seconds from the upgrade's
    start: when the old instance stopped serving (not Ready, deleting or gone) and when the
    new one became Ready. Down only if the first came before the second."""

    workload: str
    node: str
    old_stopped_s: float | None
    new_ready_s: float | None

    @property
    def down_s(self) -> float:
        if self.old_stopped_s is None or self.new_ready_s is None:
            return 0.0 if self.new_ready_s is not None else math.inf
        return max(0.0, self.new_ready_s - self.old_stopped_s)

    @property
    def down_interval(self) -> tuple[float, float] | None:
        if self.down_s <= 0:
            return None
        start = self.old_stopped_s if self.old_stopped_s is not None else 0.0
        return (start, start + self.down_s)


def node_rollouts(pod_records: list[Record], start: float, end: float) -> list[NodeRollout]:
    """Each node's agent replacement during [start, end), from the pod watch: agent pods
    (role `agent`) that existed before `start` are the old instances, those that appeared
    after it the new ones."""
    # DaemonSet pods only: a per-service agent's Deployment (the ambient waypoints) rolls
    # by the scheduler's choice of nodes, with no node "down". (Records written before the
    # owner was recorded have none, and count as before.)
    pod_records = [r for r in pod_records if r.get("owner") in (None, "DaemonSet")]
    first_seen: dict[str, float] = {}
    for r in sorted(pod_records, key=lambda r: r["t"]):
        if r.get("role") == "agent":
            first_seen.setdefault(r["uid"], r["t"])
    old: dict[tuple[str, str], float | None] = {}
    new: dict[tuple[str, str], float | None] = {}
    for r in sorted(pod_records, key=lambda r: r["t"]):
        if r.get("role") != "agent" or not r.get("node") or r["t"] >= end:
            continue
        key = (r.get("app") or "", r["node"])
        if first_seen[r["uid"]] < start:
            old.setdefault(key, None)
            stopped = r["event"] == "DELETED" or r.get("deleting") or not r.get("ready")
            if r["t"] >= start and stopped and old[key] is None:
                old[key] = r["t"] - start
        else:
            new.setdefault(key, None)
            if r.get("ready") and not r.get("deleting") and new[key] is None:
                new[key] = r["t"] - start
    keys = sorted(set(old) | set(new))
    return [NodeRollout(w, n, old.get((w, n)), new.get((w, n))) for w, n in keys if (w, n) in new]


def max_concurrent(intervals: list[tuple[float, float]]) -> int:
    """The most intervals open at one moment (an interval ending where another starts does not overlap it)."""
    events = sorted([(s, 1) for s, _ in intervals] + [(e, -1) for _, e in intervals], key=lambda x: (x[0], x[1]))
    most = current = 0
    for _, step in events:
        current += step
        most = max(most, current)
    return most


def pods_created(pod_records: list[Record], role: str, start: float, end: float) -> list[str]:
    """Pods of `role` the pod watch first saw in [start, end): created in that window."""
    first: dict[str, float] = {}
    for r in pod_records:
        if r.get("role") == role:
            first.setdefault(r["pod"], r["t"])
    return sorted(p for p, t in first.items() if start <= t < end)


def pods_without(pod_records: list[Record], role: str, container: str) -> list[str]:
    """Pods of `role` the pod watch saw running without `container` in their spec (an app
    pod admitted without its sidecar)."""
    return sorted({r["pod"] for r in pod_records if r.get("role") == role and container not in (r.get("images") or {})})


def webhook_refusals(events: list[Record]) -> int:
    """Pod creations the API server refused because a webhook call failed, from the
    controllers' FailedCreate events (their `count` folds repeats; the event recorder's spam
    filter may drop some past 25 per object, so this is a floor)."""
    return sum(int(e.get("count") or 1) for e in events if e.get("reason") == "FailedCreate" and "webhook" in (e.get("message") or ""))


def pod_changes(before: dict[str, dict[str, int]], after: dict[str, dict[str, int]]) -> dict[str, int]:
    """Pods (name -> container restart counts) before and after: how many were recreated,
    and how many containers of the surviving pods restarted."""
    recreated = len(set(before) - set(after))
    restarts = 0
    for pod, counts in after.items():
        if pod in before:
            restarts += sum(max(0, n - before[pod].get(c, 0)) for c, n in counts.items())
    return {"app_pods_recreated": recreated, "app_container_restarts": restarts}


def pod_start_s(pod_records: list[Record], role: str = "app") -> dict[str, float] | None:
    """How long the pods of a role took from creation to Ready (the API server's stamps, 1 s
    resolution: a start under a second reads 0 or 1), p50 and p99 over every pod the watch
    saw become ready; a sidecar adds a container every pod must start before it is Ready."""
    starts: dict[str, float] = {}
    for r in pod_records:
        # ready_since is the Ready condition's last transition, to False as well: only a
        # record that is ready dates the start.
        if r.get("role") == role and r.get("ready") and r.get("created") is not None and r.get("ready_since") is not None:
            starts.setdefault(r["pod"], max(0.0, r["ready_since"] - r["created"]))
    if not starts:
        return None
    values = sorted(starts.values())

    def q(p: float) -> float:
        return values[min(len(values) - 1, math.ceil(p * len(values)) - 1)]

    return {"p50": q(0.5), "p99": q(0.99), "pods": len(values)}
