"""The ClusterProvider protocol: what every way of getting a cluster (local, kind, gke, kubeconfig) offers.

Like kind's providers, each one declares its capabilities, so an experiment can refuse to
start on a cluster that cannot run it, before anything is created.
"""

from __future__ import annotations

import shutil
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Protocol, runtime_checkable

from patternbench.errors import UsageError
from patternbench.images import ImageArchive


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
    """An optional ability: injecting faults with real mechanisms. `fault_kinds` names the
    faults of faults.FAULTS this provider can inject; each method returns only once the fault
    is in place, and the `undo` callables put things back (idempotent)."""

    fault_kinds: frozenset[str]

    def kill_container(self, target: ContainerRef) -> None: ...

    def freeze_container(self, target: ContainerRef) -> Callable[[], None]: ...

    def stop_apiserver(self) -> Callable[[], None]: ...


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
    import pykube

    api = pykube.HTTPClient(pykube.KubeConfig.from_file(str(kubeconfig)), timeout=10)
    found = []
    for node in pykube.Node.objects(api):
        status = node.obj.get("status", {})
        ip = next((a["address"] for a in status.get("addresses", []) if a["type"] == "InternalIP"), "")
        ready = any(c["type"] == "Ready" and c["status"] == "True" for c in status.get("conditions", []))
        found.append(NodeInfo(name=node.name, internal_ip=ip, ready=ready))
    return found
