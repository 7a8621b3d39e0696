"""Provider names -> provider objects, built from one options record."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from patternbench.cluster.provider import ClusterProvider
from patternbench.errors import UsageError
from patternbench.progress import Progress

PROVIDER_NAMES = ("local", "kind", "gke", "kubeconfig")


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
    from patternbench.cluster.local.settings import parse_node_count as parse

    return parse(raw, local=local)


def get_provider(name: str, options: ProviderOptions | None = None, progress: Progress | None = None) -> ClusterProvider:
    options = options or ProviderOptions()
    progress = progress or Progress()
    if name == "local":
        from patternbench.cluster.local.provider import LocalProvider

        return LocalProvider(bin_dir=options.bin_dir, progress=progress, keep_on_failure=options.keep_on_failure, nodes=options.nodes)
    if name == "kind":
        from patternbench.cluster.remote import KindProvider

        return KindProvider(name_=options.name, node_count=options.nodes, progress=progress)
    if name == "gke":
        from patternbench.cluster.remote import GkeProvider

        return GkeProvider(
            name_=options.name, project=options.project, zone=options.zone, node_count=options.nodes,
            registry=options.registry, progress=progress,
        )
    if name == "kubeconfig":
        from patternbench.cluster.remote import KubeconfigProvider

        return KubeconfigProvider(path=options.kubeconfig, context=options.context, registry=options.registry)
    raise UsageError(f"unknown provider {name!r}: choose one of {', '.join(PROVIDER_NAMES)}")
