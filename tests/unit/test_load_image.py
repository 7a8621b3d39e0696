"""The load generator's image (issue 23): Debian's Python with Locust's closure and the load
code, FROM scratch, reproducible, and complete enough to start as the non-root user in a
root of its own (chroot: every library the loader needs is inside)."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import tarfile
from pathlib import Path

import pytest

from patternbench.build.load_image import SITE, build_load_image, distribution_closure, patternbench_modules
from patternbench.build.rootfs import shared_libraries

CHROOT = shutil.which("chroot") or "/usr/sbin/chroot"


def test_the_load_process_needs_only_these_modules_of_patternbench() -> None:
    assert patternbench_modules() == [
        "patternbench/__init__.py", "patternbench/load/__init__.py", "patternbench/load/incluster.py",
        "patternbench/load/incluster_protocol.py", "patternbench/load/openloop.py", "patternbench/load/probe.py", "patternbench/load/records.py",
        "patternbench/load/users.py", "patternbench/stats.py",
    ]
    # The host's load process, followed the same way: what it imports of patternbench.
    assert "patternbench/load/probe.py" in patternbench_modules("patternbench.load.locust_process")


def test_the_closure_holds_locust_and_its_c_extensions_and_nothing_of_the_harness() -> None:
    names = {d.metadata["Name"].lower() for d in distribution_closure()}
    assert {"locust", "gevent", "greenlet", "pyzmq", "geventhttpclient", "msgpack", "psutil"} <= names
    assert not names & {"kubernetes", "matplotlib", "cryptography", "pykube-ng", "tenacity"}


def test_shared_libraries_are_resolved_by_the_loader() -> None:
    libs = shared_libraries(Path(os.path.realpath("/bin/ls")))
    assert any(p.name.startswith("libc.so") for p in libs) and any("ld-linux" in p.name for p in libs)


def unpack(archive: Path, root: Path) -> dict:
    with tarfile.open(archive) as tar:
        index = json.load(tar.extractfile("index.json"))  # type: ignore[arg-type]
        manifest = json.load(tar.extractfile("blobs/sha256/" + index["manifests"][0]["digest"].split(":")[1]))  # type: ignore[arg-type]
        config = json.load(tar.extractfile("blobs/sha256/" + manifest["config"]["digest"].split(":")[1]))  # type: ignore[arg-type]
        layer = tar.extractfile("blobs/sha256/" + manifest["layers"][0]["digest"].split(":")[1])
        with tarfile.open(fileobj=layer, mode="r:gz") as rootfs:  # type: ignore[arg-type]
            rootfs.extractall(root, filter="tar")
    return config["config"]


@pytest.mark.skipif(os.geteuid() != 0 or not Path("/usr/bin/python3.11").exists(), reason="chroot needs root; the image needs Debian's python3.11")
def test_the_image_is_reproducible_and_starts_locust_as_nonroot_in_its_own_root(tmp_path: Path) -> None:
    first, manifest = build_load_image(tmp_path / "a")
    second, _ = build_load_image(tmp_path / "b")
    assert first.digest == second.digest
    assert manifest["python"]["package"].startswith("python3.11")
    config = unpack(first.path, tmp_path / "root")
    assert config["User"] == "65532:65532" and config["Entrypoint"][:3] == ["/usr/bin/python3.11", "-s", "-m"]
    env = dict(e.split("=", 1) for e in config["Env"])
    assert env["PYTHONPATH"] == SITE
    code = ("import sys, locust.runners, zmq, gevent, greenlet, geventhttpclient, psutil, msgpack; "
            "import patternbench.load.incluster; from locust.env import Environment; "
            "print(sys.executable, zmq.zmq_version())")
    result = subprocess.run([CHROOT, "--userspec=65532:65532", str(tmp_path / "root"), config["Entrypoint"][0], "-s", "-c", code],
                            env=env, capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stderr[-2000:]
    assert result.stdout.startswith("/usr/bin/python3.11 ")
