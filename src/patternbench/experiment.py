"""One experiment case: deploy a pattern, put it under load, upgrade one agent, observe,
tear down. Setup -> assess -> teardown, every phase marked on one monotonic timeline and
every observation written as it happens, so an interrupted case keeps what it measured."""

from __future__ import annotations

import json
import secrets
import threading
import time
from contextlib import contextmanager, suppress
from dataclasses import asdict
from pathlib import Path
from typing import Any, Callable, Iterator
from urllib.parse import urlsplit

from kubernetes import client
from kubernetes import config as kube_config
from tenacity import Retrying, retry_if_result, stop_after_delay, wait_fixed

from patternbench.build.images import grpcload_binary
from patternbench.cluster.provider import abilities
from patternbench.errors import StepFailed, UsageError
from patternbench.load.cluster_load import InClusterLoad, LoadFailed
from patternbench.load.placement import check_load_nodes
from patternbench.load.runner import LoadProcess
from patternbench.load.workloads import workload_spec
from patternbench.measure.apiserver import STEADY, UPGRADE
from patternbench.observe.apiserver import ApiServerScrapes
from patternbench.observe.endpoints import EndpointSliceWatcher
from patternbench.observe.host import ConntrackEvents, KernelLog, LogSlices, MetricsSnapshots, PressureSampler, SchedSampler
from patternbench.observe.logsink import sink_mark, sink_stats
from patternbench.observe.pods import PodWatcher, failed_creates, warning_events
from patternbench.observe.resources import ResourceSampler
from patternbench.operate import fault_driver
from patternbench.operate.deploy import DeployedRun, deploy_run, load_generator_image, new_run_id
from patternbench.operate.kube import REQUEST_TIMEOUT, Deployer, live_containers, placement
from patternbench.operate.upgrade import upgrade_agent, upgrade_targets
from patternbench.operate.upgrade_runs import UpgradeJob, run_upgrade
from patternbench.progress import Progress
from patternbench.render import agent_cpu_requested_m
from patternbench.results.durations import Eta, minutes
from patternbench.results.report import write_report
from patternbench.results.rundir import (
    APISERVER,
    CALIBRATION,
    CASE,
    CONNTRACK_EVENTS,
    DEPLOYMENT,
    ENDPOINTS,
    EVENTS,
    LOAD_SUMMARY,
    PODS,
    PODS_AFTER,
    PODS_BEFORE,
    PRESSURE,
    REPORT,
    REQUESTS,
    RESOURCES,
    ROLLOUTS,
    RUN,
    SCHED,
    SINK,
    TIMELINE,
    TRIPWIRE,
    WARNINGS,
    Timeline,
    check_writable,
    load_sweeps,
)
from patternbench.specs.agent_file import keep_with_run
from patternbench.specs.agents import file_agents, upgradable_spec
from patternbench.specs.cases import Case, Profile, Trial, deployment_groups, interleave
from patternbench.specs.faults import fault_spec
from patternbench.specs.patterns import pattern_spec
from patternbench.specs.strategies import strategy
from patternbench.specs.topology import Topology, containers_formula


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


