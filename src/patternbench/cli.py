"""The `patternbench` command. Exit codes: 0 ok, 1 an assertion failed, 2 bad input or environment."""

from __future__ import annotations

import argparse
import json
import shutil
import signal
import sys
import threading
import time
from contextlib import contextmanager
from pathlib import Path
from typing import Any, Iterator, NoReturn, Sequence

from patternbench import calibration
from patternbench.build.components import cache_root
from patternbench.build.images import build_data_plane
from patternbench.cluster.local.provider import LocalProvider
from patternbench.cluster.provider import KnowsIfUp, ReportsDaemons, Resizes, abilities
from patternbench.cluster.registry import ProviderOptions, get_provider, parse_node_count
from patternbench.errors import StepFailed, UsageError
from patternbench.load.placement import parse_load_from
from patternbench.options import parse_count, parse_slo_ms
from patternbench.outages import calibrate_local
from patternbench.progress import Progress
from patternbench.results.baseline import compare, format_table, load_baseline, load_summary, update_baseline
from patternbench.results.durations import CALIBRATION_S, CLUSTER_UP_S, DEFAULT_DEPLOY_S, SWEEP_STEP_S, Eta, estimate, minutes, plan_text, run_durations, shared_deployments_s
from patternbench.results.report import write_report
from patternbench.results.rundir import REPORT, RUN, check_writable
from patternbench.results.verdicts import Thresholds
from patternbench.run_options import PROVIDER_OPTIONS, RUN_OPTIONS, RunPlan, add_options, profile_of, provider_options, resolve_run, with_load_placement
from patternbench.scale_points import DEFAULT_SCALE_PATTERNS, DEFAULT_SIZES, NodeAxis, parse_nodes, parse_sizes
from patternbench.specs.cases import Case, interleave
from patternbench.specs.faults import FAULTS, check_fault
from patternbench.specs.generated_topology import MAX_DEPTH, MAX_REPLICAS, MAX_SERVICES, check_depth, choose_topology, layered
from patternbench.specs.names import is_dns_label
from patternbench.specs.patterns import pattern_spec
from patternbench.specs.topology import Pattern, load_topology, parse_agents

FAULT_NAMES = tuple(FAULTS)


def _provider_args(parser: argparse.ArgumentParser) -> None:
    add_options(parser.add_argument, PROVIDER_OPTIONS)


def _options(args: argparse.Namespace) -> ProviderOptions:
    return provider_options(lambda dest: getattr(args, dest, None), keep_on_failure=getattr(args, "keep", False))


class OneLineParser(argparse.ArgumentParser):
    """argparse, but bad input is one line and exit 2 (the contract), not a usage block."""

    def error(self, message: str) -> NoReturn:
        self.exit(2, f"patternbench: {message} (see `{self.prog} --help`)\n")


