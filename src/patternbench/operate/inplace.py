"""In-place sidecar upgrades, as OpenKruise's SidecarSet does them: no pod is recreated; one
pod at a time (maxUnavailable 1) is taken out of its Services' endpoints, given time for
in-flight requests, has its sidecar's image patched (the kubelet restarts that container
alone, the app keeps running), waits until Ready on the new image, and is put back.

Out of the endpoints means: the pod's `patternbench.dev/serving` label, which every app
Service selects on when a run upgrades in place, goes from "yes" to "no". kube-proxy and
the mesh proxies drop the pod from their endpoints as they would for a pod going NotReady.
Naive: no drain, the image is patched while the pod still serves.
"""

from __future__ import annotations

import json
import time
from dataclasses import dataclass
from typing import Any, Callable

from kubernetes import client

from patternbench.errors import UsageError
from patternbench.operate.kube import REQUEST_TIMEOUT, poll
from patternbench.render import SERVING_LABEL
from patternbench.specs.agents import upgradable_spec

# kube-proxy syncs its rules within about a second of an EndpointSlice change; the app's
# own calls time out after seconds. Long enough for both, short enough for a fleet.
DRAIN_S = 2.0


@dataclass(frozen=True)
class PodUpgrade:
    """One pod's in-place upgrade, on the monotonic clock."""

    pod: str
    node: str
    out_of_service: float | None
    patched: float
    ready: float
    back_in_service: float | None


def serving_patch(value: str) -> dict[str, Any]:
    return {"metadata": {"labels": {SERVING_LABEL: value}}}


def image_patch(container: str, image: str, init: bool) -> dict[str, Any]:
    """A strategic-merge patch of one container's image in a running pod (the one pod field
    besides a few others that may change in place)."""
    return {"spec": {("initContainers" if init else "containers"): [{"name": container, "image": image}]}}


def container_status(pod: client.V1Pod, container: str) -> Any:
    statuses = (pod.status.init_container_statuses or []) + (pod.status.container_statuses or [])
    return next((s for s in statuses if s.name == container), None)


def runs_image(pod: client.V1Pod, container: str, image: str) -> bool:
    """The container runs `image` now and is ready (a native sidecar's readiness counts)."""
    status = container_status(pod, container)
    if status is None or not status.ready or status.state is None or status.state.running is None:
        return False
    return status.image == image or status.image.endswith("/" + image.split("/", 1)[-1])


def in_endpoints(discovery: client.DiscoveryV1Api, namespace: str, pod: str) -> bool:
    """Whether any EndpointSlice of the namespace lists the pod as ready."""
    for slice_ in discovery.list_namespaced_endpoint_slice(namespace, _request_timeout=REQUEST_TIMEOUT).items:
        for ep in slice_.endpoints or []:
            if ep.target_ref is not None and ep.target_ref.name == pod and (ep.conditions is None or ep.conditions.ready):
                return True
    return False


def wait_for(what: str, check: Callable[[], bool], timeout_s: float) -> float:
    """deploy's tenacity poll; when it held (monotonic)."""
    poll(what, check, timeout_s, interval_s=0.2)
    return time.monotonic()


def upgrade_in_place(
    api: client.ApiClient, app_namespace: str, agent: str, image: str, *, drain: bool = True,
    drain_s: float = DRAIN_S, timeout_s: float = 120, progress_log: Any = None,
) -> list[PodUpgrade]:
    """Every app pod running the agent's sidecar, one at a time: drain, patch, Ready, back."""
    spec = upgradable_spec(agent)
    core, discovery = client.CoreV1Api(api), client.DiscoveryV1Api(api)
    pods = [
        p for p in core.list_namespaced_pod(app_namespace, label_selector="patternbench.dev/role=app", _request_timeout=REQUEST_TIMEOUT).items
        if p.metadata.deletion_timestamp is None and any(c.name == spec.container for c in (p.spec.init_containers or []) + p.spec.containers)
    ]
    if not pods:
        raise UsageError(f"in-place upgrade: no app pod runs the {agent} agent as a sidecar")
    done = []
    for pod in sorted(pods, key=lambda p: p.metadata.name):
        name = pod.metadata.name
        init = any(c.name == spec.container for c in pod.spec.init_containers or [])
        out = back = None
        if drain:
            core.patch_namespaced_pod(name, app_namespace, serving_patch("no"), _request_timeout=REQUEST_TIMEOUT)
            out = wait_for(f"{name} to leave the endpoints", lambda: not in_endpoints(discovery, app_namespace, name), timeout_s)
            time.sleep(drain_s)
        patched = time.monotonic()
        core.patch_namespaced_pod(name, app_namespace, image_patch(spec.container, image, init), _request_timeout=REQUEST_TIMEOUT)
        ready = wait_for(
            f"{name}'s {spec.container} to run {image}",
            lambda: runs_image(core.read_namespaced_pod(name, app_namespace, _request_timeout=REQUEST_TIMEOUT), spec.container, image),
            timeout_s,
        )
        if drain:
            core.patch_namespaced_pod(name, app_namespace, serving_patch("yes"), _request_timeout=REQUEST_TIMEOUT)
            back = wait_for(f"{name} to rejoin the endpoints", lambda: in_endpoints(discovery, app_namespace, name), timeout_s)
        step = PodUpgrade(name, pod.spec.node_name, out, patched, ready, back)
        done.append(step)
        if progress_log is not None:
            with open(progress_log, "a") as handle:
                handle.write(json.dumps({"t": time.monotonic(), "kind": "Pod", "name": name, "done": True, "message": f"in place: {step}"}) + "\n")
    return done
