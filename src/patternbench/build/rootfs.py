"""A root filesystem staged from what the distribution's packages installed on this machine:
dynamically linked programs with the shared libraries they load (resolved by the dynamic
loader itself, through `ldd`), whole directories, and single files, each at its own path.

Images FROM scratch for programs that are not static Go binaries (the Python that runs the
load generator in the cluster, a packaged proxy) are built from one of these. Nothing is
downloaded: the files are the ones apt installed, so the same installed packages give the
same tree, byte for byte.
"""

from __future__ import annotations

import re
import shutil
import subprocess
from dataclasses import dataclass
from pathlib import Path

from patternbench.errors import UsageError

# `ldd` lines: "libz.so.1 => /lib/x86_64-linux-gnu/libz.so.1 (0x...)" and the loader itself,
# "/lib64/ld-linux-x86-64.so.2 (0x...)".
_RESOLVED = re.compile(r"=>\s+(/\S+)\s+\(0x[0-9a-f]+\)")
_LOADER = re.compile(r"^\s*(/\S+)\s+\(0x[0-9a-f]+\)")
_NOT_FOUND = re.compile(r"^\s*(\S+)\s+=>\s+not found")
ELF_MAGIC = b"\x7fELF"


def is_elf(path: Path) -> bool:
    try:
        with path.open("rb") as f:
            return f.read(4) == ELF_MAGIC
    except OSError:
        return False


def is_shared_object(path: Path) -> bool:
    """A library by its name (`.so`, `.so.N`) and its ELF header."""
    return (path.suffix == ".so" or ".so." in path.name) and is_elf(path)


def shared_libraries(elf: Path) -> list[Path]:
    """The libraries the dynamic loader maps for `elf` (and the loader), as it resolves them
    on this machine. A library it cannot find is an error: the image would not start."""
    result = subprocess.run(["ldd", str(elf)], capture_output=True, text=True, check=False)
    text = result.stdout
    if "not a dynamic executable" in text + result.stderr or "statically linked" in text:
        return []
    missing = [m.group(1) for line in text.splitlines() if (m := _NOT_FOUND.match(line))]
    if missing:
        raise UsageError(f"{elf} needs {missing[0]}, which this machine's loader cannot find")
    found = []
    for line in text.splitlines():
        m = _RESOLVED.search(line) or _LOADER.match(line)
        if m:
            found.append(Path(m.group(1)))
    return found


@dataclass(frozen=True)
class RootFs:
    """A tree being staged under `root`."""

    root: Path

    def _target(self, image_path: str) -> Path:
        if not image_path.startswith("/") or ".." in Path(image_path).parts:
            raise ValueError(f"{image_path!r} is not an absolute path inside the image")
        return self.root / image_path.lstrip("/")

    def add_file(self, host: Path, image_path: str | None = None, mode: int | None = None) -> None:
        """A host file (symlinks followed: the file lands under the name asked for)."""
        path = image_path or str(host)
        target = self._target(path)
        if target.exists():
            return
        target.parent.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(host, target)
        target.chmod(mode if mode is not None else host.stat().st_mode & 0o777)

    def add_program(self, host: Path) -> None:
        """An ELF program at its own path and every library the loader maps for it."""
        self.add_file(host)
        self.add_libraries_of(host)

    def add_libraries_of(self, elf: Path, within: Path | None = None) -> None:
        """`elf`'s libraries at their own paths, but for those under `within` (a directory
        copied whole, e.g. a wheel's bundled libzmq found through its RPATH)."""
        for lib in shared_libraries(elf):
            if within is not None and lib.is_relative_to(within):
                continue
            self.add_file(lib, str(lib), 0o755)

    def add_tree(self, host: Path, image_path: str, skip: tuple[str, ...] = ()) -> None:
        """A directory, whole but for the names in `skip` (at any depth); ELF files in it bring
        their libraries."""
        for path in sorted(host.rglob("*")):
            rel = path.relative_to(host)
            if any(part in skip for part in rel.parts) or path.is_dir():
                continue
            self.add_file(path, f"{image_path.rstrip('/')}/{rel.as_posix()}")
            if is_shared_object(path):
                self.add_libraries_of(path, within=host)

    def files(self) -> list[Path]:
        return sorted(p for p in self.root.rglob("*") if p.is_file())

    def size_bytes(self) -> int:
        return sum(p.stat().st_size for p in self.files())


def debian_package_of(path: Path) -> str:
    """The Debian package that installed `path` (`dpkg -S`), or "" where dpkg does not know it."""
    result = subprocess.run(["dpkg", "-S", str(path)], capture_output=True, text=True, check=False)
    if result.returncode != 0 or ":" not in result.stdout:
        return ""
    return result.stdout.split(":", 1)[0].strip()