def build_parser() -> argparse.ArgumentParser:
    parser = OneLineParser(prog="patternbench", description=__doc__)
    sub = parser.add_subparsers(dest="command", required=True)

    setup = sub.add_parser("setup", help="build (or find in the cache) every binary and image the local cluster needs")
    setup.add_argument("--bin-dir", type=Path, help="use Kubernetes/etcd/CoreDNS binaries from DIR instead of building them")

    cluster = sub.add_parser("cluster", help="bring a cluster up or down")
    csub = cluster.add_subparsers(dest="action", required=True)
    up = csub.add_parser("up", help="create the cluster (idempotent; sweeps a crashed one first)")
    _provider_args(up)
    up.add_argument("--keep", action="store_true", help="keep a cluster that failed half-way, for debugging")
    for name, text in (("down", "delete the cluster and everything it made"), ("status", "what runs and whether it is healthy"), ("kubeconfig", "print the admin kubeconfig's path")):
        _provider_args(csub.add_parser(name, help=text))

    images = sub.add_parser("images", help="build the data-plane images, or load them into a cluster")
    isub = images.add_subparsers(dest="action", required=True)
    isub.add_parser("build", help="build app, meshproxy, logagent, logsink (agents in v1 and v2) as OCI archives")
    _provider_args(isub.add_parser("load", help="build, then load every image into the cluster"))

    deploy = sub.add_parser("deploy", help="deploy the topology in one pattern and wait until it is Ready")
    _provider_args(deploy)
    deploy.add_argument("--pattern", required=True, help="none, sidecar, daemonset or hybrid")
    deploy.add_argument("--topology", type=Path, help="topology YAML (default: topologies/default.yaml)")
    deploy.add_argument("--services", metavar="N", help="instead of --topology: a generated layered topology of N services")
    deploy.add_argument("--replicas", metavar="R", help="with --services: pods per service (default 2)")
    deploy.add_argument("--depth", metavar="D", help="with --services: levels below the entry (default 2)")
    deploy.add_argument("--extra-agents", type=int, help="k generic agents, overriding the topology")
    deploy.add_argument("--naive", action="store_true", help="no drain and no socket handover (for comparison)")
    deploy.add_argument("--results", type=Path, default=Path("results"), help="where the rendered manifests go")
    undeploy = sub.add_parser("undeploy", help="delete a run's (default: every run's) namespaces and wait until gone")
    _provider_args(undeploy)
    undeploy.add_argument("--run-id", help="only this run")
    undeploy.add_argument("--now", action="store_true", help="kill the pods at once instead of letting them drain")

    run = sub.add_parser("run", help="the experiments: every pattern x agent under load, upgraded; a report at the end")
    _provider_args(run)
    add_options(run.add_argument, RUN_OPTIONS)
    scale = sub.add_parser("scale", help="the patterns at growing sizes (generated topologies): per size and pattern a mesh-agent upgrade under load; scale.json with the fits, the held-out largest size and the projection to 1000 services")
    add_options(scale.add_argument, [o for o in PROVIDER_OPTIONS if o.flag != "--nodes"])
    add_options(scale.add_argument, [o for o in RUN_OPTIONS if o.flag in ("--load-from", "--load-workers")])
    scale.add_argument("--nodes", default="3", metavar="N or N1,N2,...", help="one count: the cluster's nodes; three or more rising: the node axis, the cluster resized to each (the services axis stays on 3 nodes)")
    scale.add_argument("--nodes-services", default="3", metavar="N", help="the service count the node axis measures (default 3)")
    scale.add_argument("--pattern", action="append", help=f"only this pattern (repeatable; default {', '.join(DEFAULT_SCALE_PATTERNS)})")
    scale.add_argument("--services", default=DEFAULT_SIZES, metavar="N1,N2,...", help=f"the sizes, rising, at least three (default {DEFAULT_SIZES})")
    scale.add_argument("--replicas", default="2", metavar="R", help="pods per service (default 2)")
    scale.add_argument("--depth", default="2", metavar="D", help="levels below the entry: the calls each request makes (default 2)")
    scale.add_argument("--profile", default="short", help="phase lengths and load (default short)")
    scale.add_argument("--duration", help="seconds of load before and after each upgrade (overrides the profile)")
    scale.add_argument("--results", type=Path, default=Path("results"), help="where runs are written (default: results)")
    scale.add_argument("--keep-cluster", action="store_true", help="leave a cluster this command brought up running")
    report = sub.add_parser("report", help="rebuild summary.json, report.md and plots from a run's raw records")
    report.add_argument("run_dir", type=Path)
    report.add_argument("--slo-ms", default=None, metavar="MS", help="re-measure downtime with this deadline instead of the run's")

    cal = sub.add_parser("calibrate", help="inject outages of known kind and length, measure them with the probe stream, report the error")
    cal.add_argument("--target", default="local", choices=["local", "cluster"], help="local: a plain HTTP server on 127.0.0.1 (no cluster); cluster: the local cluster's entry, through kube-proxy into the app chain (brings the cluster up if needed)")
    cal.add_argument("--kinds", default=None, help="outage kinds: refused, reset, dropped, hang (default all) locally; refused, dropped on the cluster")
    cal.add_argument("--keep-cluster", action="store_true", help="--target cluster: leave a cluster this command brought up running")
    cal.add_argument("--load-from", default=None, metavar="WHERE", help="--target cluster: probe from this machine (host, the default) or from the prober pod on a load node (cluster)")
    _provider_args(cal)
    cal.add_argument("--lengths", default="0.5,2", help="outage lengths in seconds")
    cal.add_argument("--slo-ms", default="1000", metavar="MS", help="the deadline the probes are judged by (default 1000)")
    cal.add_argument("--results", type=Path, default=Path("results"), help="where calibration.json goes")

    comp = sub.add_parser("compare", help="every baseline figure against a run; exit 1 on a regression")
    comp.add_argument("baseline", type=Path)
    comp.add_argument("run_dir", type=Path)
    comp.add_argument("--subset", action="store_true", help="the run ran only some of the baseline's cases: compare those")
    base = sub.add_parser("baseline", help="manage baselines")
    bsub = base.add_subparsers(dest="action", required=True)
    upd = bsub.add_parser("update", help="fold runs into a baseline (99th percentile over the stored runs)")
    upd.add_argument("run_dirs", type=Path, nargs="+")
    upd.add_argument("--baseline", type=Path, default=Path("baselines/local.json"))
    upd.add_argument("--provider", default="local")

    clean = sub.add_parser("clean", help="remove results (and with --cache, the build cache)")
    clean.add_argument("--cache", action="store_true", help="also remove ~/.cache/patternbench")
    clean.add_argument("--results", type=Path, default=Path("results"))
    return parser


