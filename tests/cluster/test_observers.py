"""The pod watcher on the real API: it records what happens, and stopping it is immediate
(it used to wait out the watch's server-side timeout, about 5 s of every case)."""

from __future__ import annotations

import json
import time
from pathlib import Path

import pytest
from kubernetes import client

from patternbench.observe.pods import PodWatcher

pytestmark = pytest.mark.cluster


def test_the_pod_watcher_records_and_stops_at_once(kube_api: client.ApiClient, namespace: str, tmp_path: Path) -> None:
    core = client.CoreV1Api(kube_api)
    out = tmp_path / "pods.jsonl"
    watcher = PodWatcher(kube_api, [namespace], out).start()
    time.sleep(1.0)
    core.create_namespaced_config_map(namespace, client.V1ConfigMap(metadata=client.V1ObjectMeta(name="unrelated")))
    pod = client.V1Pod(
        metadata=client.V1ObjectMeta(name="watched"),
        # Never scheduled (no node matches), so deleting it is immediate.
        spec=client.V1PodSpec(containers=[client.V1Container(name="c", image="patternbench.local/app:v1")], node_selector={"patternbench.dev/none": "x"}),
    )
    core.create_namespaced_pod(namespace, pod)
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline and "watched" not in out.read_text():
        time.sleep(0.1)
    time.sleep(1.0)  # the pod's own updates are over: the watch sits blocked, waiting for the next event
    started = time.monotonic()
    watcher.stop()
    stopped_in = time.monotonic() - started
    records = [json.loads(line) for line in out.read_text().splitlines()]
    assert any(r.get("pod") == "watched" and r.get("event") == "ADDED" for r in records), records
    assert stopped_in < 1.0, f"stop took {stopped_in:.2f}s"
