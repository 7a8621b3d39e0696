"""One experiment case: deploy a pattern, put it under load, upgrade one agent, observe,
tear down. Setup -> assess -> teardown, every phase marked on one monotonic timeline and
every observation written as it happens, so an interrupted case keeps what it measured."""

from __future__ import annotations

import json
import threading
import time
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import Any, Callable
from urllib.parse import urlsplit

from kubernetes import client, config as kube_config
from tenacity import Retrying, retry_if_result, stop_after_delay, wait_fixed

from patternbench import fault_driver
from patternbench.agent_file import keep_with_run
from patternbench.agents import AgentKind, Placement, UPGRADABLE, agent_spec, file_agents, upgradable_spec
from patternbench.cluster.provider import abilities
from patternbench.deploy import deploy_run, new_run_id
from patternbench.kube import Deployer, live_containers, placement
from patternbench.errors import UsageError
from patternbench.faults import FAULTS, fault_injection, fault_spec, runs_on_nodes
from patternbench.inplace import upgrade_in_place
from patternbench.load.runner import LoadConfig, LoadProcess
from patternbench.measure import DEFAULT_SLO_MS
from patternbench.observe.endpoints import EndpointSliceWatcher
from patternbench.observe.host import ConntrackEvents, KernelLog, LogSlices, MetricsSnapshots, PressureSampler, SchedSampler
from patternbench.observe.logsink import sink_stats
from patternbench.observe.pods import PodWatcher, failed_creates, warning_events
from patternbench.observe.resources import ResourceSampler
from patternbench.patterns import PATTERNS, pattern_spec
from patternbench.progress import Progress
from patternbench.render import agent_cpu_requested_m
from patternbench.report import write_report
from patternbench.render.injector_objects import injection_template
from patternbench.topology import Pattern, Topology, containers_formula
from patternbench.upgrade import STRATEGIES, rollout_recorder, upgrade_agent, upgrade_targets
from patternbench.webhook_injector import restart_deployments, switch_template


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


@dataclass(frozen=True)
class Case:
    pattern: Pattern
    agent: str | None  # a registered agent (agents.AGENTS, agent files too); None for the control (no upgrade)
    naive: bool = False
    # A fault instead of (or, for the *-during-upgrade faults, in the middle of) the upgrade.
    fault: str | None = None
    fault_duration_s: float | None = None  # None: the fault's default
    upgrade: str = "rolling"  # upgrade.STRATEGIES
    injection: str = "client"  # webhook_injector.INJECTIONS: how sidecars get into app pods

    @property
    def id(self) -> str:
        return (
            f"{self.pattern.value}-{self.agent or 'control'}" + (f"-{self.fault}" if self.fault else "")
            + ("-in-place" if self.upgrade == "in-place" else "") + ("-webhook" if self.injection == "webhook" else "")
            + ("-naive" if self.naive else "")
        )

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
    injection: str | None = None,
) -> list[Case]:
    """The control, every pattern x agent, and the naive variants where the handover and
    drains matter most (node mesh proxy, sidecar mesh proxy); with the in-place strategy,
    every built-in sidecar upgraded in place too (and the sidecar proxy without a drain)."""
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
                if agent_spec(agent).source is None and pattern_spec(pattern).placement_of(agent) is Placement.POD:
                    cases.append(Case(pattern, agent, upgrade="in-place"))
        cases += [Case(p, a, naive=True, upgrade="in-place") for p, a in IN_PLACE_NAIVE if p in patterns and a in agents]
    if "rolling" not in strategies:
        cases = [c for c in cases if c.agent is None or c.upgrade != "rolling"]
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
        # One trial keeps the case's own directory name, as before repetitions existed.
        return self.case.id if self.repeat == 1 else f"{self.case.id}.t{self.k}"


def interleave(cases: list[Case], repeat: int, fault_repeat: int | None = None) -> list[Trial]:
    """Every case `repeat` times in interleaved order (a b c a b c), so slow drift of the
    machine spreads over every case instead of landing on whichever ran last. Fault cases
    run `fault_repeat` times (default: `repeat`)."""
    if repeat < 1:
        raise UsageError(f"--repeat must be at least 1, got {repeat}")
    times = {case.id: (fault_repeat if case.fault and fault_repeat is not None else repeat) for case in cases}
    return [Trial(case, k, times[case.id]) for k in range(1, max(times.values(), default=0) + 1) for case in cases if k <= times[case.id]]


class Timeline:
    """Phase marks on the monotonic clock, appended to timeline.jsonl as they happen."""

    def __init__(self, path: Path) -> None:
        self.path = path

    def mark(self, phase: str, **extra: Any) -> float:
        t = time.monotonic()
        with self.path.open("a") as handle:
            handle.write(json.dumps({"t": t, "wall": time.time(), "phase": phase, **extra}) + "\n")
        return t