def cmd_setup(args: argparse.Namespace, progress: Progress) -> int:
    provider = LocalProvider(bin_dir=args.bin_dir, progress=progress)
    binaries, images = provider.setup()
    for name, path in sorted(binaries.paths.items()):
        progress.say(f"   {name:<24} {path}")
    for image in images:
        progress.say(f"   {image.ref:<40} {image.size_mib:6.1f} MiB  {image.path}")
    return 0


def cmd_cluster(args: argparse.Namespace, progress: Progress) -> int:
    provider = get_provider(args.provider, _options(args), progress)
    if args.action == "up":
        provider.create()
        progress.say(f"cluster up: export KUBECONFIG={provider.kubeconfig()}")
    elif args.action == "down":
        with progress.step(f"delete {args.provider} cluster"):
            provider.delete()
    elif args.action == "kubeconfig":
        print(provider.kubeconfig())
    elif args.action == "status":
        if not isinstance(provider, ReportsDaemons):
            for node in provider.nodes():
                print(f"{node.name:<30} {node.internal_ip:<16} {'Ready' if node.ready else 'NotReady'}{'  (load)' if node.load else ''}")
            return 0
        return print_local_status(provider)
    return 0


def print_local_status(provider: ReportsDaemons) -> int:
    """Each node with Ready or not (and why), then every daemon; exit 1 if anything is unwell."""
    if not provider.daemons():
        print("no local cluster is up (`patternbench cluster up` makes one)")
        return 1
    rows = provider.status()
    nodes = provider.node_status(rows)
    for node in nodes:
        if node.ready:
            state = "Ready"
        elif node.api_ready is None:
            state = "NotReady (the API server does not list it)"
        elif not node.daemons_healthy:
            state = "NotReady (a daemon of the node is down" + ("; the API server still says Ready" if node.api_ready else "") + ")"
        else:
            state = "NotReady"
        print(f"node {node.name:<20} {node.ip:<16} {state}{'  (load)' if node.load else ''}")
    for row in rows:
        state = "not running" if row.pid is None else ("healthy" if row.healthy else "unhealthy")
        print(f"  {row.key:<30} {str(row.pid or '-'):>8}  {state}")
    return 0 if all(r.healthy for r in rows) and all(n.ready for n in nodes) else 1


def cmd_images(args: argparse.Namespace, progress: Progress) -> int:
    with progress.step("build data-plane images"):
        archives = build_data_plane()
    for archive in archives:
        progress.say(f"   {archive.ref:<40} {archive.size_mib:6.1f} MiB  {archive.path}")
    if args.action == "load":
        provider = get_provider(args.provider, _options(args), progress)
        with progress.step(f"load {len(archives)} images into the {args.provider} cluster"):
            provider.load_images(archives)
    return 0


def cmd_deploy(args: argparse.Namespace, progress: Progress) -> int:
    from patternbench.operate.deploy import deploy_run, new_run_id  # brings the kubernetes client: kept off the CLI's start

    pattern = Pattern.parse(args.pattern, "--pattern")
    topology = choose_topology(args.topology, args.services, args.replicas, args.depth)
    if args.extra_agents is not None:
        topology = topology.with_agents(parse_agents({**topology.agents.__dict__, "extra_agents": args.extra_agents}))
    run_id = new_run_id()
    provider = get_provider(args.provider, _options(args), progress)
    run = deploy_run(provider, topology, pattern, run_id=run_id, naive=args.naive, results_dir=args.results / run_id, progress=progress)
    progress.say(f"deployed run {run.run_id}: namespaces {run.app_namespace}, {run.agents_namespace}")
    progress.say(f"entry: {run.entry_url}   manifests: {args.results / run_id / 'manifests.yaml'}")
    print(run.run_id)
    return 0


