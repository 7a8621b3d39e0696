"""A pattern's objects: its transformation of the application's rendered objects."""

from __future__ import annotations

from typing import TYPE_CHECKING

from patternbench.render.agent_objects import objects_of, stand_in
from patternbench.render.base import Obj, RenderOptions, find, load_template, values
from patternbench.specs.agents import Placement

if TYPE_CHECKING:
    from patternbench.specs.patterns import PatternSpec
    from patternbench.specs.topology import Topology


def transform(spec: PatternSpec, objs: list[Obj], topology: Topology, opts: RenderOptions) -> None:
    """The pattern's change to the rendered objects: the sink if a log agent runs, each
    per-pod agent added to every app pod, each per-node agent as its DaemonSet."""
    agents = topology.agents
    if spec.needs_sink(agents):
        objs += load_template("sink.yaml", values(opts))
    pod_agents = spec.agents_at(Placement.POD)
    if pod_agents:
        for deployment in find(objs, "Deployment"):
            if deployment["metadata"]["namespace"] == opts.app_namespace:
                pod = deployment["spec"]["template"]["spec"]
                pod.setdefault("initContainers", [])  # native sidecars live there
                pod.setdefault("volumes", [])
    services = [s.name for s in topology.services]
    for placement in (Placement.POD, Placement.NODE, Placement.SERVICE):
        for agent in spec.agents_at(placement):
            chosen = stand_in(agent, opts)
            objects_of(chosen).add(chosen, placement, objs, opts, agents.instances(agent), services, topology.waypoint_replicas)


