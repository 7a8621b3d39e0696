"""What a run runs, as data: the profiles (phase lengths and load), a case (pattern x agent x
upgrade strategy x injection, or a fault), the matrices that choose the cases, and trials
(a case's repetitions, interleaved). The runner (experiment.py) runs them."""

from __future__ import annotations

from dataclasses import dataclass, field, replace
from typing import Any

from patternbench.errors import UsageError
from patternbench.load.runner import LoadConfig
from patternbench.measure import DEFAULT_SLO_MS
from patternbench.specs.agents import UPGRADABLE, AgentKind, Placement, agent_spec, file_agents
from patternbench.specs.faults import FAULTS, fault_injection, fault_spec, runs_on_nodes
from patternbench.specs.patterns import PATTERNS, pattern_spec
from patternbench.specs.strategies import STRATEGIES, strategy
from patternbench.specs.topology import Pattern


@dataclass(frozen=True)
class Profile:
    """How long each phase lasts and how hard the load pushes."""

    name: str
    warmup_s: float
    before_s: float
    after_s: float
    load: LoadConfig = field(default_factory=LoadConfig)
    upgrade_timeout_s: float = 300
    slo_ms: float = DEFAULT_SLO_MS  # a probe slower than this is unavailable (measure.probe_cause)

    def validate(self) -> None:
        for name in ("warmup_s", "before_s", "after_s"):
            if getattr(self, name) <= 0:
                raise UsageError(f"durations must be positive: {name.removesuffix('_s')} is {getattr(self, name)}")
        if not self.slo_ms > 0:
            raise UsageError(f"--slo-ms must be positive, got {self.slo_ms:g}")
        if self.slo_ms > self.load.probe_timeout_s * 1000:
            # A probe cut off by its timeout before the deadline would read as an error, not slow.
            raise UsageError(f"--slo-ms {self.slo_ms:g} exceeds the probe timeout ({self.load.probe_timeout_s * 1000:g} ms)")
        self.load.validate()

    @property
    def load_phases_s(self) -> float:
        return self.warmup_s + self.before_s + self.after_s


PROFILES = {
    # make test: every assertion proven on the real cluster, in as little time as is honest.
    "short": Profile("short", warmup_s=2, before_s=4, after_s=4, load=LoadConfig(users=4, rate_per_user=5)),
    # make experiment: long enough for stable percentiles on this 2-core machine.
    "full": Profile("full", warmup_s=5, before_s=15, after_s=10, load=LoadConfig(users=10, rate_per_user=5)),
}


# How sidecars get into app pods: rendered into the Deployments, or added at admission.
INJECTIONS = ("client", "webhook")


def check_injection(injection: str, field: str = "--injection") -> str:
    if injection not in INJECTIONS:
        raise UsageError(f"{field}: unknown injection {injection!r} (choose one of {', '.join(INJECTIONS)})")
    return injection


@dataclass(frozen=True)
class Case:
    pattern: Pattern
    agent: str | None  # a registered agent (agents.AGENTS, agent files too); None for the control (no upgrade)
    naive: bool = False
    # A fault instead of (or, for the *-during-upgrade faults, in the middle of) the upgrade.
    fault: str | None = None
    fault_duration_s: float | None = None  # None: the fault's default
    upgrade: str = "rolling"  # strategies.STRATEGIES
    injection: str = "client"  # INJECTIONS

    @property
    def id(self) -> str:
        return (
            f"{self.pattern.value}-{self.agent or 'control'}" + (f"-{self.fault}" if self.fault else "")
            + strategy(self.upgrade).id_suffix + ("-webhook" if self.injection == "webhook" else "")
            + ("-naive" if self.naive else "")
        )

    @property
    def shares_deployment(self) -> bool:
        """Whether its trials may run on a deployment other trials used (and roll the agent
        back the next time): a rolling, client-injected upgrade, or the control, leaves the
        deployment as it found it but for the agent's version. The others deploy fresh each
        trial: a fault leaves damage (restarts, a stalled rollout), an in-place upgrade pods
        that differ from their template, a webhook upgrade a switched template, an agent file
        images of its own."""
        return (self.fault is None and self.upgrade == "rolling" and self.injection == "client"
                and (self.agent is None or agent_spec(self.agent).source is None))

    @property
    def deployment_key(self) -> tuple[Pattern, bool] | None:
        """The trials with the same key share one deployment (None: a fresh one each)."""
        return (self.pattern, self.naive) if self.shares_deployment else None

    @property
    def upgrades(self) -> bool:
        """Whether the case upgrades its agent (every agent case, unless its fault replaces the upgrade)."""
        return self.agent is not None and (self.fault is None or fault_spec(self.fault).during_upgrade)

    def duration(self) -> float:
        if self.fault is None:
            return 0.0
        spec = fault_spec(self.fault)
        return self.fault_duration_s if self.fault_duration_s is not None else spec.default_duration_s

    def to_json(self) -> dict[str, Any]:
        return {
            "pattern": self.pattern.value, "agent": self.agent, "naive": self.naive, "id": self.id,
            "fault": self.fault, "fault_duration_s": self.duration() if self.fault else None, "upgrade": self.upgrade,
            "injection": self.injection,
        }


