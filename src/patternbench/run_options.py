"""The options of a run, declared once: `patternbench run` and the pytest plugin add the same
flags with the same defaults (add_options), and resolve them with the same validation
(resolve_run, provider_options) into a RunPlan, before any cluster is touched. A new option
is one RunOption here and the field it fills."""

from __future__ import annotations

from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any, Callable

from patternbench.cluster.local.settings import parse_load_node_count
from patternbench.cluster.registry import PROVIDER_NAMES, ProviderOptions, parse_node_count, provider_entry
from patternbench.errors import UsageError
from patternbench.load.placement import LOAD_FROM, LOAD_NODE_LABEL, LOAD_NODE_VALUE, parse_load_from, parse_load_workers
from patternbench.load.workloads import WORKLOADS, patterns_for, workload_spec
from patternbench.options import MAX_FAILED_REQUESTS, parse_count, parse_load_duration, parse_repeat, parse_rps, parse_slo_ms, parse_sweep
from patternbench.specs.agent_file import load_agent_file
from patternbench.specs.agents import UPGRADABLE, AgentSpec, upgradable_spec
from patternbench.specs.cases import PROFILES, Case, Profile, check_injection, default_matrix, fault_matrix
from patternbench.specs.faults import FAULTS, check_fault, fault_injection, fault_spec, parse_duration
from patternbench.specs.names import is_registry
from patternbench.specs.patterns import Pattern, pattern_spec
from patternbench.specs.strategies import check_strategy

# dest -> value, as argparse's Namespace or pytest's config.getoption gives it.
Getter = Callable[[str], Any]


@dataclass(frozen=True)
class RunOption:
    """One flag. Numbers the harness checks itself arrive as text (our one-line error, not argparse's)."""

    flag: str
    help: str
    default: Any = None
    kind: Callable[[str], Any] | None = None  # argparse's type
    repeatable: bool = False
    switch: bool = False  # a flag without a value
    metavar: str | None = None
    cli_only: bool = False  # what the pytest faces do not offer (their cases are chosen by the test files)

    @property
    def dest(self) -> str:
        return self.flag.removeprefix("--").replace("-", "_")

    def kwargs(self) -> dict[str, Any]:
        if self.switch:
            return {"action": "store_true", "help": self.help}
        out: dict[str, Any] = {"default": self.default, "help": self.help}
        if self.repeatable:
            out["action"] = "append"
        if self.kind is not None:
            out["type"] = self.kind
        if self.metavar is not None:
            out["metavar"] = self.metavar
        return out


PROVIDER_OPTIONS = (
    RunOption("--provider", f"one of {', '.join(PROVIDER_NAMES)} (default: local)", "local"),
    RunOption("--bin-dir", "use Kubernetes/etcd/CoreDNS binaries from DIR instead of building them", kind=Path),
    RunOption("--name", "cluster name (kind, gke)", "patternbench"),
    RunOption("--nodes", "nodes (local: N nodes on this machine; kind: 1 control plane + N-1 workers; gke)", "3"),
    RunOption("--kubeconfig", "kubeconfig provider: the file to use", kind=Path),
    RunOption("--context", "kubeconfig provider: the context to use"),
    RunOption("--project", "gke: the Google Cloud project"),
    RunOption("--zone", "gke: the zone", "us-central1-a"),
    RunOption("--registry", "gke/kubeconfig: registry to push images to"),
    RunOption("--load-nodes", "local: nodes beside --nodes for the in-cluster load only, labelled and tainted (default: as many as the cluster has, a new one none; at least 1 with --load-from cluster)", metavar="N"),
)

