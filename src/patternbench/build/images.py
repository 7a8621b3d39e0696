"""OCI image archives built from static Go binaries, FROM scratch, with no registry and no Docker.

An archive is an OCI image layout in a tar file; `ctr images import` (local provider) and
`kind load image-archive` both read it. Archives are byte-for-byte reproducible: fixed
timestamps and sorted entries, so the same binary always gives the same image digest.
"""

from __future__ import annotations

import gzip
import hashlib
import io
import json
import os
import shutil
import subprocess
import tarfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Iterable

from patternbench.build.components import cache_root, go_env
from patternbench.build.go_build import GoBuild, run_go_build
from patternbench.errors import UsageError
from patternbench.progress import Progress

NONROOT_UID = 65532
REPO_ROOT = Path(__file__).resolve().parents[3]
IMAGES_MODULE = REPO_ROOT / "images"


@dataclass(frozen=True)
class ImageSpec:
    """One image FROM scratch: a single binary at /<entry name>, or a staged root filesystem
    (`tree`, build/rootfs.py), with /etc/passwd, /etc/group and /tmp either way."""

    repository: str
    tag: str
    binary: Path | None
    entrypoint: tuple[str, ...]
    user: str = f"{NONROOT_UID}:{NONROOT_UID}"
    args: tuple[str, ...] = ()
    labels: dict[str, str] = field(default_factory=dict)
    tree: Path | None = None
    env: tuple[str, ...] = ("PATH=/",)
    # The signal the runtime sends to stop the container (containerd's CRI reads it from the
    # image config); None: SIGTERM. HAProxy stops gracefully on SIGUSR1 only.
    stop_signal: str | None = None

    @property
    def ref(self) -> str:
        return f"{self.repository}:{self.tag}"


@dataclass(frozen=True)
class ImageArchive:
    ref: str
    path: Path
    digest: str
    size_bytes: int

    @property
    def size_mib(self) -> float:
        return self.size_bytes / (1 << 20)


def _tar_entry(tar: tarfile.TarFile, name: str, data: bytes | None, mode: int) -> None:
    info = tarfile.TarInfo(name)
    info.mtime = 0
    info.uid = info.gid = 0
    info.uname = info.gname = "root"
    if data is None:
        info.type = tarfile.DIRTYPE
        info.mode = mode
        tar.addfile(info)
        return
    info.size = len(data)
    info.mode = mode
    tar.addfile(info, io.BytesIO(data))


def layer_tar(spec: ImageSpec) -> bytes:
    """The single layer: /etc/passwd and /etc/group naming the non-root user, /tmp, the binary."""
    passwd = f"root:x:0:0:root:/:/sbin/nologin\nnonroot:x:{NONROOT_UID}:{NONROOT_UID}:nonroot:/:/sbin/nologin\n"
    group = f"root:x:0:\nnonroot:x:{NONROOT_UID}:\n"
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w", format=tarfile.PAX_FORMAT) as tar:
        _tar_entry(tar, "etc", None, 0o755)
        _tar_entry(tar, "etc/passwd", passwd.encode(), 0o644)
        _tar_entry(tar, "etc/group", group.encode(), 0o644)
        _tar_entry(tar, "tmp", None, 0o1777)
        if spec.binary is not None:
            _tar_entry(tar, spec.entrypoint[0].lstrip("/"), spec.binary.read_bytes(), 0o755)
        if spec.tree is not None:
            _add_tree(tar, spec.tree)
    return buffer.getvalue()


def _add_tree(tar: tarfile.TarFile, root: Path) -> None:
    """Every directory and file under `root`, sorted, owned by root, mtime 0, modes kept (a
    tree's /etc and /tmp are the layer's own)."""
    for path in sorted(root.rglob("*")):
        name = path.relative_to(root).as_posix()
        if name in ("etc", "tmp", "etc/passwd", "etc/group"):
            continue
        mode = path.stat().st_mode & 0o7777
        _tar_entry(tar, name, None if path.is_dir() else path.read_bytes(), mode)