def deploy_case(provider: Any, topology: Topology, case: Case, out_dir: Path, progress: Progress) -> DeployedRun:
    """A fresh deployment of the case's pattern, as its upgrade strategy and injection need it."""
    return deploy_run(
        provider, topology, case.pattern, naive=case.naive, results_dir=out_dir, progress=progress, agent=case.agent,
        serving_label=strategy(case.upgrade).serving_label, injection=case.injection,
    )


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
    deployed: DeployedRun | None = None,
    versions: tuple[str, str] = ("v1", "v2"),
) -> Path:
    """Run one case (trial `trial` of it); everything it observes lands in `out_dir`. Returns
    `out_dir`. `capture` False leaves out the failure evidence (to measure what it costs).
    `deployed`: run on this deployment (which the caller removes) instead of a fresh one;
    `versions`: the agent's version before and after the upgrade (a trial on a deployment
    an earlier trial upgraded rolls it back)."""
    progress = progress or Progress()
    out_dir.mkdir(parents=True, exist_ok=True)
    (out_dir / CASE).write_text(json.dumps({
        **case.to_json(), "trial": trial, "profile": asdict(profile), "fresh_deployment": deployed is None,
        "upgrade_versions": list(versions) if case.upgrades else None,
    }, indent=1))
    timeline = Timeline(out_dir / TIMELINE)
    timeline.mark("setup")
    run = deployed or deploy_case(provider, topology, case, out_dir, progress)
    if deployed is not None:
        keep = True  # the caller's deployment: it takes it down after its last trial
    api = kube_config.new_client_from_config(config_file=str(provider.kubeconfig()))
    core = client.CoreV1Api(api)
    namespaces = list(run.namespaces)
    (out_dir / DEPLOYMENT).write_text(json.dumps({
        "run_id": run.run_id, "entry_url": run.entry_url, "entry_service": run.entry_service, "nodes": run.nodes, "namespaces": namespaces,
        "containers_live": live_containers(core, namespaces),
        "containers_formula": containers_formula(topology, case.pattern, run.nodes),
        "app_pods": topology.app_pods, "services": len(topology.services),
        "calls_per_request": topology.calls_per_request, "route": topology.route.value,
        "agents": asdict(topology.agents),
        # The resource policy as applied (render.size_agent_requests): CPU requested per agent.
        "agent_cpu_requested_m": agent_cpu_requested_m(run.objects, run.nodes),
        "placement": placement(core, namespaces),
        "forgotten_bindings": run.forgotten_bindings,
    }, indent=1))
    able = abilities(provider)
    watcher = PodWatcher(api, namespaces, out_dir / PODS).start()
    sampler = ResourceSampler(api, namespaces, out_dir / RESOURCES).start()
    apiserver = ApiServerScrapes(api, out_dir / APISERVER)
    # Evidence for every failed request (attribution.py): what the Service offered, the
    # host's view of each new connection, its proxies' logs and its CPU pressure.
    evidence: list[Any] = []
    if capture:
        evidence += [
            EndpointSliceWatcher(api, namespaces, out_dir / ENDPOINTS).start(),
            PressureSampler(out_dir / PRESSURE).start(),
            LogSlices(able.evidence_logs, out_dir).start(),
            MetricsSnapshots(able.evidence_metrics, out_dir).start(),
        ]
        if able.conntrack_here and profile.load.load_from == "host":  # the pods' connections are NATed on their node
            evidence.append(ConntrackEvents(entry_port(run.entry_url), out_dir / CONNTRACK_EVENTS).start())
        if able.tripwire_prefix is not None:
            evidence.append(KernelLog(able.tripwire_prefix, out_dir / TRIPWIRE).start())
        if able.container_cgroups is not None:
            evidence.append(SchedSampler(able.container_cgroups, out_dir / SCHED).start())
    started = time.monotonic()

    def report(p: dict[str, Any]) -> None:
        progress.say(f"   [{case.id}] {phase['name']:<8} {time.monotonic() - started:6.1f}s  requests {p['requests']:>6}  errors {p['failures']:>4}  {p['rps']:>6.1f} req/s")

    phase = {"name": "warmup"}
    if pattern_spec(case.pattern).needs_sink(topology.agents):
        sink_mark(api, run.agents_namespace)  # the sink counts this trial's lines from here
    load = case_load(provider, api, run, profile, out_dir, report, capture, progress)
    try:
        load.start()
        timeline.mark("warmup")
        time.sleep(profile.warmup_s)
        phase["name"] = "before"
        timeline.mark("before")
        took = apiserver.take(STEADY[0])
        time.sleep(max(0.0, profile.before_s - took))
        apiserver.take(STEADY[1])
        (out_dir / PODS_BEFORE).write_text(json.dumps(app_pods(core, run.app_namespace)))
        if case.fault:
            phase["name"] = "fault"
            with progress.step(f"[{case.id}] inject {case.fault}"):
                run_fault(provider, api, topology, case, run, profile, out_dir, timeline.mark)
        elif case.agent:
            phase["name"] = "upgrade"
            apiserver.take(UPGRADE[0])
            timeline.mark("upgrade_start", agent=case.agent, versions=list(versions))
            with progress.step(f"[{case.id}] upgrade the {case.agent} agent {versions[0]} -> {versions[1]}" + strategy(case.upgrade).step_suffix):
                run_upgrade(UpgradeJob(api, topology, case, run, profile, out_dir, timeline.mark, to_version=versions[1]))
            apiserver.take(UPGRADE[1])
            if workload_spec(profile.load.workload).grpc:
                # Long-lived streams stay on the old instances until they stop: the case goes
                # on until every old pod is gone, or what ending them does is never seen.
                phase["name"] = "drain"
                with progress.step(f"[{case.id}] wait until the old pods are gone (their streams end with them)"):
                    timeline.mark("old_pods_gone", pods=wait_terminating_gone(core, namespaces, OLD_PODS_TIMEOUT_S))
        phase["name"] = "after"
        timeline.mark("after")
        time.sleep(profile.after_s)
        (out_dir / PODS_AFTER).write_text(json.dumps(app_pods(core, run.app_namespace)))
        try:
            load_summary = load.stop()
        except LoadFailed as exc:  # a reported, failed case (summary: missing), never a silent gap
            load_summary = {"load_from": profile.load.load_from, "error": str(exc)}
            timeline.mark("load_failed", error=str(exc))
            progress.say(f"   [{case.id}] the load failed: {exc}")
        timeline.mark("end")
        if pattern_spec(case.pattern).needs_sink(topology.agents):
            (out_dir / SINK).write_text(json.dumps(settled_sink_stats(api, run.agents_namespace)))
        if case.injection == "webhook":
            (out_dir / EVENTS).write_text(json.dumps(failed_creates(core, run.app_namespace)))
        (out_dir / WARNINGS).write_text(json.dumps(warning_events(core, namespaces)))
        (out_dir / LOAD_SUMMARY).write_text(json.dumps(load_summary))
    finally:
        with suppress(LoadFailed):  # already reported above, or the case's own error is the one to raise
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