RUN_OPTIONS = (
    RunOption("--pattern", "only this pattern (repeatable)", repeatable=True),
    RunOption("--agent", f"only this agent: {' or '.join(UPGRADABLE)} (repeatable)", repeatable=True),
    RunOption("--upgrade", "rolling (new template: sidecar pods recreated, DaemonSets node by node) and/or in-place (each pod's sidecar image patched, one pod at a time with a drain); default both (repeatable)", repeatable=True, metavar="STRATEGY"),
    RunOption("--injection", "client (sidecars rendered into the Deployments) or webhook (a mutating admission webhook adds them); default: client, plus the sidecar proxy's upgrades with the webhook", metavar="HOW"),
    RunOption("--agent-file", "bring your own agent (YAML, see agent_file.py and agents/): it runs beside the built-in agent of its kind in every pattern it supports (repeatable)", kind=Path, repeatable=True, metavar="FILE"),
    RunOption("--profile", f"phase lengths and load: {' or '.join(PROFILES)} (default: full)", "full"),
    RunOption("--duration", "seconds of load before and after the upgrade (overrides the profile)"),
    RunOption("--users", "Locust users (overrides the profile)", kind=int),
    RunOption("--topology", "topology YAML (default: topologies/default.yaml)", kind=Path, cli_only=True),
    RunOption("--services", "instead of --topology: a generated layered topology of N services (an entry, then --depth levels; each request calls one service per level, so the load spreads over all of them)", metavar="N", cli_only=True),
    RunOption("--replicas", "with --services: pods per service (default 2)", metavar="R", cli_only=True),
    RunOption("--depth", "with --services: levels below the entry, the calls each request makes (default 2, like the default chain)", metavar="D", cli_only=True),
    RunOption("--results", "where runs are written (default: results)", Path("results"), kind=Path),
    RunOption("--keep-cluster", "leave a cluster this command brought up running", switch=True),
    RunOption("--max-failed-requests", "zero-downtime threshold (default 0)", "0"),
    RunOption("--repeat", "run every case N times, interleaved (a b c a b c); medians and 95 %% intervals (default 1)", "1", metavar="N"),
    RunOption("--slo-ms", "a probe slower than this is unavailable (default 1000)", metavar="MS"),
    RunOption("--rps", "open-loop load: R requests/s on schedule, latency from the intended start (instead of --users)", metavar="R"),
    RunOption("--workload", f"what the load sends: {', '.join(WORKLOADS)} (default http; the gRPC ones hold channels and streams open across the upgrade: images/cmd/grpcload)", metavar="KIND"),
    RunOption("--load-from", f"where the load runs: {' or '.join(LOAD_FROM)} (Locust's master, workers and the prober as pods on a load node); default: the provider's (host on local and kind, cluster on gke and kubeconfig)", metavar="WHERE"),
    RunOption("--load-workers", "with --load-from cluster: Locust worker pods (default 2)", metavar="N"),
    RunOption("--sweep", "after the cases, per pattern (--pattern, default all): open-loop load at these rising rates until errors or saturation; latency and agent cost against load", metavar="R1,R2,..."),
    RunOption("--trust-agent-files", "let --agent-file files mount any host path, add capabilities, run privileged, import any image and read configs from anywhere (by default they get what a log or mesh agent needs: see agent_trust.py)", switch=True),
    RunOption("--no-naive", "leave out the naive variants (no drain, no socket handover) the matrix adds for comparison", switch=True),
    RunOption("--fault", "inject this fault instead of the upgrade matrix (repeatable): " + ", ".join(FAULTS), repeatable=True, metavar="KIND"),
    RunOption("--fault-duration", "seconds a timed fault (hang, API server outage) lasts (default: the fault's own)", metavar="S"),
    RunOption("--calibrate", "first calibrate the outage measurement at the cluster's entry (local provider), so the report carries this run's own error bar", switch=True, cli_only=True),
    RunOption("--fresh-deployments", "deploy every trial afresh instead of once per pattern (the default: the trials of a pattern share one deployment, each upgrade rolling the agent the other way): slower, and its agents are younger when measured (agent memory rises through the agents' first minute: summary.json's agent_age_s says how old they were)", switch=True, cli_only=True),
    RunOption("--plan", "print the cases, trials, phases and the expected duration (from earlier runs' timelines), and stop: no cluster is touched", switch=True, cli_only=True),
    RunOption("--faults", "add the fault family to the upgrade matrix (each fault case once, whatever --repeat)", switch=True, cli_only=True),
)


def add_options(add: Callable[..., Any], options: tuple[RunOption, ...], pytest: bool = False) -> None:
    """Declare `options` with argparse's add_argument or pytest's addoption."""
    for option in options:
        if not (pytest and option.cli_only):
            add(option.flag, **option.kwargs())