def cmd_scale(args: argparse.Namespace, progress: Progress) -> int:
    from patternbench.scale_run import SCALE, run_scale  # brings the kubernetes client: kept off the CLI's start

    patterns = [Pattern.parse(p, "--pattern") for p in (args.pattern or DEFAULT_SCALE_PATTERNS)]
    sizes = parse_sizes(args.services)
    replicas = parse_count(args.replicas, "--replicas", 1, MAX_REPLICAS)
    depth = parse_count(args.depth, "--depth", 1, MAX_DEPTH)
    base_nodes, node_counts = parse_nodes(args.nodes)
    nodes_services = parse_count(args.nodes_services, "--nodes-services", 1, MAX_SERVICES)
    node_axis = NodeAxis(tuple(node_counts), nodes_services) if node_counts else None
    check_depth(depth, min([*sizes, *([nodes_services] if node_axis else [])]))
    profile = with_load_placement(profile_of(args.profile, args.duration, None, None, None), lambda dest: getattr(args, dest, None))
    for services in [*sizes, *([node_axis.services] if node_axis else [])]:
        topology = layered(services, replicas, depth)
        for pattern in patterns:
            pattern_spec(pattern).check(topology)
    check_writable(args.results)
    options = provider_options(lambda dest: str(base_nodes) if dest == "nodes" else getattr(args, dest, None))
    for count in node_counts:  # each count one the provider can hold (the local machine's limit)
        parse_node_count(count, local=args.provider == "local")
    provider = get_provider(args.provider, options, progress)
    if node_axis and not isinstance(provider, Resizes):
        progress.say(f"   the {args.provider} provider cannot resize its cluster: the node axis ({args.nodes}) is skipped")
        node_axis = None
    with cluster_for(args, provider, is_up(provider), progress):
        run_dir = run_scale(provider, patterns, sizes, replicas, depth, profile, args.results, progress, node_axis)
    doc = json.loads((run_dir / SCALE).read_text())
    for key, held_out in (("services", doc["holdout"]), ("nodes", doc.get("holdout_nodes", {}))):
        for pattern, figures in held_out.items():
            for name, held in figures.items():
                err = "n/a" if held["error"] is None else f"{held['error']:+.1%}"
                progress.say(f"   held out {held[key]:g} {key}, {pattern:<11} {name:<40} predicted {held['predicted']:.3g} measured {held['measured']:.3g} ({err})")
    for where, problems in doc.get("failed_claims", {}).items():
        progress.say(f"   claim failed at {where}: {'; '.join(problems)}")
    print(run_dir / SCALE)
    return 1 if doc.get("failed_claims") else 0


def cmd_undeploy(args: argparse.Namespace, progress: Progress) -> int:
    from kubernetes import config as kube_config  # brings the kubernetes client: kept off the CLI's start

    from patternbench.operate.kube import Deployer  # brings the kubernetes client: kept off the CLI's start

    if args.run_id is not None and not is_dns_label(args.run_id, 63):
        raise UsageError(f"--run-id {args.run_id!r}: expected a run id such as pb-261204-051752-cb78")
    provider = get_provider(args.provider, _options(args), progress)
    try:
        api = kube_config.new_client_from_config(config_file=str(provider.kubeconfig()))
    except Exception as exc:  # noqa: BLE001
        raise UsageError(f"cannot read the cluster's kubeconfig: {exc}") from None
    with progress.step(f"undeploy {args.run_id or 'every patternbench run'}"):
        Deployer(api, progress).undeploy(args.run_id, graceful=not args.now)
    return 0


def experiment_options(args: argparse.Namespace) -> tuple[RunPlan, list[Case]]:
    """The run's options and its cases, validated before any load starts."""
    plan = resolve_run(lambda dest: getattr(args, dest))
    cases = plan.fault_cases() if plan.faults else plan.matrix()
    if args.faults and not plan.faults:
        cases += plan.fault_cases()
    if not cases:
        raise UsageError("no case to run for that --pattern/--agent selection")
    return plan, cases


