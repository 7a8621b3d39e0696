"""Every agent, defined once (AgentSpec): its images, how its sidecar container and its node
DaemonSet are built, how it is upgraded and what is measured for it. Everything else looks an
agent up by name; an unknown name is an error, never a default.

Adding an agent: one AgentSpec in AGENTS (plus its Go code or image, and its snippet in
manifests/sidecars.yaml and manifests/node-agents.yaml).
"""

from __future__ import annotations

import copy
from dataclasses import dataclass
from enum import Enum
from pathlib import Path
from typing import Callable

from patternbench.errors import UsageError
from patternbench.render import (
    MESH_INBOUND_PORT, MESH_OUTBOUND_PORT, Obj, RenderOptions, app_container, find, load_template, set_env, values,
)


class AgentKind(str, Enum):
    """What an agent does, which decides what is measured for it."""

    MESH = "mesh"  # on the request path: measured by its hops (Via trails) and downtime
    LOG = "log"  # ships the app's log lines: measured by log delivery (the sink's counts)
    IDLE = "idle"  # does nothing ("agent Ω"): stands for k further agents, measured by its resources only


class Placement(str, Enum):
    """Where a pattern runs an agent."""

    POD = "pod"  # a native sidecar in every app pod
    NODE = "node"  # once per node, a DaemonSet
    SERVICE = "service"  # a Deployment of its own per app service (the ambient waypoint)


@dataclass(frozen=True)
class ProxyMode:
    """How a mesh proxy in one placement shows up in a Via trail ('1.1 <name>/<id> (<node>)')
    and where its hops start and end."""

    name: str  # the mode the proxy writes in Via: sidecar, node, l4, waypoint
    in_pod: bool  # shares its app's pod (loopback to it); else in its node's own network, named by the node
    on_entry: bool  # the entry request passes one too (the entry pod's inbound sidecar)
    per_call: int = 2  # a call passes the caller's outbound and the callee's inbound proxy
    own_pod: bool = False  # runs in a pod of its own, named in Via (a waypoint)
    # A call between two pods of one node passes one instance, not two (the L4 proxy dials
    # the pod itself), unless an own-pod proxy (a waypoint) sits between.
    direct_same_node: bool = False
    writes_via: bool = True  # an L7 proxy adds itself to Via; an L4 tunnel cannot (its trail comes back apart)


# The modes meshproxy runs in (images/cmd/meshproxy): Via names them, hops are classified by them.
PROXY_MODES: dict[str, ProxyMode] = {
    m.name: m for m in (
        ProxyMode("sidecar", in_pod=True, on_entry=True),
        ProxyMode("node", in_pod=False, on_entry=False),
        ProxyMode("l4", in_pod=False, on_entry=False, direct_same_node=True, writes_via=False),
        ProxyMode("waypoint", in_pod=False, on_entry=False, per_call=1, own_pod=True),
    )
}


def proxy_mode(name: str) -> ProxyMode:
    mode = PROXY_MODES.get(name)
    if mode is None:
        raise UsageError(f"unknown proxy mode {name!r} in a Via trail (known: {', '.join(PROXY_MODES)})")
    return mode


# (objects, render options, instances) -> None: adds the agent to the rendered objects.
Transform = Callable[[list[Obj], RenderOptions, int], None]