# Where naive drains and no socket handover cost most: the node proxy, the sidecar proxy.
NAIVE_PATTERNS = (Pattern.DAEMONSET, Pattern.SIDECAR)


# In-place sidecar upgrades without their drain: measured on the sidecar mesh proxy.
IN_PLACE_NAIVE = ((Pattern.SIDECAR, "mesh"),)


def with_kind_members(agents: list[str]) -> list[str]:
    """`mesh` also selects every other built-in mesh agent (the ambient L4 proxy and
    waypoint): --agent mesh means the mesh, whichever pattern's proxies those are."""
    out = list(agents)
    if "mesh" in agents:
        out += [a for a in UPGRADABLE if a not in out and agent_spec(a).kind is AgentKind.MESH]
    return out


# Webhook injection beside client-side injection by default: the sidecar proxy, both ways up.
WEBHOOK_DEFAULT = ((Pattern.SIDECAR, "mesh", "rolling"), (Pattern.SIDECAR, "mesh", "in-place"))


def default_matrix(
    patterns: list[Pattern] | None = None, agents: list[str] | None = None, strategies: list[str] | None = None,
    injection: str | None = None, naive: bool = True,
) -> list[Case]:
    """The control, every pattern x agent, and (unless `naive` is False) the naive variants
    where the handover and drains matter most (node mesh proxy, sidecar mesh proxy); with the
    in-place strategy, every sidecar upgraded in place too, an agent file's as well (and the
    built-in sidecar proxy without a drain)."""
    strategies = strategies or list(STRATEGIES)
    patterns = patterns or list(PATTERNS)
    agents = with_kind_members(agents or list(UPGRADABLE))
    # Agents from agent files run beside the built-in agent they stand in for.
    agents = agents + [a.name for a in file_agents() if a.slot in agents and a.name not in agents]
    cases = []
    for pattern in patterns:
        spec = pattern_spec(pattern)
        if not spec.placement:
            cases.append(Case(pattern, None))  # the control
            continue
        cases += [Case(pattern, agent) for agent in agents if spec.runs(agent)]
    for pattern in NAIVE_PATTERNS:
        for agent in agents:
            if pattern in patterns and pattern_spec(pattern).runs(agent) and agent_spec(agent).on_request_path and agent_spec(agent).source is None:
                cases.append(Case(pattern, agent, naive=True))
    if "in-place" in strategies:
        for pattern in patterns:
            for agent in agents:
                if pattern_spec(pattern).placement_of(agent) is Placement.POD:
                    cases.append(Case(pattern, agent, upgrade="in-place"))
        cases += [Case(p, a, naive=True, upgrade="in-place") for p, a in IN_PLACE_NAIVE if p in patterns and a in agents]
    if "rolling" not in strategies:
        cases = [c for c in cases if c.agent is None or c.upgrade != "rolling"]
    if not naive:
        cases = [c for c in cases if not c.naive]
    if injection == "webhook":
        # Every case whose pattern has sidecars gets them from the injector.
        return [replace(c, injection="webhook") if c.agent and pattern_spec(c.pattern).agents_at(Placement.POD) else c for c in cases]
    if injection is None:
        cases += [
            Case(p, a, upgrade=u, injection="webhook") for p, a, u in WEBHOOK_DEFAULT
            if p in patterns and a in agents and u in strategies
        ]
    return cases