# Longer than any pod's grace period here (terminationGracePeriodSeconds in manifests/).
OLD_PODS_TIMEOUT_S = 120


def wait_terminating_gone(core: client.CoreV1Api, namespaces: list[str], timeout_s: float) -> int:
    """Wait until no pod of the namespaces is terminating; how many were when it started.
    A pod still terminating after `timeout_s` is a one-line error."""
    def terminating() -> list[str]:
        return [f"{ns}/{p.metadata.name}" for ns in namespaces
                for p in core.list_namespaced_pod(ns, _request_timeout=REQUEST_TIMEOUT).items if p.metadata.deletion_timestamp]
    first = terminating()
    left = Retrying(stop=stop_after_delay(timeout_s), wait=wait_fixed(0.5), retry=retry_if_result(bool),
                    retry_error_callback=lambda state: state.outcome.result())(terminating)
    if left:
        raise StepFailed(f"{len(left)} old pods still terminating after {timeout_s:.0f}s: {', '.join(left[:3])}")
    return len(first)


def case_load(provider: Any, api: client.ApiClient, run: DeployedRun, profile: Profile, out_dir: Path, report: Callable[[dict[str, Any]], None],
              capture: bool, progress: Progress) -> LoadProcess | InClusterLoad:
    """The case's load where the profile says it runs: this machine's processes at the entry's
    NodePort, or pods on the load node at the entry Service's cluster address."""
    able = abilities(provider)
    if profile.load.load_from == "host":
        grpc = workload_spec(profile.load.workload).grpc
        return LoadProcess(run.entry_url, profile.load, out_dir, max_duration_s=3600, on_progress=report, conntrack=capture and able.conntrack_here,
                           grpcload=grpcload_binary(build=False) if grpc else None)
    image = load_generator_image(provider, progress)
    core = client.CoreV1Api(api)
    ip, port = run.entry_in_cluster(core)
    return InClusterLoad(core, run.load_namespace, image, f"http://{ip}:{port}", profile.load, out_dir, max_duration_s=3600, on_progress=report,
                         clock_shared=able.clock_shared, name=f"load-{secrets.token_hex(3)}")


