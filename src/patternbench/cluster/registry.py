"""Provider names -> provider objects, built from one options record."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Callable

from patternbench.cluster.local.provider import LocalProvider
from patternbench.cluster.local.settings import parse_node_count as parse_local_node_count
from patternbench.cluster.provider import ClusterProvider
from patternbench.errors import UsageError
from patternbench.progress import Progress


@dataclass(frozen=True)
class ProviderOptions:
    bin_dir: Path | None = None
    name: str = "patternbench"
    nodes: int = 3
    kubeconfig: Path | None = None
    context: str | None = None
    project: str | None = None
    zone: str = "us-central1-a"
    registry: str | None = None
    keep_on_failure: bool = False
    # local: nodes for the in-cluster load only (load/placement.py). None: what the cluster
    # has (a new one: none), but at least min_load_nodes.
    load_nodes: int | None = None
    min_load_nodes: int = 0


def parse_node_count(raw: object, local: bool = True) -> int:
    """--nodes as a whole number; for the local provider no more than this machine holds."""
    return parse_local_node_count(raw, local=local)


# The remote providers' module brings the kubernetes client (about 0.3 s): imported when one is chosen.
def _local(options: ProviderOptions, progress: Progress) -> ClusterProvider:
    return LocalProvider(bin_dir=options.bin_dir, progress=progress, keep_on_failure=options.keep_on_failure, nodes=options.nodes,
        load_nodes=options.load_nodes, min_load_nodes=options.min_load_nodes,
    )


def _kind(options: ProviderOptions, progress: Progress) -> ClusterProvider:
    from patternbench.cluster.remote import KindProvider

    return KindProvider(name_=options.name, node_count=options.nodes, progress=progress)


def _gke(options: ProviderOptions, progress: Progress) -> ClusterProvider:
    from patternbench.cluster.remote import GkeProvider

    return GkeProvider(
        name_=options.name, project=options.project, zone=options.zone, node_count=options.nodes,
        registry=options.registry, progress=progress,
    )


def _kubeconfig(options: ProviderOptions, progress: Progress) -> ClusterProvider:
    from patternbench.cluster.remote import KubeconfigProvider

    return KubeconfigProvider(path=options.kubeconfig, context=options.context, registry=options.registry)


@dataclass(frozen=True)
class ProviderEntry:
    make: Callable[[ProviderOptions, Progress], ClusterProvider]
    # Where the load runs unless --load-from says (load/placement.py): from this machine where
    # the harness reaches the nodes' addresses (local, kind), from inside the cluster where
    # its NodePorts are private or firewalled (gke, any kubeconfig).
    load_from: str


PROVIDERS: dict[str, ProviderEntry] = {
    "local": ProviderEntry(_local, "host"), "kind": ProviderEntry(_kind, "host"),
    "gke": ProviderEntry(_gke, "cluster"), "kubeconfig": ProviderEntry(_kubeconfig, "cluster"),
}
PROVIDER_NAMES = tuple(PROVIDERS)


def provider_entry(name: str) -> ProviderEntry:
    entry = PROVIDERS.get(name)
    if entry is None:
        raise UsageError(f"unknown provider {name!r}: choose one of {', '.join(PROVIDER_NAMES)}")
    return entry


def get_provider(name: str, options: ProviderOptions | None = None, progress: Progress | None = None) -> ClusterProvider:
    return provider_entry(name).make(options or ProviderOptions(), progress or Progress())
