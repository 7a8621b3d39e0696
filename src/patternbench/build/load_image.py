"""The load generator's image: Locust and patternbench's load code on the distribution's
Python, FROM scratch, for load driven from inside the cluster (issue 23).

- The interpreter is Debian's `python3.X` (the venv's minor version), with the libraries the
  loader maps for it and for every C extension shipped; not the harness's own interpreter,
  which may be a local build tied to its install path (pyenv's is).
- The standard library is the one its package installed, without tests, IDLE, Tk and the
  other parts a load process never imports.
- Site packages: Locust's dependency closure, copied file by file (their RECORD) from the venv
  the set-up installed from PyPI, so the pods run the versions the harness runs.
- patternbench: the modules the load process imports, found by following its imports.

Same installed packages and sources, same image digest (rootfs.py and images.py write
sorted entries with fixed times).
"""

from __future__ import annotations

import ast
import hashlib
import json
import re
import sys
import tempfile
from importlib import metadata
from pathlib import Path

from packaging.markers import default_environment
from packaging.requirements import Requirement

from patternbench.build.images import ImageArchive, ImageSpec, write_oci_archive
from patternbench.build.rootfs import RootFs, debian_package_of, is_shared_object
from patternbench.errors import UsageError

LOAD_REPOSITORY = "patternbench.local/loadgen"
SITE = "/opt/patternbench/site"
ROOT_PACKAGES = ("locust", "psutil")
ENTRY_MODULE = "patternbench.load.incluster"
# Parts of the standard library a load process never imports (and their own C modules).
STDLIB_SKIP = ("test", "tests", "idlelib", "tkinter", "turtledemo", "ensurepip", "lib2to3", "pydoc_data",
               "__pycache__", "site-packages", "dist-packages", "_tkinter.cpython-311-x86_64-linux-gnu.so")
SRC = Path(__file__).resolve().parents[2]  # src/


def interpreter() -> Path:
    """Debian's interpreter of the venv's minor version; one line if it is not installed."""
    version = f"{sys.version_info.major}.{sys.version_info.minor}"
    path = Path(f"/usr/bin/python{version}")
    if not path.is_file() or not debian_package_of(path):
        raise UsageError(f"the load image needs the distribution's Python {version}: `apt-get install python{version}`")
    return path


def distribution_closure(roots: tuple[str, ...] = ROOT_PACKAGES) -> list[metadata.Distribution]:
    """The installed distributions `roots` need, following each one's requirements whose
    markers hold here (no extras)."""
    env = default_environment()
    env["extra"] = ""
    seen: dict[str, metadata.Distribution] = {}
    todo = list(roots)
    while todo:
        name = re.sub(r"[-_.]+", "-", todo.pop()).lower()
        if name in seen:
            continue
        try:
            dist = metadata.distribution(name)
        except metadata.PackageNotFoundError:
            raise UsageError(f"the load image needs {name}, which is not installed in the venv: run `make setup`") from None
        seen[name] = dist
        for text in dist.requires or []:
            req = Requirement(text)
            if req.marker is None or req.marker.evaluate(env):
                todo.append(req.name)
    return [seen[n] for n in sorted(seen)]


def site_files(dist: metadata.Distribution) -> list[tuple[Path, str]]:
    """(host file, path under the site directory) for a distribution's installed files, but
    for scripts outside site-packages and byte-code caches."""
    out = []
    for f in dist.files or []:
        rel = f.as_posix()
        if rel.startswith("..") or "__pycache__" in rel:
            continue
        out.append((Path(str(dist.locate_file(f))), rel))
    return out


def patternbench_modules(entry: str = ENTRY_MODULE, src: Path = SRC) -> list[str]:
    """The patternbench modules `entry` imports, transitively (package __init__ files too),
    as paths relative to src/."""
    seen: set[str] = set()
    todo = [entry]
    while todo:
        module = todo.pop()
        if module in seen:
            continue
        seen.add(module)
        parts = module.split(".")
        for i in range(1, len(parts)):  # every enclosing package
            todo.append(".".join(parts[:i]))
        path = _module_path(module, src)
        tree = ast.parse(path.read_text(), str(path))
        for node in ast.walk(tree):
            if isinstance(node, ast.Import):
                todo += [a.name for a in node.names if a.name.startswith("patternbench")]
            elif isinstance(node, ast.ImportFrom) and node.module and node.module.startswith("patternbench") and node.level == 0:
                todo.append(node.module)
                todo += [f"{node.module}.{a.name}" for a in node.names if _module_exists(f"{node.module}.{a.name}", src)]
    return sorted(_module_path(m, src).relative_to(src).as_posix() for m in seen)


