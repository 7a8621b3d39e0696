"""Load from inside the cluster (issue 23, first part): the load image runs a Locust master
and two workers as pods; every request comes back to the harness through the API server,
once, with the host mode's schema, on the harness's clock (the local provider's pods share
its kernel's clock: the measured offset must be ~0); a worker that dies fails the load."""

from __future__ import annotations

import json
import threading
import time
from pathlib import Path
from typing import Any

import pytest
from kubernetes import client
from test_local_cluster import deploy_netcheck  # tests/cluster is on sys.path (rootdir-relative import)

from patternbench.build.images import ImageArchive
from patternbench.build.load_image import build_load_image
from patternbench.errors import UsageError
from patternbench.load.cluster_load import ClusterLoad, LoadFailed
from patternbench.load.placement import check_load_nodes

pytestmark = pytest.mark.cluster


@pytest.fixture(scope="module")
def load_image(cluster: Any, kube_api: object, tmp_path_factory: pytest.TempPathFactory) -> ImageArchive:
    try:  # the load's pods go to the load node (placement.py)
        check_load_nodes(client.CoreV1Api(kube_api).list_node().items)
    except UsageError as exc:
        pytest.fail(f"{exc} (make test brings the session's cluster up with --load-nodes 1)", pytrace=False)
    archive, _ = build_load_image(tmp_path_factory.mktemp("loadgen"))
    cluster.load_images([archive])
    return archive


def target_url(kube_api: object, namespace: str) -> str:
    service = client.CoreV1Api(kube_api).read_namespaced_service("netcheck", namespace)
    return f"http://{service.spec.cluster_ip}:80"


def test_users_from_the_cluster_come_back_whole_on_the_harness_clock(kube_api: object, namespace: str, netcheck_image: ImageArchive,
                                                                     load_image: ImageArchive, tmp_path: Path) -> None:
    deploy_netcheck(kube_api, namespace, netcheck_image, replicas=2)
    records = tmp_path / "requests.jsonl"
    load = ClusterLoad(client.CoreV1Api(kube_api), namespace, load_image.ref, target_url(kube_api, namespace), records,
                       workers=2, users=4, rate_per_user=5, duration_s=8, probe_interval_s=0.05)
    began = time.monotonic()
    try:
        load.start()
        placed = {p.metadata.name: p.spec.node_name for p in client.CoreV1Api(kube_api).list_namespaced_pod(namespace).items if p.metadata.name.startswith(load.name)}
        summary = load.run()
        ended = time.monotonic()
    finally:
        load.delete()
    every = [json.loads(line) for line in records.read_text().splitlines()]
    lines = [r for r in every if r["kind"] == "user"]
    probes = [r for r in every if r["kind"] == "probe"]
    assert summary["workers_done"] == 2 and summary["load_from"] == "cluster"
    assert len(lines) == summary["requests"] == sum(n for pod, n in summary["worker_lines"].items() if pod != load.prober) > 50
    assert {r["load_pod"] for r in lines} == set(load.worker_names)
    # The probe stream from its own pod: 20 probes a second for the run, every one answered.
    assert len(probes) == summary["worker_lines"][load.prober] >= 100
    assert all(p["status"] == 200 and p["load_pod"] == load.prober for p in probes), [p for p in probes if p["status"] != 200][:3]
    assert len({(r["load_pod"], r["t"]) for r in lines}) == len(lines)  # each once (netcheck does not echo X-Request-Id)
    assert all(r["kind"] == "user" and r["status"] == 200 and r["error"] == "" for r in lines), [r for r in lines if r["status"] != 200][:3]
    assert set(placed.values()) <= set(check_load_nodes(client.CoreV1Api(kube_api).list_node().items)), placed
    for name, clock in load.clocks.items():  # one kernel, one CLOCK_MONOTONIC
        assert abs(clock.offset_s) <= clock.uncertainty_s + 0.002, (name, clock)
    # Rebased `t` falls inside the harness's own window of the run.
    assert all(began <= r["t"] <= ended for r in every)


def test_a_worker_that_dies_fails_the_load(kube_api: object, namespace: str, netcheck_image: ImageArchive, load_image: ImageArchive, tmp_path: Path) -> None:
    deploy_netcheck(kube_api, namespace, netcheck_image, replicas=1)
    core = client.CoreV1Api(kube_api)
    load = ClusterLoad(core, namespace, load_image.ref, target_url(kube_api, namespace), tmp_path / "requests.jsonl", workers=2, users=2, rate_per_user=5, duration_s=8)
    try:
        load.start()
        killer = threading.Timer(3, lambda: core.delete_namespaced_pod(load.worker_names[1], namespace, grace_period_seconds=0))
        killer.start()
        with pytest.raises(LoadFailed, match=load.worker_names[1]):
            load.run()
        killer.join()
    finally:
        load.delete()


def test_the_open_loop_from_the_cluster_comes_back_whole(kube_api: object, namespace: str, netcheck_image: ImageArchive, load_image: ImageArchive, tmp_path: Path) -> None:
    deploy_netcheck(kube_api, namespace, netcheck_image, replicas=1)
    records = tmp_path / "requests.jsonl"
    load = ClusterLoad(client.CoreV1Api(kube_api), namespace, load_image.ref, target_url(kube_api, namespace), records, workers=2, rps=40, duration_s=6)
    try:
        load.start()
        summary = load.run()
    finally:
        load.delete()
    lines = [json.loads(line) for line in records.read_text().splitlines()]
    assert summary["mode"] == "open" and summary["workers_done"] == 2
    assert len(lines) == summary["requests"] == sum(summary["written_by_worker"].values()) >= 40
    assert all(r["mode"] == "open" and r["status"] == 200 for r in lines)
