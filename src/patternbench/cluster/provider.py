"""The ClusterProvider protocol: what every way of getting a cluster (local, kind, gke, kubeconfig) offers.

Like kind's providers, each one declares its capabilities, so an experiment can refuse to
start on a cluster that cannot run it, before anything is created.
"""

from __future__ import annotations

import shutil
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Protocol, runtime_checkable

from patternbench.build.images import ImageArchive
from patternbench.errors import UsageError
from patternbench.load.placement import is_load_node
from patternbench.specs.faults import injectable


@dataclass(frozen=True)
class Capabilities:
    """What a provider can do; checked before an experiment starts."""

    multi_node: bool
    can_load_images: bool
    needs_registry: bool
    creates_cluster: bool
    runs_here: bool  # exercised by this project's own CI on this kind of machine


@dataclass(frozen=True)
class NodeInfo:
    name: str
    internal_ip: str
    ready: bool
    load: bool = False  # set aside for the in-cluster load (load/placement.py)


@dataclass(frozen=True)
class ContainerRef:
    """One container of one pod, as a fault targets it."""

    namespace: str
    pod: str
    container: str
    node: str
    container_id: str  # "containerd://<id>", from the pod's status


@runtime_checkable
class FaultInjector(Protocol):
    """An optional ability: injecting faults with real mechanisms. `fault_mechanisms` names
    the mechanisms it offers (of faults.PROVIDER_MECHANISMS: kill, freeze, stop-apiserver),
    never a fault: which faults that makes is faults.injectable's to say. Each method returns
    only once the fault is in place, and the `undo` callables put things back (idempotent)."""

    fault_mechanisms: frozenset[str]

    def kill_container(self, target: ContainerRef) -> None: ...

    def freeze_container(self, target: ContainerRef) -> Callable[[], None]: ...

    def stop_apiserver(self) -> Callable[[], None]: ...


@runtime_checkable
class HasNodePaths(Protocol):
    """An optional ability: the node paths of pod logs and of agent state differ from a
    kubelet's defaults (DEFAULT_NODE_PATHS) or are bound there per node."""

    def node_paths(self) -> tuple[str, str]: ...


@runtime_checkable
class HasEntryHost(Protocol):
    """An optional ability: the host a NodePort answers on from here; without it, the first
    node's InternalIP."""

    def entry_host(self) -> str: ...


@runtime_checkable
class UsesRegistry(Protocol):
    """An optional ability: images are pushed to `registry` and pulled from there (None:
    not given; a provider whose capabilities need one refuses to run without it)."""

    registry: str | None


@runtime_checkable
class Resizes(Protocol):
    """An optional ability: change the cluster's node count in place (the scale run's node
    axis). The local provider rebuilds itself; GKE resizes its node pool."""

    def resize(self, nodes: int) -> None: ...


@runtime_checkable
class KnowsIfUp(Protocol):
    """An optional ability: whether the cluster this provider makes is up right now."""

    def is_up(self) -> bool: ...


@runtime_checkable
class ReportsDaemons(Protocol):
    """An optional ability: the cluster's own daemons and per-node health (`cluster status`)."""

    def daemons(self) -> list: ...

    def status(self) -> list: ...

    def node_status(self, components: list) -> list: ...


@runtime_checkable
class HostEvidence(Protocol):
    """An optional ability: evidence this machine holds for a failed request. The cluster's
    own service proxies log here (each case keeps its slice of these logs), and the entry's
    NAT happens in this host's conntrack table (a refused probe looks its entry up)."""

    def evidence_logs(self) -> dict[str, Path]: ...

    def container_cgroups(self) -> Path:
        """The cpu-hierarchy directory under which every node's container cgroups live."""
        ...

    def evidence_metrics(self) -> dict[str, str]:
        """Prometheus endpoints of the cluster's own proxies (name -> URL), read per case."""
        ...

    def tripwire_prefix(self) -> str:
        """The kernel-log prefix of the host's tripwire (NodePort connections no pod saw)."""
        ...


DEFAULT_NODE_PATHS = ("/var/log/pods", "/var/lib/patternbench-agents")


@dataclass(frozen=True)
class Abilities:
    """A provider's optional abilities, resolved once before a run instead of probed for
    during it."""

    node_paths: tuple[str, str]
    entry_host: str | None  # None: the first node's InternalIP
    registry: str | None
    fault_kinds: frozenset[str]  # the faults it can inject (faults.injectable of its mechanisms)
    evidence_logs: dict[str, Path] = field(default_factory=dict)  # name -> log file on this machine
    conntrack_here: bool = False  # the entry's connections are NATed in this host's conntrack
    container_cgroups: Path | None = None  # where containers' CPU run and wait times are read
    evidence_metrics: dict[str, str] = field(default_factory=dict)  # name -> Prometheus URL
    tripwire_prefix: str | None = None  # the host tripwire's kernel-log prefix
    # The pods read this machine's own monotonic clock (the cluster runs here: one kernel, no
    # time namespace): in-cluster load records keep their times (cluster_load.py).
    clock_shared: bool = False


def abilities(provider: object) -> Abilities:
    """What the provider offers beyond the ClusterProvider protocol."""
    paths = provider.node_paths() if isinstance(provider, HasNodePaths) else DEFAULT_NODE_PATHS
    return Abilities(
        node_paths=(str(paths[0]), str(paths[1])),
        entry_host=provider.entry_host() if isinstance(provider, HasEntryHost) else None,
        registry=provider.registry if isinstance(provider, UsesRegistry) else None,
        fault_kinds=injectable(provider.fault_mechanisms) if isinstance(provider, FaultInjector) else frozenset(),
        evidence_logs=provider.evidence_logs() if isinstance(provider, HostEvidence) else {},
        conntrack_here=isinstance(provider, HostEvidence),
        container_cgroups=provider.container_cgroups() if isinstance(provider, HostEvidence) else None,
        evidence_metrics=provider.evidence_metrics() if isinstance(provider, HostEvidence) else {},
        tripwire_prefix=provider.tripwire_prefix() if isinstance(provider, HostEvidence) else None,
        clock_shared=isinstance(provider, HostEvidence),
    )


@runtime_checkable
class ClusterProvider(Protocol):
    name: str
    capabilities: Capabilities

    def create(self) -> None: ...

    def delete(self) -> None: ...

    def kubeconfig(self) -> Path: ...

    def load_images(self, archives: list[ImageArchive]) -> None: ...

    def nodes(self) -> list[NodeInfo]: ...


def require_cli(binary: str, what: str) -> str:
    """The path of an external CLI, or a one-line UsageError naming what to install."""
    path = shutil.which(binary)
    if path is None:
        raise UsageError(f"the {what} provider needs `{binary}` on PATH; install it first")
    return path


def nodes_from_api(kubeconfig: Path) -> list[NodeInfo]:
    """Nodes as the API server sees them: a short read-only query, so pykube reads best here."""
    import pykube  # about 0.2 s (requests): only a provider that asks the API for its nodes pays it

    api = pykube.HTTPClient(pykube.KubeConfig.from_file(str(kubeconfig)), timeout=10)
    found = []
    for node in pykube.Node.objects(api):
        status = node.obj.get("status", {})
        ip = next((a["address"] for a in status.get("addresses", []) if a["type"] == "InternalIP"), "")
        ready = any(c["type"] == "Ready" and c["status"] == "True" for c in status.get("conditions", []))
        found.append(NodeInfo(name=node.name, internal_ip=ip, ready=ready, load=is_load_node(node.obj["metadata"].get("labels"))))
    return found
