"""Services, replicas and the call graph; which agents run; the seed's container formulas.

Everything here is validated before anything touches a cluster, and every error is one line
that names the field at fault.
"""

from __future__ import annotations

from dataclasses import dataclass, field, fields, replace
from enum import Enum
from pathlib import Path
from typing import TYPE_CHECKING, Any

from patternbench import user_files
from patternbench.errors import UsageError
from patternbench.specs.agents import Placement
from patternbench.specs.names import is_dns_label
from patternbench.specs.patterns import Pattern, pattern_spec  # Pattern: re-exported, the public handle

if TYPE_CHECKING:
    from patternbench.specs.agents import AgentSpec

# Service names end up in object names with suffixes; leave room under the 63-char limit.
MAX_NAME = 40
# What one topology may hold, file or generated: beyond it a chain's checks (and its calls)
# run out of depth, and no machine the harness targets runs 400 pods of one pattern.
MAX_SERVICES = 200
DEFAULT_TOPOLOGY = Path(__file__).resolve().parents[3] / "topologies" / "default.yaml"


@dataclass(frozen=True)
class Agents:
    """Which agents run: the mesh proxy, the log agent, and k generic agents (agent-omega).
    Each field is the switch (AgentSpec.switch) of a registered agent and a key of the
    topology's `agents:`; a bool runs 0 or 1 instance, an int k."""

    mesh: bool = True
    logging: bool = True
    extra_agents: int = 0

    @property
    def count(self) -> int:
        """k': every agent that runs, named or generic."""
        return sum(int(getattr(self, f.name)) for f in fields(self))

    def instances(self, agent: AgentSpec) -> int:
        """How many instances of this agent run per pod or node (its switch: 0/1 or k)."""
        return int(getattr(self, agent.switch))


@dataclass(frozen=True)
class Service:
    name: str
    replicas: int = 2
    calls: tuple[str, ...] = ()


class Route(str, Enum):
    """Which downstreams a request calls: every one (a small chain or tree, every request
    visits every service) or one, the next in turn (a large topology, whose load spreads over
    its services without every request visiting all of them)."""

    ALL = "all"
    ONE = "one"


@dataclass(frozen=True)
class Topology:
    services: tuple[Service, ...]
    entry: str
    agents: Agents = field(default_factory=Agents)
    waypoint_replicas: int = 2  # each service's waypoint Deployment (the ambient pattern)
    route: Route = Route.ALL

    @property
    def app_pods(self) -> int:
        """S·R: application pods over all services."""
        return sum(s.replicas for s in self.services)

    def service(self, name: str) -> Service:
        return next(s for s in self.services if s.name == name)

    def with_agents(self, agents: Agents) -> Topology:
        return replace(self, agents=agents)

    @property
    def calls_per_request(self) -> int:
        """Downstream calls one request makes through the whole topology: every call of
        every service it reaches (route all; a service reached twice is called twice), or
        the calls along one path from the entry (route one; validate makes every path
        from the entry to a leaf equally long)."""
        return _calls_below(self, self.entry, {s.name: s.calls for s in self.services})


def _calls_below(topology: Topology, name: str, calls: dict[str, tuple[str, ...]]) -> int:
    below = [1 + _calls_below(topology, nxt, calls) for nxt in calls[name]]
    if not below:
        return 0
    return below[0] if topology.route is Route.ONE else sum(below)


def containers_formula(topology: Topology, pattern: Pattern, nodes: int) -> int:
    """The seed's container counts: sidecar S·R·(1+k'), daemonset S·R + nodes·k',
    hybrid per pod for the mesh and per node for the rest, none S·R (PatternSpec.containers)."""
    return pattern_spec(pattern).containers(topology, nodes)


# ---- loading and validation ----------------------------------------------------------


def _expect(value: Any, kind: type, where: str) -> Any:
    if not isinstance(value, kind) or (kind is int and isinstance(value, bool)):
        raise UsageError(f"{where}: expected {kind.__name__}, got {type(value).__name__} {value!r}")
    return value