@dataclass(frozen=True)
class AgentSpec:
    """One agent: everything a pattern, an upgrade and a measurement need to know of it."""

    name: str  # what --agent and the case ids call it
    kind: AgentKind
    image: str  # repository under the registry; tags are the versions
    container: str  # its container's name (sidecar and DaemonSet); upgrades and faults aim at it
    # The topology's `agents:` key that says how many instances run (a bool: 0 or 1, an int: k).
    switch: str
    sidecar: Transform  # add it to every app pod
    node: Transform  # add it once per node
    versions: tuple[str, ...] = ("v1", "v2")  # deployed at the first, upgraded to the next
    # Upgrade: patch the image of every workload that runs `container` to the next version
    # and wait with kubectl's rollout rules (sidecars: every app pod recreated; DaemonSets:
    # node by node). False: never upgraded.
    upgradable: bool = True
    proxy: dict[Placement, ProxyMode] | None = None  # mesh agents: the proxy mode per placement
    # Container names its instances run under (resource samples are attributed by them).
    container_names: tuple[str, ...] = ()
    # An agent from an agent file (agent_file.py) takes a built-in agent's place: every
    # pattern puts it where it puts that one, in the placements it gives a container for.
    stands_in_for: str | None = None
    placements: frozenset[Placement] = frozenset(Placement)
    images_by_version: dict[str, str] | None = None  # full refs per version (else image:version)
    source: str | None = None  # the agent file it came from; None: patternbench's own
    digest: str | None = None  # sha256 of that file: the same agent read again (a run's copy) is no conflict
    archives: tuple[Path, ...] = ()  # OCI archives a provider that loads images imports
    service: Transform | None = None  # add it once per app service (Placement.SERVICE)

    @property
    def measured(self) -> tuple[str, ...]:
        """The summary figures that belong to this agent's kind."""
        return {
            AgentKind.MESH: ("proxies_per_request", "hops", "requests_per_agent", "request_grouping"),
            AgentKind.LOG: ("log_lines_lost", "log_lines_duplicated", "log_delivery_lag_s"),
            AgentKind.IDLE: (),
        }[self.kind]

    @property
    def on_request_path(self) -> bool:
        """Whether requests pass the agent (a hung one stalls them; a hung log agent only delays lines)."""
        return self.kind is AgentKind.MESH

    @property
    def slot(self) -> str:
        """The built-in agent whose place it takes in a pattern (its own name if none)."""
        return self.stands_in_for or self.name

    def image_for(self, version: str, current: str) -> str:
        """The image of `version`, given the one running now (whose registry it keeps)."""
        if self.images_by_version is not None:
            if version not in self.images_by_version:
                raise UsageError(f"the {self.name} agent has no image for {version}")
            return self.images_by_version[version]
        return current.rsplit(":", 1)[0] + ":" + version

    def proxy_mode(self, placement: Placement) -> ProxyMode:
        if self.proxy is None:
            raise UsageError(f"the {self.name} agent is no proxy")
        return self.proxy[placement]


# ---- the mesh proxy -----------------------------------------------------------------------


def _sidecar_snippets(opts: RenderOptions) -> Obj:
    return load_template("sidecars.yaml", values(opts))[0]


def _app_deployments(objs: list[Obj], opts: RenderOptions) -> list[Obj]:
    return [d for d in find(objs, "Deployment") if d["metadata"]["namespace"] == opts.app_namespace]


def mesh_sidecar(objs: list[Obj], opts: RenderOptions, instances: int) -> None:
    """The proxy beside every app: the app's outbound through 127.0.0.1, every Service's
    traffic into the pod through the proxy's inbound port; a Role to watch EndpointSlices."""
    if not instances:
        return
    snippets = _sidecar_snippets(opts)
    for deployment in _app_deployments(objs, opts):
        pod = deployment["spec"]["template"]["spec"]
        pod.setdefault("initContainers", []).append(copy.deepcopy(snippets["meshproxy"]))
        pod.setdefault("volumes", []).append(copy.deepcopy(snippets["volumes"]["mesh_token"]))
        set_env(app_container(deployment), "MESH_PROXY", f"127.0.0.1:{MESH_OUTBOUND_PORT}")
    for service in find(objs, "Service"):
        if service["metadata"]["namespace"] == opts.app_namespace:
            service["spec"]["ports"][0]["targetPort"] = MESH_INBOUND_PORT
    objs += _sidecar_rbac(objs, opts)


def _sidecar_rbac(objs: list[Obj], opts: RenderOptions) -> list[Obj]:
    role = next(o for o in load_template("rbac.yaml", values(opts)) if o["kind"] == "Role")
    subjects = [
        {"kind": "ServiceAccount", "name": sa["metadata"]["name"], "namespace": opts.app_namespace}
        for sa in find(objs, "ServiceAccount")
        if sa["metadata"]["namespace"] == opts.app_namespace
    ]
    binding = {
        "apiVersion": "rbac.authorization.k8s.io/v1",
        "kind": "RoleBinding",
        "metadata": {"name": "meshproxy-endpointslices", "namespace": opts.app_namespace, "labels": {"patternbench.dev/run": opts.run_id}},
        "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "Role", "name": role["metadata"]["name"]},
        "subjects": subjects,
    }
    return [role, binding]