def check_provider_faults(cases: list, provider: object) -> None:
    """Every fault of the run is one the provider can inject (before anything is deployed)."""

    kinds = abilities(provider).fault_kinds
    for case in cases:
        if case.fault:
            check_fault(case.fault, case.pattern, case.agent, kinds, provider.name, case.injection)  # type: ignore[attr-defined]


def cmd_run(args: argparse.Namespace, progress: Progress) -> int:
    from patternbench.experiment import run_matrix  # brings the kubernetes client: kept off the CLI's start

    plan, cases = experiment_options(args)
    profile = plan.profile
    for note in plan.notes:
        progress.say(f"   {note}")
    topology = choose_topology(args.topology, args.services, args.replicas, args.depth)

    for pattern in {c.pattern for c in cases}:
        pattern_spec(pattern).check(topology)
    if args.calibrate and args.provider != "local":
        raise UsageError("--calibrate injects outages with iptables on this machine: it needs --provider local")
    fault_repeat = 1 if args.faults else None  # the fault family runs once per fault even with --repeat
    trials = interleave(cases, plan.repeat, fault_repeat)
    share = not args.fresh_deployments
    estimates = estimate(cases, profile, args.results, share)
    extra = {"calibration at the entry": CALIBRATION_S} if args.calibrate else {}
    if shared_deployments_s(cases, share):
        extra["deployments shared by trials"] = shared_deployments_s(cases, share)
    if plan.sweep:
        extra["load sweep"] = len(plan.patterns or list(Pattern)) * (DEFAULT_DEPLOY_S + len(plan.sweep) * SWEEP_STEP_S)
    if args.plan:
        for line in plan_text(trials, estimates, profile, CLUSTER_UP_S if args.provider == "local" else 0.0, extra):
            print(line)
        if args.provider == "local":
            print("   (the local cluster's bring-up counts only if it is not up yet)")
        return 0
    check_writable(args.results)
    provider = get_provider(args.provider, _options(args), progress)
    check_provider_faults(cases, provider)
    started = time.monotonic()
    up = is_up(provider)
    for line in plan_text(trials, estimates, profile, 0.0 if up else CLUSTER_UP_S, extra):
        progress.say(line)
    eta = Eta(trials, estimates, extra_s=extra.get("deployments shared by trials", 0.0))  # the trials alone: run.json compares them
    with cluster_for(args, provider, up, progress):
        if args.calibrate:
            from patternbench.cluster_calibration import CLUSTER_KINDS  # brings the kubernetes client: kept off the CLI's start

            doc = calibrate_on_cluster(provider, list(CLUSTER_KINDS), RUN_CALIBRATION_LENGTHS_S, profile.slo_ms, progress, profile.load.load_from)
            calibration.write(args.results, doc)  # the run copies the latest in as it starts
            progress.say(f"   calibration: max error {doc['max_error_ms']:.1f} ms over {len(doc['rows'])} injected outages")
        run_dir = run_matrix(provider, topology, cases, profile, args.results, progress, repeat=plan.repeat, fault_repeat=fault_repeat, eta=eta, share_deployments=share)
        if plan.sweep:
            sweep_after(provider, topology, plan.patterns or list(Pattern), plan.sweep, run_dir, progress)
    summary = write_report(run_dir, Thresholds(max_failed_requests=plan.max_failed_requests))
    elapsed = time.monotonic() - started
    took = run_durations(run_dir)
    progress.say(f"{len(cases)} cases in {elapsed:.0f}s; report: {run_dir / REPORT}")
    if took["plan_error"] is not None and took["harness_overhead_ratio"] is not None:
        progress.say(f"   the trials took {minutes(took['actual_s'])} against {minutes(took['planned_s'])} planned ({took['plan_error']:+.0%}); "
                     f"{minutes(took['under_load_s'])} of it under load (wall / load {took['harness_overhead_ratio']:.2f})")
    for case, problems in summary["failed_claims"].items():
        progress.say(f"   claim failed in {case}: {'; '.join(problems)}")
    print(run_dir / REPORT)
    return 1 if summary["failed_claims"] else 0


