"""The kind, gke and kubeconfig providers: clusters made (or owned) by another tool.

They cannot run on this project's own machines (no Docker engine, no cloud account), so
their configs and command lines are pure functions, unit-tested, and every external CLI is
checked up front with a one-line error naming what to install.
"""

from __future__ import annotations

import os
import shutil
import subprocess
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

import yaml
from kubernetes import client, config

from patternbench import pki
from patternbench.build.images import ImageArchive
from patternbench.cluster.provider import Capabilities, ContainerRef, NodeInfo, nodes_from_api, require_cli
from patternbench.errors import UsageError
from patternbench.operate.kube import poll
from patternbench.progress import Progress


def _run(cmd: list[str], what: str) -> subprocess.CompletedProcess[str]:
    result = subprocess.run(cmd, capture_output=True, text=True)
    if result.returncode != 0:
        last = (result.stderr.strip().splitlines() or ["(no output)"])[-1]
        raise UsageError(f"{what} failed: {last}")
    return result


class ApiFaults:
    """Faults through the API alone, for clusters whose processes are out of reach: the
    crash is the pod's deletion with grace period 0 (for a sidecar agent that recreates the
    whole pod, a bigger fault than the local provider's container kill; the report names
    the provider). Hangs and API-server outages need the local provider."""

    fault_mechanisms = frozenset({"kill"})  # a pod deletion; scaling to 0 is the API's, any cluster's

    def kill_container(self, target: ContainerRef) -> None:
        api = config.new_client_from_config(config_file=str(self.kubeconfig()))  # type: ignore[attr-defined]
        client.CoreV1Api(api).delete_namespaced_pod(target.pod, target.namespace, grace_period_seconds=0, _request_timeout=15)

    def freeze_container(self, target: ContainerRef) -> Callable[[], None]:
        raise UsageError("freezing a container needs the local provider")

    def stop_apiserver(self) -> Callable[[], None]:
        raise UsageError("stopping the API server needs the local provider")


# ---- kind ----------------------------------------------------------------------------


def kind_config(nodes: int) -> str:
    """A kind cluster of one control plane and `nodes - 1` workers (at least one worker)."""
    if nodes < 2:
        raise UsageError("kind needs --nodes >= 2 (one control plane and at least one worker)")
    doc = {
        "kind": "Cluster",
        "apiVersion": "kind.x-k8s.io/v1alpha4",
        "nodes": [{"role": "control-plane"}] + [{"role": "worker"} for _ in range(nodes - 1)],
    }
    return yaml.safe_dump(doc, sort_keys=False)


def kind_create_cmd(name: str, config_path: Path, kubeconfig: Path) -> list[str]:
    return ["kind", "create", "cluster", "--name", name, "--config", str(config_path), "--kubeconfig", str(kubeconfig), "--wait", "120s"]


def kind_load_cmd(name: str, archive: Path) -> list[str]:
    return ["kind", "load", "image-archive", str(archive), "--name", name]


def kind_delete_cmd(name: str) -> list[str]:
    return ["kind", "delete", "cluster", "--name", name]


def kind_export_kubeconfig_cmd(name: str, kubeconfig: Path) -> list[str]:
    return ["kind", "export", "kubeconfig", "--name", name, "--kubeconfig", str(kubeconfig)]


@dataclass
class KindProvider(ApiFaults):
    name_: str = "patternbench"
    node_count: int = 3
    workdir: Path = field(default_factory=lambda: Path.home() / ".cache" / "patternbench" / "kind")
    progress: Progress = field(default_factory=Progress)

    name = "kind"
    capabilities = Capabilities(multi_node=True, can_load_images=True, needs_registry=False, creates_cluster=True, runs_here=False)

    def kubeconfig(self) -> Path:
        return self.workdir / f"{self.name_}.kubeconfig"

    def create(self) -> None:
        require_cli("kind", "kind")
        require_cli("docker", "kind")
        self.workdir.mkdir(parents=True, exist_ok=True)
        existing = _run(["kind", "get", "clusters"], "kind get clusters").stdout.split()
        if self.name_ in existing:  # idempotent: reuse it, as `cluster up` does for local
            _run(kind_export_kubeconfig_cmd(self.name_, self.kubeconfig()), "kind export kubeconfig")
            return
        config = self.workdir / f"{self.name_}.yaml"
        config.write_text(kind_config(self.node_count))
        with self.progress.step(f"kind create cluster {self.name_}"):
            _run(kind_create_cmd(self.name_, config, self.kubeconfig()), "kind create cluster")

    def delete(self) -> None:
        require_cli("kind", "kind")
        _run(kind_delete_cmd(self.name_), "kind delete cluster")

    def load_images(self, archives: list[ImageArchive]) -> None:
        require_cli("kind", "kind")
        for archive in archives:
            _run(kind_load_cmd(self.name_, archive.path), f"kind load image-archive {archive.path}")

    def nodes(self) -> list[NodeInfo]:
        return nodes_from_api(self.kubeconfig())