def mesh_node(objs: list[Obj], opts: RenderOptions, instances: int) -> None:
    """One hostNetwork proxy per node (its ServiceAccount, headless Service, ClusterRole),
    the apps pointed at their node's proxy. Naive: no socket handover on upgrade."""
    if not instances:
        return
    objs += [d for d in load_template("node-agents.yaml", values(opts)) if d["metadata"]["name"] == "meshproxy"]
    objs += [o for o in load_template("rbac.yaml", values(opts)) if o["kind"] in ("ClusterRole", "ClusterRoleBinding")]
    for deployment in _app_deployments(objs, opts):
        set_env(app_container(deployment), "MESH_PROXY", f"$(NODE_IP):{MESH_OUTBOUND_PORT}")
    if opts.naive:
        proxy = find(objs, "DaemonSet", "meshproxy")[0]
        proxy["spec"]["updateStrategy"]["rollingUpdate"] = {"maxSurge": 0, "maxUnavailable": 1}
        set_env(proxy["spec"]["template"]["spec"]["containers"][0], "REUSE_PORT", "false")


# ---- the log agent ------------------------------------------------------------------------


def log_sidecar(objs: list[Obj], opts: RenderOptions, instances: int) -> None:
    """A log agent beside every app, tailing the file the app writes to a shared emptyDir."""
    if not instances:
        return
    snippets = _sidecar_snippets(opts)
    for deployment in _app_deployments(objs, opts):
        pod = deployment["spec"]["template"]["spec"]
        app = app_container(deployment)
        pod.setdefault("initContainers", []).append(copy.deepcopy(snippets["logagent"]))
        pod.setdefault("volumes", []).append(copy.deepcopy(snippets["volumes"]["app_logs"]))
        pod["volumes"].append(copy.deepcopy(snippets["volumes"]["logagent_state"]))
        app.setdefault("volumeMounts", []).append({"name": "app-logs", "mountPath": "/var/log/app"})
        set_env(app, "LOG_PATH", "/var/log/app/app.log")


def log_node(objs: list[Obj], opts: RenderOptions, instances: int) -> None:
    """One log agent per node, reading the node's pod logs (read-only hostPath)."""
    if instances:
        objs += find(load_template("node-agents.yaml", values(opts)), "DaemonSet", "logagent")


# ---- agent Ω: k agents that do nothing --------------------------------------------------


def idle_sidecar(objs: list[Obj], opts: RenderOptions, instances: int) -> None:
    if not instances:
        return
    snippets = _sidecar_snippets(opts)
    for deployment in _app_deployments(objs, opts):
        init = deployment["spec"]["template"]["spec"].setdefault("initContainers", [])
        for i in range(instances):
            agent = copy.deepcopy(snippets["extra_agent"])
            agent["name"] = f"agent-omega-{i}"
            init.append(agent)


def idle_node(objs: list[Obj], opts: RenderOptions, instances: int) -> None:
    for i in range(instances):
        objs += find(load_template("node-agents.yaml", values(opts, index=i)), "DaemonSet", f"agent-omega-{i}")


# ---- the ambient mesh: a node L4 proxy and per-service waypoints -----------------------------

# Replicas of each service's waypoint Deployment.
WAYPOINT_REPLICAS = 2


def _tunnel_apps(objs: list[Obj], opts: RenderOptions) -> None:
    """Apps call through their node's L4 proxy as HTTP CONNECT tunnels."""
    for deployment in _app_deployments(objs, opts):
        app = app_container(deployment)
        set_env(app, "MESH_PROXY", f"$(NODE_IP):{MESH_OUTBOUND_PORT}")
        set_env(app, "MESH_TUNNEL", "connect")


def l4_node(objs: list[Obj], opts: RenderOptions, instances: int) -> None:
    """One hostNetwork L4 proxy per node (its ServiceAccount, headless Service, RBAC), the
    apps tunnelling through it. Naive: no socket handover on upgrade."""
    if not instances:
        return
    objs += load_template("ambient.yaml", values(opts))
    _tunnel_apps(objs, opts)
    if opts.naive:
        proxy = find(objs, "DaemonSet", "l4proxy")[0]
        proxy["spec"]["updateStrategy"]["rollingUpdate"] = {"maxSurge": 0, "maxUnavailable": 1}
        set_env(proxy["spec"]["template"]["spec"]["containers"][0], "REUSE_PORT", "false")


