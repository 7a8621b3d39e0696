"""What an agent file may do unless the user trusts it (`--trust-agent-files`).

An agent file is code that patternbench runs on every node, and on `local` each node's mount
namespace is a copy of the host's: a node container with `hostPath: /`, SYS_ADMIN or
`privileged` is root on the machine. So by default an agent file gets what a log or mesh agent
needs and no more:

- volumes: emptyDir, configMap, downwardAPI, and hostPath only for the node's pod logs
  (mounted read-only) and the agent's own state directory (`AGENT_STATE_DIR/<name>`);
- containers: never privileged, no added capabilities, no privilege escalation, no Unconfined
  seccomp; a container that runs as root (or may: no runAsNonRoot) drops ALL capabilities;
- archives: each imports exactly the image it is declared for, never one of the cluster's own
  (pause, CoreDNS, patternbench's data plane), which an import would replace on every node;
- `config: {file: PATH}`: a file inside the agent file's own directory.

Every refusal is one line naming the field and the flag that lifts it.
"""

from __future__ import annotations

import json
import posixpath
import tarfile
from pathlib import Path
from typing import Any

from patternbench.cluster.local.settings import AGENT_STATE_DIR, POD_LOGS_DIR
from patternbench.errors import UsageError

TRUST_FLAG = "--trust-agent-files"
PLAIN_VOLUME_TYPES = ("emptyDir", "configMap", "downwardAPI")
# Images the cluster runs for itself: an archive that names one would replace it on every node.
RESERVED_IMAGE_PREFIX = "patternbench.local/"
MAX_INDEX_BYTES = 1 << 20


def refuse(path: Path, where: str, problem: str) -> UsageError:
    return UsageError(f"agent file {path}: {where}: {problem} (an agent file may do this only with {TRUST_FLAG})")


def check_volumes(path: Path, where: str, agent: str, volumes: list[dict[str, Any]], container: dict[str, Any]) -> None:
    own_state = posixpath.join(AGENT_STATE_DIR, agent)
    mounts = [m for m in container.get("volumeMounts", []) or [] if isinstance(m, dict)]
    for volume in volumes:
        name = volume["name"]
        kinds = [k for k in volume if k != "name"]
        if len(kinds) != 1:
            raise refuse(path, f"{where}.volumes.{name}", f"expected one volume type, got {kinds}")
        kind = kinds[0]
        if kind in PLAIN_VOLUME_TYPES:
            continue
        if kind != "hostPath":
            raise refuse(path, f"{where}.volumes.{name}", f"{kind} volumes are not among {', '.join(PLAIN_VOLUME_TYPES)} and hostPath")
        spec = volume["hostPath"] if isinstance(volume["hostPath"], dict) else {}
        raw = spec.get("path")
        host_path = posixpath.normpath(raw) if isinstance(raw, str) and raw.startswith("/") else None
        if spec.get("type", "") not in ("", "Directory", "DirectoryOrCreate"):
            raise refuse(path, f"{where}.volumes.{name}.hostPath.type", f"{spec.get('type')!r}: only a directory may be mounted")
        if host_path == POD_LOGS_DIR:
            writable = [m.get("mountPath") for m in mounts if m.get("name") == name and m.get("readOnly") is not True]
            if writable:
                raise refuse(path, f"{where}.container.volumeMounts", f"{POD_LOGS_DIR} is mounted writable at {writable[0]}: mount it readOnly: true")
            continue
        if host_path is not None and (host_path == own_state or host_path.startswith(own_state + "/")):
            continue
        raise refuse(path, f"{where}.volumes.{name}.hostPath.path", f"{raw!r}: a host path other than {POD_LOGS_DIR} (read-only) and {own_state}")


def check_security(path: Path, where: str, container: dict[str, Any]) -> None:
    sc = container.get("securityContext") or {}
    if not isinstance(sc, dict):
        raise refuse(path, f"{where}.container.securityContext", "expected a mapping")
    here = f"{where}.container.securityContext"
    if sc.get("privileged") is True:
        raise refuse(path, f"{here}.privileged", "a privileged container is root on the node")
    caps = sc.get("capabilities") or {}
    if caps.get("add"):
        raise refuse(path, f"{here}.capabilities.add", f"adds {caps['add']}")
    if sc.get("allowPrivilegeEscalation") is True:
        raise refuse(path, f"{here}.allowPrivilegeEscalation", "true")
    if (sc.get("seccompProfile") or {}).get("type") == "Unconfined":
        raise refuse(path, f"{here}.seccompProfile", "Unconfined")
    if sc.get("procMount") not in (None, "Default"):
        raise refuse(path, f"{here}.procMount", f"{sc['procMount']!r}")
    may_be_root = sc.get("runAsUser") == 0 or (sc.get("runAsNonRoot") is not True and sc.get("runAsUser") is None)
    if may_be_root and "ALL" not in (caps.get("drop") or []):
        raise refuse(path, f"{here}.capabilities.drop", "a container that runs as root (or may: no runAsNonRoot, no runAsUser) must drop ALL")


def check_config_file(path: Path, where: str, relative: str) -> Path:
    """The config file's path, if it lies inside the agent file's directory."""
    base = path.parent.resolve()
    target = (base / relative).resolve()
    if not target.is_relative_to(base):
        raise refuse(path, where, f"{relative!r} lies outside the agent file's directory {base}")
    return target


def archive_image_names(archive: Path) -> set[str]:
    """The names an OCI archive's index gives its images (what `ctr images import` tags)."""
    try:
        with tarfile.open(archive) as tar:
            member = tar.getmember("index.json")
            if member.size > MAX_INDEX_BYTES:
                raise UsageError(f"{archive}: index.json is {member.size} bytes")
            index = json.loads(tar.extractfile(member).read())  # type: ignore[union-attr]
    except (OSError, KeyError, tarfile.TarError, ValueError) as exc:
        raise UsageError(f"{archive}: not an OCI image archive ({exc})") from None
    names = set()
    for manifest in index.get("manifests", []) if isinstance(index, dict) else []:
        annotations = manifest.get("annotations") or {} if isinstance(manifest, dict) else {}
        full = annotations.get("io.containerd.image.name")
        ref = annotations.get("org.opencontainers.image.ref.name")
        if isinstance(full, str):
            names.add(full)
        # ref.name may be a bare tag (named with the importer's base name) or a full reference.
        if isinstance(ref, str) and ("/" in ref or ":" in ref):
            names.add(ref)
    return names


def check_built_image(path: Path, version: str, image: str) -> None:
    """An image patternbench builds (or imports) for an agent file never takes a name the
    cluster's own images use: loading it would replace that image on every node."""
    if image.startswith(RESERVED_IMAGE_PREFIX):
        raise refuse(path, f"images.{version}", f"{image!r} is a name the cluster's own images use; an archive would replace it on every node")


def check_archive(path: Path, version: str, archive: Path, image: str) -> None:
    check_built_image(path, version, image)
    others = sorted(n for n in archive_image_names(archive) if n != image)
    if others:
        raise refuse(path, f"archives.{version}", f"{archive} imports {others[0]!r}, not only images.{version} {image!r}")
