"""Injecting one fault into a running case: choose its target on the cluster, inject it with
the provider's real mechanism, mark it on the timeline, and always undo it.

The target is chosen so patterns compare: the first pod (by name) of the entry's first
downstream service, and, for a node agent, the agent on that pod's node. A sidecar fault
and a node-agent fault thus hit the same pod's traffic.
"""

from __future__ import annotations

import threading
import time
from dataclasses import asdict, dataclass
from typing import Any, Callable

from kubernetes import client
from tenacity import Retrying, retry_if_result, stop_after_delay, wait_fixed

from patternbench.cluster.provider import ContainerRef, FaultInjector
from patternbench.errors import UsageError
from patternbench.operate.kube import poll
from patternbench.operate.upgrade import UpgradeResult
from patternbench.render import SERVES_LABEL
from patternbench.render.injector_objects import INJECTOR
from patternbench.specs.agents import Placement, upgradable_spec
from patternbench.specs.faults import FaultSpec, runs_on_nodes
from patternbench.specs.patterns import pattern_spec
from patternbench.specs.topology import Pattern, Topology

Mark = Callable[..., float]


def _container_id(pod: client.V1Pod, container: str) -> str:
    statuses = (pod.status.init_container_statuses or []) + (pod.status.container_statuses or [])
    for status in statuses:
        if status.name == container and status.container_id and status.state and status.state.running:
            return status.container_id
    return ""


def victim_service(topology: Topology) -> str:
    """The service whose pod a fault targets: the entry's first downstream (so its callers
    still answer and say which call failed), or the entry itself in a one-service topology."""
    entry = topology.service(topology.entry)
    return entry.calls[0] if entry.calls else entry.name


def agent_target(core: client.CoreV1Api, topology: Topology, pattern: Pattern, agent: str, app_ns: str, agents_ns: str) -> ContainerRef:
    """The agent instance a fault hits: the victim pod's sidecar, or its node's agent."""
    container = upgradable_spec(agent).container
    service = victim_service(topology)
    pods = core.list_namespaced_pod(app_ns, label_selector=f"app.kubernetes.io/name={service}", _request_timeout=15).items
    pods = sorted((p for p in pods if p.metadata.deletion_timestamp is None), key=lambda p: p.metadata.name)
    if not pods:
        raise UsageError(f"no running pod of {service} to aim the fault at")
    victim = pods[0]
    if pattern_spec(pattern).placement_of(agent) is Placement.SERVICE:
        # A per-service agent (a waypoint, beside its service in the app namespace): the first
        # of the victim service's own instances.
        serving = core.list_namespaced_pod(app_ns, label_selector=f"{SERVES_LABEL}={service},patternbench.dev/role=agent", _request_timeout=15).items
        serving = sorted((p for p in serving if p.metadata.deletion_timestamp is None), key=lambda p: p.metadata.name)
        if not serving:
            raise UsageError(f"no {container} instance serves {service}")
        victim = serving[0]
    elif runs_on_nodes(pattern, agent):
        agents = core.list_namespaced_pod(agents_ns, label_selector=f"app.kubernetes.io/name={container}", _request_timeout=15).items
        victim = next((p for p in agents if p.spec.node_name == victim.spec.node_name and p.metadata.deletion_timestamp is None), None)
        if victim is None:
            raise UsageError(f"no {container} agent on node {pods[0].spec.node_name}")
    container_id = _container_id(victim, container)
    if not container_id:
        raise UsageError(f"{victim.metadata.name} has no running {container} container")
    return ContainerRef(victim.metadata.namespace, victim.metadata.name, container, victim.spec.node_name, container_id)


def new_node_agent(core: client.CoreV1Api, agents_ns: str, agent: str, image: str, timeout_s: float) -> ContainerRef:
    """The first agent pod of the new version that is running, as the DaemonSet rolls."""
    container = upgradable_spec(agent).container

    def find() -> ContainerRef | None:
        for pod in core.list_namespaced_pod(agents_ns, label_selector=f"app.kubernetes.io/name={container}", _request_timeout=10).items:
            images = {c.name: c.image for c in pod.spec.containers}
            cid = _container_id(pod, container)
            if images.get(container) == image and cid and pod.metadata.deletion_timestamp is None:
                return ContainerRef(agents_ns, pod.metadata.name, container, pod.spec.node_name, cid)
        return None

    found = Retrying(stop=stop_after_delay(timeout_s), wait=wait_fixed(0.1), retry=retry_if_result(lambda r: r is None), retry_error_callback=lambda s: None)(find)
    if found is None:
        raise UsageError(f"no {container} pod running {image} appeared within {timeout_s:.0f}s of the rollout's start")
    return found


@dataclass(frozen=True)
class InjectorTarget:
    """The sidecar injector as a fault hits it: its Deployment (scaled to 0) or its running
    containers (frozen)."""

    api: client.ApiClient
    namespace: str
    containers: tuple[ContainerRef, ...]

    def as_mark(self) -> dict[str, Any]:
        return {"deployment": INJECTOR, "namespace": self.namespace, "pods": [c.pod for c in self.containers],
                "nodes": sorted({c.node for c in self.containers})}