def prepare_load(provider: Any, profile: Profile, progress: Progress) -> None:
    """Before anything is deployed: a load from the cluster needs a load node and a node for
    the apps (one line, exit 2, otherwise), and its image in the cluster; a gRPC workload
    its client, built here."""
    if workload_spec(profile.load.workload).grpc:
        with progress.step("build the gRPC load client (images/cmd/grpcload)"):
            grpcload_binary()
    if profile.load.load_from != "cluster":
        return
    api = kube_config.new_client_from_config(config_file=str(provider.kubeconfig()))
    nodes = check_load_nodes(client.CoreV1Api(api).list_node(_request_timeout=REQUEST_TIMEOUT).items)
    progress.say(f"   the load runs in the cluster, on {', '.join(nodes)}")
    load_generator_image(provider, progress)


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
            upgrade=lambda: run_upgrade(UpgradeJob(api, topology, case, run, profile, out_dir, mark, started)),
            find_target=restarted, mark=mark,
        )
        return
    new_image = upgradable_spec(agent).image_for("v2", upgrade_targets(run.objects, agent)[0].image)
    fault_driver.inject_during_upgrade(
        provider, spec, duration,
        upgrade=lambda: upgrade_agent(api, run.objects, agent, timeout_s=profile.upgrade_timeout_s, progress_log=out_dir / ROLLOUTS),
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
    eta: Eta | None = None,
    share_deployments: bool = True,
) -> Path:
    """Every case in turn into results/<run-id>/<case>/ (with --repeat N, N interleaved
    trials into <case>.t<k>/); summary.json and report.md at the end, and also when
    interrupted (then marked so, with what is missing)."""

    progress = progress or Progress()
    profile.validate()
    trials = interleave(cases, repeat, fault_repeat)
    run_dir, meta = start_run(results_root, provider.name, profile, [c.id for c in cases], repeat, run_id)
    if eta is not None:
        meta["planned_s"] = round(eta.total_s(), 1)
        (run_dir / RUN).write_text(json.dumps(meta, indent=1))
    prepare_load(provider, profile, progress)
    started = time.monotonic()
    groups = deployment_groups(trials, share=share_deployments)
    if eta is not None:
        eta.trials = [t for group in groups for t in group]  # the order they run in
    try:
        with progress.bar(len(trials), "trials") as bar:
            _run_groups(provider, topology, groups, profile, run_dir, progress, eta, on_case, bar, len(trials), started)
    except BaseException:
        mark_interrupted(run_dir, progress)
        raise
    meta["finished_wall"] = time.time()
    (run_dir / RUN).write_text(json.dumps(meta, indent=1))
    return run_dir