def entry_port(url: str) -> int:
    return urlsplit(url).port or 80


def app_pods(core: client.CoreV1Api, namespace: str) -> dict[str, dict[str, int]]:
    """App pods that are not being deleted: name -> container restart counts."""
    pods = {}
    for pod in core.list_namespaced_pod(namespace, label_selector="patternbench.dev/role=app", _request_timeout=15).items:
        if pod.metadata.deletion_timestamp is not None:
            continue
        statuses = (pod.status.container_statuses or []) + (pod.status.init_container_statuses or [])
        pods[pod.metadata.name] = {s.name: s.restart_count for s in statuses}
    return pods


def settled_sink_stats(api: client.ApiClient, namespace: str, timeout_s: float = 8) -> dict[str, Any]:
    """The sink's counts once they stop moving: the log agents ship every 100 ms, so two equal
    reads 0.4 s apart mean the last batches have arrived."""

    seen: list[int] = []

    def read() -> dict[str, Any]:
        stats = sink_stats(api, namespace)
        seen.append(stats["total"]["received"])
        return stats

    retrying = Retrying(
        stop=stop_after_delay(timeout_s), wait=wait_fixed(0.4),
        retry=retry_if_result(lambda _: len(seen) < 2 or seen[-1] != seen[-2]), retry_error_callback=lambda state: state.outcome.result(),
    )
    return retrying(read)


def run_case(
    provider: Any,
    topology: Topology,
    case: Case,
    profile: Profile,
    out_dir: Path,
    progress: Progress | None = None,
    keep: bool = False,
    trial: int = 1,
    capture: bool = True,
) -> Path:
    """Run one case (trial `trial` of it); everything it observes lands in `out_dir`. Returns
    `out_dir`. `capture` False leaves out the failure evidence (to measure what it costs)."""
    progress = progress or Progress()
    out_dir.mkdir(parents=True, exist_ok=True)
    (out_dir / "case.json").write_text(json.dumps({**case.to_json(), "trial": trial, "profile": asdict(profile)}, indent=1))
    timeline = Timeline(out_dir / "timeline.jsonl")
    timeline.mark("setup")
    run = deploy_run(
        provider, topology, case.pattern, naive=case.naive, results_dir=out_dir, progress=progress, agent=case.agent,
        serving_label=case.upgrade == "in-place", injection=case.injection,
    )
    api = kube_config.new_client_from_config(config_file=str(provider.kubeconfig()))
    core = client.CoreV1Api(api)
    namespaces = list(run.namespaces)
    (out_dir / "deployment.json").write_text(json.dumps({
        "run_id": run.run_id, "entry_url": run.entry_url, "entry_service": run.entry_service, "nodes": run.nodes, "namespaces": namespaces,
        "containers_live": live_containers(core, namespaces),
        "containers_formula": containers_formula(topology, case.pattern, run.nodes),
        "app_pods": topology.app_pods, "services": len(topology.services),
        "calls_per_request": sum(len(s.calls) for s in topology.services),
        "agents": asdict(topology.agents),
        # The resource policy as applied (render.size_agent_requests): CPU requested per agent.
        "agent_cpu_requested_m": agent_cpu_requested_m(run.objects, run.nodes),
        "placement": placement(core, namespaces),
        "forgotten_bindings": run.forgotten_bindings,
    }, indent=1))
    able = abilities(provider)
    watcher = PodWatcher(api, namespaces, out_dir / "pods.jsonl").start()
    sampler = ResourceSampler(api, namespaces, out_dir / "resources.jsonl").start()
    # Evidence for every failed request (attribution.py): what the Service offered, the
    # host's view of each new connection, its proxies' logs and its CPU pressure.
    evidence: list[Any] = []
    if capture:
        evidence += [
            EndpointSliceWatcher(api, namespaces, out_dir / "endpoints.jsonl").start(),
            PressureSampler(out_dir / "pressure.jsonl").start(),
            LogSlices(able.evidence_logs, out_dir).start(),
            MetricsSnapshots(able.evidence_metrics, out_dir).start(),
        ]
        if able.conntrack_here:
            evidence.append(ConntrackEvents(entry_port(run.entry_url), out_dir / "conntrack-events.log").start())
        if able.tripwire_prefix is not None:
            evidence.append(KernelLog(able.tripwire_prefix, out_dir / "tripwire.jsonl").start())
        if able.container_cgroups is not None:
            evidence.append(SchedSampler(able.container_cgroups, out_dir / "sched.jsonl").start())
    started = time.monotonic()

    def report(p: dict[str, Any]) -> None:
        progress.say(f"   [{case.id}] {phase['name']:<8} {time.monotonic() - started:6.1f}s  requests {p['requests']:>6}  errors {p['failures']:>4}  {p['rps']:>6.1f} req/s")

    phase = {"name": "warmup"}
    load = LoadProcess(run.entry_url, profile.load, out_dir, max_duration_s=3600, on_progress=report, conntrack=capture and able.conntrack_here)
    try:
        load.start()
        timeline.mark("warmup")
        time.sleep(profile.warmup_s)
        phase["name"] = "before"
        timeline.mark("before")
        time.sleep(profile.before_s)
        (out_dir / "pods-before.json").write_text(json.dumps(app_pods(core, run.app_namespace)))
        if case.fault:
            phase["name"] = "fault"
            with progress.step(f"[{case.id}] inject {case.fault}"):
                run_fault(provider, api, topology, case, run, profile, out_dir, timeline.mark)
        elif case.agent:
            phase["name"] = "upgrade"
            timeline.mark("upgrade_start", agent=case.agent)
            with progress.step(f"[{case.id}] upgrade the {case.agent} agent v1 -> v2" + (" in place" if case.upgrade == "in-place" else "")):
                if case.injection == "webhook":
                    webhook_upgrade(api, topology, case, run, profile, out_dir, timeline.mark)
                elif case.upgrade == "in-place":
                    targets = upgrade_targets(run.objects, case.agent)
                    image = upgradable_spec(case.agent).image_for("v2", targets[0].image)
                    pods = upgrade_in_place(api, run.app_namespace, case.agent, image, drain=not case.naive, progress_log=out_dir / "rollouts.jsonl")
                    timeline.mark("upgrade_end", targets=[asdict(t) for t in targets], pods=[asdict(p) for p in pods])
                else:
                    result = upgrade_agent(api, run.objects, case.agent, timeout_s=profile.upgrade_timeout_s, progress_log=out_dir / "rollouts.jsonl")
                    timeline.mark("upgrade_end", targets=[asdict(t) for t in result.targets])
        phase["name"] = "after"
        timeline.mark("after")
        time.sleep(profile.after_s)
        (out_dir / "pods-after.json").write_text(json.dumps(app_pods(core, run.app_namespace)))
        load_summary = load.stop()
        timeline.mark("end")
        if pattern_spec(case.pattern).needs_sink(topology.agents):
            (out_dir / "sink.json").write_text(json.dumps(settled_sink_stats(api, run.agents_namespace)))
        if case.injection == "webhook":
            (out_dir / "events.json").write_text(json.dumps(failed_creates(core, run.app_namespace)))
        (out_dir / "warnings.json").write_text(json.dumps(warning_events(core, namespaces)))
        (out_dir / "load-summary.json").write_text(json.dumps(load_summary))
    finally:
        load.stop()
        watcher.stop()
        sampler.stop()
        for observer in evidence:
            observer.stop()
        timeline.mark("teardown")
        if not keep:
            # Kill the pods and let the namespaces go in the background: the next case has
            # its own names, and the next deploy's sweep catches anything left.
            with progress.step(f"[{case.id}] undeploy"):
                Deployer(api, Progress(quiet=True)).undeploy(run.run_id, graceful=False, wait=False)
    return out_dir