def injector_target(api: client.ApiClient, namespace: str) -> InjectorTarget:
    """The injector's running containers now."""
    core = client.CoreV1Api(api)
    pods = core.list_namespaced_pod(namespace, label_selector=f"app.kubernetes.io/name={INJECTOR}", _request_timeout=15).items
    refs = tuple(ContainerRef(namespace, p.metadata.name, INJECTOR, p.spec.node_name, _container_id(p, INJECTOR))
                 for p in sorted(pods, key=lambda p: p.metadata.name) if p.metadata.deletion_timestamp is None and _container_id(p, INJECTOR))
    if not refs:
        raise UsageError(f"no running {INJECTOR} pod in {namespace} to aim the fault at")
    return InjectorTarget(api, namespace, refs)


def scale_to_zero(target: InjectorTarget, timeout_s: float = 60) -> Callable[[], None]:
    """The injector's Deployment scaled to 0, returning once none of its pods is left (so the
    Service has no endpoints); the undo scales it back to what it had."""
    apps, core = client.AppsV1Api(target.api), client.CoreV1Api(target.api)
    replicas = apps.read_namespaced_deployment_scale(INJECTOR, target.namespace, _request_timeout=15).spec.replicas

    def scale(n: int) -> None:
        apps.patch_namespaced_deployment_scale(INJECTOR, target.namespace, {"spec": {"replicas": n}}, _request_timeout=15)

    scale(0)
    try:
        poll(f"the {INJECTOR} pods to be gone after scaling it to 0", lambda: not core.list_namespaced_pod(
            target.namespace, label_selector=f"app.kubernetes.io/name={INJECTOR}", _request_timeout=10).items, timeout_s, interval_s=0.1)
    except UsageError:
        scale(replicas)
        raise
    return lambda: scale(replicas)


Target = ContainerRef | InjectorTarget | None


def apply(provider: FaultInjector, spec: FaultSpec, target: Target) -> Callable[[], None] | None:
    """Put the fault in place with its mechanism; returns its undo, if any."""
    if spec.action == "stop-apiserver":
        return provider.stop_apiserver()
    if target is None:
        raise UsageError(f"{spec.name} needs a target")
    if isinstance(target, InjectorTarget):
        if spec.action == "scale-to-zero":
            return scale_to_zero(target)
        if spec.action == "freeze":
            undos = [provider.freeze_container(c) for c in target.containers]

            def let_go() -> None:
                for undo in undos:
                    undo()
            return let_go
        raise UsageError(f"{spec.name}: the injector cannot take a {spec.action}")
    if spec.action == "freeze":
        return provider.freeze_container(target)
    provider.kill_container(target)
    return None


def target_mark(target: Target) -> dict[str, Any] | None:
    """The target as the timeline records it."""
    if isinstance(target, InjectorTarget):
        return target.as_mark()
    return asdict(target) if target else None


def hold(spec: FaultSpec, undo: Callable[[], None] | None, duration_s: float) -> None:
    """Keep a timed fault in place for its duration; undo it whatever happens."""
    try:
        if spec.timed:
            time.sleep(duration_s)
    finally:
        if undo is not None:
            undo()


def inject_steady(
    provider: FaultInjector, spec: FaultSpec, duration_s: float, target: ContainerRef | None, mark: Mark
) -> None:
    """A fault during steady load: mark, inject, hold, undo, mark."""
    mark("fault_start", fault=spec.name, target=target_mark(target), duration_s=duration_s if spec.timed else 0.0)
    if spec.during_upgrade:
        raise UsageError(f"{spec.name} is injected during an upgrade")
    undo: Callable[[], None] | None = None
    try:
        undo = apply(provider, spec, target)
    finally:
        hold(spec, undo, duration_s)
        mark("fault_end", fault=spec.name)


def inject_during_upgrade(
    provider: FaultInjector, spec: FaultSpec, duration_s: float, upgrade: Callable[[], UpgradeResult | None],
    find_target: Callable[[], Target], mark: Mark,
) -> tuple[UpgradeResult | None, str]:
    """Start the rollout, inject the fault in its middle, wait for the rollout. Returns the
    upgrade's result (None if it failed or returns none) and its error. `find_target` waits
    for the moment the fault belongs to (a new agent running, the Deployments restarted)."""
    if not spec.during_upgrade:
        raise UsageError(f"{spec.name} is not injected during an upgrade")
    outcome: dict[str, Any] = {"result": None, "error": ""}

    def roll() -> None:
        try:
            outcome["result"] = upgrade()
        except Exception as exc:  # noqa: BLE001 - a rollout the fault broke is a finding, not a crash
            outcome["error"] = f"{type(exc).__name__}: {exc}"

    mark("upgrade_start", fault=spec.name)
    thread = threading.Thread(target=roll, daemon=True)
    thread.start()
    undo: Callable[[], None] | None = None
    try:
        target: Target = None
        if spec.target == "apiserver":
            time.sleep(1.0)  # the rollout is under way: its first pods are being replaced
        else:
            target = find_target()  # a new agent running, or the injector once the pods are restarted
        mark("fault_start", fault=spec.name, target=target_mark(target), duration_s=duration_s if spec.timed else 0.0)
        undo = apply(provider, spec, target)
        mark("fault_in_place", fault=spec.name)  # scaling to 0 takes until the pods are gone
    finally:
        hold(spec, undo, duration_s)
        mark("fault_end", fault=spec.name)
    thread.join()
    result = outcome["result"]
    if outcome["error"]:
        mark("upgrade_failed", error=outcome["error"])
    elif result is not None:
        mark("upgrade_end", targets=[asdict(t) for t in result.targets])
    return result, outcome["error"]