def _blob(data: bytes) -> tuple[str, bytes]:
    return "sha256:" + hashlib.sha256(data).hexdigest(), data


def write_oci_archive(spec: ImageSpec, out: Path) -> ImageArchive:
    """Write `spec` as an OCI image layout tar at `out`; returns its ref, digest and size."""
    raw_layer = layer_tar(spec)
    diff_id = "sha256:" + hashlib.sha256(raw_layer).hexdigest()
    layer_digest, layer = _blob(gzip.compress(raw_layer, compresslevel=6, mtime=0))
    config_doc = {
        "architecture": "amd64",
        "os": "linux",
        "created": "1970-01-01T00:00:00Z",
        "config": {
            "Entrypoint": list(spec.entrypoint),
            "Cmd": list(spec.args) or None,
            "User": spec.user,
            "Env": list(spec.env),
            "Labels": spec.labels or None,
            **({"StopSignal": spec.stop_signal} if spec.stop_signal else {}),
        },
        "rootfs": {"type": "layers", "diff_ids": [diff_id]},
        "history": [{"created": "1970-01-01T00:00:00Z", "created_by": "patternbench images build"}],
    }
    config_digest, config = _blob(json.dumps(config_doc, sort_keys=True).encode())
    manifest_doc = {
        "schemaVersion": 2,
        "mediaType": "application/vnd.oci.image.manifest.v1+json",
        "config": {"mediaType": "application/vnd.oci.image.config.v1+json", "digest": config_digest, "size": len(config)},
        "layers": [
            {"mediaType": "application/vnd.oci.image.layer.v1.tar+gzip", "digest": layer_digest, "size": len(layer)}
        ],
    }
    manifest_digest, manifest = _blob(json.dumps(manifest_doc, sort_keys=True).encode())
    index_doc = {
        "schemaVersion": 2,
        "manifests": [
            {
                "mediaType": "application/vnd.oci.image.manifest.v1+json",
                "digest": manifest_digest,
                "size": len(manifest),
                "platform": {"architecture": "amd64", "os": "linux"},
                "annotations": {
                    "io.containerd.image.name": spec.ref,
                    "org.opencontainers.image.ref.name": spec.tag,
                },
            }
        ],
    }
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = out.with_suffix(".partial")
    with tarfile.open(tmp, mode="w", format=tarfile.PAX_FORMAT) as tar:
        _tar_entry(tar, "oci-layout", json.dumps({"imageLayoutVersion": "1.0.0"}).encode(), 0o644)
        _tar_entry(tar, "index.json", json.dumps(index_doc, sort_keys=True).encode(), 0o644)
        _tar_entry(tar, "blobs", None, 0o755)
        _tar_entry(tar, "blobs/sha256", None, 0o755)
        for digest, data in sorted([(config_digest, config), (layer_digest, layer), (manifest_digest, manifest)]):
            _tar_entry(tar, "blobs/sha256/" + digest.split(":", 1)[1], data, 0o644)
    os.replace(tmp, out)
    return ImageArchive(ref=spec.ref, path=out, digest=manifest_digest, size_bytes=len(layer) + len(config))


def build_go_binaries(names: tuple[str, ...], version: str, out_dir: Path) -> dict[str, Path]:
    """Build `images/cmd/<name>` static binaries with their version stamped in."""
    if shutil.which("go") is None:
        raise UsageError("`go` is not on PATH: install Go 1.25+ to build the images")
    out_dir.mkdir(parents=True, exist_ok=True)
    env = go_env(cache_root())
    packages = [f"./cmd/{n}" for n in names]
    cmd = ["go", "build", "-trimpath", "-ldflags", f"-s -w -X main.version={version}", "-o", str(out_dir) + "/", *packages]
    result = subprocess.run(cmd, cwd=IMAGES_MODULE, env=env, capture_output=True, text=True)
    if result.returncode != 0:
        last = (result.stderr.strip().splitlines() or ["(no output)"])[-1]
        raise UsageError(f"building images/{','.join(names)} failed: {last}")
    return {n: out_dir / n for n in names}


