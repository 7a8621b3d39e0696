"""Every pattern, defined once (PatternSpec): which agents it runs per pod and which per
node. Its container formula, the proxies and hops a request passes and the transformation of
the rendered objects all follow from those placements and the agents' specs; everything
else looks a pattern up here, and an unknown one is an error, never a default.

Adding a pattern: its name in Pattern and one PatternSpec in PATTERNS.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from enum import Enum
from typing import TYPE_CHECKING

from patternbench.agents import AGENTS, AgentKind, AgentSpec, Placement, ProxyMode, agent_spec
from patternbench.errors import UsageError
from patternbench.render import Obj, RenderOptions, find, load_template, values

if TYPE_CHECKING:
    from patternbench.topology import Agents, Topology


class Pattern(str, Enum):
    """Where the agents run. `none` is the control: the app without agents."""

    NONE = "none"
    SIDECAR = "sidecar"
    DAEMONSET = "daemonset"
    HYBRID = "hybrid"

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
        placement = self.placement.get(spec.slot)
        return placement if placement in spec.placements else None

    def runs(self, agent: str) -> bool:
        return self.placement_of(agent) is not None

    def runs_on_nodes(self, agent: str) -> bool:
        """Whether the agent runs once per node (a DaemonSet) rather than per pod."""
        return self.placement_of(agent) is Placement.NODE

    def instances(self, agents: Agents, placement: Placement) -> int:
        """Agent containers per pod (POD) or per node (NODE) with this topology's agents."""
        return sum(agents.instances(a) for a in self.agents_at(placement))

    def containers(self, topology: Topology, nodes: int) -> int:
        """The seed's container count: each app pod with its sidecars, each node's agents."""
        pods = topology.app_pods
        return pods * (1 + self.instances(topology.agents, Placement.POD)) + nodes * self.instances(topology.agents, Placement.NODE)

    def proxies(self, mesh: bool = True) -> list[ProxyMode]:
        """The proxy modes a request meets (the mesh agents this pattern places), if the mesh runs."""
        if not mesh:
            return []
        return [a.proxy_mode(self.placement[a.name]) for a in AGENTS.values() if a.kind is AgentKind.MESH and a.name in self.placement]

    def expected_hops(self, agents: Agents) -> list[str]:
        """The Via kinds every downstream call shows: per call, the proxy modes it passes."""
        mesh = any(agents.instances(a) for a in AGENTS.values() if a.kind is AgentKind.MESH)
        return [m.name for m in self.proxies(mesh) for _ in range(m.per_call)]

    def expected_proxies(self, calls_per_request: int, mesh: bool = True) -> int:
        """Proxy hops per request: each call passes its proxies; an entry proxy adds one."""
        return sum(m.per_call * calls_per_request + int(m.on_entry) for m in self.proxies(mesh))

    def hop_counts(self, calls_per_request: int, mesh: bool = True) -> dict[str, int]:
        """Hops per request inside the cluster (`total`) and how many are `loopback`: a call is
        app -> [proxies] -> app, one hop more than the proxies it passes; a proxy in the pod
        is a loopback hop from its app."""
        total, loopback = calls_per_request, 0
        for m in self.proxies(mesh):
            hops = m.per_call * calls_per_request + int(m.on_entry)
            total += hops
            loopback += hops if m.in_pod else 0
        return {"total": total, "loopback": loopback}

    def needs_sink(self, agents: Agents) -> bool:
        """Whether a log agent runs, so the log sink is deployed and read."""
        return any(a.kind is AgentKind.LOG and agents.instances(a) for a in AGENTS.values() if a.name in self.placement)

    def transform(self, objs: list[Obj], topology: Topology, opts: RenderOptions) -> None:
        """The pattern's change to the rendered objects: the sink if a log agent runs, each
        per-pod agent added to every app pod, each per-node agent as its DaemonSet."""
        agents = topology.agents
        if self.needs_sink(agents):
            objs += load_template("sink.yaml", values(opts))
        pod_agents = self.agents_at(Placement.POD)
        if pod_agents:
            for deployment in find(objs, "Deployment"):
                if deployment["metadata"]["namespace"] == opts.app_namespace:
                    pod = deployment["spec"]["template"]["spec"]
                    pod.setdefault("initContainers", [])  # native sidecars live there
                    pod.setdefault("volumes", [])
        for agent in pod_agents:
            stand_in(agent, opts).sidecar(objs, opts, agents.instances(agent))
        for agent in self.agents_at(Placement.NODE):
            stand_in(agent, opts).node(objs, opts, agents.instances(agent))


def stand_in(agent: AgentSpec, opts: RenderOptions) -> AgentSpec:
    """The agent that takes `agent`'s place in this run (an agent file's), else `agent`."""
    for name in opts.stand_ins:
        other = agent_spec(name)
        if other.stands_in_for == agent.name:
            return other
    return agent


PATTERNS: dict[Pattern, PatternSpec] = {
    spec.pattern: spec
    for spec in (
        PatternSpec(Pattern.NONE),
        PatternSpec(Pattern.SIDECAR, {name: Placement.POD for name in AGENTS}),
        PatternSpec(Pattern.DAEMONSET, {name: Placement.NODE for name in AGENTS}, lossless_log_upgrade=True),
        # The mesh proxy per pod (next to its app), every other agent per node.
        PatternSpec(Pattern.HYBRID, {name: Placement.POD if a.kind is AgentKind.MESH else Placement.NODE for name, a in AGENTS.items()}),
    )
}


def pattern_spec(pattern: Pattern | str) -> PatternSpec:
    """The registered spec of a pattern (or its name); a one-line UsageError otherwise."""
    key = Pattern.parse(pattern) if isinstance(pattern, str) and not isinstance(pattern, Pattern) else pattern
    spec = PATTERNS.get(key)  # type: ignore[arg-type]
    if spec is None:
        name = pattern.value if isinstance(pattern, Pattern) else pattern
        raise UsageError(f"pattern {name!r} has no registered spec (registered: {', '.join(p.value for p in PATTERNS)})")
    return spec
