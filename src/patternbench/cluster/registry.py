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


def parse_node_count(raw: object, local: bool = True) -> int:
    """--nodes as a whole number; for the local provider no more than this machine holds."""
    return parse_local_node_count(raw, local=local)


# The remote providers' module brings the kubernetes client (about 0.3 s): imported when one is chosen.
def _local(options: ProviderOptions, progress: Progress) -> ClusterProvider:
    return LocalProvider(bin_dir=options.bin_dir, progress=progress, keep_on_failure=options.keep_on_failure, nodes=options.nodes)


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


PROVIDERS: dict[str, Callable[[ProviderOptions, Progress], ClusterProvider]] = {
    "local": _local, "kind": _kind, "gke": _gke, "kubeconfig": _kubeconfig,
}
PROVIDER_NAMES = tuple(PROVIDERS)


def get_provider(name: str, options: ProviderOptions | None = None, progress: Progress | None = None) -> ClusterProvider:
    make = PROVIDERS.get(name)
    if make is None:
        raise UsageError(f"unknown provider {name!r}: choose one of {', '.join(PROVIDER_NAMES)}")
    return make(options or ProviderOptions(), progress or Progress())
