"""Each agent's objects: how its sidecar container, its node DaemonSet or its per-service
workload is added to a run's rendered objects. The built-in agents' builders are in
BUILT_IN, keyed by the agent's name (agents.AGENTS); an agent file's are built from the file.
"""

from __future__ import annotations

import copy
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Callable

from patternbench.errors import UsageError
from patternbench.render.base import (
    MESH_INBOUND_PORT,
    MESH_OUTBOUND_PORT,
    Obj,
    RenderOptions,
    app_container,
    find,
    load_template,
    set_env,
    values,
)
from patternbench.specs.agents import WAYPOINT_REPLICAS, AgentSpec, Placement, agent_spec
from patternbench.specs.config_template import MeshService, TemplateContext, is_template, mounted_name, render_template

if TYPE_CHECKING:
    from patternbench.specs.agent_file import AgentFile, Part

# (objects, render options, instances) -> None: adds the agent to the rendered objects.
Transform = Callable[[list[Obj], RenderOptions, int], None]
# ... and per service: (objects, options, instances, the app's services, replicas of each).
ServiceTransform = Callable[[list[Obj], RenderOptions, int, list[str], int], None]
APP_LOG_DIR = "/var/log/app"
APP_PORT = 8080  # where every app listens (manifests/app.yaml)
POD_DNS_SUFFIX = "-pods"  # an app service's headless twin (proxy.pod_dns)


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


# ---- the generic agent: k agents that do nothing --------------------------------------------------


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



# ---- an agent file's containers ----------------------------------------------------------

def _env(opts: RenderOptions, placement: Placement) -> list[dict[str, Any]]:
    env = [
        {"name": "NODE_NAME", "valueFrom": {"fieldRef": {"fieldPath": "spec.nodeName"}}},
        {"name": "POD_NAME", "valueFrom": {"fieldRef": {"fieldPath": "metadata.name"}}},
        {"name": "POD_NAMESPACE", "valueFrom": {"fieldRef": {"fieldPath": "metadata.namespace"}}},
        {"name": "SINK_URL", "value": opts.sink_url},
        {"name": "SINK_ENDPOINT", "value": opts.sink_url.split("://", 1)[-1].split("/", 1)[0]},
    ]
    if placement is Placement.POD:
        env.append({"name": "APP_LOG_DIR", "value": APP_LOG_DIR})
    else:
        env += [{"name": "POD_LOGS_DIR", "value": opts.pod_logs_dir}, {"name": "APP_NAMESPACE", "value": opts.app_namespace}]
    return env


def _container(agent: AgentFile, part: Part, opts: RenderOptions, placement: Placement) -> Obj:
    container = copy.deepcopy(part.container)
    container.update({"name": agent.name, "image": agent.images["v1"]})
    container.setdefault("imagePullPolicy", "IfNotPresent")
    own = {e["name"] for e in container.get("env", []) or []}
    container["env"] = [e for e in _env(opts, placement) if e["name"] not in own] + list(container.get("env", []) or [])
    if agent.config:
        container.setdefault("volumeMounts", []).append({"name": "agent-config", "mountPath": f"/etc/{agent.name}", "readOnly": True})
    return container


def _app_services(objs: list[Obj], opts: RenderOptions) -> list[Obj]:
    return [o for o in find(objs, "Service") if o["metadata"]["namespace"] == opts.app_namespace and o["spec"].get("clusterIP") != "None"]


def _pods_service(service: Obj) -> Obj:
    """A headless twin of an app Service (same selector): its DNS name lists the service's
    ready pods, for a proxy that discovers upstreams by DNS (proxy.pod_dns)."""
    twin = copy.deepcopy(service)
    twin["metadata"]["name"] = f"{service['metadata']['name']}{POD_DNS_SUFFIX}"
    twin["spec"] = {"clusterIP": "None", "selector": dict(service["spec"]["selector"]), "ports": [
        {k: v for k, v in port.items() if k in ("name", "port", "targetPort", "protocol")} for port in service["spec"]["ports"]
    ]}
    return twin