def parse_topology(doc: Any, source: str = "topology") -> Topology:
    """A topology from its YAML document; raises UsageError naming the first bad field."""
    if not isinstance(doc, dict):
        raise UsageError(f"{source}: expected a mapping with services, entry and agents")
    unknown = set(doc) - {"services", "entry", "agents", "pattern", "waypoint_replicas", "route"}
    if unknown:
        raise UsageError(f"{source}: unknown field {sorted(unknown)[0]!r}")
    raw_services = _expect(doc.get("services"), list, "services")
    if not raw_services:
        raise UsageError("services: at least one service is needed")
    if len(raw_services) > MAX_SERVICES:
        raise UsageError(f"services: at most {MAX_SERVICES} services, got {len(raw_services)}")
    services = []
    for i, raw in enumerate(raw_services):
        where = f"services[{i}]"
        _expect(raw, dict, where)
        unknown = set(raw) - {"name", "replicas", "calls"}
        if unknown:
            raise UsageError(f"{where}: unknown field {sorted(unknown)[0]!r}")
        name = _expect(raw.get("name"), str, f"{where}.name")
        replicas = _expect(raw.get("replicas", 2), int, f"services.{name}.replicas")
        calls = _expect(raw.get("calls", []), list, f"services.{name}.calls")
        for j, call in enumerate(calls):
            _expect(call, str, f"services.{name}.calls[{j}]")
        services.append(Service(name=name, replicas=replicas, calls=tuple(calls)))
    entry = doc.get("entry", services[0].name)
    _expect(entry, str, "entry")
    agents = parse_agents(doc.get("agents", {}))
    waypoint_replicas = _expect(doc.get("waypoint_replicas", 2), int, "waypoint_replicas")
    if isinstance(waypoint_replicas, bool) or waypoint_replicas < 1:
        raise UsageError(f"waypoint_replicas: each service's waypoint needs at least 1 replica, got {waypoint_replicas}")
    route_name = _expect(doc.get("route", Route.ALL.value), str, "route")
    if route_name not in {r.value for r in Route}:
        raise UsageError(f"route: {route_name!r} is not one of {', '.join(r.value for r in Route)}")
    topology = Topology(services=tuple(services), entry=entry, agents=agents, waypoint_replicas=waypoint_replicas, route=Route(route_name))
    validate(topology)
    return topology


def parse_agents(raw: Any) -> Agents:
    _expect(raw, dict, "agents")
    switches = fields(Agents)
    unknown = set(raw) - {f.name for f in switches}
    if unknown:
        names = ", ".join(f.name for f in switches)
        raise UsageError(f"agents: unknown agent {sorted(unknown)[0]!r} (known: {names})")
    found: dict[str, Any] = {}
    for f in switches:
        kind = type(f.default)
        found[f.name] = _expect(raw.get(f.name, f.default), kind, f"agents.{f.name}")
        if kind is int and not 0 <= found[f.name] <= 20:
            raise UsageError(f"agents.{f.name}: {found[f.name]} is outside 0..20")
    return Agents(**found)


def validate(topology: Topology) -> None:
    """Names, replicas, duplicates, unknown downstreams, cycles, reachability from the entry."""
    seen: set[str] = set()
    for svc in topology.services:
        if not is_dns_label(svc.name, MAX_NAME):
            raise UsageError(f"services: the name {svc.name!r} is not a DNS-1123 label of at most {MAX_NAME} characters")
        if svc.name in seen:
            raise UsageError(f"services.{svc.name}: duplicate service name")
        seen.add(svc.name)
        if svc.replicas < 1:
            raise UsageError(f"services.{svc.name}.replicas: must be at least 1, got {svc.replicas}")
        if svc.replicas > 50:
            raise UsageError(f"services.{svc.name}.replicas: {svc.replicas} is more than 50")
    for svc in topology.services:
        for call in svc.calls:
            if call not in seen:
                raise UsageError(f"services.{svc.name}.calls: unknown downstream service {call!r}")
            if call == svc.name:
                raise UsageError(f"services.{svc.name}.calls: a service cannot call itself")
        if len(set(svc.calls)) != len(svc.calls):
            raise UsageError(f"services.{svc.name}.calls: a downstream is listed twice")
    if topology.entry not in seen:
        raise UsageError(f"entry: {topology.entry!r} is not one of the services")
    cycle = find_cycle(topology)
    if cycle:
        raise UsageError(f"services.{cycle[0]}.calls: call cycle {' -> '.join(cycle)}")
    reachable = reachable_from(topology, topology.entry)
    for svc in topology.services:
        if svc.name not in reachable:
            raise UsageError(f"services.{svc.name}: not reachable from the entry service {topology.entry!r}")
    if topology.route is Route.ONE:
        uneven = uneven_paths(topology)
        if uneven:
            raise UsageError(f"services.{uneven}.calls: with route one every path from the entry to a leaf must make as many calls (so each request makes the same number), and {uneven}'s downstreams differ")