def grpcload_binary(build: bool = True) -> Path:
    """The gRPC load client (images/cmd/grpcload), run on this machine for a gRPC workload;
    `build`: bring it up to date first (go build is incremental)."""
    out_dir = cache_root() / "bin"
    return build_go_binaries(("grpcload",), "v1", out_dir)["grpcload"] if build else out_dir / "grpcload"


def build_project_images(names: tuple[str, ...], tag: str, out_dir: Path | None = None) -> list[ImageArchive]:
    """Build `images/cmd/<name>` for each name and write `patternbench.local/<name>:<tag>` archives."""
    out_dir = out_dir or cache_root() / "images" / tag
    binaries = build_go_binaries(names, tag, out_dir / "bin")
    return [
        write_oci_archive(ImageSpec(f"patternbench.local/{name}", tag, binaries[name], (f"/{name}",)), out_dir / f"{name}-{tag}.tar")
        for name in names
    ]


# The data plane: the app, the sink and the sidecar injector (--injection webhook) exist in
# v1 only (the injector's upgrade is a template switch, not an image change); the agents in
# v1 and v2, whose binaries (and so image digests) differ, so an upgrade is a real image change.
DATA_PLANE = ("app", "logsink", "meshproxy", "logagent", "injector")
AGENT_IMAGES = ("meshproxy", "logagent")  # the images built in v1 and v2 (the agents' own names are in agents.AGENTS)
VERSIONS = ("v1", "v2")


def build_data_plane(out_dir: Path | None = None) -> list[ImageArchive]:
    """Every image the experiments use, as OCI archives: app/logsink/injector v1, agents v1 and v2."""
    out_dir = out_dir or cache_root() / "images"
    archives = build_project_images(DATA_PLANE, "v1", out_dir / "v1")
    archives += build_project_images(AGENT_IMAGES, "v2", out_dir / "v2")
    # The generic agent (agent-omega): a process that only holds its place.
    pause = build_go_binaries(("pause",), "v1", out_dir / "v1" / "bin")["pause"]
    archives.append(write_oci_archive(ImageSpec("patternbench.local/agent-omega", "v1", pause, ("/pause",)), out_dir / "v1" / "agent-omega-v1.tar"))
    return archives


# The OpenTelemetry Collector as a third-party log agent (issue 13): two real releases,
# each its own Go module under images/otelcol/<release>/ (filelog receiver, otlphttp and
# debug exporters, batch processor, file_storage and health_check extensions), every
# collector module of a build at one release. v1 -> v2 is a real collector upgrade: the
# contrib patch release v0.165.0 -> v0.165.1 on core v0.165.0 (the module proxy serves
# contrib's pkg/stanza at no v0.160-v0.164 release, so no earlier minor builds here).
OTELCOL_DIR = IMAGES_MODULE / "otelcol"
# Its configs live beside its agent file (an agent file reads configs from its own directory).
OTELCOL_AGENT_DIR = REPO_ROOT / "agents" / "otelcol"
OTELCOL_RELEASES = {"v1": "v0.165.0", "v2": "v0.165.1"}
OTELCOL_REPOSITORY = "patternbench.local/otelcol"
# The binary's place in the image, and the config file its default arguments name (mounted
# from a ConfigMap: agents/otelcol/config-sidecar.yaml or config-node.yaml).
OTELCOL_BINARY = "/otelcol"
OTELCOL_CONFIG = "/etc/otelcol/config.yaml"
OTELCOL_ARGS = (f"--config={OTELCOL_CONFIG}", "--feature-gates=stanza.synchronousLogEmitter")
_OTELCOL_LDFLAGS = "-s -w"