def _template_context(agent: AgentFile, objs: list[Obj], opts: RenderOptions, placement: Placement) -> TemplateContext:
    ns, domain = opts.app_namespace, opts.cluster_domain
    replicas = [d["spec"].get("replicas", 1) for d in _app_deployments(objs, opts)]
    services = [
        MeshService(s["metadata"]["name"], s["spec"]["ports"][0]["port"], f"{s['metadata']['name']}{POD_DNS_SUFFIX}.{ns}.svc.{domain}")
        for s in _app_services(objs, opts)
    ]
    outbound, inbound = agent.proxy_ports or (0, 0)
    # A rolling update surges one pod per Deployment (app.yaml: maxSurge 1).
    where = "sidecar" if placement is Placement.POD else "node"
    return TemplateContext(ns, domain, APP_PORT, outbound, inbound, max(replicas, default=1) + 1, where, services)


def _config_map(agent: AgentFile, namespace: str, opts: RenderOptions, objs: list[Obj], placement: Placement) -> Obj:
    """The agent's configs; its templates rendered for this run's services."""
    data = {}
    for name, text in agent.config.items():
        if is_template(name):
            data[mounted_name(name)] = render_template(name, text, _template_context(agent, objs, opts, placement))
        else:
            data[name] = text
    return {
        "apiVersion": "v1", "kind": "ConfigMap",
        "metadata": {"name": agent.config_map, "namespace": namespace, "labels": {"patternbench.dev/run": opts.run_id}},
        "data": data,
    }


def _add_pod_dns(agent: AgentFile, objs: list[Obj], opts: RenderOptions) -> None:
    if agent.pod_dns:
        objs += [_pods_service(s) for s in _app_services(objs, opts)]


def _volumes(agent: AgentFile, part: Part) -> list[Obj]:
    volumes = copy.deepcopy(part.volumes)
    if agent.config:
        volumes.append({"name": "agent-config", "configMap": {"name": agent.config_map}})
    return volumes


def file_sidecar(agent: AgentFile) -> Transform:
    def add(objs: list[Obj], opts: RenderOptions, instances: int) -> None:
        if not instances:
            return
        part = agent.parts[Placement.POD]
        if agent.config:
            objs.append(_config_map(agent, opts.app_namespace, opts, objs, Placement.POD))
        for deployment in find(objs, "Deployment"):
            if deployment["metadata"]["namespace"] != opts.app_namespace:
                continue
            pod = deployment["spec"]["template"]["spec"]
            container = _container(agent, part, opts, Placement.POD)
            container["restartPolicy"] = "Always"  # a native sidecar: up before the app, down after it
            pod.setdefault("initContainers", []).append(container)
            pod.setdefault("volumes", []).extend(_volumes(agent, part))
            app = app_container(deployment)
            if agent.kind == "log":
                pod["volumes"].append({"name": "app-logs", "emptyDir": {}})
                app.setdefault("volumeMounts", []).append({"name": "app-logs", "mountPath": APP_LOG_DIR})
                if not any(m["name"] == "app-logs" for m in container.get("volumeMounts", [])):
                    container.setdefault("volumeMounts", []).append({"name": "app-logs", "mountPath": APP_LOG_DIR, "readOnly": True})
                set_env(app, "LOG_PATH", f"{APP_LOG_DIR}/app.log")
            if agent.kind == "mesh" and agent.proxy_ports:
                set_env(app, "MESH_PROXY", f"127.0.0.1:{agent.proxy_ports[0]}")
        if agent.kind == "mesh" and agent.proxy_ports:
            for service in find(objs, "Service"):
                if service["metadata"]["namespace"] == opts.app_namespace:
                    service["spec"]["ports"][0]["targetPort"] = agent.proxy_ports[1]
        _add_pod_dns(agent, objs, opts)

    return add


def _rolling(part: Part) -> dict[str, int]:
    """Surge: the successor starts beside its predecessor and takes its port over before it
    stops (the socket handover). Else never two on a node at once: a successor takes over its
    predecessor's files."""
    return {"maxSurge": 1, "maxUnavailable": 0} if part.surge else {"maxSurge": 0, "maxUnavailable": 1}