def fault_matrix(
    faults: list[str] | None = None, patterns: list[Pattern] | None = None, agents: list[str] | None = None,
    duration_s: float | None = None,
) -> list[Case]:
    """The fault family: each fault on every pattern and agent it applies to (a sidecar and a
    node agent of the same kind side by side); apiserver outages once per pattern."""

    names = faults or list(FAULTS)
    patterns_given = patterns
    # Sidecar against DaemonSet; hybrid repeats one of the two for each agent; the ambient
    # patterns get their own (AMBIENT_FAULTS).
    patterns = [p for p in patterns or [Pattern.SIDECAR, Pattern.DAEMONSET] if p not in (Pattern.AMBIENT, Pattern.AMBIENT_L4)]
    agents = with_kind_members(agents or list(UPGRADABLE))
    cases = []
    for name in names:
        spec = fault_spec(name)
        for pattern in patterns:
            control = not pattern_spec(pattern).placement
            if control and spec.target == "agent":
                continue
            for agent in agents:
                if not control and not spec.applies(pattern, agent):
                    continue
                if spec.target == "apiserver" and agent != agents[0]:
                    continue  # one outage per pattern is enough
                if spec.target == "injector" and (control or agent != agents[0] or runs_on_nodes(pattern, agent)):
                    continue  # once, where a webhook-injected sidecar rolls
                if control:
                    cases.append(Case(pattern, None, fault=name, fault_duration_s=duration_s))
                    break
                if pattern_spec(pattern).runs(agent):
                    cases.append(Case(pattern, agent, fault=name, fault_duration_s=duration_s, injection=fault_injection(spec, None)))
    ambient = patterns_given or [p for p, _, _ in AMBIENT_FAULTS]
    cases += [Case(p, a, fault=f, fault_duration_s=duration_s) for p, a, f in AMBIENT_FAULTS if f in names and a in agents and p in ambient]
    return cases


# The ambient mesh's own faults: its per-node L4 proxy killed and hung, a per-service
# waypoint killed; what one dead proxy takes down where the mesh is split per node and per service.
AMBIENT_FAULTS = (
    (Pattern.AMBIENT_L4, "l4proxy", "agent-kill"),
    (Pattern.AMBIENT_L4, "l4proxy", "agent-hang"),
    (Pattern.AMBIENT, "waypoint", "agent-kill"),
)


def fault_smoke() -> list[Case]:
    """One fault case per pattern (what `make test` runs): an API-server outage under the
    control, a sidecar proxy's and a node proxy's crash, a node log agent's crash, a
    waypoint's crash; and the injector down while webhook-injected sidecars roll."""
    return [
        Case(Pattern.NONE, None, fault="apiserver-down", fault_duration_s=5.0),
        Case(Pattern.SIDECAR, "mesh", fault="agent-kill"),
        Case(Pattern.DAEMONSET, "mesh", fault="agent-kill"),
        Case(Pattern.HYBRID, "logging", fault="agent-kill"),
        Case(Pattern.AMBIENT, "waypoint", fault="agent-kill"),
        Case(Pattern.SIDECAR, "mesh", fault="injector-down-during-upgrade", fault_duration_s=6.0, injection="webhook"),
    ]


@dataclass(frozen=True)
class Trial:
    """One run of a case: trial k of `repeat`."""

    case: Case
    k: int
    repeat: int

    @property
    def dir_name(self) -> str:
        # One trial keeps the case's own directory name: a run without --repeat has one directory per case.
        return self.case.id if self.repeat == 1 else f"{self.case.id}.t{self.k}"


def deployment_groups(trials: list[Trial], share: bool = True) -> list[list[Trial]]:
    """The trials in groups that run on one deployment each, in order of first appearance:
    every trial whose case shares deployments with the others of its key (so a pattern is
    deployed once per run), each other trial alone. `share` False: every trial alone."""
    groups: list[list[Trial]] = []
    index: dict[tuple[Pattern, bool], int] = {}
    for trial in trials:
        key = trial.case.deployment_key if share else None
        if key is None:
            groups.append([trial])
        elif key in index:
            groups[index[key]].append(trial)
        else:
            index[key] = len(groups)
            groups.append([trial])
    return groups


def interleave(cases: list[Case], repeat: int, fault_repeat: int | None = None) -> list[Trial]:
    """Every case `repeat` times in interleaved order (a b c a b c), so slow drift of the
    machine spreads over every case instead of landing on whichever ran last. Fault cases
    run `fault_repeat` times (default: `repeat`)."""
    if repeat < 1:
        raise UsageError(f"--repeat must be at least 1, got {repeat}")
    times = {case.id: (fault_repeat if case.fault and fault_repeat is not None else repeat) for case in cases}
    return [Trial(case, k, times[case.id]) for k in range(1, max(times.values(), default=0) + 1) for case in cases if k <= times[case.id]]