def otelcol_source_key(release_dir: Path) -> str:
    """What a collector build depends on: its module's files, the Go version, the flags."""
    go = subprocess.run(["go", "env", "GOVERSION"], capture_output=True, text=True, check=False).stdout.strip()
    digest = hashlib.sha256(f"{go}\0{_OTELCOL_LDFLAGS}\0".encode())
    for path in sorted(p for p in release_dir.iterdir() if p.name in ("go.mod", "go.sum") or p.suffix == ".go"):
        digest.update(path.name.encode() + b"\0" + path.read_bytes() + b"\0")
    return digest.hexdigest()[:16]


def build_otelcol_binary(release: str, root: Path | None = None, progress: Progress | None = None) -> Path:
    """Build images/otelcol/<release> into a static binary, once per source key."""
    if shutil.which("go") is None:
        raise UsageError("`go` is not on PATH: install Go 1.25+ to build the collector")
    release_dir = OTELCOL_DIR / release
    if not (release_dir / "go.sum").is_file():
        raise UsageError(f"{release_dir} is not a collector distribution (no go.sum)")
    root = root or cache_root()
    out = root / "otelcol" / f"{release}-{otelcol_source_key(release_dir)}"
    binary = out / "otelcol"
    if binary.is_file():
        return binary
    env = go_env(root)
    # go.sum is committed: the build must not rewrite go.mod or go.sum.
    env["GOFLAGS"] = "-mod=readonly -buildvcs=false"
    partial = out.with_name(out.name + ".partial")
    shutil.rmtree(partial, ignore_errors=True)
    partial.mkdir(parents=True)
    cmd = ["go", "build", "-trimpath", "-ldflags", _OTELCOL_LDFLAGS, "-o", str(partial / "otelcol"), "."]
    log = root / "logs" / f"build-otelcol-{release}.log"
    run_go_build(GoBuild(f"the collector {release}", cmd, ["."], release_dir, env, log), progress or Progress())
    shutil.rmtree(out, ignore_errors=True)
    partial.rename(out)
    return binary


def build_otelcol(out_dir: Path | None = None, progress: Progress | None = None) -> list[ImageArchive]:
    """`patternbench.local/otelcol:v1` and `:v2` (OTELCOL_RELEASES) as OCI archives.

    Cold, this downloads the collector's modules and compiles them (minutes); warm, the
    binary and the archive are found by their source key and nothing is rebuilt.
    """
    out_dir = out_dir or cache_root() / "images"
    archives = []
    for tag, release in OTELCOL_RELEASES.items():
        binary = build_otelcol_binary(release, progress=progress)
        path = out_dir / tag / f"otelcol-{tag}.tar"
        stamp = path.with_suffix(".json")
        key = f"{binary.parent.name}:{OTELCOL_ARGS}"
        try:
            recorded = json.loads(stamp.read_text())
            if recorded["key"] == key and path.is_file():
                archives.append(ImageArchive(ref=recorded["ref"], path=path, digest=recorded["digest"], size_bytes=recorded["size_bytes"]))
                continue
        except (OSError, ValueError, KeyError, TypeError):
            pass
        spec = ImageSpec(
            OTELCOL_REPOSITORY, tag, binary, (OTELCOL_BINARY,), args=OTELCOL_ARGS,
            labels={"org.opencontainers.image.version": release.lstrip("v")},
        )
        archive = write_oci_archive(spec, path)
        stamp.write_text(json.dumps({"key": key, "ref": archive.ref, "digest": archive.digest, "size_bytes": archive.size_bytes}))
        archives.append(archive)
    return archives


# Images patternbench builds on demand, beyond the data plane: repository -> builder. An
# agent file that names one of them gets it built and loaded like the data plane.
ON_DEMAND: dict[str, Callable[[], list[ImageArchive]]] = {OTELCOL_REPOSITORY: lambda: build_otelcol()}


def on_demand_archives(refs: Iterable[str]) -> list[ImageArchive]:
    """The archives of those of `refs` that patternbench builds itself (built if needed)."""
    wanted = set(refs)
    out: list[ImageArchive] = []
    for repository, build in ON_DEMAND.items():
        if any(ref.rsplit(":", 1)[0] == repository for ref in wanted):
            out += [a for a in build() if a.ref in wanted]
    return out
