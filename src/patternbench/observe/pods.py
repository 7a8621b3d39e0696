"""Pod events on the run's timeline: created, deleted, readiness flips, restartCount changes.

`t` is when the watch delivered the event; the times the API server stamped (`created`,
`ready_since`, the Ready condition's last transition, and `deleted_at`, all wall clock, 1 s
resolution)
say when the pod changed, which a late delivery would otherwise hide.
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

from kubernetes import client

from patternbench.observe.watch import NamespacedWatcher


def pod_record(event_type: str, pod: client.V1Pod) -> dict[str, Any]:
    statuses = (pod.status.container_statuses or []) + (pod.status.init_container_statuses or [])
    ready_condition = next((c for c in pod.status.conditions or [] if c.type == "Ready"), None)
    ready = ready_condition is not None and ready_condition.status == "True"
    since = ready_condition.last_transition_time if ready_condition is not None else None
    return {
        "t": time.monotonic(),
        "event": event_type,
        "namespace": pod.metadata.namespace,
        "pod": pod.metadata.name,
        "uid": pod.metadata.uid,
        "role": (pod.metadata.labels or {}).get("patternbench.dev/role", ""),
        "app": (pod.metadata.labels or {}).get("app.kubernetes.io/name", ""),
        "node": pod.spec.node_name,
        "images": {c.name: c.image for c in (pod.spec.containers or []) + (pod.spec.init_containers or [])},
        "phase": pod.status.phase,
        "ready": ready,
        "deleting": pod.metadata.deletion_timestamp is not None,
        "ip": pod.status.pod_ip,
        "ready_since": since.timestamp() if since is not None else None,
        "created": pod.metadata.creation_timestamp.timestamp() if pod.metadata.creation_timestamp else None,
        # deletionTimestamp is when the grace period ends; less the grace: when it was deleted.
        "deleted_at": (pod.metadata.deletion_timestamp.timestamp() - (pod.metadata.deletion_grace_period_seconds or 0)) if pod.metadata.deletion_timestamp else None,
        "restarts": {c.name: c.restart_count for c in statuses},
        # Where each container's CPU run and wait times are read (observe/host.SchedSampler).
        "container_ids": {c.name: c.container_id.split("://", 1)[-1] for c in statuses if c.container_id},
        "owner": (pod.metadata.owner_references or [None])[0].kind if pod.metadata.owner_references else None,
    }


class PodWatcher(NamespacedWatcher):
    """Writes pods.jsonl for the given namespaces until stopped."""

    def __init__(self, api: client.ApiClient, namespaces: list[str], out: Path) -> None:
        super().__init__(client.CoreV1Api(api).list_namespaced_pod, pod_record, namespaces, out)


def failed_creates(core: client.CoreV1Api, namespace: str) -> list[dict[str, Any]]:
    """The namespace's FailedCreate events (a controller's pod creation the API server
    refused), as the event recorder folded them: message, count, first and last time."""
    events = core.list_namespaced_event(namespace, field_selector="reason=FailedCreate", _request_timeout=15).items
    return [{
        "reason": e.reason, "message": e.message, "count": e.count or 1,
        "object": f"{e.involved_object.kind}/{e.involved_object.name}",
        "first": e.first_timestamp.isoformat() if e.first_timestamp else None,
        "last": e.last_timestamp.isoformat() if e.last_timestamp else None,
    } for e in events]


def warning_events(core: client.CoreV1Api, namespaces: list[str]) -> list[dict[str, Any]]:
    """The namespaces' Warning events (failed readiness probes, kills, back-offs), as the event
    recorder folded them: evidence for a failure's cause, with first and last time (wall)."""
    out = []
    for namespace in namespaces:
        for e in core.list_namespaced_event(namespace, field_selector="type=Warning", _request_timeout=15).items:
            out.append({
                "namespace": namespace, "reason": e.reason, "message": (e.message or "")[:300], "count": e.count or 1,
                "object": f"{e.involved_object.kind}/{e.involved_object.name}",
                "first": e.first_timestamp.timestamp() if e.first_timestamp else None,
                "last": e.last_timestamp.timestamp() if e.last_timestamp else None,
            })
    return out
