"""Bring your own agent: an agent file (YAML) turned into a registered AgentSpec that stands
in for patternbench's own agent of its kind (a log agent for `logging`, a mesh proxy for
`mesh`, a generic agent for the extra agents' slot), so every pattern places it where it
places that agent and every measurement of that kind applies to it.

    name: otelcol                      # DNS label, not a built-in agent's name
    kind: log                          # log | mesh | generic
    images: {v1: REF, v2: REF}         # deployed at v1, upgraded to v2 (two different images)
    archives: {v1: FILE, v2: FILE}     # optional: OCI archives the local provider imports
    build:                             # optional: the images built here from a packaged program
      program: /usr/sbin/haproxy       #   installed by a Debian package, with its libraries
      stop_signal: SIGUSR1             #   what stopping the container sends (default SIGTERM)
      packages: {v1: haproxy=VERSION}  #   a version's binary from that package (else the installed one)
    config: {FILE_NAME: TEXT, ...}     # optional: a ConfigMap mounted read-only at /etc/<name>;
                                       #   a name ending in .j2 is a Jinja template of the run's
                                       #   services (specs/config_template.py), mounted without .j2
    proxy: {outbound_port: P, inbound_port: P, pod_dns: false, modes: {node: egress}}
                                       # mesh only: where apps send, where pods receive; pod_dns:
                                       #   a headless Service <service>-pods per app service, whose
                                       #   DNS names its pods; modes: the Via mode it writes per
                                       #   placement (agents.PROXY_MODES; default: meshproxy's)
    sidecar:                           # optional: the container beside every app pod
      container: {...}                 # a Kubernetes container without name and image
      volumes: [...]                   # no hostPath here
    node:                              # optional: the container of its DaemonSet
      container: {...}
      volumes: [...]
      host_network: false
      surge: false                     # true: on upgrade the new pod starts beside the old one
                                       #   (maxSurge 1), for an agent that takes its port over
                                       #   (SO_REUSEPORT) before its predecessor stops

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
from patternbench.build.program_image import ProgramBuild, ProgramVersion, check_package, check_stop_signal
from patternbench.build.program_image import check_program as check_program_installed
from patternbench.build.rootfs import debian_package_of
from patternbench.errors import UsageError
from patternbench.specs import agent_trust, config_template
from patternbench.specs.agents import AGENTS, PROXY_MODES, AgentKind, AgentSpec, Placement, ProxyMode, register
from patternbench.specs.names import is_dns_label, is_file_name

MAX_AGENT_NAME = 32
TOP_KEYS = {"name", "kind", "images", "archives", "build", "config", "proxy", "sidecar", "node"}
BUILD_KEYS = {"program", "stop_signal", "packages"}
PROXY_KEYS = {"outbound_port", "inbound_port", "pod_dns", "modes"}
PART_NAMES = {"sidecar": Placement.POD, "node": Placement.NODE}
PART_KEYS = {"container": True, "volumes": False, "host_network": False, "surge": False}
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
    surge: bool = False  # node: a DaemonSet upgrade starts the successor before stopping its predecessor


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
    proxy_modes: dict[Placement, str] = field(default_factory=dict)  # mesh: Via modes unlike meshproxy's
    digest: str = ""  # sha256 of the file's text
    build: ProgramBuild | None = None  # its images, built from a packaged program
    pod_dns: bool = False  # mesh: a headless Service per app service names its pods in DNS

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
    host_network, surge = doc.get("host_network", False), doc.get("surge", False)
    for key, value in (("host_network", host_network), ("surge", surge)):
        if not isinstance(value, bool):
            raise _fail(path, f"{where}.{key}", f"expected true or false, got {value!r}")
    if surge and placement is Placement.POD:
        raise _fail(path, "sidecar.surge", "a sidecar is upgraded with its pod; surge is for the node's agent")
    return Part(container=copy.deepcopy(container), volumes=copy.deepcopy(volumes), host_network=host_network, surge=surge)


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
    build = parse_build(path, doc["build"], trusted, check_program=check_archives) if "build" in doc else None
    if build is not None and archives:
        raise _fail(path, "build", "give archives or build, not both: the images come from one place")
    if build is not None and not trusted:
        for version in VERSIONS:
            agent_trust.check_built_image(path, version, images[version])
    config = dict(_mapping(path, doc.get("config", {}), "config"))
    for file_name, content in config.items():
        if isinstance(content, dict) and set(content) == {"file"} and isinstance(content["file"], str):
            # {file: PATH}: the text of a file beside the agent file, read now (one copy of a config).
            where = f"config.{file_name}.file"
            target = path.parent / content["file"] if trusted else agent_trust.check_config_file(path, where, content["file"])
            config[file_name] = content = user_files.read_text(target, f"agent file {path}: {where}")
        if not is_file_name(file_name) or not isinstance(content, str):
            raise _fail(path, f"config.{file_name}", "expected a file name mapped to the file's text (or to {file: PATH})")
        if config_template.is_template(file_name):
            try:
                config_template.check_template(file_name, content)
            except UsageError as exc:
                raise _fail(path, f"config.{file_name}", str(exc)) from None
    parts = {p: parse_part(path, doc[key], p) for p, key in ((Placement.POD, "sidecar"), (Placement.NODE, "node")) if key in doc}
    if not parts:
        raise _fail(path, "sidecar/node", "give at least one: the container beside every app pod, or the one per node")
    if not trusted:
        for placement, part in parts.items():
            where = placement.value if placement is Placement.NODE else "sidecar"
            agent_trust.check_volumes(path, where, name, part.volumes, part.container)
            agent_trust.check_security(path, where, part.container)
    ports, pod_dns, modes = None, False, {}
    if kind == "mesh":
        proxy = _mapping(path, doc.get("proxy"), "proxy")
        if set(proxy) - PROXY_KEYS:
            raise _fail(path, f"proxy.{sorted(set(proxy) - PROXY_KEYS)[0]}", f"unknown key (known: {', '.join(sorted(PROXY_KEYS))})")
        ports = (_port(path, proxy.get("outbound_port"), "proxy.outbound_port"), _port(path, proxy.get("inbound_port"), "proxy.inbound_port"))
        pod_dns = proxy.get("pod_dns", False)
        if not isinstance(pod_dns, bool):
            raise _fail(path, "proxy.pod_dns", f"expected true or false, got {pod_dns!r}")
        for part, mode in _mapping(path, proxy.get("modes", {}), "proxy.modes").items():
            if part not in PART_NAMES:
                raise _fail(path, f"proxy.modes.{part}", f"unknown placement (known: {', '.join(PART_NAMES)})")
            if mode not in PROXY_MODES:
                raise _fail(path, f"proxy.modes.{part}", f"unknown proxy mode {mode!r} (known: {', '.join(PROXY_MODES)})")
            modes[PART_NAMES[part]] = mode
    elif "proxy" in doc:
        raise _fail(path, "proxy", f"only a mesh agent has proxy ports, this one is a {kind} agent")
    # What the agent is, whatever file it was read from (a run's copy carries its configs'
    # text and no archive paths): the same agent read twice is no conflict.
    meaning = {"name": name, "kind": kind, "images": images, "config": config, "proxy": ports, "pod_dns": pod_dns,
               "modes": {p.value: m for p, m in modes.items()},
               "build": doc.get("build"),
               "parts": {p.value: [part.container, part.volumes, part.host_network, part.surge] for p, part in parts.items()}}
    digest = hashlib.sha256(json.dumps(meaning, sort_keys=True).encode()).hexdigest()
    return AgentFile(path, name, kind, {v: images[v] for v in VERSIONS}, archives, dict(config), parts, ports, modes, digest, build, pod_dns)


def parse_build(path: Path, raw: Any, trusted: bool, check_program: bool = True) -> ProgramBuild:
    """The `build` block: a packaged program that exists, runs and whose libraries resolve
    here, checked before anything is deployed. Unless trusted, only a program a Debian
    package installed (not any file of the host). A run's copy read back for a report is
    not checked (`check_program` False): the report builds nothing, maybe on another machine."""
    doc = _mapping(path, raw, "build")
    if set(doc) - BUILD_KEYS:
        raise _fail(path, f"build.{sorted(set(doc) - BUILD_KEYS)[0]}", f"unknown key (known: {', '.join(sorted(BUILD_KEYS))})")
    program = doc.get("program")
    if not isinstance(program, str) or not program.startswith("/"):
        raise _fail(path, "build.program", f"expected the program's absolute path, got {program!r}")
    try:
        stop_signal = check_stop_signal(doc.get("stop_signal", "SIGTERM"))
    except UsageError as exc:
        raise _fail(path, "build.stop_signal", str(exc)) from None
    if check_program:
        try:
            check_program_installed(Path(program))
        except UsageError as exc:
            raise _fail(path, "build.program", str(exc)) from None
    if check_program and not trusted and not debian_package_of(Path(program)):
        raise agent_trust.refuse(path, "build.program", f"{program} was not installed by a Debian package")
    versions = {}
    packages = _mapping(path, doc.get("packages", {}), "build.packages")
    for version in VERSIONS:
        spec = packages.get(version, "")
        if spec:
            try:
                check_package(str(spec))
            except UsageError as exc:
                raise _fail(path, f"build.packages.{version}", str(exc)) from None
        versions[version] = ProgramVersion(str(spec))
    if set(packages) - set(VERSIONS):
        raise _fail(path, "build.packages", f"only {' and '.join(VERSIONS)} are used, not {sorted(set(packages) - set(VERSIONS))[0]!r}")
    if versions["v1"] == versions["v2"]:
        raise _fail(path, "build.packages", "v1 and v2 are built from the same binary: give one of them an older package (PACKAGE=VERSION)")
    return ProgramBuild(Path(program), stop_signal, versions)


def _proxy(agent: AgentFile, slot: AgentSpec) -> dict[Placement, ProxyMode]:
    """The proxy modes per placement: the file's, else those of the agent it stands in for."""
    return {**(slot.proxy or {}), **{p: PROXY_MODES[m] for p, m in agent.proxy_modes.items()}}


def spec_of(agent: AgentFile) -> AgentSpec:
    """The AgentSpec of an agent file: it stands in for the built-in agent of its kind."""
    slot = AGENTS[SLOTS[agent.kind]]
    return AgentSpec(
        agent.name, KINDS[agent.kind], image=agent.name, container=agent.name, switch=slot.switch,
        versions=VERSIONS, upgradable=True, proxy=_proxy(agent, slot) if agent.kind == "mesh" else None,
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