def uneven_paths(topology: Topology) -> str | None:
    """The first service (deepest first) whose downstreams lead to paths of different
    lengths, or None. Run after the cycle check."""
    calls = {s.name: s.calls for s in topology.services}
    depth: dict[str, int] = {}
    culprit: list[str] = []

    def visit(name: str) -> int:
        if name not in depth:
            below = {visit(nxt) for nxt in calls[name]}
            if len(below) > 1 and not culprit:
                culprit.append(name)
            depth[name] = 1 + max(below) if below else 0
        return depth[name]

    for svc in topology.services:
        visit(svc.name)
    return culprit[0] if culprit else None


def find_cycle(topology: Topology) -> list[str]:
    """A call cycle as a path that starts and ends at the same service, or []."""
    calls = {s.name: s.calls for s in topology.services}
    state: dict[str, int] = {}  # 1 visiting, 2 done
    stack: list[str] = []

    def visit(name: str) -> list[str]:
        state[name] = 1
        stack.append(name)
        for nxt in calls.get(name, ()):
            if state.get(nxt) == 1:
                return stack[stack.index(nxt):] + [nxt]
            if state.get(nxt) is None:
                found = visit(nxt)
                if found:
                    return found
        stack.pop()
        state[name] = 2
        return []

    for svc in topology.services:
        if state.get(svc.name) is None:
            found = visit(svc.name)
            if found:
                return found
    return []


def reachable_from(topology: Topology, start: str) -> set[str]:
    calls = {s.name: s.calls for s in topology.services}
    seen, todo = set(), [start]
    while todo:
        name = todo.pop()
        if name in seen:
            continue
        seen.add(name)
        todo.extend(calls.get(name, ()))
    return seen


def load_topology(path: Path | None = None) -> Topology:
    path = path or DEFAULT_TOPOLOGY
    return parse_topology(user_files.load_yaml(path, "topology"), str(path))


def expected_hops(topology: Topology, pattern: Pattern) -> list[str]:
    """The Via kinds every downstream call shows: per call, the proxy modes it passes."""
    return pattern_spec(pattern).expected_hops(topology.agents)


def expected_hop_counts(pattern: Pattern, calls_per_request: int, mesh: bool = True, cross_node_share: float | None = None) -> dict[str, float] | None:
    """Hops per request that the pattern implies: `total` hops inside the cluster and how many
    of them are `loopback` (a sidecar and its app share the pod's loopback). A call passes
    app -> [proxies] -> app: through sidecars 2 loopback hops and 1 between pods, through node
    proxies 3 hops between network namespaces, direct 1; the entry's inbound sidecar adds one
    loopback hop. Whether the hops between pods stay on a node is up to the scheduler."""
    return pattern_spec(pattern).hop_counts(calls_per_request, mesh, cross_node_share)


# ---- capacity ------------------------------------------------------------------------

APP_CPU_M, APP_MEM_MI = 10, 16
AGENT_CPU_M, AGENT_MEM_MI = 10, 16


@dataclass(frozen=True)
class NodeCapacity:
    name: str
    pods: int
    cpu_m: int
    memory_mi: int


def requested(topology: Topology, pattern: Pattern, nodes: int) -> tuple[int, int, int]:
    """(pods, cpu millicores, memory MiB) the pattern asks the scheduler for."""
    containers = containers_formula(topology, pattern, nodes)
    app = topology.app_pods
    agent_containers = containers - app
    # Counts every agent container as a pod once the pattern has node agents (hybrid's sidecars too).
    per_node_pods = agent_containers if pattern_spec(pattern).agents_at(Placement.NODE) else 0
    pods = app + per_node_pods + 1  # + the log sink
    cpu = app * APP_CPU_M + agent_containers * AGENT_CPU_M + 10
    mem = app * APP_MEM_MI + agent_containers * AGENT_MEM_MI + 16
    return pods, cpu, mem


def check_capacity(topology: Topology, pattern: Pattern, nodes: list[NodeCapacity], used_pods: int = 0) -> None:
    """Refuse a topology the cluster cannot schedule, before creating anything."""
    if not nodes:
        raise UsageError("the cluster has no Ready node")
    pods, cpu, mem = requested(topology, pattern, len(nodes))
    free_pods = sum(n.pods for n in nodes) - used_pods
    if pods > free_pods:
        raise UsageError(f"services: the {pattern.value} pattern needs {pods} pods but the cluster has room for {free_pods}")
    if cpu > sum(n.cpu_m for n in nodes):
        raise UsageError(f"services: the {pattern.value} pattern requests {cpu}m CPU, more than the cluster's {sum(n.cpu_m for n in nodes)}m")
    if mem > sum(n.memory_mi for n in nodes):
        raise UsageError(f"services: the {pattern.value} pattern requests {mem}Mi memory, more than the cluster's {sum(n.memory_mi for n in nodes)}Mi")
