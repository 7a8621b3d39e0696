"""The log sink's counts, read through the API server's service proxy (no port-forward)."""

from __future__ import annotations

import json
from typing import Any

from kubernetes import client

REQUEST_TIMEOUT = 10


def sink_stats(api: client.ApiClient, namespace: str) -> dict[str, Any]:
    """GET /stats of the run's logsink: received, missing, duplicated, lag, per source pod."""
    core = client.CoreV1Api(api)
    resp = core.connect_get_namespaced_service_proxy_with_path(
        "logsink:8080", namespace, "stats", _preload_content=False, _request_timeout=REQUEST_TIMEOUT
    )
    return json.loads(resp.data)


def sink_mark(api: client.ApiClient, namespace: str) -> None:
    """POST /mark: the sink counts from here on (a trial's window on a shared deployment)."""
    core = client.CoreV1Api(api)
    core.connect_post_namespaced_service_proxy_with_path("logsink:8080", namespace, "mark", _request_timeout=REQUEST_TIMEOUT)
