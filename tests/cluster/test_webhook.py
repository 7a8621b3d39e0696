"""Webhook injection on the real API server: the pods it makes are the client-side render's
pods apart from the injection annotation, and while the injector is down (failurePolicy
Fail) no app pod is created without its sidecars: the ReplicaSet is refused until the
injector is back."""

from __future__ import annotations

import time
from typing import Any

import pytest
from kubernetes import client, config

from patternbench.errors import UsageError
from patternbench.operate.deploy import deploy_run
from patternbench.operate.kube import Deployer, poll
from patternbench.operate.webhook_injector import wait_injecting
from patternbench.progress import Progress
from patternbench.render import render
from patternbench.render.injector_objects import ANNOTATION_INJECTED
from patternbench.specs.topology import Pattern, load_topology

pytestmark = pytest.mark.cluster


def essentials(pod_spec: dict[str, Any]) -> dict[str, Any]:
    """What injection decides, as the API server stores it (defaults it adds left out)."""
    def container(c: dict[str, Any]) -> dict[str, Any]:
        return {"name": c["name"], "image": c["image"], "restartPolicy": c.get("restartPolicy"),
                "env": [(e["name"], e.get("value") or None) for e in c.get("env") or []],  # "" is stored as absent
                "mounts": sorted(m["mountPath"] for m in c.get("volumeMounts") or [] if "serviceaccount" not in m["mountPath"] or m["name"] == "mesh-token")}
    return {
        "init": [container(c) for c in pod_spec.get("initContainers") or []],
        "containers": [container(c) for c in pod_spec["containers"]],
        "volumes": sorted(v["name"] for v in pod_spec.get("volumes") or [] if not v["name"].startswith("kube-api-access")),
    }


def test_webhook_pods_equal_client_pods_and_a_down_injector_refuses_pods(cluster: Any) -> None:
    topology = load_topology()
    run = deploy_run(cluster, topology, Pattern.SIDECAR, progress=Progress(quiet=True), injection="webhook")
    api = config.new_client_from_config(config_file=str(cluster.kubeconfig()))
    core, apps = client.CoreV1Api(api), client.AppsV1Api(api)
    try:
        client_side = render(topology, Pattern.SIDECAR, run.render_options)
        want = {d["metadata"]["name"]: essentials(d["spec"]["template"]["spec"]) for d in client_side
                if d["kind"] == "Deployment" and d["metadata"]["namespace"] == run.app_namespace}
        pods = core.list_namespaced_pod(run.app_namespace, label_selector="patternbench.dev/role=app").items
        assert len(pods) == topology.app_pods
        for pod in pods:
            assert (pod.metadata.annotations or {}).get(ANNOTATION_INJECTED) == "v1"
            live = api.sanitize_for_serialization(pod.spec)
            assert essentials(live) == want[pod.metadata.labels["app.kubernetes.io/name"]], pod.metadata.name

        # The injector down: a deleted app pod is not replaced while it is away.
        apps.patch_namespaced_deployment_scale("injector", run.agents_namespace, {"spec": {"replicas": 0}})
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline and core.list_namespaced_pod(run.agents_namespace, label_selector="app.kubernetes.io/name=injector").items:
            time.sleep(0.5)
        victim = pods[0]
        core.delete_namespaced_pod(victim.metadata.name, run.app_namespace, grace_period_seconds=0)
        # The controller's refusal event arrives asynchronously (seconds under CI load): wait for
        # it, then check the refused pod was not created behind it.
        def refusals() -> list[str]:
            return [e.message or "" for e in core.list_namespaced_event(run.app_namespace).items
                    if e.reason == "FailedCreate" and "injector" in (e.message or "")]
        refused = poll("the ReplicaSet's FailedCreate event naming the injector", refusals, timeout_s=90, interval_s=1)
        now = core.list_namespaced_pod(run.app_namespace, label_selector="patternbench.dev/role=app").items
        assert len(now) == topology.app_pods - 1, ([p.metadata.name for p in now], refused)
        # What a run on a cluster whose API server cannot call the webhook is told: one line, why.
        apps_objs = [d for d in client_side if d["kind"] == "Deployment" and d["metadata"]["namespace"] == run.app_namespace]
        with pytest.raises(UsageError, match="cannot call the injector webhook .*(no endpoints available|connection refused)") as refusal:
            wait_injecting(core, run.app_namespace, apps_objs[0], "v1", timeout_s=3)
        assert "\n" not in str(refusal.value)

        # Back up: the ReplicaSet's retry creates the pod, injected.
        apps.patch_namespaced_deployment_scale("injector", run.agents_namespace, {"spec": {"replicas": 2}})
        deadline = time.monotonic() + 90
        while time.monotonic() < deadline:
            now = core.list_namespaced_pod(run.app_namespace, label_selector="patternbench.dev/role=app").items
            if len(now) == topology.app_pods and all((p.metadata.annotations or {}).get(ANNOTATION_INJECTED) == "v1" for p in now):
                break
            time.sleep(1)
        assert len(now) == topology.app_pods and all((p.metadata.annotations or {}).get(ANNOTATION_INJECTED) == "v1" for p in now)
    finally:
        deployer = Deployer(api, Progress(quiet=True))
        deployer.undeploy(run.run_id, graceful=False)
        assert deployer.leftovers(run.run_id) == []
