from __future__ import annotations

from pathlib import Path

import pytest
import yaml

from patternbench.cluster import remote
from patternbench.cluster.provider import ClusterProvider
from patternbench.cluster.registry import PROVIDER_NAMES, ProviderOptions, get_provider
from patternbench.errors import UsageError


def test_every_provider_satisfies_the_protocol() -> None:
    for name in PROVIDER_NAMES:
        provider = get_provider(name, ProviderOptions())
        assert isinstance(provider, ClusterProvider)
        assert provider.name == name


def test_capabilities_say_what_runs_here() -> None:
    caps = {n: get_provider(n).capabilities for n in PROVIDER_NAMES}
    assert caps["local"].multi_node and caps["local"].can_load_images and not caps["local"].needs_registry
    assert caps["kind"].multi_node and caps["kind"].can_load_images
    assert caps["gke"].needs_registry and not caps["gke"].can_load_images
    assert caps["kubeconfig"].creates_cluster is False


def test_unknown_provider_is_usage_error() -> None:
    with pytest.raises(UsageError, match="unknown provider 'minikube'"):
        get_provider("minikube")


def test_kind_config_has_one_control_plane_and_workers() -> None:
    doc = yaml.safe_load(remote.kind_config(3))
    assert [n["role"] for n in doc["nodes"]] == ["control-plane", "worker", "worker"]
    assert doc["apiVersion"] == "kind.x-k8s.io/v1alpha4"
    with pytest.raises(UsageError):
        remote.kind_config(1)


def test_kind_command_lines() -> None:
    assert remote.kind_create_cmd("pb", Path("/c.yaml"), Path("/k")) == [
        "kind", "create", "cluster", "--name", "pb", "--config", "/c.yaml", "--kubeconfig", "/k", "--wait", "120s",
    ]
    assert remote.kind_load_cmd("pb", Path("/a.tar")) == ["kind", "load", "image-archive", "/a.tar", "--name", "pb"]
    assert remote.kind_delete_cmd("pb") == ["kind", "delete", "cluster", "--name", "pb"]


def test_gke_command_lines() -> None:
    create = remote.gke_create_cmd("pb", "proj", "europe-west1-b", 3)
    assert create[:5] == ["gcloud", "container", "clusters", "create", "pb"]
    assert "--project=proj" in create and "--zone=europe-west1-b" in create and "--num-nodes=3" in create
    assert remote.gke_delete_cmd("pb", "proj", "z")[-1] == "--quiet"
    assert "get-credentials" in remote.gke_credentials_cmd("pb", "proj", "z")
    resize = remote.gke_resize_cmd("pb", "proj", "z", 6)
    assert resize[:5] == ["gcloud", "container", "clusters", "resize", "pb"] and "--node-pool=default-pool" in resize and "--num-nodes=6" in resize


def test_which_providers_resize() -> None:
    """The scale run's node axis: the local cluster rebuilds itself, GKE resizes the pool it
    made; kind cannot add nodes to a running cluster and a kubeconfig's cluster is not ours."""
    from patternbench.cluster.local.provider import LocalProvider
    from patternbench.cluster.provider import Resizes

    assert isinstance(LocalProvider(), Resizes) and isinstance(remote.GkeProvider(project="p"), Resizes)
    assert not isinstance(remote.KindProvider(), Resizes) and not isinstance(remote.KubeconfigProvider(path=Path("/x")), Resizes)


def test_gke_does_not_resize_a_cluster_it_did_not_create(tmp_path: Path) -> None:
    with pytest.raises(UsageError, match="not created by patternbench"):
        remote.GkeProvider(project="p", workdir=tmp_path).resize(4)


def test_push_commands_for_each_tool() -> None:
    assert remote.registry_push_cmd("skopeo", Path("/a.tar"), "r/x:1") == ["skopeo", "copy", "oci-archive:/a.tar", "docker://r/x:1"]
    assert remote.registry_push_cmd("crane", Path("/a.tar"), "r/x:1") == ["crane", "push", "/a.tar", "r/x:1"]


def test_missing_cli_is_one_line_error(monkeypatch) -> None:
    monkeypatch.setenv("PATH", "/nonexistent")
    with pytest.raises(UsageError, match="needs `kind` on PATH"):
        remote.KindProvider().create()
    with pytest.raises(UsageError, match="needs `gcloud` on PATH"):
        remote.GkeProvider(project="p").create()


def test_push_without_registry_or_tool(monkeypatch) -> None:
    with pytest.raises(UsageError, match="--registry"):
        remote.push_images([], None)
    monkeypatch.setenv("PATH", "/nonexistent")
    with pytest.raises(UsageError, match="skopeo, crane or regctl"):
        remote.push_images([], "registry.example:5000")


KUBECONFIG = {
    "apiVersion": "v1",
    "kind": "Config",
    "clusters": [{"name": "c", "cluster": {"server": "https://127.0.0.1:1"}}],
    "users": [{"name": "u", "user": {}}],
    "contexts": [{"name": "a", "context": {"cluster": "c", "user": "u"}}, {"name": "b", "context": {"cluster": "c", "user": "u"}}],
    "current-context": "a",
}


def test_kubeconfig_provider_selects_context_without_editing_the_source(tmp_path: Path) -> None:
    source = tmp_path / "config"
    source.write_text(yaml.safe_dump(KUBECONFIG))
    provider = remote.KubeconfigProvider(path=source, context="b", workdir=tmp_path / "work")
    out = provider.kubeconfig()
    assert yaml.safe_load(out.read_text())["current-context"] == "b"
    assert yaml.safe_load(source.read_text())["current-context"] == "a"
    provider.delete()  # never deletes anything
    assert source.exists()


def test_kubeconfig_provider_bad_input(tmp_path: Path) -> None:
    source = tmp_path / "config"
    source.write_text(yaml.safe_dump(KUBECONFIG))
    with pytest.raises(UsageError, match="context 'zzz' is not in"):
        remote.KubeconfigProvider(path=source, context="zzz", workdir=tmp_path).kubeconfig()
    with pytest.raises(UsageError, match="does not exist"):
        remote.KubeconfigProvider(path=tmp_path / "missing", workdir=tmp_path).kubeconfig()
    (tmp_path / "junk").write_text("just a string")
    with pytest.raises(UsageError, match="not a kubeconfig"):
        remote.KubeconfigProvider(path=tmp_path / "junk", workdir=tmp_path).kubeconfig()


def test_kubeconfig_provider_unreachable_cluster_is_usage_error(tmp_path: Path) -> None:
    source = tmp_path / "config"
    source.write_text(yaml.safe_dump(KUBECONFIG))
    with pytest.raises(UsageError, match="cannot reach the cluster"):
        remote.KubeconfigProvider(path=source, workdir=tmp_path / "w").create()
