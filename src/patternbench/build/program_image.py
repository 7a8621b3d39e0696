"""Images FROM scratch for a program the distribution's packages install (a proxy such as
/usr/sbin/haproxy): the binary at its own path, the shared libraries the dynamic loader maps
for it (build/rootfs.py), and an image config with its entrypoint, user and stop signal.

A version is either the program as installed on this machine, or the same program from an
older package of the archive (`apt-get download PACKAGE=VERSION`, unpacked with `dpkg-deb`):
two versions that really differ, both from Debian's packages. The libraries are this
machine's (one distribution release: the same ABI). Same inputs, same digest.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import shutil
import signal
import subprocess
import tempfile
from dataclasses import dataclass
from pathlib import Path

from patternbench.build.components import cache_root
from patternbench.build.images import NONROOT_UID, ImageArchive, ImageSpec, write_oci_archive
from patternbench.build.rootfs import RootFs, debian_package_of, is_elf, shared_libraries
from patternbench.errors import UsageError

# "haproxy=2.6.12-1+deb12u3": a Debian package name and version (Debian policy 5.6.1, 5.6.12).
PACKAGE_VERSION = re.compile(r"^(?P<name>[a-z0-9][a-z0-9+.-]+)=(?P<version>[0-9][A-Za-z0-9.+~:-]*)$")


@dataclass(frozen=True)
class ProgramVersion:
    """Where one version's binary comes from: `package` ("" = the installed program)."""

    package: str = ""


@dataclass(frozen=True)
class ProgramBuild:
    """How an agent file's images are built from a packaged program."""

    program: Path  # absolute, as the package installs it (and its place in the image)
    stop_signal: str  # what the kubelet's stop sends (the image's StopSignal): SIGUSR1 for HAProxy
    versions: dict[str, ProgramVersion]
    user: str = f"{NONROOT_UID}:{NONROOT_UID}"


def check_stop_signal(name: object) -> str:
    """A signal name the runtime knows (SIGTERM, SIGUSR1, ...); a UsageError otherwise."""
    if not isinstance(name, str) or not name.startswith("SIG") or not hasattr(signal.Signals, name):
        raise UsageError(f"{name!r} is not a signal name (SIGTERM, SIGUSR1, SIGQUIT, ...)")
    return name


def check_program(program: Path) -> list[Path]:
    """The program is an installed, executable ELF whose libraries this machine's loader
    resolves; its libraries. A one-line UsageError otherwise."""
    if not program.is_absolute():
        raise UsageError(f"{program} is not an absolute path")
    if not program.is_file():
        raise UsageError(f"{program} is not installed (no such file)")
    if not os.access(program, os.X_OK) or not program.stat().st_mode & 0o111:
        raise UsageError(f"{program} is not executable")
    if not is_elf(program):
        raise UsageError(f"{program} is not an ELF program (a script needs its interpreter: give the interpreter)")
    return shared_libraries(program)


def check_package(spec: str) -> tuple[str, str]:
    match = PACKAGE_VERSION.match(spec)
    if match is None:
        raise UsageError(f"{spec!r} is not PACKAGE=VERSION (e.g. haproxy=2.6.12-1+deb12u3)")
    return match["name"], match["version"]