# ---- gke -----------------------------------------------------------------------------


def gke_create_cmd(name: str, project: str, zone: str, nodes: int) -> list[str]:
    return [
        "gcloud", "container", "clusters", "create", name,
        f"--project={project}", f"--zone={zone}", f"--num-nodes={nodes}",
        "--machine-type=e2-standard-2", "--labels=created-by=patternbench", "--quiet",
    ]


def gke_resize_cmd(name: str, project: str, zone: str, nodes: int, pool: str = "default-pool") -> list[str]:
    """The node pool `gcloud container clusters create` made, resized (gcloud waits for it)."""
    return [
        "gcloud", "container", "clusters", "resize", name, f"--node-pool={pool}", f"--num-nodes={nodes}",
        f"--project={project}", f"--zone={zone}", "--quiet",
    ]


def gke_describe_cmd(name: str, project: str, zone: str) -> list[str]:
    return ["gcloud", "container", "clusters", "describe", name, f"--project={project}", f"--zone={zone}", "--format=value(name)"]


def gke_credentials_cmd(name: str, project: str, zone: str) -> list[str]:
    return ["gcloud", "container", "clusters", "get-credentials", name, f"--project={project}", f"--zone={zone}"]


def gke_delete_cmd(name: str, project: str, zone: str) -> list[str]:
    return ["gcloud", "container", "clusters", "delete", name, f"--project={project}", f"--zone={zone}", "--quiet"]


def registry_push_cmd(tool: str, archive: Path, ref: str) -> list[str]:
    """Push an OCI archive with a standard tool: skopeo, crane or regctl."""
    if tool == "skopeo":
        return ["skopeo", "copy", f"oci-archive:{archive}", f"docker://{ref}"]
    if tool == "crane":
        return ["crane", "push", str(archive), ref]
    if tool == "regctl":
        return ["regctl", "image", "import", ref, str(archive)]
    raise ValueError(f"unknown push tool {tool}")


def push_images(archives: list[ImageArchive], registry: str | None) -> list[str]:
    """Push every archive to `registry`; returns the pushed refs."""
    if not registry:
        raise UsageError("this provider needs --registry to push images to (the cluster pulls them from there)")
    tool = next((t for t in ("skopeo", "crane", "regctl") if _which(t)), None)
    if tool is None:
        raise UsageError("pushing images needs one of skopeo, crane or regctl on PATH; install one (e.g. `apt-get install skopeo`)")
    refs = []
    for archive in archives:
        ref = f"{registry.rstrip('/')}/{archive.ref.split('/', 1)[-1]}"
        _run(registry_push_cmd(tool, archive.path, ref), f"{tool} push {ref}")
        refs.append(ref)
    return refs


def _which(binary: str) -> str | None:
    return shutil.which(binary)


