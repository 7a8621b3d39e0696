"""Bring your own agent: an agent file (YAML) turned into a registered AgentSpec that stands
in for patternbench's own agent of its kind (a log agent for `logging`, a mesh proxy for
`mesh`, a generic agent for the extra agents' slot), so every pattern places it where it
places that agent and every measurement of that kind applies to it.

    name: otelcol                      # DNS label, not a built-in agent's name
    kind: log                          # log | mesh | generic
    images: {v1: REF, v2: REF}         # deployed at v1, upgraded to v2 (two different images)
    archives: {v1: FILE, v2: FILE}     # optional: OCI archives the local provider imports
    config: {FILE_NAME: TEXT, ...}     # optional: a ConfigMap mounted read-only at /etc/<name>
    proxy: {outbound_port: P, inbound_port: P}   # mesh only: where apps send, where pods receive
    sidecar:                           # optional: the container beside every app pod
      container: {...}                 # a Kubernetes container without name and image
      volumes: [...]                   # no hostPath here
    node:                              # optional: the container of its DaemonSet
      container: {...}
      volumes: [...]
      host_network: false

Every agent container gets NODE_NAME, POD_NAME, POD_NAMESPACE, SINK_URL (the log sink,
our own batch format at /ingest, OTLP/HTTP JSON at /v1/logs), SINK_ENDPOINT (host:port);
a log sidecar also APP_LOG_DIR (the app writes APP_LOG_DIR/app.log, shared through an
emptyDir), a node agent POD_LOGS_DIR (the node's pod logs) and APP_NAMESPACE. Every error
is one line naming the file and the field, raised before anything is deployed.
"""

from __future__ import annotations

import copy
import hashlib
import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from patternbench import user_files
from patternbench.errors import UsageError
from patternbench.specs import agent_trust
from patternbench.specs.agents import AGENTS, AgentKind, AgentSpec, Placement, register
from patternbench.specs.names import is_dns_label, is_file_name

MAX_AGENT_NAME = 32
TOP_KEYS = {"name", "kind", "images", "archives", "config", "proxy", "sidecar", "node"}
PART_KEYS = {"container": True, "volumes": False, "host_network": False}
# The slot each kind stands in for: the built-in agent whose place it takes.
SLOTS = {"log": "logging", "mesh": "mesh", "generic": "agent-omega"}
KINDS = {"log": AgentKind.LOG, "mesh": AgentKind.MESH, "generic": AgentKind.GENERIC}
VERSIONS = ("v1", "v2")
# Fields of a container patternbench sets itself.
OWNED_CONTAINER_FIELDS = ("name", "image", "restartPolicy")


@dataclass(frozen=True)
class Part:
    """The agent's container and volumes in one placement."""

    container: dict[str, Any]
    volumes: list[dict[str, Any]] = field(default_factory=list)
    host_network: bool = False


@dataclass(frozen=True)
class AgentFile:
    """An agent file, validated."""

    source: Path
    name: str
    kind: str
    images: dict[str, str]
    archives: dict[str, Path]
    config: dict[str, str]
    parts: dict[Placement, Part]
    proxy_ports: tuple[int, int] | None = None  # mesh: (outbound, inbound)
    digest: str = ""  # sha256 of the file's text

    @property
    def config_map(self) -> str:
        return f"{self.name}-config"


def _fail(path: Path, where: str, problem: str) -> UsageError:
    return UsageError(f"agent file {path}: {where}: {problem}")


def _mapping(path: Path, value: Any, where: str) -> dict[str, Any]:
    if not isinstance(value, dict):
        raise _fail(path, where, f"expected a mapping, got {type(value).__name__}")
    return value


def _port(path: Path, value: Any, where: str) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or not 1024 <= value <= 65535:
        raise _fail(path, where, f"expected a port from 1024 to 65535, got {value!r}")
    return value


