"""The agent rollout driver: patch an agent's image from v1 to v2 wherever it runs, and wait
with kubectl's rollout rules. Sidecars are upgraded by each Deployment's rollout (every app
pod is recreated); node agents by their DaemonSet's rollout, node by node."""

from __future__ import annotations

import json
import time
from dataclasses import dataclass
from typing import Any

from kubernetes import client

from patternbench.errors import UsageError
from patternbench.operate.kube import REQUEST_TIMEOUT, Deployer
from patternbench.specs.agents import upgradable_spec


@dataclass(frozen=True)
class Target:
    kind: str  # Deployment or DaemonSet
    namespace: str
    name: str
    container: str
    init: bool  # a native sidecar lives in initContainers
    image: str  # what it runs now


def upgrade_targets(objects: list[dict[str, Any]], agent: str) -> list[Target]:
    """Every workload that runs the agent's container, from the rendered objects."""
    container = upgradable_spec(agent).container
    targets = []
    for obj in objects:
        if obj["kind"] not in ("Deployment", "DaemonSet"):
            continue
        pod = obj["spec"]["template"]["spec"]
        for init, containers in ((False, pod.get("containers", [])), (True, pod.get("initContainers", []))):
            for c in containers:
                if c["name"] == container:
                    targets.append(Target(obj["kind"], obj["metadata"]["namespace"], obj["metadata"]["name"], container, init, c["image"]))
    return targets


def image_patch(target: Target, image: str) -> dict[str, Any]:
    """A strategic-merge patch: containers and initContainers merge by name."""
    key = "initContainers" if target.init else "containers"
    return {"spec": {"template": {"spec": {key: [{"name": target.container, "image": image}]}}}}


def retag(image: str, version: str) -> str:
    return image.rsplit(":", 1)[0] + ":" + version


@dataclass(frozen=True)
class UpgradeResult:
    start: float
    end: float
    targets: list[Target]

    @property
    def duration_s(self) -> float:
        return self.end - self.start


def rollout_recorder(progress_log: Any) -> Any:
    """An on_status for Deployer.wait_one: each rollout status, as it changes, into
    rollouts.jsonl (nothing without a log)."""
    def record(kind: str, name: str, status: Any) -> None:
        if progress_log is not None:
            with open(progress_log, "a") as handle:
                handle.write(json.dumps({"t": time.monotonic(), "kind": kind, "name": name, "done": status.done, "message": status.message}) + "\n")

    return record


def upgrade_agent(
    api: client.ApiClient, objects: list[dict[str, Any]], agent: str, version: str = "v2", timeout_s: float = 300, progress_log: Any = None
) -> UpgradeResult:
    """Patch every target at once (as an operator would), then wait for all rollouts."""
    targets = upgrade_targets(objects, agent)
    if not targets:
        raise UsageError(f"no workload runs the {agent} agent in this pattern")
    apps = client.AppsV1Api(api)
    start = time.monotonic()
    spec = upgradable_spec(agent)
    for target in targets:
        body = image_patch(target, spec.image_for(version, target.image))
        patch = apps.patch_namespaced_deployment if target.kind == "Deployment" else apps.patch_namespaced_daemon_set
        patch(target.name, target.namespace, body, _request_timeout=REQUEST_TIMEOUT)
    deployer = Deployer(api)
    record = rollout_recorder(progress_log)
    for target in targets:
        deployer.wait_one(target.kind, target.namespace, target.name, timeout_s, on_status=record)
    return UpgradeResult(start=start, end=time.monotonic(), targets=targets)
