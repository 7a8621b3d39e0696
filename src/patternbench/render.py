"""Topology x pattern -> Kubernetes objects.

The application objects come from the same templates for every pattern; a pattern is a
transformation of them, as client-side sidecar injection is (`linkerd inject`): add sidecar
containers and volumes, or point the app at node agents and add DaemonSets.
"""

from __future__ import annotations

import copy
from dataclasses import dataclass, field
from pathlib import Path
from string import Template
from typing import Any, Iterable

import yaml

from patternbench.topology import Pattern, Topology

MANIFESTS = Path(__file__).resolve().parents[2] / "manifests"
REGISTRY = "patternbench.local"
SINK_PORT = 8080
MESH_OUTBOUND_PORT = 15001
MESH_INBOUND_PORT = 15006

Obj = dict[str, Any]


@dataclass(frozen=True)
class Images:
    """Image refs a run deploys; agents default to v1, the upgrade moves them to v2."""

    app: str = f"{REGISTRY}/app:v1"
    meshproxy: str = f"{REGISTRY}/meshproxy:v1"
    logagent: str = f"{REGISTRY}/logagent:v1"
    logsink: str = f"{REGISTRY}/logsink:v1"
    extra: str = f"{REGISTRY}/agent-omega:v1"

    @classmethod
    def under(cls, registry: str | None) -> Images:
        """The same images as pushed to `registry` (gke, kubeconfig); local names without one."""
        if not registry:
            return cls()
        prefix = registry.rstrip("/")
        return cls(**{k: f"{prefix}/{v.split('/', 1)[1]}" for k, v in cls().__dict__.items()})


@dataclass(frozen=True)
class RenderOptions:
    run_id: str
    images: Images = field(default_factory=Images)
    # Where the node's pod logs are and where node agents may keep state (provider-specific).
    pod_logs_dir: str = "/var/log/pods"
    agent_state_dir: str = "/var/lib/patternbench-agents"
    # naive: no drain in app and proxies, no socket handover for node proxies.
    naive: bool = False

    @property
    def app_namespace(self) -> str:
        return self.run_id

    @property
    def agents_namespace(self) -> str:
        return f"{self.run_id}-agents"

    @property
    def sink_url(self) -> str:
        return f"http://logsink.{self.agents_namespace}.svc.cluster.local:{SINK_PORT}/ingest"


def load_template(name: str, values: dict[str, Any]) -> list[Any]:
    """Fill a manifests/ template (`${var}` placeholders) and parse its YAML documents."""
    text = Template((MANIFESTS / name).read_text()).substitute({k: str(v) for k, v in values.items()})
    return [doc for doc in yaml.safe_load_all(text) if doc is not None]


def _values(opts: RenderOptions, **extra: Any) -> dict[str, Any]:
    images = opts.images
    return {
        "run_id": opts.run_id,
        "app_namespace": opts.app_namespace,
        "agents_namespace": opts.agents_namespace,
        "app_image": images.app,
        "meshproxy_image": images.meshproxy,
        "logagent_image": images.logagent,
        "logsink_image": images.logsink,
        "extra_image": images.extra,
        "sink_url": opts.sink_url,
        "pod_logs_dir": opts.pod_logs_dir,
        "agent_state_dir": opts.agent_state_dir,
        "app_drain": "0s" if opts.naive else "5s",
        "proxy_drain": "0s" if opts.naive else "3s",
        "index": 0,
        **extra,
    }


def find(objs: Iterable[Obj], kind: str, name: str | None = None) -> list[Obj]:
    return [o for o in objs if o["kind"] == kind and (name is None or o["metadata"]["name"] == name)]


def _set_env(container: Obj, name: str, value: str) -> None:
    env = container.setdefault("env", [])
    env[:] = [e for e in env if e["name"] != name]
    env.append({"name": name, "value": value})


def app_objects(topology: Topology, opts: RenderOptions) -> list[Obj]:
    """The application: ServiceAccount, Service and Deployment per service; the entry's
    Service is a NodePort so load can reach it from the host."""
    objs: list[Obj] = []
    for svc in topology.services:
        docs = load_template(
            "app.yaml", _values(opts, service=svc.name, replicas=svc.replicas, downstreams=",".join(svc.calls))
        )
        if svc.name == topology.entry:
            find(docs, "Service")[0]["spec"]["type"] = "NodePort"
        objs += docs
    return objs


def app_container(deployment: Obj) -> Obj:
    return next(c for c in deployment["spec"]["template"]["spec"]["containers"] if c["name"] == "app")


