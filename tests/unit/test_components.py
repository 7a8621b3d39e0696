from __future__ import annotations

import json
from pathlib import Path

import pytest

from patternbench.build import components
from patternbench.build.components import BuildCache, GoComponent
from patternbench.errors import UsageError

UPSTREAM_GO_MOD = """module k8s.io/kubernetes

go 1.25.0

require (
	k8s.io/api v0.0.0
	github.com/spf13/cobra v1.9.1
)

replace (
	k8s.io/api => ./staging/src/k8s.io/api
	k8s.io/client-go => ./staging/src/k8s.io/client-go
	github.com/some/fork => github.com/other/fork v1.2.3
)
"""


def test_staging_replaces_point_at_published_versions() -> None:
    lines = components.staging_replace_lines(UPSTREAM_GO_MOD, "v1.34.12")
    assert lines == ["\tk8s.io/api => k8s.io/api v0.34.12", "\tk8s.io/client-go => k8s.io/client-go v0.34.12"]


def test_wrapper_go_mod_requires_upstream_and_replaces() -> None:
    comp = GoComponent(name="kubernetes", module="k8s.io/kubernetes", version="v1.34.12", packages=("k8s.io/kubernetes/cmd/kubelet",))
    text = components.wrapper_go_mod(comp, ["\tk8s.io/api => k8s.io/api v0.34.12"])
    assert "require k8s.io/kubernetes v1.34.12" in text
    assert "replace (\n\tk8s.io/api => k8s.io/api v0.34.12\n)" in text


def test_version_ldflags_make_kubectl_report_the_release() -> None:
    flags = components.kubernetes_ldflags("v1.34.12")
    assert "-X k8s.io/component-base/version.gitVersion=v1.34.12" in flags
    assert "-X k8s.io/client-go/pkg/version.gitMinor=34" in flags
    assert "-X k8s.io/component-base/version.gitMajor=1" in flags


def test_pinned_versions() -> None:
    assert components.KUBERNETES_VERSION.startswith("v1.34.")
    major, minor, patch = (int(x) for x in components.ETCD_VERSION.lstrip("v").split("."))
    assert (major, minor) == (3, 5) and patch >= 13


def test_binary_names_follow_go_build_and_renames() -> None:
    etcd = next(c for c in components.default_components() if c.name == "etcd")
    assert etcd.go_output_names() == {"go.etcd.io/etcd/server/v3": "server"}
    assert etcd.binary_names() == ("etcd",)
    kube = next(c for c in components.default_components() if c.name == "kubernetes")
    assert set(kube.binary_names()) == set(components.KUBERNETES_BINARIES)


def _fake_built(root: Path, comp: GoComponent, content: bytes = b"binary") -> Path:
    directory = root / "components" / comp.key
    directory.mkdir(parents=True)
    for name in comp.binary_names():
        (directory / name).write_bytes(content)
    manifest = {
        "sizes": {n: len(content) for n in comp.binary_names()},
        "sha256": {n: components.sha256_file(directory / n) for n in comp.binary_names()},
    }
    (directory / "manifest.json").write_text(json.dumps(manifest))
    return directory


COMP = GoComponent(name="demo", module="example.com/demo", version="v1.0.0", packages=("example.com/demo/cmd/demo",))


def test_cache_hit_needs_no_go(tmp_path: Path, monkeypatch) -> None:
    _fake_built(tmp_path, COMP)
    monkeypatch.setenv("PATH", "/nonexistent")
    cache = BuildCache(root=tmp_path)
    assert cache.ensure(COMP) == tmp_path / "components" / COMP.key
    cache.verify(COMP)


def test_truncated_binary_is_a_corrupt_cache(tmp_path: Path) -> None:
    directory = _fake_built(tmp_path, COMP)
    (directory / "demo").write_bytes(b"bin")
    with pytest.raises(UsageError, match="corrupt build cache"):
        BuildCache(root=tmp_path).is_built(COMP)


def test_unreadable_manifest_is_a_corrupt_cache(tmp_path: Path) -> None:
    directory = _fake_built(tmp_path, COMP)
    (directory / "manifest.json").write_text("{not json")
    with pytest.raises(UsageError, match="corrupt build cache"):
        BuildCache(root=tmp_path).is_built(COMP)


def test_changed_content_fails_verify(tmp_path: Path) -> None:
    directory = _fake_built(tmp_path, COMP)
    (directory / "demo").write_bytes(b"BINARY")  # same size, other bytes
    cache = BuildCache(root=tmp_path)
    assert cache.is_built(COMP)
    with pytest.raises(UsageError, match="sha256"):
        cache.verify(COMP)


def test_bin_dir_binaries_win_over_the_cache(tmp_path: Path) -> None:
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    for comp in components.default_components():
        for name in comp.binary_names():
            (bin_dir / name).write_text("x")
    found = components.resolve_binaries(BuildCache(root=tmp_path / "cache"), bin_dir, build=False)
    assert found["kubelet"] == bin_dir / "kubelet"
    assert found["etcd"] == bin_dir / "etcd"


def test_missing_build_without_build_says_run_setup(tmp_path: Path) -> None:
    with pytest.raises(UsageError, match="patternbench setup"):
        components.resolve_binaries(BuildCache(root=tmp_path), None, build=False)
