"""The render layer's base: the options of a run's objects, the manifests/ templates and the
helpers every builder shares. It knows no agent and no pattern (those build on it)."""

from __future__ import annotations

import secrets
from dataclasses import dataclass, field
from pathlib import Path
from string import Template
from typing import TYPE_CHECKING, Any, Iterable

import yaml

if TYPE_CHECKING:
    from patternbench.specs.topology import Topology

MANIFESTS = Path(__file__).resolve().parents[3] / "manifests"
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
    loadgen: str = f"{REGISTRY}/loadgen:v1"  # the in-cluster load (build/load_image.py)

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
    cluster_domain: str = "cluster.local"

    @property
    def app_namespace(self) -> str:
        return self.run_id

    @property
    def agents_namespace(self) -> str:
        return f"{self.run_id}-agents"

    @property
    def load_namespace(self) -> str:
        return f"{self.run_id}-load"

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
        "load_namespace": opts.load_namespace,
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
            "app.yaml", values(opts, service=svc.name, replicas=svc.replicas, downstreams=",".join(svc.calls), route=topology.route.value)
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


def to_yaml(objs: list[Obj]) -> str:
    """Objects as one multi-document YAML file, for `kubectl apply -f`."""
    return yaml.safe_dump_all(objs, sort_keys=False)