def is_up(provider: Any) -> bool:
    """Whether the provider's cluster is there already (one it does not create always is)."""
    return not provider.capabilities.creates_cluster or (isinstance(provider, KnowsIfUp) and provider.is_up())


@contextmanager
def cluster_for(args: argparse.Namespace, provider: Any, up: bool, progress: Progress) -> Iterator[None]:
    """The cluster for one command: brought up if it is not (the local provider only), and
    taken down again afterwards, whatever happened, unless --keep-cluster."""
    if not up and args.provider != "local":
        raise UsageError(f"the {args.provider} cluster is not up: run `patternbench cluster up --provider {args.provider}` first")
    if not up:
        provider.create()
    try:
        yield
    finally:
        if not up and not args.keep_cluster:
            with progress.step("take the local cluster down"):
                provider.delete()
        elif not up:
            progress.say(f"cluster kept: export KUBECONFIG={provider.kubeconfig()}")


def sweep_after(provider: object, topology: object, patterns: list, rates: list[float], run_dir: Path, progress: Progress) -> None:
    """--sweep: latency and cost against load per pattern, into the run's own directory; an
    interrupted sweep still leaves the report of everything measured so far."""

    from patternbench.experiment import mark_interrupted  # brings the kubernetes client: kept off the CLI's start
    from patternbench.pattern_sweep import run_sweeps  # brings the kubernetes client: kept off the CLI's start

    meta_path = run_dir / RUN
    meta = json.loads(meta_path.read_text())
    meta["sweep_rates"] = rates
    meta_path.write_text(json.dumps(meta, indent=1))
    try:
        run_sweeps(provider, topology, patterns, rates, run_dir, progress)
    except BaseException:
        mark_interrupted(run_dir, progress, " in the sweeps")
        raise


def cmd_report(args: argparse.Namespace, progress: Progress) -> int:
    slo_ms = parse_slo_ms(args.slo_ms) if args.slo_ms is not None else None
    summary = write_report(args.run_dir, Thresholds(), slo_ms)
    print(args.run_dir / REPORT)
    return 1 if summary["failed_claims"] else 0


def cmd_calibrate(args: argparse.Namespace, progress: Progress) -> int:
    """Outages of known kind and length against what the probe stream measures; exit 1 when
    an error exceeds the 50 ms the measurement promises."""

    lengths = calibration.parse_lengths(args.lengths)
    slo_ms = parse_slo_ms(args.slo_ms)
    if args.target == "cluster":
        from patternbench.cluster_calibration import CLUSTER_KINDS, check_kinds  # brings the kubernetes client: kept off the CLI's start

        kinds = calibration.parse_kinds(args.kinds) if args.kinds else list(CLUSTER_KINDS)
        check_kinds(kinds)
        if args.provider != "local":
            raise UsageError("calibrate --target cluster injects with iptables on this machine: it needs --provider local")
        load_from = parse_load_from(args.load_from) if args.load_from is not None else "host"
        provider = get_provider("local", _options(args), progress)
        with cluster_for(args, provider, is_up(provider), progress):
            doc = calibrate_on_cluster(provider, kinds, lengths, slo_ms, progress, load_from)
    else:
        if args.load_from is not None:
            raise UsageError("--load-from is for calibrate --target cluster (the local target has no cluster)")
        kinds = calibration.parse_kinds(args.kinds or ",".join(calibration.KINDS))
        rows = calibrate_local(kinds, lengths, slo_ms, progress=progress)
        doc = calibration.document(rows, "local 127.0.0.1", slo_ms, calibration.PROBE_INTERVAL_S)
    path = calibration.write(args.results, doc)
    for r in doc["rows"]:
        r = calibration.Comparison(**r)
        progress.say(f"   {r.kind:<8} injected {r.injected_s:6.3f}s  measured {r.measured_s:6.3f}s  error {r.error_ms:+7.1f} ms")
    progress.say(f"max error {doc['max_error_ms']} ms; wrote {path}")
    print(path)
    return 1 if (doc["max_error_ms"] or 0) > calibration.PROMISED_ERROR_MS else 0


RUN_CALIBRATION_LENGTHS_S = [0.5, 2.0]