def webhook_upgrade(
    api: client.ApiClient, topology: Topology, case: Case, run: Any, profile: Profile, out_dir: Path, mark: Any,
    started: threading.Event | None = None,
) -> None:
    """A webhook-injected sidecar's upgrade: the injector's template switched to v2 (new pods
    get it), then either every app Deployment restarted (rolling, as Istio upgrades) or every
    running pod's sidecar patched in place (SidecarSet-style). `started` is set once the pods
    are being replaced (what an injector fault waits for)."""

    assert case.agent is not None
    template = injection_template(topology, case.pattern, run.render_options, "v2", upgraded=[case.agent])
    switch_template(api, run.agents_namespace, template)
    mark("template_switched", version="v2")
    apps = [o for o in run.objects if o["kind"] == "Deployment" and o["metadata"]["namespace"] == run.app_namespace]
    if case.upgrade == "in-place":
        container = upgradable_spec(case.agent).container
        image = next(c["image"] for c in template["initContainers"] if c["name"] == container)
        if started is not None:
            started.set()
        pods = upgrade_in_place(api, run.app_namespace, case.agent, image, drain=not case.naive, progress_log=out_dir / "rollouts.jsonl")
        mark("upgrade_end", pods=[asdict(p) for p in pods])
        return
    restart_deployments(api, apps)
    mark("deployments_restarted", deployments=[d["metadata"]["name"] for d in apps])
    if started is not None:
        started.set()
    deployer = Deployer(api, Progress(quiet=True))
    record = rollout_recorder(out_dir / "rollouts.jsonl")
    for d in apps:
        deployer.wait_one("Deployment", d["metadata"]["namespace"], d["metadata"]["name"], profile.upgrade_timeout_s, on_status=record)
    mark("upgrade_end", restarted=[d["metadata"]["name"] for d in apps])


