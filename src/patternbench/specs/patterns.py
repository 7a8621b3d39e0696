"""Every pattern, defined once (PatternSpec): which agents it runs per pod and which per
node. Its container formula and the proxies and hops a request passes follow from those
placements and the agents' specs (the objects it renders: render/pattern_objects.py);
everything else looks a pattern up here, and an unknown one is an error, never a default.

Adding a pattern: its name in Pattern and one PatternSpec in PATTERNS.
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace
from enum import Enum
from typing import TYPE_CHECKING

from patternbench.errors import UsageError
from patternbench.specs.agents import AGENTS, AgentKind, AgentSpec, Placement, ProxyMode, agent_spec

if TYPE_CHECKING:
    from patternbench.specs.topology import Agents, Topology


class Pattern(str, Enum):
    """Where the agents run. `none` is the control: the app without agents."""

    NONE = "none"
    SIDECAR = "sidecar"
    DAEMONSET = "daemonset"
    HYBRID = "hybrid"
    AMBIENT = "ambient"
    AMBIENT_L4 = "ambient-l4"

    @classmethod
    def parse(cls, value: str, field_name: str = "pattern") -> Pattern:
        try:
            return cls(value)
        except ValueError:
            choices = ", ".join(p.value for p in cls)
            raise UsageError(f"{field_name}: unknown pattern {value!r} (choose one of {choices})") from None


@dataclass(frozen=True)
class PatternSpec:
    """One pattern: where each agent runs. An agent it does not place does not run in it."""

    pattern: Pattern
    placement: dict[str, Placement] = field(default_factory=dict)
    # Assert that upgrading a log agent loses no line. Only the daemonset pattern asserts it
    # today; hybrid runs the same log DaemonSet but has never been held to it on a cluster.
    lossless_log_upgrade: bool = False
    # The topology switches it cannot run without (the ambient patterns are a mesh).
    requires: tuple[str, ...] = ()

    def check(self, topology: Topology) -> None:
        """Before anything is deployed: the topology turns on what the pattern needs."""
        for switch in self.requires:
            if not getattr(topology.agents, switch):
                raise UsageError(f"--pattern {self.name}: it is a {switch} pattern, and the topology turns the {switch} off (agents.{switch}: false)")

    def __post_init__(self) -> None:
        for name in self.placement:
            agent_spec(name, f"pattern {self.pattern.value}")

    @property
    def name(self) -> str:
        return self.pattern.value

    def agents_at(self, placement: Placement) -> list[AgentSpec]:
        """The agents run per pod (POD) or per node (NODE), in the registry's order."""
        return [a for name, a in AGENTS.items() if self.placement.get(name) is placement]

    def placement_of(self, agent: str) -> Placement | None:
        """Where this pattern runs the agent (an agent file's where it runs the one it stands
        in for, if the file gives a container for that placement); None: it does not."""
        spec = agent_spec(agent)
        placement = self.placement.get(spec.name, self.placement.get(spec.slot))  # its own place once it stands in
        return placement if placement in spec.placements else None

    def runs(self, agent: str) -> bool:
        return self.placement_of(agent) is not None

    def with_stand_in(self, agent: AgentSpec) -> PatternSpec:
        """This pattern as a case of an agent file's agent runs it: the agent in the place of
        the built-in one it stands in for, so its own proxy modes decide the hops expected."""
        if agent.stands_in_for is None or agent.stands_in_for not in self.placement:
            return self
        placement = {agent.name if name == agent.stands_in_for else name: where for name, where in self.placement.items()}
        return replace(self, placement=placement)

    def runs_on_nodes(self, agent: str) -> bool:
        """Whether the agent runs once per node (a DaemonSet) rather than per pod."""
        return self.placement_of(agent) is Placement.NODE

    def instances(self, agents: Agents, placement: Placement) -> int:
        """Agent containers per pod (POD) or per node (NODE) with this topology's agents."""
        return sum(agents.instances(a) for a in self.agents_at(placement))

    def containers(self, topology: Topology, nodes: int) -> int:
        """The seed's container count: each app pod with its sidecars, each node's agents,
        and each service's own agent pods (S·R·(1+k_pod) + nodes·k_node + S·W·k_service)."""
        pods = topology.app_pods
        per_service = len(topology.services) * topology.waypoint_replicas * self.instances(topology.agents, Placement.SERVICE)
        return pods * (1 + self.instances(topology.agents, Placement.POD)) + nodes * self.instances(topology.agents, Placement.NODE) + per_service

    def running(self, kind: AgentKind, topology: Topology, nodes: int) -> int:
        """How many instances of the agents of one kind run: per pod, per node or per
        service's own pods (a mesh's instances each watch the EndpointSlices, for one)."""
        per = {Placement.POD: topology.app_pods, Placement.NODE: nodes, Placement.SERVICE: len(topology.services) * topology.waypoint_replicas}
        return sum(per[placement] * topology.agents.instances(a) for name, placement in self.placement.items()
                   if (a := AGENTS[name]).kind is kind)

    def proxies(self, mesh: bool = True) -> list[ProxyMode]:
        """The proxy modes a request meets (the mesh agents this pattern places), if the mesh runs."""
        if not mesh:
            return []
        return [a.proxy_mode(self.placement[a.name]) for a in AGENTS.values() if a.kind is AgentKind.MESH and a.name in self.placement]

    def expected_hops(self, agents: Agents) -> list[str]:
        """The Via kinds every downstream call shows: per call, the proxy modes it passes."""
        mesh = any(agents.instances(a) for a in AGENTS.values() if a.kind is AgentKind.MESH)
        return [m.name for m in self.proxies(mesh) for _ in range(m.per_call)]

    def depends_on_placement(self, mesh: bool = True) -> bool:
        """Whether the proxies a call passes depend on where its pods ran: an L4 proxy dials a
        pod of its own node itself, so a call within a node passes one, across nodes two
        (unless a waypoint sits between, which always takes the tunnel node to node)."""
        modes = self.proxies(mesh)
        return any(m.direct_same_node for m in modes) and not any(m.own_pod for m in modes)

    def call_kinds(self, crossed: bool, mesh: bool = True) -> list[str]:
        """The proxy modes one call passes (sorted), given whether its two pods ran on different nodes."""
        direct = self.depends_on_placement(mesh) and not crossed
        return sorted(m.name for m in self.proxies(mesh) for _ in range(1 if direct and m.direct_same_node else m.per_call))

    def request_via_kinds(self, mesh: bool = True) -> list[str]:
        """The Via a callee sees on a call's request: the L7 proxies' entries only."""
        return [m.name for m in self.proxies(mesh) if m.writes_via for _ in range(m.per_call)]

    def expected_proxies(self, calls_per_request: int, mesh: bool = True, cross_node_share: float | None = None) -> float | None:
        """Proxy hops per request: each call passes its proxies; an entry proxy adds one. Where
        that depends on placement, from the measured share of calls that crossed nodes (None
        without it)."""
        total = 0.0
        for m in self.proxies(mesh):
            if m.direct_same_node and self.depends_on_placement(mesh):
                if cross_node_share is None:
                    return None
                total += calls_per_request * (1 + cross_node_share)
            else:
                total += m.per_call * calls_per_request + int(m.on_entry)
        return total if self.depends_on_placement(mesh) else int(total)

    def hop_counts(self, calls_per_request: int, mesh: bool = True, cross_node_share: float | None = None) -> dict[str, float] | None:
        """Hops per request inside the cluster (`total`) and how many are `loopback`: a call is
        app -> [proxies] -> app, one hop more than the proxies it passes; a proxy in the pod
        is a loopback hop from its app."""
        proxies = self.expected_proxies(calls_per_request, mesh, cross_node_share)
        if proxies is None:
            return None
        loopback = sum(m.per_call * calls_per_request + int(m.on_entry) for m in self.proxies(mesh) if m.in_pod)
        return {"total": calls_per_request + proxies, "loopback": loopback}

    def needs_sink(self, agents: Agents) -> bool:
        """Whether a log agent runs, so the log sink is deployed and read."""
        return any(a.kind is AgentKind.LOG and agents.instances(a) for a in AGENTS.values() if a.name in self.placement)


