"""Pod events on the run's timeline: created, deleted, readiness flips, restartCount changes.

The official client's watch, with a server-side timeout and a client request timeout (a
dropped connection cannot hang it), re-listing when the API answers 410 Gone.
"""

from __future__ import annotations

import json
import threading
import time
from pathlib import Path
from typing import Any

from kubernetes import client, watch
from kubernetes.client.rest import ApiException


def pod_record(event_type: str, pod: client.V1Pod) -> dict[str, Any]:
    statuses = (pod.status.container_statuses or []) + (pod.status.init_container_statuses or [])
    ready = any(c.type == "Ready" and c.status == "True" for c in pod.status.conditions or [])
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
        "restarts": {c.name: c.restart_count for c in statuses},
        "owner": (pod.metadata.owner_references or [None])[0].kind if pod.metadata.owner_references else None,
    }


class PodWatcher:
    """Writes pods.jsonl for the given namespaces until stopped."""

    def __init__(self, api: client.ApiClient, namespaces: list[str], out: Path) -> None:
        self.core = client.CoreV1Api(api)
        self.namespaces = namespaces
        self.out = out
        self._stop = threading.Event()
        self._threads: list[threading.Thread] = []
        self._watches: list[watch.Watch] = []
        self._lock = threading.Lock()
        self._handle = out.open("a", buffering=1)

    def _write(self, record: dict[str, Any]) -> None:
        with self._lock:
            self._handle.write(json.dumps(record) + "\n")

    def _run(self, namespace: str) -> None:
        resource_version = ""
        while not self._stop.is_set():
            try:
                if not resource_version:
                    listed = self.core.list_namespaced_pod(namespace, _request_timeout=10)
                    for pod in listed.items:
                        self._write(pod_record("LISTED", pod))
                    resource_version = listed.metadata.resource_version
                w = watch.Watch()
                with self._lock:
                    self._watches.append(w)
                if self._stop.is_set():
                    break
                stream = w.stream(
                    self.core.list_namespaced_pod, namespace, resource_version=resource_version,
                    timeout_seconds=5, _request_timeout=15,
                )
                for event in stream:
                    if event["type"] == "ERROR":
                        resource_version = ""  # 410 Gone arrives as an ERROR event: re-list
                        break
                    pod = event["object"]
                    resource_version = pod.metadata.resource_version
                    self._write(pod_record(event["type"], pod))
                    if self._stop.is_set():
                        break
            except ApiException as exc:
                if exc.status == 410:
                    resource_version = ""
                else:
                    self._stop.wait(0.5)
            except Exception:  # noqa: BLE001 - a dropped connection: watch again from where we were
                self._stop.wait(0.5)

    def start(self) -> PodWatcher:
        for namespace in self.namespaces:
            thread = threading.Thread(target=self._run, args=(namespace,), daemon=True)
            thread.start()
            self._threads.append(thread)
        return self

    def stop(self) -> None:
        """Stop now: the library's Watch.stop() shuts the socket a watch is blocked reading
        from, so stopping does not wait out the server-side timeout (up to 5 s a case)."""
        self._stop.set()
        with self._lock:
            watches = list(self._watches)
        for w in watches:
            w.stop()
        for thread in self._threads:
            thread.join(timeout=20)
        self._handle.close()


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