def run_fault(provider: Any, api: client.ApiClient, topology: Topology, case: Case, run: Any, profile: Profile, out_dir: Path, mark: Any) -> None:
    """The case's fault, steady or in the middle of its agent's upgrade."""

    assert case.fault is not None
    spec = fault_spec(case.fault)
    core = client.CoreV1Api(api)
    duration = case.duration()
    if not spec.during_upgrade:
        target = None
        if spec.target == "agent":
            assert case.agent is not None
            target = fault_driver.agent_target(core, topology, case.pattern, case.agent, run.app_namespace, run.agents_namespace)
        fault_driver.inject_steady(provider, spec, duration, target, mark)
        return
    assert case.agent is not None
    agent = case.agent
    if spec.target == "injector":
        started = threading.Event()

        def restarted() -> fault_driver.Target:
            if not started.wait(timeout=120):
                raise UsageError("the webhook upgrade did not restart the app Deployments within 120s")
            return fault_driver.injector_target(api, run.agents_namespace)

        fault_driver.inject_during_upgrade(
            provider, spec, duration,
            upgrade=lambda: webhook_upgrade(api, topology, case, run, profile, out_dir, mark, started),
            find_target=restarted, mark=mark,
        )
        return
    new_image = upgradable_spec(agent).image_for("v2", upgrade_targets(run.objects, agent)[0].image)
    fault_driver.inject_during_upgrade(
        provider, spec, duration,
        upgrade=lambda: upgrade_agent(api, run.objects, agent, timeout_s=profile.upgrade_timeout_s, progress_log=out_dir / "rollouts.jsonl"),
        find_target=lambda: fault_driver.new_node_agent(core, run.agents_namespace, agent, new_image, timeout_s=60),
        mark=mark,
    )


def run_matrix(
    provider: Any,
    topology: Topology,
    cases: list[Case],
    profile: Profile,
    results_root: Path,
    progress: Progress | None = None,
    run_id: str | None = None,
    on_case: Callable[[Case, Path], None] | None = None,
    repeat: int = 1,
    fault_repeat: int | None = None,
) -> Path:
    """Every case in turn into results/<run-id>/<case>/ (with --repeat N, N interleaved
    trials into <case>.t<k>/); summary.json and report.md at the end, and also when
    interrupted (then marked so, with what is missing)."""

    progress = progress or Progress()
    profile.validate()
    run_dir = results_root / (run_id or new_run_id())
    try:
        run_dir.mkdir(parents=True, exist_ok=True)
        probe = run_dir / ".writable"
        probe.write_text("")
        probe.unlink()
    except OSError as exc:
        raise UsageError(f"cannot write results to {results_root}: {exc.strerror}") from None
    trials = interleave(cases, repeat, fault_repeat)
    meta = {"profile": asdict(profile), "cases_planned": [c.id for c in cases], "repeat": repeat, "provider": provider.name, "started_wall": time.time()}
    copy_latest_calibration(results_root, run_dir)
    keep_with_run(file_agents(), run_dir)
    (run_dir / "run.json").write_text(json.dumps(meta, indent=1))
    try:
        for i, trial in enumerate(trials, 1):
            label = trial.case.id + (f" (trial {trial.k}/{trial.repeat})" if trial.repeat > 1 else "")
            with progress.step(f"case {i}/{len(trials)}: {label}"):
                run_case(provider, topology, trial.case, profile, run_dir / trial.dir_name, progress, trial=trial.k)
            if on_case:
                on_case(trial.case, run_dir / trial.dir_name)
    except BaseException:
        meta["interrupted"] = True
        (run_dir / "run.json").write_text(json.dumps(meta, indent=1))
        if any(run_dir.glob("*/requests.jsonl")):
            try:
                write_report(run_dir)
                progress.say(f" partial report (interrupted): {run_dir / 'report.md'}")
            except Exception as exc:  # noqa: BLE001 - never hide why the run stopped
                progress.say(f" could not write the partial report: {exc}")
        raise
    meta["finished_wall"] = time.time()
    (run_dir / "run.json").write_text(json.dumps(meta, indent=1))
    return run_dir


def copy_latest_calibration(results_root: Path, run_dir: Path) -> None:
    """The latest `patternbench calibrate` result travels with the run, so its report (and
    any rebuild of it) carries the measurement's own error bar."""
    latest = results_root / "calibration.json"
    if latest.exists():
        (run_dir / "calibration.json").write_text(latest.read_text())