def provider_options(get: Getter, keep_on_failure: bool = False) -> ProviderOptions:
    """The cluster options, checked: a known provider, a node count it can hold."""
    provider = get("provider")
    if provider not in PROVIDER_NAMES:
        raise UsageError(f"unknown provider {provider!r}: choose one of {', '.join(PROVIDER_NAMES)}")
    registry = get("registry")
    if registry is not None and not is_registry(registry):
        raise UsageError(f"--registry {registry!r}: expected a registry and path such as europe-docker.pkg.dev/project/repo")
    nodes = parse_node_count(get("nodes"), local=provider == "local")
    return ProviderOptions(
        bin_dir=get("bin_dir"), name=get("name"), nodes=nodes, load_nodes=load_node_count(get, provider, nodes),
        min_load_nodes=1 if provider == "local" and load_from_of(get) == "cluster" else 0,
        kubeconfig=get("kubeconfig"), context=get("context"), project=get("project"), zone=get("zone"),
        registry=get("registry"), keep_on_failure=keep_on_failure,
    )


def load_from_of(get: Getter) -> str:
    """--load-from, or the provider's default where the load runs."""
    raw = get("load_from")
    return parse_load_from(raw) if raw is not None else provider_entry(get("provider")).load_from


def load_node_count(get: Getter, provider: str, nodes: int) -> int | None:
    """--load-nodes: only the local provider makes nodes. None: as the cluster has them."""
    raw = get("load_nodes")
    if raw is None:
        return None
    if provider != "local":
        raise UsageError(f"--load-nodes is for the local provider; on {provider} label and taint the load's nodes ({LOAD_NODE_LABEL}={LOAD_NODE_VALUE})")
    return parse_load_node_count(raw, nodes)


@dataclass(frozen=True)
class RunPlan:
    """The run options, parsed and checked."""

    patterns: list[Pattern] | None  # None: every pattern
    agents: list[str] | None  # None: every upgradable agent
    strategies: list[str] | None
    injection: str | None
    naive: bool  # the matrix adds the naive variants
    agent_files: list[AgentSpec]
    profile: Profile
    repeat: int
    sweep: list[float] | None
    faults: list[str]  # --fault, each once
    fault_duration_s: float | None
    max_failed_requests: int
    results: Path
    notes: tuple[str, ...] = ()  # what the selection left out, and why (said before the run)

    def matrix(self) -> list[Case]:
        """The upgrade matrix for this selection."""
        return default_matrix(self.patterns, self.agents, self.strategies, self.injection, self.naive)

    def fault_cases(self) -> list[Case]:
        """The fault family for the chosen faults (all without --fault), patterns and agents."""
        return fault_matrix(self.faults or None, self.patterns, self.agents, self.fault_duration_s)


def resolve_run(get: Getter) -> RunPlan:
    """Every run option parsed and checked, in one place; a one-line UsageError otherwise."""
    repeat = parse_repeat(get("repeat"))
    slo_ms = parse_slo_ms(get("slo_ms")) if get("slo_ms") is not None else None
    rps = parse_rps(get("rps")) if get("rps") is not None else None
    sweep = parse_sweep(get("sweep")) if get("sweep") is not None else None
    if rps is not None and get("users") is not None:
        raise UsageError("--rps and --users are two load modes: give one")
    if sweep is not None and rps is not None:
        raise UsageError("--sweep sets the rates itself: drop --rps")
    patterns = [Pattern.parse(p, "--pattern") for p in get("pattern")] if get("pattern") else None
    agents = get("agent") or None
    for agent in agents or []:
        upgradable_spec(agent, "--agent")
    agent_files = load_agent_files(get("agent_file") or [], patterns, trusted=bool(get("trust_agent_files")))
    strategies = check_strategies(get("upgrade"), patterns, agents)
    injection = check_injection(get("injection")) if get("injection") is not None else None
    faults = list(dict.fromkeys(get("fault") or []))
    fault_duration = parse_duration(get("fault_duration")) if get("fault_duration") is not None else None
    check_chosen_faults(faults, patterns, agents, injection, explicit=bool(get("pattern")))
    profile = with_load_placement(profile_of(get("profile"), get("duration"), get("users"), rps, slo_ms), get)
    workload = workload_spec(get("workload") or "http")
    profile = replace(profile, load=replace(profile.load, workload=workload.name))
    profile.validate()
    patterns, notes = patterns_for(workload, patterns, agent_files)
    if workload.grpc and sweep is not None:
        raise UsageError(f"--sweep sends HTTP/1.1 at rising rates: it cannot run with --workload {workload.name}")
    if sweep is not None and profile.load.load_from == "cluster":
        raise UsageError("--sweep drives its rates from this machine (load/sweep.py): it needs --load-from host")
    return RunPlan(
        patterns=patterns, agents=agents, strategies=strategies, injection=injection, naive=not get("no_naive"), agent_files=agent_files,
        profile=profile, repeat=repeat, sweep=sweep,
        faults=faults, fault_duration_s=fault_duration, max_failed_requests=parse_count(get("max_failed_requests"), "--max-failed-requests", 0, MAX_FAILED_REQUESTS), results=Path(get("results")),
        notes=tuple(notes),
    )