# The agents the sidecar, DaemonSet and hybrid patterns place (the ambient ones have their own).
CLASSIC = ("mesh", "logging", "agent-omega")

PATTERNS: dict[Pattern, PatternSpec] = {
    spec.pattern: spec
    for spec in (
        PatternSpec(Pattern.NONE),
        PatternSpec(Pattern.SIDECAR, {name: Placement.POD for name in CLASSIC}),
        PatternSpec(Pattern.DAEMONSET, {name: Placement.NODE for name in CLASSIC}, lossless_log_upgrade=True),
        # The mesh proxy per pod (next to its app), every other agent per node.
        PatternSpec(Pattern.HYBRID, {name: Placement.POD if AGENTS[name].kind is AgentKind.MESH else Placement.NODE for name in CLASSIC}),
        # Istio's ambient mode: an L4 proxy per node, an L7 waypoint per service, the rest per node.
        PatternSpec(Pattern.AMBIENT, {"l4proxy": Placement.NODE, "waypoint": Placement.SERVICE, "logging": Placement.NODE, "agent-omega": Placement.NODE}, requires=("mesh",)),
        # Ambient without waypoints: the L4 proxies alone.
        PatternSpec(Pattern.AMBIENT_L4, {"l4proxy": Placement.NODE, "logging": Placement.NODE, "agent-omega": Placement.NODE}, requires=("mesh",)),
    )
}


def case_pattern_spec(pattern: Pattern | str, agent: str | None) -> PatternSpec:
    """The pattern as the case of `agent` (None: the control) runs it (with_stand_in)."""
    spec = pattern_spec(pattern)
    return spec.with_stand_in(agent_spec(agent)) if agent else spec


def pattern_spec(pattern: Pattern | str) -> PatternSpec:
    """The registered spec of a pattern (or its name); a one-line UsageError otherwise."""
    key = Pattern.parse(pattern) if isinstance(pattern, str) and not isinstance(pattern, Pattern) else pattern
    spec = PATTERNS.get(key)  # type: ignore[arg-type]
    if spec is None:
        name = pattern.value if isinstance(pattern, Pattern) else pattern
        raise UsageError(f"pattern {name!r} has no registered spec (registered: {', '.join(p.value for p in PATTERNS)})")
    return spec