def unpacked_package(spec: str, root: Path | None = None) -> Path:
    """The files of Debian package `spec` (PACKAGE=VERSION), downloaded from the archive
    apt knows and unpacked once into the cache; the directory standing for `/`."""
    name, version = check_package(spec)
    out = (root or cache_root()) / "packages" / f"{name}_{version.replace(':', '%3a')}"
    if (out / ".done").is_file():
        return out / "root"
    if shutil.which("apt-get") is None or shutil.which("dpkg-deb") is None:
        raise UsageError(f"building from {spec} needs apt-get and dpkg-deb (a Debian machine)")
    shutil.rmtree(out, ignore_errors=True)
    out.mkdir(parents=True)
    with tempfile.TemporaryDirectory(prefix="pb-deb-") as tmp:
        # As root, apt warns that it cannot drop to _apt for the download: harmless here.
        got = subprocess.run(["apt-get", "download", "-q", spec], cwd=tmp, capture_output=True, text=True, check=False)
        debs = sorted(Path(tmp).glob("*.deb"))
        if got.returncode != 0 or len(debs) != 1:
            why = (got.stderr.strip().splitlines() or ["no .deb downloaded"])[-1]
            raise UsageError(f"cannot download {spec} from Debian's archive ({why}; `apt-cache madison {name}` lists the versions offered)")
        subprocess.run(["dpkg-deb", "-x", str(debs[0]), str(out / "root")], check=True, capture_output=True)
    (out / ".done").write_text(spec)
    return out / "root"


def version_binary(build: ProgramBuild, version: str) -> Path:
    """The binary of one version on this machine (downloading its package if needed)."""
    source = build.versions[version]
    if not source.package:
        return build.program
    binary = unpacked_package(source.package) / build.program.relative_to("/")
    if not binary.is_file():
        raise UsageError(f"package {source.package} has no {build.program}")
    return binary


def package_label(build: ProgramBuild, version: str) -> str:
    """The package and version the binary came from, for the image's label and the report."""
    source = build.versions[version]
    if source.package:
        return source.package
    package = debian_package_of(build.program)
    installed = subprocess.run(["dpkg-query", "-W", "-f=${Version}", package], capture_output=True, text=True, check=False).stdout if package else ""
    return f"{package}={installed}" if package and installed else str(build.program)


def stage(build: ProgramBuild, binary: Path, root: Path) -> RootFs:
    fs = RootFs(root)
    fs.add_file(binary, str(build.program), 0o755)
    fs.add_libraries_of(binary)
    return fs


def image_spec(build: ProgramBuild, ref: str, tree: Path, label: str) -> ImageSpec:
    repository, tag = ref.rsplit(":", 1)
    return ImageSpec(
        repository, tag, None, (str(build.program),), user=build.user, tree=tree,
        stop_signal=build.stop_signal, labels={"org.opencontainers.image.version": label},
    )


def build_key(build: ProgramBuild, binary: Path, ref: str, label: str) -> str:
    """What an image depends on: the binary's and its libraries' bytes, the ref, the config."""
    h = hashlib.sha256(json.dumps([ref, str(build.program), build.stop_signal, build.user, label]).encode())
    for path in [binary, *shared_libraries(binary)]:
        h.update(str(path).encode() + b"\0" + hashlib.sha256(path.read_bytes()).digest())
    return h.hexdigest()


def build_program_images(build: ProgramBuild, refs: dict[str, str], out_dir: Path | None = None) -> list[ImageArchive]:
    """One OCI archive per version (refs: version -> image ref), rebuilt only when its inputs
    changed."""
    out_dir = out_dir or cache_root() / "images" / "programs"
    archives = []
    for version, ref in refs.items():
        binary = version_binary(build, version)
        label = package_label(build, version)
        key = build_key(build, binary, ref, label)
        name = re.sub(r"[^A-Za-z0-9_.-]", "_", ref)
        path, stamp = out_dir / f"{name}.tar", out_dir / f"{name}.json"
        try:
            recorded = json.loads(stamp.read_text())
            if recorded["key"] == key and path.is_file():
                archives.append(ImageArchive(ref, path, recorded["digest"], recorded["size_bytes"]))
                continue
        except (OSError, ValueError, KeyError, TypeError):
            pass
        with tempfile.TemporaryDirectory(prefix="pb-program-") as tmp:
            stage(build, binary, Path(tmp))
            archive = write_oci_archive(image_spec(build, ref, Path(tmp), label), path)
        stamp.write_text(json.dumps({"key": key, "digest": archive.digest, "size_bytes": archive.size_bytes, "package": label}))
        archives.append(archive)
    return archives
