"""The resource policy every report states: each built-in agent requests the same CPU in
total in every pattern, sized from what it serves."""

from __future__ import annotations

from typing import TYPE_CHECKING

from patternbench.render.base import Obj, RenderOptions
from patternbench.specs.agents import agent_by_container

if TYPE_CHECKING:
    from patternbench.specs.topology import Topology


# The resource policy, stated in every report: in every pattern each built-in agent requests
# the same CPU in total, AGENT_CPU_M per app pod it serves. A sidecar serves its own pod, a
# node agent its node's share of the app pods, a waypoint its service's pods. Under CPU
# contention the kernel shares CPU by these requests (cgroup cpu.shares), so a node proxy
# that carries a whole node's traffic is not weighed like a single sidecar.
AGENT_CPU_M = 10
SERVES_LABEL = "patternbench.dev/serves"  # on a per-service agent's pod template: the service


def agent_cpu_request_m(served_pods: int, instances: int) -> int:
    """One instance's CPU request (millicores) under the policy."""
    return max(AGENT_CPU_M, -(-AGENT_CPU_M * served_pods // max(1, instances)))


def agent_cpu_requested_m(objs: list[Obj], nodes: int) -> dict[str, int]:
    """CPU requested in total by each agent container name over all its instances (what the
    policy sized, read back from the objects as applied)."""
    out: dict[str, int] = {}
    for obj in objs:
        if obj["kind"] not in ("DaemonSet", "Deployment"):
            continue
        spec = obj["spec"]["template"]["spec"]
        instances = nodes if obj["kind"] == "DaemonSet" else obj["spec"]["replicas"]
        for container in spec.get("containers", []) + spec.get("initContainers", []):
            if agent_by_container(container["name"]) is None:
                continue
            cpu = str(((container.get("resources") or {}).get("requests") or {}).get("cpu", "0"))
            m = int(cpu.removesuffix("m")) if cpu.endswith("m") else int(float(cpu) * 1000)
            out[container["name"]] = out.get(container["name"], 0) + m * instances
    return out


def size_agent_requests(objs: list[Obj], topology: Topology, opts: RenderOptions) -> None:
    """Apply the policy to the built-in agents' workloads (agent files keep what they ask)."""
    if opts.nodes is None:
        return
    for obj in objs:
        if obj["kind"] not in ("DaemonSet", "Deployment"):
            continue
        labels = obj["spec"]["template"]["metadata"].get("labels") or {}
        if labels.get("patternbench.dev/role") != "agent":
            continue
        if obj["kind"] == "DaemonSet":
            served, instances = topology.app_pods, opts.nodes
        else:
            served, instances = topology.service(labels[SERVES_LABEL]).replicas, obj["spec"]["replicas"]
        for container in obj["spec"]["template"]["spec"]["containers"]:
            agent = agent_by_container(container["name"])
            if agent is not None and agent.source is None:
                container.setdefault("resources", {}).setdefault("requests", {})["cpu"] = f"{agent_cpu_request_m(served, instances)}m"


