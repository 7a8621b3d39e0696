"""EndpointSlice events on the run's timeline: which addresses each Service offered, and
whether each was ready, serving or terminating. What kube-proxy programs comes from these,
so a refusal can be checked against what the Service had at that moment (attribution.py)."""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

from kubernetes import client

from patternbench.observe.watch import NamespacedWatcher


def slice_record(event_type: str, eps: Any) -> dict[str, Any]:
    endpoints = []
    for ep in eps.endpoints or []:
        cond = ep.conditions
        endpoints.append({
            "ips": list(ep.addresses or []),
            "pod": ep.target_ref.name if ep.target_ref is not None else None,
            "node": ep.node_name,
            # Unset conditions mean ready/serving, per the EndpointSlice API.
            "ready": cond is None or cond.ready is not False,
            "serving": cond is None or cond.serving is not False,
            "terminating": bool(cond is not None and cond.terminating),
        })
    return {
        "t": time.monotonic(), "wall": time.time(), "event": event_type,
        "namespace": eps.metadata.namespace, "slice": eps.metadata.name,
        "service": (eps.metadata.labels or {}).get("kubernetes.io/service-name", ""),
        "endpoints": endpoints,
    }


class EndpointSliceWatcher(NamespacedWatcher):
    """Writes endpoints.jsonl for the given namespaces until stopped."""

    def __init__(self, api: client.ApiClient, namespaces: list[str], out: Path) -> None:
        super().__init__(client.DiscoveryV1Api(api).list_namespaced_endpoint_slice, slice_record, namespaces, out)
