from __future__ import annotations

import gzip
import hashlib
import io
import json
import tarfile
from pathlib import Path

from patternbench.build.images import ImageSpec, layer_tar, write_oci_archive


def _spec(tmp_path: Path) -> ImageSpec:
    binary = tmp_path / "tool"
    binary.write_bytes(b"\x7fELF fake static binary")
    return ImageSpec("patternbench.local/tool", "v1", binary, ("/tool",))


def _members(path: Path) -> dict[str, bytes]:
    with tarfile.open(path) as tar:
        return {m.name: tar.extractfile(m).read() for m in tar.getmembers() if m.isfile()}


def test_archive_is_a_valid_oci_layout(tmp_path: Path) -> None:
    archive = write_oci_archive(_spec(tmp_path), tmp_path / "out.tar")
    files = _members(archive.path)
    assert json.loads(files["oci-layout"]) == {"imageLayoutVersion": "1.0.0"}
    index = json.loads(files["index.json"])
    entry = index["manifests"][0]
    assert entry["annotations"]["io.containerd.image.name"] == "patternbench.local/tool:v1"
    # Every blob is stored under its own digest.
    for name, data in files.items():
        if name.startswith("blobs/sha256/"):
            assert hashlib.sha256(data).hexdigest() == name.rsplit("/", 1)[1]
    manifest = json.loads(files["blobs/sha256/" + entry["digest"].split(":")[1]])
    assert entry["digest"] == archive.digest
    config = json.loads(files["blobs/sha256/" + manifest["config"]["digest"].split(":")[1]])
    assert config["config"]["Entrypoint"] == ["/tool"]
    assert config["config"]["User"] == "65532:65532"
    layer = files["blobs/sha256/" + manifest["layers"][0]["digest"].split(":")[1]]
    raw = gzip.decompress(layer)
    assert config["rootfs"]["diff_ids"] == ["sha256:" + hashlib.sha256(raw).hexdigest()]
    with tarfile.open(fileobj=io.BytesIO(raw)) as tar:
        names = {m.name: m for m in tar.getmembers()}
    assert names["tool"].mode == 0o755
    assert "etc/passwd" in names and "bin/sh" not in names


def test_archive_is_reproducible(tmp_path: Path) -> None:
    spec = _spec(tmp_path)
    first = write_oci_archive(spec, tmp_path / "a.tar")
    second = write_oci_archive(spec, tmp_path / "b.tar")
    assert first.digest == second.digest
    assert (tmp_path / "a.tar").read_bytes() == (tmp_path / "b.tar").read_bytes()


def test_different_binary_gives_different_image(tmp_path: Path) -> None:
    spec = _spec(tmp_path)
    first = write_oci_archive(spec, tmp_path / "a.tar")
    spec.binary.write_bytes(b"another build")
    assert write_oci_archive(spec, tmp_path / "b.tar").digest != first.digest


def test_layer_passwd_names_the_nonroot_user(tmp_path: Path) -> None:
    with tarfile.open(fileobj=io.BytesIO(layer_tar(_spec(tmp_path)))) as tar:
        passwd = tar.extractfile("etc/passwd").read().decode()
    assert "nonroot:x:65532:65532" in passwd