def waypoint_service(objs: list[Obj], opts: RenderOptions, instances: int, services: list[str] | None = None, replicas: int = WAYPOINT_REPLICAS) -> None:
    """A waypoint Deployment and its Service per app service (and one ServiceAccount)."""
    if not instances:
        return
    names = services if services is not None else [d["metadata"]["name"] for d in _app_deployments(objs, opts)]
    objs.append({
        "apiVersion": "v1", "kind": "ServiceAccount",
        "metadata": {"name": "waypoint", "namespace": opts.app_namespace, "labels": {"patternbench.dev/run": opts.run_id}},
        "automountServiceAccountToken": False,
    })
    for name in names:
        objs += load_template("waypoint.yaml", values(opts, service=name, replicas=replicas))


# ---- the registry -------------------------------------------------------------------------

def no_container(objs: list[Obj], opts: RenderOptions, instances: int) -> None:
    """The transform of a placement an agent has no container for (never called: specs say their placements)."""
    raise UsageError("this agent has no container for that placement")


# In the order a pattern adds them to a pod or a node (it decides the rendered objects' order).
AGENTS: dict[str, AgentSpec] = {
    spec.name: spec
    for spec in (
        AgentSpec(
            "mesh", AgentKind.MESH, image="meshproxy", container="meshproxy", switch="mesh",
            sidecar=mesh_sidecar, node=mesh_node, container_names=("meshproxy",),
            proxy={Placement.POD: PROXY_MODES["sidecar"], Placement.NODE: PROXY_MODES["node"]},
        ),
        AgentSpec(
            "logging", AgentKind.LOG, image="logagent", container="logagent", switch="logging",
            sidecar=log_sidecar, node=log_node, container_names=("logagent",),
        ),
        AgentSpec(
            "l4proxy", AgentKind.MESH, image="meshproxy", container="l4proxy", switch="mesh",
            sidecar=no_container, node=l4_node, container_names=("l4proxy",), placements=frozenset({Placement.NODE}),
            proxy={Placement.NODE: PROXY_MODES["l4"]},
        ),
        AgentSpec(
            "waypoint", AgentKind.MESH, image="meshproxy", container="waypoint", switch="mesh",
            sidecar=no_container, node=no_container, service=waypoint_service, container_names=("waypoint",),
            placements=frozenset({Placement.SERVICE}), proxy={Placement.SERVICE: PROXY_MODES["waypoint"]},
        ),
        AgentSpec(
            "agent-omega", AgentKind.IDLE, image="agent-omega", container="agent", switch="extra_agents",
            sidecar=idle_sidecar, node=idle_node, versions=("v1",), upgradable=False,
            container_names=("agent-omega", "agent"),
        ),
    )
}

# The agents an experiment upgrades (--agent): every upgradable one.
UPGRADABLE = tuple(name for name, spec in AGENTS.items() if spec.upgradable)


def agent_spec(name: str, field: str = "agent") -> AgentSpec:
    """The registered agent of this name; a one-line UsageError naming the choices otherwise."""
    spec = AGENTS.get(name)
    if spec is None:
        raise UsageError(f"{field}: unknown agent {name!r} (choose one of {', '.join(UPGRADABLE)})")
    return spec


def upgradable_spec(name: str, field: str = "agent") -> AgentSpec:
    """An agent an experiment can upgrade (and aim a fault at)."""
    spec = agent_spec(name, field)
    if not spec.upgradable:
        raise UsageError(f"{field}: the {name} agent is never upgraded (choose one of {', '.join(UPGRADABLE)})")
    return spec


def register(spec: AgentSpec) -> AgentSpec:
    """Add an agent from an agent file; its name must be new (the same file's text again is fine)."""
    known = AGENTS.get(spec.name)
    if known is not None and known.digest != spec.digest:
        raise UsageError(f"agent {spec.name!r} is defined twice ({known.source or 'patternbench'} and {spec.source})")
    if spec.stands_in_for is not None and AGENTS.get(spec.stands_in_for, spec).source is not None:
        raise UsageError(f"agent {spec.name!r} stands in for {spec.stands_in_for!r}, which is not patternbench's own agent")
    AGENTS[spec.name] = spec
    return spec


def file_agents() -> list[AgentSpec]:
    """The agents registered from agent files in this process."""
    return [a for a in AGENTS.values() if a.source is not None]


def agent_by_container(container: str) -> AgentSpec | None:
    """The agent whose container this is (None: the app, the sink, anything else)."""
    return next((a for a in AGENTS.values() if a.container == container), None)
