"""Every agent, defined once (AgentSpec): its images, its kind, where it can run, how it is
upgraded and what is measured for it. Everything else looks an agent up by name; an unknown
name is an error, never a default. This is data: the objects an agent adds to a run are
built in the render layer (render/agent_objects.py).

Adding an agent: one AgentSpec in AGENTS, its builders in render.agent_objects.BUILT_IN (plus
its Go code or image, and its snippet in manifests/sidecars.yaml and manifests/node-agents.yaml),
and its name in patterns.CLASSIC if the sidecar, DaemonSet and hybrid patterns place it.
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import Enum
from pathlib import Path
from typing import TYPE_CHECKING

from patternbench.errors import UsageError

if TYPE_CHECKING:
    from patternbench.specs.agent_file import AgentFile


class AgentKind(str, Enum):
    """What an agent does, which decides what is measured for it."""

    MESH = "mesh"  # on the request path: measured by its hops (Via trails) and downtime
    LOG = "log"  # ships the app's log lines: measured by log delivery (the sink's counts)
    GENERIC = "generic"  # does nothing: stands for k further agents (the topology's extra_agents), measured by its resources only


class Placement(str, Enum):
    """Where a pattern runs an agent."""

    POD = "pod"  # a native sidecar in every app pod
    NODE = "node"  # once per node, a DaemonSet
    SERVICE = "service"  # a Deployment of its own per app service (the ambient waypoint)


@dataclass(frozen=True)
class ProxyMode:
    """How a mesh proxy in one placement shows up in a Via trail ('1.1 <name>/<id> (<node>)')
    and where its hops start and end."""

    name: str  # the mode the proxy writes in Via: sidecar, node, l4, waypoint
    in_pod: bool  # shares its app's pod (loopback to it); else in its node's own network, named by the node
    on_entry: bool  # the entry request passes one too (the entry pod's inbound sidecar)
    per_call: int = 2  # a call passes the caller's outbound and the callee's inbound proxy
    own_pod: bool = False  # runs in a pod of its own, named in Via (a waypoint)
    # A call between two pods of one node passes one instance, not two (the L4 proxy dials
    # the pod itself), unless an own-pod proxy (a waypoint) sits between.
    direct_same_node: bool = False
    writes_via: bool = True  # an L7 proxy adds itself to Via; an L4 tunnel cannot (its trail comes back apart)
    # It carries HTTP/2 cleartext (gRPC) between apps: meshproxy's sidecar and node ports route
    # h2c per stream (images/internal/mesh/h2.go), an L4 tunnel carries any bytes; the
    # waypoint proxies HTTP/1.1 only.
    carries_h2c: bool = True


# The modes a mesh proxy runs in: meshproxy's (images/cmd/meshproxy), and those an agent
# file's proxy declares (proxy.modes). Via names them, hops are classified by them.
PROXY_MODES: dict[str, ProxyMode] = {
    m.name: m for m in (
        ProxyMode("sidecar", in_pod=True, on_entry=True),
        ProxyMode("node", in_pod=False, on_entry=False),
        # A node proxy that sends each call straight to the callee's pod: one per call (the
        # caller's node's), where meshproxy's node mode passes the callee's node's proxy too.
        ProxyMode("egress", in_pod=False, on_entry=False, per_call=1),
        ProxyMode("l4", in_pod=False, on_entry=False, direct_same_node=True, writes_via=False),
        ProxyMode("waypoint", in_pod=False, on_entry=False, per_call=1, own_pod=True, carries_h2c=False),
    )
}


def proxy_mode(name: str) -> ProxyMode:
    mode = PROXY_MODES.get(name)
    if mode is None:
        raise UsageError(f"unknown proxy mode {name!r} in a Via trail (known: {', '.join(PROXY_MODES)})")
    return mode


# Replicas of each service's waypoint Deployment.
WAYPOINT_REPLICAS = 2


@dataclass(frozen=True)
class AgentSpec:
    """One agent: everything a pattern, an upgrade and a measurement need to know of it."""

    name: str  # what --agent and the case ids call it
    kind: AgentKind
    image: str  # repository under the registry; tags are the versions
    container: str  # its container's name (sidecar and DaemonSet); upgrades and faults aim at it
    # The topology's `agents:` key that says how many instances run (a bool: 0 or 1, an int: k).
    switch: str
    versions: tuple[str, ...] = ("v1", "v2")  # deployed at the first, upgraded to the next
    # Upgrade: patch the image of every workload that runs `container` to the next version
    # and wait with kubectl's rollout rules (sidecars: every app pod recreated; DaemonSets:
    # node by node). False: never upgraded.
    upgradable: bool = True
    proxy: dict[Placement, ProxyMode] | None = None  # mesh agents: the proxy mode per placement
    # Container names its instances run under (resource samples are attributed by them).
    container_names: tuple[str, ...] = ()
    # An agent from an agent file (agent_file.py) takes a built-in agent's place: every
    # pattern puts it where it puts that one, in the placements it gives a container for.
    stands_in_for: str | None = None
    placements: frozenset[Placement] = frozenset({Placement.POD, Placement.NODE})
    images_by_version: dict[str, str] | None = None  # full refs per version (else image:version)
    source: str | None = None  # the agent file it came from; None: patternbench's own
    digest: str | None = None  # sha256 of that file: the same agent read again (a run's copy) is no conflict
    archives: tuple[Path, ...] = ()  # OCI archives a provider that loads images imports
    file: AgentFile | None = None  # the agent file, parsed: its containers are built from it

    @property
    def measured(self) -> tuple[str, ...]:
        """The summary figures that belong to this agent's kind."""
        return {
            AgentKind.MESH: ("proxies_per_request", "hops", "requests_per_agent", "request_grouping"),
            AgentKind.LOG: ("log_lines_lost", "log_lines_duplicated", "log_delivery_lag_s"),
            AgentKind.GENERIC: (),
        }[self.kind]

    @property
    def on_request_path(self) -> bool:
        """Whether requests pass the agent (a hung one stalls them; a hung log agent only delays lines)."""
        return self.kind is AgentKind.MESH

    @property
    def slot(self) -> str:
        """The built-in agent whose place it takes in a pattern (its own name if none)."""
        return self.stands_in_for or self.name

    def image_for(self, version: str, current: str) -> str:
        """The image of `version`, given the one running now (whose registry it keeps)."""
        if self.images_by_version is not None:
            if version not in self.images_by_version:
                raise UsageError(f"the {self.name} agent has no image for {version}")
            return self.images_by_version[version]
        return current.rsplit(":", 1)[0] + ":" + version

    def proxy_mode(self, placement: Placement) -> ProxyMode:
        if self.proxy is None:
            raise UsageError(f"the {self.name} agent is no proxy")
        return self.proxy[placement]