def _module_path(module: str, src: Path) -> Path:
    base = src / Path(*module.split("."))
    return base / "__init__.py" if base.is_dir() else base.with_suffix(".py")


def _module_exists(module: str, src: Path) -> bool:
    base = src / Path(*module.split("."))
    return base.is_dir() or base.with_suffix(".py").is_file()


def stage(root: Path, python: Path, distributions: list[metadata.Distribution]) -> RootFs:
    """The image's tree under `root`."""
    fs = RootFs(root)
    fs.add_program(python)
    version = python.name.removeprefix("python")
    fs.add_tree(Path(f"/usr/lib/python{version}"), f"/usr/lib/python{version}", STDLIB_SKIP)
    for dist in distributions:
        for host, rel in site_files(dist):
            fs.add_file(host, f"{SITE}/{rel}")
            if is_shared_object(host):
                fs.add_libraries_of(host, within=Path(str(dist.locate_file(""))))
    for rel in patternbench_modules():
        fs.add_file(SRC / rel, f"{SITE}/{rel}", 0o644)
    return fs


def load_image_spec(tree: Path, tag: str, python: Path) -> ImageSpec:
    return ImageSpec(
        LOAD_REPOSITORY, tag, None, (str(python), "-s", "-m", ENTRY_MODULE), tree=tree,
        env=("PATH=/usr/bin", f"PYTHONPATH={SITE}", "PYTHONDONTWRITEBYTECODE=1", "PYTHONUNBUFFERED=1"),
    )


def build_load_image(out_dir: Path, tag: str = "v1") -> tuple[ImageArchive, dict[str, object]]:
    """Stage, write the archive to out_dir, and describe it (sizes, the interpreter's package,
    the distributions and their versions)."""
    python, distributions = interpreter(), distribution_closure()
    with tempfile.TemporaryDirectory(prefix="pb-loadgen-") as tmp:
        fs = stage(Path(tmp), python, distributions)
        archive = write_oci_archive(load_image_spec(fs.root, tag, python), out_dir / f"loadgen-{tag}.tar")
        manifest = {
            "ref": archive.ref, "digest": archive.digest,
            "files": len(fs.files()), "tree_bytes": fs.size_bytes(), "archive_bytes": archive.size_bytes,
            "python": {"path": str(python), "package": debian_package_of(python)},
            "distributions": {d.metadata["Name"]: d.version for d in distributions},
        }
    (out_dir / f"loadgen-{tag}.json").write_text(json.dumps(manifest, indent=2, sort_keys=True))
    return archive, manifest


def image_inputs(python: Path, distributions: list[metadata.Distribution]) -> str:
    """A digest of what the image is built from: the interpreter, the distributions' versions
    and the patternbench modules' sources. The same digest, the same image (cached)."""
    h = hashlib.sha256()
    stat = python.stat()
    h.update(f"{python}:{stat.st_size}:{stat.st_mtime_ns}:{debian_package_of(python)}\n".encode())
    for dist in distributions:
        h.update(f"{dist.metadata['Name']}=={dist.version}\n".encode())
    for rel in patternbench_modules():
        h.update(rel.encode() + b"\0" + (SRC / rel).read_bytes())
    return h.hexdigest()


def cached_load_image(out_dir: Path, tag: str = "v1") -> ImageArchive:
    """The load image from out_dir if it was built from the same inputs, else built now."""
    inputs = image_inputs(interpreter(), distribution_closure())
    path, meta = out_dir / f"loadgen-{tag}.tar", out_dir / f"loadgen-{tag}.json"
    try:
        recorded = json.loads(meta.read_text())
        if recorded.get("inputs") == inputs and path.is_file():
            return ImageArchive(recorded["ref"], path, recorded["digest"], recorded["archive_bytes"])
    except (OSError, ValueError, KeyError):
        pass
    out_dir.mkdir(parents=True, exist_ok=True)
    archive, manifest = build_load_image(out_dir, tag)
    meta.write_text(json.dumps({**manifest, "inputs": inputs}, indent=2, sort_keys=True))
    return archive