def parse_part(path: Path, raw: Any, placement: Placement) -> Part:
    where = placement.value if placement is Placement.NODE else "sidecar"
    doc = _mapping(path, raw, where)
    unknown = set(doc) - set(PART_KEYS)
    if unknown:
        raise _fail(path, where, f"unknown key {sorted(unknown)[0]!r} (known: {', '.join(PART_KEYS)})")
    container = _mapping(path, doc.get("container"), f"{where}.container")
    for owned in OWNED_CONTAINER_FIELDS:
        if owned in container:
            raise _fail(path, f"{where}.container.{owned}", "set by patternbench (the name is the agent's, the image comes from `images`)")
    volumes = doc.get("volumes", [])
    if not isinstance(volumes, list) or not all(isinstance(v, dict) and isinstance(v.get("name"), str) for v in volumes):
        raise _fail(path, f"{where}.volumes", "expected a list of volumes, each with a name")
    names = [v["name"] for v in volumes]
    if len(set(names)) != len(names):
        raise _fail(path, f"{where}.volumes", "two volumes share a name")
    if placement is Placement.POD:
        for v in volumes:
            if "hostPath" in v:
                raise _fail(path, f"sidecar.volumes.{v['name']}", "hostPath is not allowed in a sidecar (app pods run under the restricted Pod Security level)")
        if doc.get("host_network"):
            raise _fail(path, "sidecar.host_network", "a sidecar shares its app pod's network")
    provided = set(names) | {"app-logs", "agent-config"}
    for mount in container.get("volumeMounts", []) or []:
        if not isinstance(mount, dict) or mount.get("name") not in provided:
            raise _fail(path, f"{where}.container.volumeMounts", f"mounts {mount.get('name') if isinstance(mount, dict) else mount!r}, which is not among its volumes")
    host_network = doc.get("host_network", False)
    if not isinstance(host_network, bool):
        raise _fail(path, f"{where}.host_network", f"expected true or false, got {host_network!r}")
    return Part(container=copy.deepcopy(container), volumes=copy.deepcopy(volumes), host_network=host_network)


def parse_agent_file(path: Path, check_archives: bool = True, trusted: bool = False) -> AgentFile:
    """The file, validated; a one-line UsageError for the first problem found. A run's own
    copy is read back without `check_archives` (its archives were imported already). Unless
    `trusted`, the file may do only what agent_trust allows."""
    raw = user_files.load_yaml(path, "agent file")
    doc = _mapping(path, raw, "the file")
    unknown = set(doc) - TOP_KEYS
    if unknown:
        raise _fail(path, sorted(unknown)[0], f"unknown key (known: {', '.join(sorted(TOP_KEYS))})")
    name = doc.get("name")
    if not is_dns_label(name, MAX_AGENT_NAME):
        raise _fail(path, "name", f"expected a DNS label of at most 32 characters, got {name!r}")
    if name in AGENTS and AGENTS[name].source is None:
        raise _fail(path, "name", f"{name!r} is patternbench's own agent; give yours another name")
    kind = doc.get("kind")
    if kind not in KINDS:
        raise _fail(path, "kind", f"unknown kind {kind!r} (choose one of {', '.join(KINDS)})")
    images = _mapping(path, doc.get("images"), "images")
    for version in VERSIONS:
        if not isinstance(images.get(version), str) or not images[version].strip():
            raise _fail(path, f"images.{version}", "missing: an agent file gives an image for v1 (deployed) and v2 (the upgrade)")
    if set(images) - set(VERSIONS):
        raise _fail(path, "images", f"only {' and '.join(VERSIONS)} are used, not {sorted(set(images) - set(VERSIONS))[0]!r}")
    if images["v1"] == images["v2"]:
        raise _fail(path, "images", "v1 and v2 are the same image: the upgrade would change nothing")
    archives: dict[str, Path] = {}
    for version, file in _mapping(path, doc.get("archives", {}), "archives").items():
        if version not in VERSIONS:
            raise _fail(path, f"archives.{version}", f"only {' and '.join(VERSIONS)} are used")
        archive = (path.parent / str(file)).resolve()
        if check_archives and not archive.is_file():
            raise _fail(path, f"archives.{version}", f"{archive} does not exist")
        if check_archives and not trusted:
            agent_trust.check_archive(path, version, archive, images.get(version, ""))
        archives[version] = archive
    config = dict(_mapping(path, doc.get("config", {}), "config"))
    for file_name, content in config.items():
        if isinstance(content, dict) and set(content) == {"file"} and isinstance(content["file"], str):
            # {file: PATH}: the text of a file beside the agent file, read now (one copy of a config).
            where = f"config.{file_name}.file"
            target = path.parent / content["file"] if trusted else agent_trust.check_config_file(path, where, content["file"])
            config[file_name] = content = user_files.read_text(target, f"agent file {path}: {where}")
        if not is_file_name(file_name) or not isinstance(content, str):
            raise _fail(path, f"config.{file_name}", "expected a file name mapped to the file's text (or to {file: PATH})")
    parts = {p: parse_part(path, doc[key], p) for p, key in ((Placement.POD, "sidecar"), (Placement.NODE, "node")) if key in doc}
    if not parts:
        raise _fail(path, "sidecar/node", "give at least one: the container beside every app pod, or the one per node")
    if not trusted:
        for placement, part in parts.items():
            where = placement.value if placement is Placement.NODE else "sidecar"
            agent_trust.check_volumes(path, where, name, part.volumes, part.container)
            agent_trust.check_security(path, where, part.container)
    ports = None
    if kind == "mesh":
        proxy = _mapping(path, doc.get("proxy"), "proxy")
        ports = (_port(path, proxy.get("outbound_port"), "proxy.outbound_port"), _port(path, proxy.get("inbound_port"), "proxy.inbound_port"))
    elif "proxy" in doc:
        raise _fail(path, "proxy", f"only a mesh agent has proxy ports, this one is a {kind} agent")
    # What the agent is, whatever file it was read from (a run's copy carries its configs'
    # text and no archive paths): the same agent read twice is no conflict.
    meaning = {"name": name, "kind": kind, "images": images, "config": config, "proxy": ports,
               "parts": {p.value: [part.container, part.volumes, part.host_network] for p, part in parts.items()}}
    digest = hashlib.sha256(json.dumps(meaning, sort_keys=True).encode()).hexdigest()
    return AgentFile(path, name, kind, {v: images[v] for v in VERSIONS}, archives, dict(config), parts, ports, digest)


