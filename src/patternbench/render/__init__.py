"""The render layer: topology x pattern -> Kubernetes objects.

The application objects come from the same templates for every pattern; a pattern is a
transformation of them, as client-side sidecar injection is (`linkerd inject`): add sidecar
containers and volumes, or point the app at node agents and add DaemonSets. The model
(agents.py, patterns.py, topology.py) says what runs where; this package builds the
objects: base (templates, options), agent_objects (each agent's containers and workloads),
pattern_objects (a pattern's transform), policy (resource requests), injector_objects (the
webhook injector's template and objects).
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from patternbench.render.base import (
    MESH_INBOUND_PORT,
    MESH_OUTBOUND_PORT,
    REGISTRY,
    SERVING_LABEL,
    SINK_PORT,
    Images,
    Obj,
    RenderOptions,
    app_container,
    app_objects,
    find,
    load_template,
    set_env,
    to_yaml,
    values,
)
from patternbench.render.pattern_objects import transform
from patternbench.render.policy import AGENT_CPU_M, SERVES_LABEL, agent_cpu_requested_m, size_agent_requests
from patternbench.specs.patterns import Pattern, pattern_spec

if TYPE_CHECKING:
    from patternbench.specs.topology import Topology

__all__ = [
    "AGENT_CPU_M", "Images", "MESH_INBOUND_PORT", "MESH_OUTBOUND_PORT", "Obj", "REGISTRY", "RenderOptions", "SERVES_LABEL",
    "SERVING_LABEL", "SINK_PORT", "agent_cpu_requested_m", "app_container", "app_objects", "apply_rank", "find",
    "load_template", "render", "set_env", "to_yaml", "values",
]


def render(topology: Topology, pattern: Pattern, opts: RenderOptions) -> list[Obj]:
    """Every object of a run, in apply order: namespaces, RBAC, sink, agents, application.
    The pattern's spec transforms the application's objects (pattern_objects.transform)."""
    objs = load_template("namespaces.yaml", values(opts))
    objs += app_objects(topology, opts)
    spec = pattern_spec(pattern)
    if not spec.placement:
        return objs  # no agent: the application as it is
    transform(spec, objs, topology, opts)
    size_agent_requests(objs, topology, opts)
    return sorted(objs, key=apply_rank)


_ORDER = ["Namespace", "ServiceAccount", "ClusterRole", "ClusterRoleBinding", "Role", "RoleBinding", "Service", "DaemonSet", "Deployment"]


def apply_rank(obj: Obj) -> int:
    kind = obj["kind"]
    return _ORDER.index(kind) if kind in _ORDER else len(_ORDER)


