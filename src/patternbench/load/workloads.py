"""What the load sends (--workload): short HTTP/1.1 requests (Locust), or gRPC over
long-lived channels (images/cmd/grpcload): unary Calls on schedule or Watch streams held
open. One definition per workload, looked up by name; what a pattern's proxies must carry
for it is checked here, before anything is deployed."""

from __future__ import annotations

from dataclasses import dataclass

from patternbench.errors import UsageError
from patternbench.specs.agents import AgentKind, AgentSpec
from patternbench.specs.patterns import Pattern, pattern_spec


@dataclass(frozen=True)
class Workload:
    name: str
    grpc: bool  # sent by grpcload over HTTP/2 channels (the HTTP probes stay Locust's)
    streams: bool  # Watch streams held open, rather than unary calls
    summary: str


WORKLOADS: dict[str, Workload] = {
    w.name: w for w in (
        Workload("http", grpc=False, streams=False, summary="short HTTP/1.1 requests from Locust's users (or --rps on schedule)"),
        Workload("grpc-unary", grpc=True, streams=False, summary="unary gRPC Calls on schedule over a few channels held open for the whole case"),
        Workload("grpc-stream", grpc=True, streams=True, summary="gRPC Watch streams held open for the whole case, a message every 100 ms"),
    )
}


def workload_spec(name: str, flag: str = "--workload") -> Workload:
    """The registered workload; a one-line UsageError otherwise."""
    spec = WORKLOADS.get(name)
    if spec is None:
        raise UsageError(f"{flag}: unknown workload {name!r} (choose one of {', '.join(WORKLOADS)})")
    return spec


def cannot_carry(workload: Workload, pattern: Pattern, agent_files: list[AgentSpec] = ()) -> str | None:  # type: ignore[assignment]
    """Why the pattern's proxies cannot carry the workload (None: they can)."""
    if not workload.grpc:
        return None
    spec = pattern_spec(pattern)
    for mode in spec.proxies():
        if not mode.carries_h2c:
            return f"its {mode.name} proxies carry HTTP/1.1 only"
    for agent in agent_files:
        if agent.kind is AgentKind.MESH and spec.runs(agent.name):
            return f"the agent file {agent.source} stands in for the mesh and does not say it carries HTTP/2"
    return None


def patterns_for(workload: Workload, chosen: list[Pattern] | None, agent_files: list[AgentSpec]) -> tuple[list[Pattern] | None, list[str]]:
    """The patterns to run the workload in: a pattern chosen with --pattern that cannot carry
    it is an error; without --pattern, those that cannot are left out, each with a note."""
    if not workload.grpc:
        return chosen, []
    if chosen:
        for pattern in chosen:
            reason = cannot_carry(workload, pattern, agent_files)
            if reason:
                raise UsageError(f"--workload {workload.name} with --pattern {pattern.value}: {reason}")
        return chosen, []
    kept, notes = [], []
    for pattern in Pattern:
        reason = cannot_carry(workload, pattern, agent_files)
        if reason:
            notes.append(f"the {pattern.value} pattern is left out of --workload {workload.name}: {reason}")
        else:
            kept.append(pattern)
    return kept, notes
