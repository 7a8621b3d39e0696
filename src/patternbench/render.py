"""Topology x pattern -> Kubernetes objects.

The application objects come from the same templates for every pattern; a pattern is a
transformation of them, as client-side sidecar injection is (`linkerd inject`): add sidecar
containers and volumes, or point the app at node agents and add DaemonSets. What each
pattern and agent adds is in their specs (patterns.py, agents.py); this module holds the
templates and the helpers they share.
"""

from __future__ import annotations

import secrets

from dataclasses import dataclass, field
from pathlib import Path
from string import Template
from typing import TYPE_CHECKING, Any, Iterable

import yaml

if TYPE_CHECKING:
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
    # Agents from agent files that take their built-in agent's place in this run (by name).
    stand_ins: tuple[str, ...] = ()
    # In-place upgrades (inplace.py) take a pod out of its Services by this label.
    serving_label: bool = False
    # Every app log line carries the run's token and the sink counts only those: a pod that is
    # not the run's cannot add, fill in or forge lines.
    log_token: str = field(default_factory=lambda: secrets.token_hex(8))
    # The cluster's node count: node agents' CPU requests follow it (size_agent_requests).
    # None renders every agent container with one sidecar's request (unit tests).
    nodes: int | None = None

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


def values(opts: RenderOptions, **extra: Any) -> dict[str, Any]:
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
        "log_token": opts.log_token,
        "pod_logs_dir": opts.pod_logs_dir,
        "agent_state_dir": opts.agent_state_dir,
        "app_drain": "0s" if opts.naive else "5s",
        "proxy_drain": "0s" if opts.naive else "3s",
        "index": 0,
        **extra,
    }


def find(objs: Iterable[Obj], kind: str, name: str | None = None) -> list[Obj]:
    return [o for o in objs if o["kind"] == kind and (name is None or o["metadata"]["name"] == name)]


def set_env(container: Obj, name: str, value: str) -> None:
    env = container.setdefault("env", [])
    env[:] = [e for e in env if e["name"] != name]
    env.append({"name": name, "value": value})


# Every app Service selects on it when a run upgrades sidecars in place: "no" takes a pod
# out of the endpoints without touching it (inplace.py).
SERVING_LABEL = "patternbench.dev/serving"


def app_objects(topology: Topology, opts: RenderOptions) -> list[Obj]:
    """The application: ServiceAccount, Service and Deployment per service; the entry's
    Service is a NodePort so load can reach it from the host."""
    objs: list[Obj] = []
    for svc in topology.services:
        docs = load_template(
            "app.yaml", values(opts, service=svc.name, replicas=svc.replicas, downstreams=",".join(svc.calls))
        )
        if svc.name == topology.entry:
            find(docs, "Service")[0]["spec"]["type"] = "NodePort"
        if opts.serving_label:
            find(docs, "Service")[0]["spec"]["selector"][SERVING_LABEL] = "yes"
            find(docs, "Deployment")[0]["spec"]["template"]["metadata"]["labels"][SERVING_LABEL] = "yes"
        objs += docs
    return objs


def app_container(deployment: Obj) -> Obj:
    return next(c for c in deployment["spec"]["template"]["spec"]["containers"] if c["name"] == "app")


def render(topology: Topology, pattern: Pattern, opts: RenderOptions) -> list[Obj]:
    """Every object of a run, in apply order: namespaces, RBAC, sink, agents, application.
    The pattern's spec transforms the application's objects (patterns.PatternSpec.transform)."""
    from patternbench.patterns import pattern_spec  # patterns build on this module's helpers

    objs = load_template("namespaces.yaml", values(opts))
    objs += app_objects(topology, opts)
    spec = pattern_spec(pattern)
    if not spec.placement:
        return objs  # no agent: the application as it is
    spec.transform(objs, topology, opts)
    size_agent_requests(objs, topology, opts)
    return sorted(objs, key=_apply_rank)


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
    from patternbench.agents import agent_by_container

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
    from patternbench.agents import agent_by_container

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


_ORDER = ["Namespace", "ServiceAccount", "ClusterRole", "ClusterRoleBinding", "Role", "RoleBinding", "Service", "DaemonSet", "Deployment"]


def _apply_rank(obj: Obj) -> int:
    kind = obj["kind"]
    return _ORDER.index(kind) if kind in _ORDER else len(_ORDER)


def to_yaml(objs: list[Obj]) -> str:
    """Objects as one multi-document YAML file, for `kubectl apply -f`."""
    return yaml.safe_dump_all(objs, sort_keys=False)