def inject_sidecars(objs: list[Obj], opts: RenderOptions, mesh: bool, logging: bool, extra: int) -> None:
    """The sidecar transformation: every app pod gets the agents as native sidecars."""
    snippets = load_template("sidecars.yaml", _values(opts))[0]
    for deployment in find(objs, "Deployment"):
        if deployment["metadata"]["namespace"] != opts.app_namespace:
            continue
        pod = deployment["spec"]["template"]["spec"]
        app = app_container(deployment)
        init = pod.setdefault("initContainers", [])
        volumes = pod.setdefault("volumes", [])
        if mesh:
            init.append(copy.deepcopy(snippets["meshproxy"]))
            volumes.append(copy.deepcopy(snippets["volumes"]["mesh_token"]))
            _set_env(app, "MESH_PROXY", f"127.0.0.1:{MESH_OUTBOUND_PORT}")
        if logging:
            init.append(copy.deepcopy(snippets["logagent"]))
            volumes.append(copy.deepcopy(snippets["volumes"]["app_logs"]))
            app.setdefault("volumeMounts", []).append({"name": "app-logs", "mountPath": "/var/log/app"})
            _set_env(app, "LOG_PATH", "/var/log/app/app.log")
        for i in range(extra):
            agent = copy.deepcopy(snippets["extra_agent"])
            agent["name"] = f"agent-omega-{i}"
            init.append(agent)
    if mesh:
        # Traffic for a Service enters the pod through its sidecar's inbound port.
        for service in find(objs, "Service"):
            if service["metadata"]["namespace"] == opts.app_namespace:
                service["spec"]["ports"][0]["targetPort"] = MESH_INBOUND_PORT
        objs += _sidecar_rbac(objs, opts)


def _sidecar_rbac(objs: list[Obj], opts: RenderOptions) -> list[Obj]:
    role = next(o for o in load_template("rbac.yaml", _values(opts)) if o["kind"] == "Role")
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


def add_node_agents(objs: list[Obj], opts: RenderOptions, mesh: bool, logging: bool, extra: int) -> None:
    """The DaemonSet transformation: agents once per node, the app pointed at the node proxy."""
    docs = load_template("node-agents.yaml", _values(opts))
    if mesh:
        objs += [d for d in docs if d["metadata"]["name"] == "meshproxy"]
        objs += [o for o in load_template("rbac.yaml", _values(opts)) if o["kind"] in ("ClusterRole", "ClusterRoleBinding")]
        for deployment in find(objs, "Deployment"):
            if deployment["metadata"]["namespace"] == opts.app_namespace:
                _set_env(app_container(deployment), "MESH_PROXY", f"$(NODE_IP):{MESH_OUTBOUND_PORT}")
        if opts.naive:
            proxy = find(objs, "DaemonSet", "meshproxy")[0]
            proxy["spec"]["updateStrategy"]["rollingUpdate"] = {"maxSurge": 0, "maxUnavailable": 1}
            _set_env(proxy["spec"]["template"]["spec"]["containers"][0], "REUSE_PORT", "false")
    if logging:
        objs += find(docs, "DaemonSet", "logagent")
    for i in range(extra):
        objs += find(load_template("node-agents.yaml", _values(opts, index=i)), "DaemonSet", f"agent-omega-{i}")


def render(topology: Topology, pattern: Pattern, opts: RenderOptions) -> list[Obj]:
    """Every object of a run, in apply order: namespaces, RBAC, sink, agents, application."""
    agents = topology.agents
    objs = load_template("namespaces.yaml", _values(opts))
    objs += app_objects(topology, opts)
    if pattern is Pattern.NONE:
        return objs
    if agents.logging:
        objs += load_template("sink.yaml", _values(opts))
    if pattern is Pattern.SIDECAR:
        inject_sidecars(objs, opts, agents.mesh, agents.logging, agents.extra_agents)
    elif pattern is Pattern.DAEMONSET:
        add_node_agents(objs, opts, agents.mesh, agents.logging, agents.extra_agents)
    elif pattern is Pattern.HYBRID:
        inject_sidecars(objs, opts, agents.mesh, False, 0)
        add_node_agents(objs, opts, False, agents.logging, agents.extra_agents)
    return sorted(objs, key=_apply_rank)


_ORDER = ["Namespace", "ServiceAccount", "ClusterRole", "ClusterRoleBinding", "Role", "RoleBinding", "Service", "DaemonSet", "Deployment"]


def _apply_rank(obj: Obj) -> int:
    kind = obj["kind"]
    return _ORDER.index(kind) if kind in _ORDER else len(_ORDER)


def to_yaml(objs: list[Obj]) -> str:
    """Objects as one multi-document YAML file, for `kubectl apply -f`."""
    return yaml.safe_dump_all(objs, sort_keys=False)
