"""Kubernetes, etcd and CoreDNS built from their Go modules, cached by component and version.

No container registry and no release download is needed: everything comes from the Go
module proxy and is compiled once into ``~/.cache/patternbench/components/<name>-<version>``.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import shutil
import subprocess
from dataclasses import dataclass, field
from pathlib import Path

from patternbench.build.go_build import GoBuild, run_go_build
from patternbench.errors import UsageError
from patternbench.progress import Progress

# Kubernetes 1.34 is the last minor whose kubelet still runs on cgroup v1 without
# failCgroupV1 trouble; this project's machines have cgroup v1.
KUBERNETES_VERSION = "v1.34.12"
# kube-apiserver 1.34 supports etcd >= 3.5.13; Debian's 3.4 is too old.
ETCD_VERSION = "v3.5.35"
# The CoreDNS release kubeadm 1.34 deploys (cmd/kubeadm/app/constants: CoreDNSVersion).
COREDNS_VERSION = "v1.12.1"

KUBERNETES_BINARIES = (
    "kube-apiserver",
    "kube-controller-manager",
    "kube-scheduler",
    "kubelet",
    "kube-proxy",
    "kubectl",
)


def cache_root() -> Path:
    """Where slow builds are kept; PATTERNBENCH_CACHE overrides ``~/.cache/patternbench``."""
    override = os.environ.get("PATTERNBENCH_CACHE")
    if override:
        return Path(override)
    return Path(os.environ.get("XDG_CACHE_HOME", Path.home() / ".cache")) / "patternbench"


def go_env(root: Path) -> dict[str, str]:
    """The environment for every Go build: static, module mode, module cache under our cache."""
    env = dict(os.environ)
    env.update(
        CGO_ENABLED="0",
        GOFLAGS="-mod=mod -buildvcs=false",
        GOMODCACHE=str(root / "gomod"),
        GOTOOLCHAIN=os.environ.get("GOTOOLCHAIN", "local"),
    )
    return env


@dataclass(frozen=True)
class GoComponent:
    """One upstream Go module whose main packages we build into static binaries."""

    name: str
    module: str
    version: str
    packages: tuple[str, ...]
    ldflags: tuple[str, ...] = ()
    # k8s.io/kubernetes replaces its ~31 staging modules with ./staging paths; a wrapper
    # module must replace them with their published v0.X.Y versions instead.
    staging_replaces: bool = False
    extra_requires: tuple[str, ...] = field(default=())
    # `go build -o DIR/` names a binary after its package (etcd's main package is
    # go.etcd.io/etcd/server/v3, so "server"); renames give it its usual name.
    renames: tuple[tuple[str, str], ...] = ()

    @property
    def key(self) -> str:
        return f"{self.name}-{self.version}"

    def go_output_names(self) -> dict[str, str]:
        """Package path -> the name `go build -o DIR/` gives its binary (last element, minus /vN)."""
        names = {}
        for pkg in self.packages:
            parts = pkg.rstrip("/").split("/")
            last = parts[-1]
            if re.fullmatch(r"v\d+", last) and len(parts) > 1:
                last = parts[-2]
            names[pkg] = last
        return names

    def binary_names(self) -> tuple[str, ...]:
        """The final binary names, after renames."""
        renames = dict(self.renames)
        return tuple(renames.get(n, n) for n in self.go_output_names().values())


def kubernetes_ldflags(version: str) -> tuple[str, ...]:
    """The -X flags hack/lib/version.sh sets, so `kubectl version` reports v1.34.x, not v0.0.0."""
    major, minor = version.lstrip("v").split(".")[:2]
    flags = []
    for pkg in ("k8s.io/component-base/version", "k8s.io/client-go/pkg/version"):
        flags += [
            f"-X {pkg}.gitVersion={version}",
            f"-X {pkg}.gitMajor={major}",
            f"-X {pkg}.gitMinor={minor}",
            f"-X {pkg}.gitTreeState=clean",
            f"-X {pkg}.gitCommit=go-module-{version}",
        ]
    return tuple(flags)


def default_components() -> tuple[GoComponent, ...]:
    return (
        GoComponent(
            name="kubernetes",
            module="k8s.io/kubernetes",
            version=KUBERNETES_VERSION,
            packages=tuple(f"k8s.io/kubernetes/cmd/{b}" for b in KUBERNETES_BINARIES),
            ldflags=kubernetes_ldflags(KUBERNETES_VERSION),
            staging_replaces=True,
        ),
        GoComponent(
            name="etcd",
            module="go.etcd.io/etcd/server/v3",
            version=ETCD_VERSION,
            packages=("go.etcd.io/etcd/server/v3",),
            renames=(("server", "etcd"),),
        ),
        GoComponent(
            name="coredns",
            module="github.com/coredns/coredns",
            version=COREDNS_VERSION,
            packages=("github.com/coredns/coredns",),
            ldflags=(f"-X github.com/coredns/coredns/coremain.GitCommit=go-module-{COREDNS_VERSION}",),
        ),
    )


def staging_replace_lines(upstream_go_mod: str, version: str) -> list[str]:
    """Turn `k8s.io/x => ./staging/src/k8s.io/x` into `k8s.io/x => k8s.io/x v0.<minor>.<patch>`."""
    staging_version = "v0." + version.lstrip("v").split(".", 1)[1]
    lines = []
    for match in re.finditer(r"^\s*(\S+)\s*=>\s*\./staging/src/(\S+)\s*$", upstream_go_mod, re.M):
        module = match.group(1)
        lines.append(f"\t{module} => {module} {staging_version}")
    return lines


def wrapper_go_mod(component: GoComponent, replaces: list[str]) -> str:
    """A module that only requires the upstream one, so `go build` can build its commands."""
    text = f"module patternbench.local/build/{component.name}\n\ngo 1.25.0\n\n"
    text += f"require {component.module} {component.version}\n"
    for req in component.extra_requires:
        text += f"require {req}\n"
    if replaces:
        text += "\nreplace (\n" + "\n".join(replaces) + "\n)\n"
    return text


@dataclass
class BuildCache:
    """Built binaries under ``root/components/<key>/``, with a manifest of their sha256."""

    root: Path = field(default_factory=cache_root)
    progress: Progress = field(default_factory=Progress)

    def component_dir(self, component: GoComponent) -> Path:
        return self.root / "components" / component.key

    def manifest_path(self, component: GoComponent) -> Path:
        return self.component_dir(component) / "manifest.json"

    def is_built(self, component: GoComponent) -> bool:
        """True when the cache holds this component intact; raises UsageError when it is corrupt."""
        manifest = self.manifest_path(component)
        if not manifest.exists():
            return False
        try:
            recorded = json.loads(manifest.read_text())
            sizes: dict[str, int] = recorded["sizes"]
        except (ValueError, KeyError, TypeError):
            raise UsageError(f"corrupt build cache: {manifest} is unreadable; run `patternbench clean --cache`")
        for name, size in sizes.items():
            path = self.component_dir(component) / name
            if not path.is_file() or path.stat().st_size != size:
                raise UsageError(
                    f"corrupt build cache: {path} is missing or truncated; run `patternbench clean --cache`"
                )
        return True

    def verify(self, component: GoComponent) -> None:
        """Full check of the cached binaries against their recorded sha256."""
        recorded = json.loads(self.manifest_path(component).read_text())
        for name, digest in recorded["sha256"].items():
            path = self.component_dir(component) / name
            if sha256_file(path) != digest:
                raise UsageError(f"corrupt build cache: {path} does not match its sha256; run `patternbench clean --cache`")

    def ensure(self, component: GoComponent) -> Path:
        """Build the component unless the cache already has it; returns its bin directory."""
        if self.is_built(component):
            return self.component_dir(component)
        if shutil.which("go") is None:
            raise UsageError("`go` is not on PATH: install Go 1.25+ (needed to build Kubernetes from its modules)")
        with self.progress.step(f"build {component.key} (cold cache: this takes minutes)"):
            self._build(component)
        return self.component_dir(component)

    def _build(self, component: GoComponent) -> None:
        env = go_env(self.root)
        src = self.root / "src" / component.key
        src.mkdir(parents=True, exist_ok=True)
        replaces: list[str] = []
        if component.staging_replaces:
            replaces = staging_replace_lines(self._upstream_go_mod(component, env, src), component.version)
        (src / "go.mod").write_text(wrapper_go_mod(component, replaces))
        out = self.component_dir(component).with_name(component.key + ".partial")
        shutil.rmtree(out, ignore_errors=True)
        out.mkdir(parents=True)
        log = self.root / "logs" / f"build-{component.key}.log"
        ldflags = " ".join(("-s", "-w", *component.ldflags))
        cmd = ["go", "build", "-trimpath", "-ldflags", ldflags, "-o", str(out) + "/", *component.packages]
        run_go_build(GoBuild(component.key, cmd, list(component.packages), src, env, log), self.progress)
        for old, new in component.renames:
            (out / old).rename(out / new)
        sizes, digests = {}, {}
        for name in component.binary_names():
            path = out / name
            if not path.is_file():
                raise UsageError(f"building {component.key} produced no {name} (full log: {log})")
            sizes[name] = path.stat().st_size
            digests[name] = sha256_file(path)
        (out / "manifest.json").write_text(json.dumps({"sizes": sizes, "sha256": digests}, indent=1))
        final = self.component_dir(component)
        shutil.rmtree(final, ignore_errors=True)
        out.rename(final)

    def _upstream_go_mod(self, component: GoComponent, env: dict[str, str], cwd: Path) -> str:
        result = subprocess.run(
            ["go", "mod", "download", "-json", f"{component.module}@{component.version}"],
            cwd=cwd, env=env, capture_output=True, text=True,
        )
        if result.returncode != 0:
            raise UsageError(f"cannot fetch {component.module}@{component.version}: {result.stderr.strip()[:300]}")
        return Path(json.loads(result.stdout)["GoMod"]).read_text()


def sha256_file(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as handle:
        for chunk in iter(lambda: handle.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()


@dataclass(frozen=True)
class Binaries:
    """Where each host binary of the local cluster lives."""

    paths: dict[str, Path]

    def __getitem__(self, name: str) -> Path:
        return self.paths[name]


def resolve_binaries(cache: BuildCache, bin_dir: Path | None = None, build: bool = True) -> Binaries:
    """Find every binary: a user's --bin-dir first (official release binaries), else the cache.

    With build=False a missing component is a UsageError telling the user to run setup.
    """
    paths: dict[str, Path] = {}
    for component in default_components():
        names = component.binary_names()
        if bin_dir is not None and all((bin_dir / n).is_file() for n in names):
            for n in names:
                paths[n] = bin_dir / n
            continue
        if not build and not cache.is_built(component):
            raise UsageError(f"{component.key} is not built yet: run `patternbench setup` (or `make setup`) first")
        directory = cache.ensure(component)
        for n in names:
            paths[n] = directory / n
    return Binaries(paths)