def calibrate_on_cluster(provider: object, kinds: list[str], lengths: list[float], slo_ms: float, progress: Progress, load_from: str = "host") -> dict:
    """The calibration document of outages injected at the local cluster's entry, probed from
    where the run's load runs."""
    from patternbench.cluster_calibration import calibrate_cluster  # brings the kubernetes client: kept off the CLI's start

    where = {"host": "NodePort via kube-proxy from this machine", "cluster": "Service address via the load node's kube-proxy from the prober pod"}[load_from]
    with progress.step(f"calibrate at the cluster's entry ({load_from}): {', '.join(kinds)} x {', '.join(f'{x:g}s' for x in lengths)}"):
        rows = calibrate_cluster(provider, load_topology(), kinds, lengths, slo_ms, progress=progress, load_from=load_from)
    doc = calibration.document(rows, f"local cluster entry ({where}, control pattern)", slo_ms, calibration.PROBE_INTERVAL_S)
    return {**doc, "load_from": load_from}


def cmd_compare(args: argparse.Namespace, progress: Progress) -> int:
    rows = compare(load_baseline(args.baseline), load_summary(args.run_dir), subset=args.subset)
    print(format_table(rows))
    worse = [r for r in rows if r.regressed]
    for r in worse:
        print(f"patternbench: regression in {r.case}: {r.figure} is {r.current:.3g}, baseline {r.baseline:.3g} (+{r.delta:.3g}, limit {r.limit:.3g})", file=sys.stderr)
    return 1 if worse else 0


def cmd_baseline(args: argparse.Namespace, progress: Progress) -> int:
    summaries = [load_summary(d) for d in args.run_dirs]
    existing = load_baseline(args.baseline) if args.baseline.exists() else None
    doc = update_baseline(existing, summaries, args.provider)
    args.baseline.parent.mkdir(parents=True, exist_ok=True)
    args.baseline.write_text(json.dumps(doc, indent=1, sort_keys=True) + "\n")
    progress.say(f"baseline {args.baseline}: {len(doc['cases'])} cases, folded {len(summaries)} run(s)")
    return 0


def cmd_clean(args: argparse.Namespace, progress: Progress) -> int:
    if args.results.exists():
        shutil.rmtree(args.results, ignore_errors=True)
        progress.say(f"removed {args.results}")
    else:
        progress.say(f"nothing to remove at {args.results}")
    if args.cache:
        shutil.rmtree(cache_root(), ignore_errors=True)
        progress.say(f"removed {cache_root()}")
    return 0


COMMANDS = {"setup": cmd_setup, "cluster": cmd_cluster, "images": cmd_images, "deploy": cmd_deploy, "undeploy": cmd_undeploy, "run": cmd_run, "scale": cmd_scale, "report": cmd_report, "calibrate": cmd_calibrate, "compare": cmd_compare, "baseline": cmd_baseline, "clean": cmd_clean}


class Terminated(KeyboardInterrupt):
    """SIGTERM (CI's timeout, `kill`, a container stop) taken like Ctrl-C: every cleanup
    that an interrupt runs (the partial report, undeploy, the cluster this command brought up)
    runs for it too, where Python's default would end the process on the spot."""


@contextmanager
def terminate_as_interrupt() -> Iterator[None]:
    """The first SIGTERM raises Terminated in the main thread while inside (later ones wait for
    the cleanup); the old handler after."""

    def raise_terminated(signum: int, frame: Any) -> None:
        # Once: a second SIGTERM must not cut the cleanup the first one started (SIGKILL still ends it).
        signal.signal(signal.SIGTERM, lambda *_: print("patternbench: already stopping, cleaning up", file=sys.stderr))
        raise Terminated()

    if threading.current_thread() is not threading.main_thread():
        yield
        return
    previous = signal.signal(signal.SIGTERM, raise_terminated)
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, previous)


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    progress = Progress()
    try:
        with terminate_as_interrupt():
            return COMMANDS[args.command](args, progress)
    except UsageError as exc:
        print(f"patternbench: {exc}", file=sys.stderr)
        return 2
    except StepFailed as exc:
        print(f"patternbench: step {exc.step!r} failed: {exc.reason}" + (f" ({exc.log_hint})" if exc.log_hint else ""), file=sys.stderr)
        return 2
    except Terminated:
        print("patternbench: terminated (SIGTERM); what ran was cleaned up", file=sys.stderr)
        return 143
    except KeyboardInterrupt:
        print("patternbench: interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