def file_node(agent: AgentFile) -> Transform:
    def add(objs: list[Obj], opts: RenderOptions, instances: int) -> None:
        if not instances:
            return
        part = agent.parts[Placement.NODE]
        ns = opts.agents_namespace
        labels = {"app.kubernetes.io/name": agent.name, "patternbench.dev/run": opts.run_id}
        pod: dict[str, Any] = {
            "automountServiceAccountToken": False,
            "terminationGracePeriodSeconds": 30,
            "containers": [_container(agent, part, opts, Placement.NODE)],
            "volumes": _volumes(agent, part),
        }
        if part.host_network:
            pod.update({"hostNetwork": True, "dnsPolicy": "ClusterFirstWithHostNet"})
        if agent.config:
            objs.append(_config_map(agent, ns, opts, objs, Placement.NODE))
        objs.append({
            "apiVersion": "apps/v1", "kind": "DaemonSet",
            "metadata": {"name": agent.name, "namespace": ns, "labels": labels},
            "spec": {
                "selector": {"matchLabels": {"app.kubernetes.io/name": agent.name}},
                "updateStrategy": {"type": "RollingUpdate", "rollingUpdate": _rolling(part)},
                "template": {"metadata": {"labels": {**labels, "patternbench.dev/role": "agent"}}, "spec": pod},
            },
        })
        if agent.kind == "mesh" and agent.proxy_ports:
            for deployment in find(objs, "Deployment"):
                if deployment["metadata"]["namespace"] == opts.app_namespace:
                    set_env(app_container(deployment), "MESH_PROXY", f"$(NODE_IP):{agent.proxy_ports[0]}")
        _add_pod_dns(agent, objs, opts)

    return add



@dataclass(frozen=True)
class AgentObjects:
    """How an agent is added in each placement it has a container for."""

    sidecar: Transform | None = None  # to every app pod (Placement.POD)
    node: Transform | None = None  # once per node (Placement.NODE)
    service: ServiceTransform | None = None  # once per app service (Placement.SERVICE)

    def add(self, agent: AgentSpec, placement: Placement, objs: list[Obj], opts: RenderOptions, instances: int, services: list[str], replicas: int) -> None:
        build = {Placement.POD: self.sidecar, Placement.NODE: self.node, Placement.SERVICE: self.service}[placement]
        if build is None:
            raise UsageError(f"the {agent.name} agent has no container for placement {placement.value}")
        if placement is Placement.SERVICE:
            build(objs, opts, instances, services, replicas)  # type: ignore[call-arg]
        else:
            build(objs, opts, instances)  # type: ignore[call-arg]


# The built-in agents' builders, by agent name; every built-in AgentSpec has one.
BUILT_IN: dict[str, AgentObjects] = {
    "mesh": AgentObjects(sidecar=mesh_sidecar, node=mesh_node),
    "logging": AgentObjects(sidecar=log_sidecar, node=log_node),
    "l4proxy": AgentObjects(node=l4_node),
    "waypoint": AgentObjects(service=waypoint_service),
    "agent-omega": AgentObjects(sidecar=idle_sidecar, node=idle_node),
}


def objects_of(agent: AgentSpec) -> AgentObjects:
    """The builders of an agent: its file's, or its entry in BUILT_IN (an error if it has none)."""
    if agent.file is not None:
        return AgentObjects(
            sidecar=file_sidecar(agent.file) if Placement.POD in agent.file.parts else None,
            node=file_node(agent.file) if Placement.NODE in agent.file.parts else None,
        )
    found = BUILT_IN.get(agent.name)
    if found is None:
        raise UsageError(f"the {agent.name} agent has no builders (render.agent_objects.BUILT_IN)")
    return found


def stand_in(agent: AgentSpec, opts: RenderOptions) -> AgentSpec:
    """The agent that takes `agent`'s place in this run (an agent file's), else `agent`."""
    for name in opts.stand_ins:
        other = agent_spec(name)
        if other.stands_in_for == agent.name:
            return other
    return agent