def with_load_placement(profile: Profile, get: Getter) -> Profile:
    """Where the profile's load runs (--load-from, --load-workers)."""
    load_from = load_from_of(get)
    if get("load_workers") is not None and load_from != "cluster":
        raise UsageError("--load-workers counts worker pods: it needs --load-from cluster")
    workers = parse_load_workers(get("load_workers")) if get("load_workers") is not None else profile.load.pod_workers
    return replace(profile, load=replace(profile.load, load_from=load_from, pod_workers=workers))


def profile_of(name: str, duration: object | None, users: int | None, rps: float | None, slo_ms: float | None) -> Profile:
    """The named profile with the overrides the options give, validated."""
    if name not in PROFILES:
        raise UsageError(f"--profile: unknown profile {name!r} (choose one of {', '.join(PROFILES)})")
    profile = PROFILES[name]
    if duration is not None:
        seconds = parse_load_duration(duration)
        profile = replace(profile, before_s=seconds, after_s=seconds)
    if users is not None:
        profile = replace(profile, load=replace(profile.load, users=users))
    if rps is not None:
        profile = replace(profile, load=replace(profile.load, rps=rps))
    if slo_ms is not None:
        # The probes must wait past the deadline, or a probe cut off early reads as an error.
        timeout_s = max(profile.load.probe_timeout_s, 2 * slo_ms / 1000)
        profile = replace(profile, slo_ms=slo_ms, load=replace(profile.load, probe_timeout_s=timeout_s))
    profile.validate()
    return profile


def check_strategies(chosen: list[str] | None, patterns: list[Pattern] | None, agents: list[str] | None) -> list[str] | None:
    """--upgrade: known strategies; in-place only with a pattern chosen that runs a sidecar."""
    for name in chosen or []:
        check_strategy(name, patterns[0] if patterns else "none", None)
    if chosen and "rolling" not in chosen:
        for pattern in patterns or []:
            if not pattern_spec(pattern).placement:
                continue
            runnable = [a for a in agents or UPGRADABLE if pattern_spec(pattern).runs(a)]
            if runnable and not any(pattern_spec(pattern).placement_of(a).value == "pod" for a in runnable):  # type: ignore[union-attr]
                check_strategy("in-place", pattern, runnable[0])
    return chosen


def load_agent_files(paths: list[Path], patterns: list[Pattern] | None, trusted: bool = False) -> list[AgentSpec]:
    """--agent-file: each file validated and registered before anything is deployed; a
    pattern chosen explicitly that the agent cannot run in is an error, not a skip."""
    specs = [load_agent_file(Path(p), trusted=trusted) for p in paths]
    for spec in specs:
        for pattern in patterns or []:
            ps = pattern_spec(pattern)
            if ps.placement and not ps.runs(spec.name):
                where = ps.placement.get(spec.slot)
                raise UsageError(f"--agent-file {spec.source}: the {pattern.value} pattern runs it per {where.value if where else '?'}, and the file gives no container for that")
    return specs


def check_chosen_faults(names: list[str], patterns: list[Pattern] | None, agents: list[str] | None, injection: str | None, explicit: bool) -> None:
    """--fault: known faults; a pattern or agent named explicitly that cannot take a named
    fault is an error, not a skip (the provider's side is checked once it is known)."""
    injections = {name: fault_injection(fault_spec(name), injection) for name in names}
    if explicit:
        for name in names:
            for pattern in patterns or []:
                for agent in agents or ["mesh"]:
                    check_fault(name, pattern, agent, frozenset([name]), "chosen", injections[name])