def spec_of(agent: AgentFile) -> AgentSpec:
    """The AgentSpec of an agent file: it stands in for the built-in agent of its kind."""
    slot = AGENTS[SLOTS[agent.kind]]
    return AgentSpec(
        agent.name, KINDS[agent.kind], image=agent.name, container=agent.name, switch=slot.switch,
        versions=VERSIONS, upgradable=True, proxy=slot.proxy if agent.kind == "mesh" else None,
        container_names=(agent.name,), stands_in_for=slot.name, placements=frozenset(agent.parts),
        images_by_version=dict(agent.images), source=str(agent.source), digest=agent.digest,
        archives=tuple(agent.archives[v] for v in VERSIONS if v in agent.archives), file=agent,
    )


def load_agent_file(path: Path, check_archives: bool = True, trusted: bool = False) -> AgentSpec:
    """Parse, validate and register the agent of `path`; its spec."""
    return register(spec_of(parse_agent_file(path, check_archives, trusted)))


def register_run_agents(run_dir: Path) -> list[AgentSpec]:
    """The agent files a run carried (run_dir/agents/*.yaml), registered so its records can
    be summarized again later. Read as trusted: a report deploys nothing, and the run that
    wrote them checked them (or was told to trust them)."""
    return [load_agent_file(p, check_archives=False, trusted=True) for p in sorted((run_dir / "agents").glob("*.yaml"))]


def keep_with_run(specs: list[AgentSpec], run_dir: Path) -> None:
    """Copy each file agent's file into the run, so `patternbench report` can rebuild it."""
    if not specs:
        return
    (run_dir / "agents").mkdir(parents=True, exist_ok=True)
    for spec in specs:
        assert spec.source is not None
        source = Path(spec.source)
        doc = user_files.load_yaml(source, "agent file")
        if spec.file is not None and spec.file.config:  # the copy carries the configs' text itself
            doc["config"] = dict(spec.file.config)
        (run_dir / "agents" / f"{spec.name}.yaml").write_text(yaml.safe_dump(doc, sort_keys=False))