@dataclass
class GkeProvider(ApiFaults):
    name_: str = "patternbench"
    project: str | None = None
    zone: str = "us-central1-a"
    node_count: int = 3
    registry: str | None = None
    workdir: Path = field(default_factory=lambda: Path.home() / ".cache" / "patternbench" / "gke")
    progress: Progress = field(default_factory=Progress)

    name = "gke"
    capabilities = Capabilities(multi_node=True, can_load_images=False, needs_registry=True, creates_cluster=True, runs_here=False)

    def _project(self) -> str:
        if not self.project:
            raise UsageError("the gke provider needs --project")
        return self.project

    def kubeconfig(self) -> Path:
        return self.workdir / f"{self.name_}.kubeconfig"

    def _created_marker(self) -> Path:
        return self.workdir / f"{self.name_}.created"

    def create(self) -> None:
        require_cli("gcloud", "gke")
        project = self._project()
        self.workdir.mkdir(parents=True, exist_ok=True)
        exists = subprocess.run(gke_describe_cmd(self.name_, project, self.zone), capture_output=True, text=True).returncode == 0
        if not exists:
            with self.progress.step(f"gcloud container clusters create {self.name_}"):
                _run(gke_create_cmd(self.name_, project, self.zone, self.node_count), "gcloud clusters create")
            self._created_marker().write_text(project)
        env_kubeconfig = str(self.kubeconfig())
        result = subprocess.run(
            gke_credentials_cmd(self.name_, project, self.zone),
            capture_output=True, text=True, env={**os.environ, "KUBECONFIG": env_kubeconfig},
        )
        if result.returncode != 0:
            raise UsageError(f"gcloud get-credentials failed: {result.stderr.strip()[-200:]}")

    def delete(self) -> None:
        """Deletes the cluster only if this tool created it; a reused cluster is left alone."""
        if not self._created_marker().exists():
            return
        require_cli("gcloud", "gke")
        _run(gke_delete_cmd(self.name_, self._project(), self.zone), "gcloud clusters delete")
        self._created_marker().unlink()

    def load_images(self, archives: list[ImageArchive]) -> None:
        push_images(archives, self.registry)

    def nodes(self) -> list[NodeInfo]:
        return nodes_from_api(self.kubeconfig())

    def resize(self, nodes: int) -> None:
        """Resizes: the node pool this tool created, to `nodes` Ready nodes (a cluster it did
        not create is not resized)."""
        if not self._created_marker().exists():
            raise UsageError(f"the gke cluster {self.name_} was not created by patternbench: resize it yourself and run one node count per scale run")
        require_cli("gcloud", "gke")
        with self.progress.step(f"gcloud container clusters resize {self.name_} to {nodes} nodes"):
            _run(gke_resize_cmd(self.name_, self._project(), self.zone, nodes), "gcloud clusters resize")
            poll(f"{nodes} Ready nodes", lambda: len([n for n in self.nodes() if n.ready and not n.load]) == nodes, 600, interval_s=5)  # the load's pool is not resized


# ---- kubeconfig ----------------------------------------------------------------------


def write_context_kubeconfig(source: Path, context: str | None, out: Path) -> Path:
    """A copy of `source` whose current-context is `context`, so the user's file is never edited."""
    try:
        doc = yaml.safe_load(source.read_text())
    except (OSError, yaml.YAMLError) as exc:
        raise UsageError(f"cannot read kubeconfig {source}: {exc}") from None
    if not isinstance(doc, dict):
        raise UsageError(f"{source} is not a kubeconfig")
    if context:
        names = [c.get("name") for c in doc.get("contexts") or []]
        if context not in names:
            raise UsageError(f"context {context!r} is not in {source} (it has: {', '.join(map(str, names)) or 'none'})")
        doc["current-context"] = context
    out.parent.mkdir(parents=True, exist_ok=True)
    return pki.write_with_mode(out, yaml.safe_dump(doc).encode(), 0o600)


@dataclass
class KubeconfigProvider(ApiFaults):
    path: Path | None = None
    context: str | None = None
    registry: str | None = None
    workdir: Path = field(default_factory=lambda: Path.home() / ".cache" / "patternbench" / "kubeconfig")

    name = "kubeconfig"
    capabilities = Capabilities(multi_node=True, can_load_images=False, needs_registry=True, creates_cluster=False, runs_here=True)

    def _source(self) -> Path:
        source = self.path or Path(os.environ.get("KUBECONFIG", Path.home() / ".kube" / "config"))
        if not source.is_file():
            raise UsageError(f"kubeconfig {source} does not exist (give --kubeconfig FILE)")
        return source

    def kubeconfig(self) -> Path:
        return write_context_kubeconfig(self._source(), self.context, self.workdir / "kubeconfig.yaml")

    def create(self) -> None:
        """Nothing to create: check that the cluster answers."""
        self.nodes()

    def delete(self) -> None:
        """Never deletes someone else's cluster."""

    def load_images(self, archives: list[ImageArchive]) -> None:
        push_images(archives, self.registry)

    def nodes(self) -> list[NodeInfo]:
        try:
            return nodes_from_api(self.kubeconfig())
        except UsageError:
            raise
        except Exception as exc:  # noqa: BLE001 - any failure to reach the cluster is an environment problem
            raise UsageError(f"cannot reach the cluster in {self._source()}: {type(exc).__name__}: {exc}") from None