def _run_groups(
    provider: Any, topology: Topology, groups: list[list[Trial]], profile: Profile, run_dir: Path, progress: Progress,
    eta: Eta | None, on_case: Callable[[Case, Path], None] | None, bar: Any, total: int, started: float,
) -> None:
    """The trials, group by group, each group on its deployment (see deployment_groups)."""
    i = 0
    for group in groups:
        with shared_deployment(provider, topology, group, run_dir, progress) as deployed:
            versions: dict[str, str] = {}  # the agents' versions on this deployment
            for trial in group:
                i += 1
                agent = trial.case.agent or ""
                before = versions.get(agent, "v1")
                after = "v1" if before == "v2" else "v2"
                label = trial.case.id + (f" (trial {trial.k}/{trial.repeat})" if trial.repeat > 1 else "")
                began = time.monotonic()
                with progress.step(f"case {i}/{total}: {label}"):
                    run_case(provider, topology, trial.case, profile, run_dir / trial.dir_name, progress, trial=trial.k,
                             deployed=deployed, versions=(before, after))
                if trial.case.upgrades:
                    versions[agent] = after
                if eta is not None:
                    eta.finish(time.monotonic() - began)
                    left = f"about {minutes(eta.remaining_s())} left"
                    progress.say(f"   {i}/{total} trials done in {minutes(time.monotonic() - started)}; {left}")
                    if bar is not None:
                        bar.set_postfix_str(left)
                if bar is not None:
                    bar.update(1)
                if on_case:
                    on_case(trial.case, run_dir / trial.dir_name)


@contextmanager
def shared_deployment(provider: Any, topology: Topology, group: list[Trial], run_dir: Path, progress: Progress) -> Iterator[DeployedRun | None]:
    """One deployment for a group of trials that share it (its first trial's directory keeps
    the manifests), taken down after the last; None for a group of one: that trial deploys
    its own (so its case.json says fresh_deployment and its timeline's setup holds the deploy;
    a one-trial group deployed here was recorded as shared, and the plan then never found the
    fresh trials' times)."""
    if len(group) == 1:
        yield None
        return
    first = group[0]
    with progress.step(f"deploy {first.case.pattern.value} once for {len(group)} trials"):
        deployed = deploy_case(provider, topology, first.case, run_dir / first.dir_name, progress)
    try:
        yield deployed
    finally:
        with progress.step(f"undeploy {first.case.pattern.value}"):
            api = kube_config.new_client_from_config(config_file=str(provider.kubeconfig()))
            Deployer(api, Progress(quiet=True)).undeploy(deployed.run_id, graceful=False, wait=False)


def start_run(results_root: Path, provider: str, profile: Profile, planned: list[str], repeat: int, run_id: str | None = None) -> tuple[Path, dict[str, Any]]:
    """A new run directory, checked writable, with what travels with the run (the latest
    calibration, the agent files) and run.json; the CLI and the pytest plugin both start here."""
    run_dir = results_root / (run_id or new_run_id())
    check_writable(run_dir, shown=results_root)
    meta = {"profile": asdict(profile), "cases_planned": planned, "repeat": repeat, "provider": provider, "started_wall": time.time()}
    copy_latest_calibration(results_root, run_dir)
    keep_with_run(file_agents(), run_dir)
    (run_dir / RUN).write_text(json.dumps(meta, indent=1))
    return run_dir, meta


def mark_interrupted(run_dir: Path, progress: Progress, where: str = "") -> None:
    """An interrupted run keeps what it measured: run.json says so and the report of
    everything so far is written (never hiding why the run stopped)."""
    meta = json.loads((run_dir / RUN).read_text())
    meta["interrupted"] = True
    (run_dir / RUN).write_text(json.dumps(meta, indent=1))
    if not any(run_dir.glob(f"*/{REQUESTS}")) and not load_sweeps(run_dir):
        return
    try:
        write_report(run_dir)
        progress.say(f" partial report (interrupted{where}): {run_dir / REPORT}")
    except Exception as exc:  # noqa: BLE001 - never hide why the run stopped
        progress.say(f" could not write the partial report: {exc}")


def copy_latest_calibration(results_root: Path, run_dir: Path) -> None:
    """The latest `patternbench calibrate` result travels with the run, so its report (and
    any rebuild of it) carries the measurement's own error bar."""
    latest = results_root / CALIBRATION
    if latest.exists():
        (run_dir / CALIBRATION).write_text(latest.read_text())