# ---- the registry -------------------------------------------------------------------------

# In the order a pattern adds them to a pod or a node (it decides the rendered objects' order).
AGENTS: dict[str, AgentSpec] = {
    spec.name: spec
    for spec in (
        AgentSpec(
            "mesh", AgentKind.MESH, image="meshproxy", container="meshproxy", switch="mesh",
            container_names=("meshproxy",),
            proxy={Placement.POD: PROXY_MODES["sidecar"], Placement.NODE: PROXY_MODES["node"]},
        ),
        AgentSpec(
            "logging", AgentKind.LOG, image="logagent", container="logagent", switch="logging",
            container_names=("logagent",),
        ),
        AgentSpec(
            "l4proxy", AgentKind.MESH, image="meshproxy", container="l4proxy", switch="mesh",
            container_names=("l4proxy",), placements=frozenset({Placement.NODE}),
            proxy={Placement.NODE: PROXY_MODES["l4"]},
        ),
        AgentSpec(
            "waypoint", AgentKind.MESH, image="meshproxy", container="waypoint", switch="mesh",
            container_names=("waypoint",),
            placements=frozenset({Placement.SERVICE}), proxy={Placement.SERVICE: PROXY_MODES["waypoint"]},
        ),
        AgentSpec(
            "agent-omega", AgentKind.GENERIC, image="agent-omega", container="agent", switch="extra_agents",
            versions=("v1",), upgradable=False,
            container_names=("agent-omega", "agent"),
        ),
    )
}

# The agents an experiment upgrades (--agent): every upgradable one.
UPGRADABLE = tuple(name for name, spec in AGENTS.items() if spec.upgradable)


def agent_spec(name: str, field: str = "agent") -> AgentSpec:
    """The registered agent of this name; a one-line UsageError naming the choices otherwise."""
    spec = AGENTS.get(name)
    if spec is None:
        raise UsageError(f"{field}: unknown agent {name!r} (choose one of {', '.join(UPGRADABLE)})")
    return spec


def upgradable_spec(name: str, field: str = "agent") -> AgentSpec:
    """An agent an experiment can upgrade (and aim a fault at)."""
    spec = agent_spec(name, field)
    if not spec.upgradable:
        raise UsageError(f"{field}: the {name} agent is never upgraded (choose one of {', '.join(UPGRADABLE)})")
    return spec


def register(spec: AgentSpec) -> AgentSpec:
    """Add an agent from an agent file; its name must be new (the same file's text again is fine)."""
    known = AGENTS.get(spec.name)
    if known is not None and known.digest != spec.digest:
        raise UsageError(f"agent {spec.name!r} is defined twice ({known.source or 'patternbench'} and {spec.source})")
    if spec.stands_in_for is not None and AGENTS.get(spec.stands_in_for, spec).source is not None:
        raise UsageError(f"agent {spec.name!r} stands in for {spec.stands_in_for!r}, which is not patternbench's own agent")
    AGENTS[spec.name] = spec
    return spec


def file_agents() -> list[AgentSpec]:
    """The agents registered from agent files in this process."""
    return [a for a in AGENTS.values() if a.source is not None]


def agent_by_container(container: str) -> AgentSpec | None:
    """The agent whose container this is (None: the app, the sink, anything else)."""
    return next((a for a in AGENTS.values() if a.container == container), None)
