"""Topologies made from a size instead of YAML (`--services N [--replicas R] [--depth D]`),
so the same experiment can be run at 3, 12 or 48 services.

The shape is layered: the entry, then D levels of services; each service calls services of
the next level only, and every service of a level has a caller. Requests take one downstream
in turn (route one), so every request makes D calls whatever the size — the per-request
work stays that of the default chain (D = 2) while the services, pods and endpoints grow —
and the load spreads over every service of each level.
"""

from __future__ import annotations

from pathlib import Path

from patternbench.errors import UsageError
from patternbench.options import parse_count
from patternbench.specs.topology import MAX_SERVICES, Agents, Route, Service, Topology, load_topology, validate

MAX_REPLICAS = 50
MAX_DEPTH = 10
DEFAULT_DEPTH = 2  # two calls per request, like the default chain frontend -> orders -> payments


def level_widths(services: int, depth: int) -> list[int]:
    """Services per level: the entry alone, then services - 1 spread over `depth` levels as
    evenly as can be, the deeper levels taking the remainder."""
    rest = services - 1
    base, extra = divmod(rest, depth)
    return [1] + [base + (1 if level >= depth - extra else 0) for level in range(depth)]


def layer_calls(callers: int, callees: int, i: int) -> list[int]:
    """Which services of the next level (by index) caller i calls: every callee has exactly
    one caller when the next level is at least as wide, and each caller exactly one callee
    when it is narrower; either way no service is left without a caller or a callee."""
    if callees >= callers:
        return [j for j in range(callees) if j % callers == i]
    return [i % callees]


def service_name(index: int) -> str:
    return f"svc-{index:03d}"


def layered(services: int, replicas: int = 2, depth: int = DEFAULT_DEPTH, agents: Agents = Agents()) -> Topology:
    """The layered topology of `services` services of `replicas` pods; the depth is capped at
    services - 1 (a single service calls nothing)."""
    depth = min(depth, services - 1)
    widths = level_widths(services, depth) if depth else [1]
    levels: list[list[int]] = []
    start = 0
    for width in widths:
        levels.append(list(range(start, start + width)))
        start += width
    calls: dict[int, list[int]] = {i: [] for i in range(services)}
    for upper, lower in zip(levels, levels[1:]):
        for pos, caller in enumerate(upper):
            calls[caller] = [lower[j] for j in layer_calls(len(upper), len(lower), pos)]
    topology = Topology(
        services=tuple(Service(service_name(i), replicas, tuple(service_name(j) for j in calls[i])) for i in range(services)),
        entry=service_name(0), agents=agents, route=Route.ONE,
    )
    validate(topology)
    return topology


def choose_topology(path: Path | None, services: object = None, replicas: object = None, depth: object = None) -> Topology:
    """The run's topology: a YAML file (--topology, default topologies/default.yaml) or one
    made from a size (--services, with --replicas and --depth); never both."""
    if services is None:
        if replicas is not None or depth is not None:
            raise UsageError("--replicas and --depth shape a generated topology: give --services N too")
        return load_topology(path)
    if path is not None:
        raise UsageError("give --topology FILE or --services N, not both")
    count = parse_count(services, "--services", 1, MAX_SERVICES)
    pods = parse_count(replicas, "--replicas", 1, MAX_REPLICAS) if replicas is not None else 2
    levels = parse_count(depth, "--depth", 1, MAX_DEPTH) if depth is not None else DEFAULT_DEPTH
    if depth is not None:
        check_depth(levels, count)
    return layered(count, pods, levels)


def check_depth(depth: int, services: int) -> None:
    """An explicit depth the services can fill: the entry and at least one service per level
    (only the default depth is capped silently, for one or two services)."""
    if depth > services - 1:
        raise UsageError(f"--depth {depth} needs at least {depth + 1} services (the entry and one per level), got {services}")
