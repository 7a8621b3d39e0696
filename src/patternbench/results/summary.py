"""Raw records of a case -> its summary entry; the seed's claims -> pass/fail checks.

`summarize_case` only reads files a case wrote, so `patternbench report DIR` can rebuild
every number from the raw records, and a case cut short still summarizes what it has.
"""

from __future__ import annotations

import json
import statistics
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

from patternbench import measure
from patternbench.load.conntrack import bindings
from patternbench.load.runner import read_jsonl
from patternbench.measure import attribution
from patternbench.measure.apiserver import STEADY, UPGRADE, figures_between
from patternbench.observe.host import PRESSURE_INTERVAL_S
from patternbench.results.rundir import (
    APISERVER,
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
    REQUESTS,
    RESOURCES,
    SCHED,
    SINK,
    TIMELINE,
    TRIPWIRE,
)
from patternbench.results.verdicts import Thresholds, causes_text, charged_failures
from patternbench.specs.agents import AGENTS, AgentKind, Placement, agent_by_container, agent_spec, upgradable_spec
from patternbench.specs.faults import fault_spec
from patternbench.specs.patterns import case_pattern_spec, pattern_spec
from patternbench.specs.topology import Agents

SCHEMA_VERSION = 1


def _read_json(path: Path, unreadable: list[str]) -> Any:
    """A case file's JSON; None when the case never wrote it (`missing` lists it). A file cut
    short (the run interrupted mid-write) is no silent {}: its name joins `unreadable`."""
    try:
        return json.loads(path.read_text())
    except OSError:
        return None
    except ValueError:
        unreadable.append(path.name)
        return None


def _round(value: float | None) -> float | None:
    return None if value is None else round(value, 3)


def _pods_per_node(deployment: dict[str, Any]) -> dict[str, int] | None:
    placement = deployment.get("placement")
    if not placement:
        return None
    counts: dict[str, int] = {}
    for pod in placement:
        if pod.get("role") == "app":
            counts[pod["node"]] = counts.get(pod["node"], 0) + 1
    return dict(sorted(counts.items()))


FAULT_KEYS = ("blast_radius", "affected_pods", "affected_nodes", "recovery_s")


# A pod admitted just before the fault was in place reaches the pod watch a moment later.
ADMISSION_SLACK_S = 1.0


def _admission(case: dict[str, Any], in_place: float, end: float, pods: list, events: list | None) -> dict[str, Any]:
    """What the injector's fault did to pod creation: creations refused (the controllers'
    events), app pods created while it was in place (the pod watch), app pods admitted
    without the upgraded agent's sidecar over the whole case."""
    container = upgradable_spec(case["agent"]).container if case.get("agent") else ""
    return {
        "pod_creations_refused": measure.webhook_refusals(events) if events is not None else None,
        "app_pods_created_during_fault": len(measure.pods_created(pods, "app", in_place + ADMISSION_SLACK_S, end)),
        "app_pods_without_sidecar": measure.pods_without(pods, "app", container) if container else None,
    }


def _fault_entry(case: dict[str, Any], marks: dict[str, Any], users: list, probes: list, pods: list, end: float, events: list | None = None) -> dict[str, Any]:
    """The fault's cost (`fault`), and its headline figures at the top level of the entry."""
    start_mark = marks.get("fault_start")
    if not start_mark:
        return {"fault": None, **{k: None for k in FAULT_KEYS}}
    target = start_mark.get("target") or {}
    instance = None
    hit = agent_by_container(target.get("container") or "")
    placement = pattern_spec(case["pattern"]).placement_of(hit.name) if hit is not None else None
    if hit is not None and hit.kind is AgentKind.MESH and placement is not None:
        # The proxy instance the fault hit, as Via names it: '<mode>/<pod>' for a proxy in a
        # pod (a sidecar, a waypoint), '<mode>/<node>' for a node's proxy.
        mode = hit.proxy_mode(placement)
        instance = f"{mode.name}/{target['pod'] if mode.in_pod or mode.own_pod else target['node']}"
    fault_end = marks.get("fault_end", {}).get("t", end)
    impact = measure.fault_impact(
        users, probes, pods, start_mark["t"], fault_end, end, instance, target.get("pod"), target.get("container"),
    )
    spec = fault_spec(start_mark["fault"])
    fault = {
        "kind": spec.name, "what": spec.what, "duration_s": start_mark.get("duration_s"), "target": target or None,
        "instance": instance, **impact,
        "upgrade_completed": ("upgrade_end" in marks) if spec.during_upgrade else None,
        **(_admission(case, marks.get("fault_in_place", start_mark)["t"], fault_end, pods, events) if spec.target == "injector" else {}),
    }
    return {"fault": fault, **{k: impact[k] for k in FAULT_KEYS}}


ANSWERS_KEPT, ANSWER_SHOWN = 5, 400  # error answers kept per trial, and characters of each


def _attributed(
    case_dir: Path, deployment: dict[str, Any], users: list, probes: list, pods: list, start: float, end: float,
    activity: list[tuple[float, float]], outages: list[tuple[float, float]],
) -> dict[str, Any]:
    """failures_by_cause over the same requests as failed_requests, and the count per owner."""
    failed = [r for r in measure.in_window(users, start, end) + measure.in_window(probes, start, end) if not measure.ok(r)]
    events = case_dir / CONNTRACK_EVENTS
    pressure = read_jsonl(case_dir / PRESSURE)
    ev = attribution.Evidence(
        service=attribution.ServiceTimeline.of(read_jsonl(case_dir / ENDPOINTS), deployment.get("entry_service") or ""),
        pods=pods,
        windows=activity,
        bindings=bindings(events.read_text(errors="replace").splitlines()) if events.exists() else {},
        outages=outages,
        rejected=attribution.Evidence.rejections(probes),
        unnated=attribution.Evidence.tripwire(read_jsonl(case_dir / TRIPWIRE), urlsplit(deployment.get("entry_url") or "").port or 0),
        stalls=measure.stalled_spans(pressure, PRESSURE_INTERVAL_S),
        saturated=[(s["from"], s["to"]) for s in measure.saturated_spans(pressure, PRESSURE_INTERVAL_S)],
    )
    counts = attribution.failures_by_cause(failed, ev)
    # What the chain itself said, for the failures answered with an error status (the app's
    # JSON names the hop that failed): the first few, seconds from the window's start.
    answers = [{"t_s": round(r["t"] - start, 3), "kind": r.get("kind"), "status": r.get("status"), "answer": r["answer"][:ANSWER_SHOWN]}
               for r in sorted(failed, key=lambda r: r["t"]) if r.get("answer")][:ANSWERS_KEPT]
    return {"failures_by_cause": counts, **{f"{owner}_failures": n for owner, n in attribution.by_owner(counts).items()}, "failed_answers": answers}


def _entry_proxy(case_dir: Path) -> dict[str, Any] | None:
    """What the host's kube-proxy (every probe's NAT) programmed during the case, and how late."""
    start, end = case_dir / "metrics" / "kube-proxy-host.start.prom", case_dir / "metrics" / "kube-proxy-host.end.prom"
    if not (start.exists() and end.exists()):
        return None
    return measure.proxy_programming(start.read_text(), end.read_text())


def is_agent_sample(sample: dict[str, Any]) -> bool:
    """A resource sample of an agent's container (any registered agent, agent files' too)."""
    prefixes = tuple(name for a in AGENTS.values() for name in a.container_names)
    return sample.get("container", "").startswith(prefixes) and sample.get("container") != "logsink"


def case_slo_ms(case: dict[str, Any], override: float | None = None) -> float:
    """The deadline a case is measured with: the override, else the one it ran with."""
    if override is not None:
        return float(override)
    return float((case.get("profile") or {}).get("slo_ms") or measure.DEFAULT_SLO_MS)


def summarize_case(case_dir: Path, slo_ms: float | None = None) -> dict[str, Any]:
    """One summary entry from a case directory; `missing` lists what the case never wrote.
    `slo_ms` overrides the deadline the case ran with (re-measuring with another one)."""
    unreadable: list[str] = []
    case = _read_json(case_dir / CASE, unreadable) or {}
    deployment = _read_json(case_dir / DEPLOYMENT, unreadable) or {}
    marks = {m["phase"]: m for m in read_jsonl(case_dir / TIMELINE)}
    requests = read_jsonl(case_dir / REQUESTS)
    pods = read_jsonl(case_dir / PODS)
    users = [r for r in requests if r.get("kind") == "user"]
    probes = [r for r in requests if r.get("kind") == "probe"]
    # A gRPC stream's first message carries its path (grpcload): it is a request's trail too.
    carried = users + [r for r in requests if r.get("kind") == "msg" and "calls" in r]
    samples = read_jsonl(case_dir / RESOURCES)
    load_summary = _read_json(case_dir / LOAD_SUMMARY, unreadable) or {}
    sink = _read_json(case_dir / SINK, unreadable)
    missing = [name for name in (DEPLOYMENT, REQUESTS, PODS_AFTER, LOAD_SUMMARY) if not (case_dir / name).exists()]

    entry: dict[str, Any] = {
        "case": case.get("id", case_dir.name), "pattern": case.get("pattern"), "agent": case.get("agent"), "naive": case.get("naive", False),
        "upgrade_strategy": case.get("upgrade", "rolling") if case.get("agent") else None,
        "injection": case.get("injection", "client"),
        # A trial on a deployment that earlier trials used; its upgrade's direction (v2 -> v1 rolls back).
        "fresh_deployment": case.get("fresh_deployment", True),
        "upgrade_versions": case.get("upgrade_versions"),
    }
    last_t = max((r["t"] for r in requests), default=0.0)
    start = marks.get("before", {}).get("t", marks.get("warmup", {}).get("t", 0.0))
    end = marks.get("end", {}).get("t", last_t)
    up_start = marks.get("upgrade_start", {}).get("t")
    up_end = marks.get("upgrade_end", {}).get("t")
    if up_start is not None and up_end is None and "upgrade_failed" not in marks:
        missing.append("upgrade_end")
    fault_start = marks.get("fault_start", {}).get("t")
    if fault_start is not None and "fault_end" not in marks:
        missing.append("fault_end")
    # Failures that an upgrade causes may land just after its end: count to the end of the run.
    window_start = next((t for t in (fault_start, up_start) if t is not None), start)
    entry["slo_ms"] = case_slo_ms(case, slo_ms)
    entry.update(measure.availability(users, probes, window_start, end, entry["slo_ms"]))
    activity = [(t, end + attribution.SLACK_S) for t in (fault_start, up_start) if t is not None][:1]
    outage = fault_start is not None and fault_spec(marks["fault_start"]["fault"]).target == "apiserver"
    entry.update(_attributed(case_dir, deployment, users, probes, pods, window_start, end, activity, activity if outage else []))
    entry["measured_requests"] = len(measure.in_window(users, start, end)) + len(measure.in_window(probes, start, end))
    before_end = up_start if up_start is not None else marks.get("after", {}).get("t", end)
    entry["latency_ms"] = {
        "before": measure.latency_ms(measure.in_window(users, start, before_end)),
        "during": measure.latency_ms(measure.in_window(users, up_start, up_end)) if up_start and up_end else None,
        "after": measure.latency_ms(measure.in_window(users, up_end or before_end, end)),
    }
    entry.update(measure.hop_summary(measure.in_window(carried, start, end)))
    entry["workload"] = (case.get("profile") or {}).get("load", {}).get("workload", "http")
    entry.update(measure.long_lived(requests, window_start, end))
    before, after = _read_json(case_dir / PODS_BEFORE, unreadable), _read_json(case_dir / PODS_AFTER, unreadable)
    entry.update(measure.pod_changes(before, after) if before is not None and after is not None else {"app_pods_recreated": None, "app_container_restarts": None})
    entry["app_pods"] = deployment.get("app_pods")
    entry["app_pod_start_s"] = measure.pod_start_s(pods)
    entry["containers_total"] = deployment.get("containers_live")
    entry["containers_formula"] = deployment.get("containers_formula")
    entry["agent_cpu_requested_m"] = deployment.get("agent_cpu_requested_m")
    entry["nodes"] = deployment.get("nodes")
    entry["pods_per_node"] = _pods_per_node(deployment)
    entry.update(measure.agent_resources(samples, is_agent_sample))
    offsets = [m["wall"] - m["t"] for m in marks.values() if "wall" in m]
    entry["agent_age_s"] = measure.agent_age_s(samples, is_agent_sample, pods, statistics.median(offsets) if offsets else None)
    # Starvation, visible: each container's share of runnable time spent waiting for a CPU,
    # and the host's CPU pressure, over the measured window.
    entry["cpu_wait"] = measure.run_queue_wait(read_jsonl(case_dir / SCHED), pods, start, end) or None
    entry["host_cpu_pressure"] = measure.cpu_pressure(read_jsonl(case_dir / PRESSURE), start, end)
    # When the host was CPU-saturated and what ran then, seconds from the window's start.
    entry["host_saturation"] = [{**s, "from": round(s["from"] - start, 2), "to": round(s["to"] - start, 2)}
                                for s in measure.saturated_spans(read_jsonl(case_dir / PRESSURE), PRESSURE_INTERVAL_S, start, end)]
    entry["entry_proxy"] = _entry_proxy(case_dir)
    # The API server's side over the steady phase (open watches, watch events, its CPU) and
    # over the upgrade (the endpoint changes it fanned out to every watcher).
    scrapes = read_jsonl(case_dir / APISERVER)
    entry["apiserver"] = figures_between(scrapes, STEADY)
    entry["apiserver_upgrade"] = figures_between(scrapes, UPGRADE)
    per_agent = measure.requests_per_agent(measure.in_window(carried, start, end))
    entry["requests_per_agent"] = per_agent
    entry["request_grouping"] = measure.grouping(per_agent)
    entry["node_rollouts"], entry["max_nodes_down_at_once"] = None, None
    if up_start is not None and up_end is not None:
        rollouts = measure.node_rollouts(pods, up_start, end)
        if rollouts:
            entry["node_rollouts"] = [
                {"workload": r.workload, "node": r.node, "old_stopped_s": _round(r.old_stopped_s), "new_ready_s": _round(r.new_ready_s), "down_s": _round(r.down_s)}
                for r in rollouts
            ]
            entry["max_nodes_down_at_once"] = measure.max_concurrent([i for r in rollouts if (i := r.down_interval)])
    if sink:
        entry["log_lines_lost"] = sink["total"]["missing"]
        entry["log_lines_duplicated"] = sink["total"]["duplicated"]
        entry["log_lines_received"] = sink["total"]["received"]
        entry["log_delivery_lag_s"] = sink.get("lag")
        entry["log_max_batch_lines"] = sink.get("max_batch_lines")
        # Lines without the run's token (not this run's apps): refused by the sink, not counted.
        entry["log_lines_foreign"] = sink.get("foreign")
    else:
        entry["log_lines_lost"] = entry["log_lines_duplicated"] = None
    entry["upgrade_duration_s"] = round(up_end - up_start, 3) if up_start and up_end else None
    entry["upgrade_error"] = marks.get("upgrade_failed", {}).get("error")
    entry.update(_fault_entry(case, marks, users, probes, pods, end, _read_json(case_dir / EVENTS, unreadable)))
    entry["load"] = load_summary
    # Where the load ran, as the load itself reported it (runner.py, cluster_load.py).
    entry["load_from"] = load_summary.get("load_from")
    entry["invalid"] = bool(load_summary.get("cpu_warning"))
    entry["missing"] = missing + [f"{name} (not valid JSON)" for name in unreadable] + load_gaps(marks, load_summary, carried)
    return entry


def load_gaps(marks: dict[str, Any], load_summary: dict[str, Any], users: list[dict[str, Any]]) -> list[str]:
    """What makes the load's records incomplete: a failed in-cluster load, errors inside the
    users' task (no request was recorded for them), or a run with load but no request."""
    gaps = []
    if marks.get("load_failed"):
        gaps.append(f"the load's records ({marks['load_failed'].get('error')})")
    if load_summary.get("exceptions"):
        gaps.append(f"the load's requests ({load_summary['exceptions']} errors inside Locust's users: see locust.log or the load pods)")
    if load_summary and not users:
        gaps.append("the load's requests (none recorded)")
    if (load_summary.get("grpc") or {}).get("missing"):
        gaps.append("the gRPC load's summary (grpcload did not finish: see grpcload.log)")
    return gaps


def expected_proxies(pattern: str, calls_per_request: int, mesh: bool = True, cross_node_share: float | None = None) -> float | None:
    """Proxy hops per request the pattern implies: each call passes two proxies; with mesh
    sidecars the entry request also passes the entry pod's inbound sidecar; through ambient
    L4 proxies alone, one per call within a node and two across (`cross_node_share`)."""
    return pattern_spec(pattern).expected_proxies(calls_per_request, mesh, cross_node_share)


# proxies_per_request and cross_node_share are rounded (3 and 4 decimals) before they meet.
PROXY_SLACK = 0.01


def check_claims(
    entry: dict[str, Any], calls_per_request: int, thresholds: Thresholds = Thresholds(), agents: Agents = Agents(),
) -> list[str]:
    """The seed's claims for one case; returns what did not hold (empty: all held). `agents`
    are the ones the case's topology ran (deployment.json): without the mesh no proxy is expected."""
    failures: list[str] = []
    pattern, agent, naive = entry["pattern"], entry["agent"], entry["naive"]
    spec = case_pattern_spec(pattern, agent)
    mesh = any(agents.instances(a) for a in AGENTS.values() if a.kind is AgentKind.MESH)
    if entry.get("missing"):
        failures.append(f"the case is incomplete: missing {', '.join(entry['missing'])}")
    if entry["containers_total"] != entry["containers_formula"]:
        failures.append(f"live containers {entry['containers_total']} != formula {entry['containers_formula']}")
    # Where the proxies depend on placement (an L4 proxy dials a same-node pod itself), the
    # expectation follows from the measured share of calls that crossed nodes.
    share = entry.get("cross_node_share")
    want = spec.expected_proxies(calls_per_request, mesh, share)
    if entry.get("proxies_per_request") is not None and (want is None or abs(entry["proxies_per_request"] - want) > PROXY_SLACK):
        failures.append(f"proxies per request {entry['proxies_per_request']} != {want} that the {pattern} pattern implies")
    hops = entry.get("hops") or {}
    if hops:
        want_hops = spec.hop_counts(calls_per_request, mesh, share)
        if hops.get("unknown"):
            failures.append(f"{hops['unknown']} hops per request could not be placed on a node")
        total = round(sum(hops.values()), 3)
        if want_hops is None or abs(total - want_hops["total"]) > PROXY_SLACK or hops.get("loopback", 0) != want_hops["loopback"]:
            failures.append(f"hops per request {hops} != {want_hops} that the {pattern} pattern implies")
    if entry.get("max_nodes_down_at_once") is not None and entry["max_nodes_down_at_once"] > 1:
        failures.append(f"{entry['max_nodes_down_at_once']} nodes had their agent down at once during the DaemonSet rollout")
    if (entry.get("unattributed_failures") or 0) > thresholds.max_failed_requests:
        failures.append(f"{entry['unattributed_failures']} failed requests have no cause the evidence decides ({causes_text(entry)})")
    fault = entry.get("fault")
    if fault:
        failures += fault_claims(entry, fault, thresholds)
    if agent and (fault is None or fault["upgrade_completed"] is not None):
        # A node agent's or a per-service agent's upgrade must leave the app pods alone.
        node_agent = spec.placement_of(agent) in (Placement.NODE, Placement.SERVICE)
        in_place = entry.get("upgrade_strategy") == "in-place"
        if node_agent and (entry["app_pods_recreated"] or entry["app_container_restarts"]):
            failures.append(f"a node-agent upgrade touched the app: {entry['app_pods_recreated']} pods recreated, {entry['app_container_restarts']} containers restarted")
        if in_place and (entry["app_pods_recreated"] or entry["app_container_restarts"] != entry.get("app_pods")):
            failures.append(f"an in-place sidecar upgrade recreated {entry['app_pods_recreated']} app pods and restarted {entry['app_container_restarts']} containers (want 0 and exactly one per pod, {entry.get('app_pods')})")
        if not node_agent and not in_place and entry["app_pods_recreated"] != entry.get("app_pods"):
            failures.append(f"a sidecar upgrade recreated {entry['app_pods_recreated']} of {entry.get('app_pods')} app pods")
        if not naive and not fault and charged_failures(entry) > thresholds.max_failed_requests:
            failures.append(f"{charged_failures(entry)} requests failed during the upgrade (threshold {thresholds.max_failed_requests}; {causes_text(entry)}); downtime {entry['downtime_s']}s")
        if not naive and not fault and entry.get("workload", "http") != "http":
            failures += long_lived_claims(entry, thresholds)
        log_agent = agent_spec(agent).kind is AgentKind.LOG
        if log_agent and spec.lossless_log_upgrade and (entry["log_lines_lost"] or 0) > thresholds.max_log_lines_lost:
            failures.append(f"{entry['log_lines_lost']} log lines lost in a DaemonSet log-agent upgrade")
        if log_agent and not naive:
            # Each replaced agent resumes from its checkpoint: at most one batch again per instance.
            replaced = entry.get("nodes") if node_agent else entry.get("app_pods")
            repeated, batch = entry.get("log_lines_duplicated") or 0, entry.get("log_max_batch_lines") or 0
            if replaced and repeated > batch * replaced:
                failures.append(f"the log-agent upgrade repeated {repeated} log lines, more than one batch ({batch}) for each of the {replaced} agents replaced")
    return failures


def long_lived_claims(entry: dict[str, Any], thresholds: Thresholds) -> list[str]:
    """What the model says an upgrade owes long-lived traffic (issue 24): a stream broken by
    it is a failed request, and a proxy that goes away drains its HTTP/2 connections with a
    GOAWAY, never cutting one silently. (Failed RPCs are failed requests already.)"""
    out = []
    if (entry.get("streams_broken") or 0) > thresholds.max_failed_requests:
        out.append(f"{entry['streams_broken']} gRPC streams broke during the upgrade (threshold {thresholds.max_failed_requests}; {entry.get('streams_broken_by')})")
    cut = (entry.get("connections_replaced") or 0) - (entry.get("connections_goaway") or 0)
    if cut > 0:
        out.append(f"{cut} HTTP/2 connections ended without a GOAWAY ({entry.get('connections_replaced_by')})")
    return out


# Slack on the model's bound for a dead proxy instance: requests in flight when it died and
# the probe stream's own timing make the measured share noisy by a few percent.
BLAST_RADIUS_SLACK = 0.1


def fault_claims(entry: dict[str, Any], fault: dict[str, Any], thresholds: Thresholds) -> list[str]:
    """What the model says any fault may cost, and then what its own FaultSpec claims
    (faults.py); returns what did not hold.

    - A dead or hung proxy instance can fail only the requests whose path passes it: the
      blast radius stays within the share of traffic it carried before (plus slack).
    - A rollout survives a fault in its middle: it completes.
    """
    out: list[str] = []
    kind = fault["kind"]
    spec = fault_spec(kind)
    expected = fault.get("expected_blast_radius")
    if expected is not None and fault["blast_radius"] > expected + BLAST_RADIUS_SLACK:
        out.append(f"{kind}: {fault['blast_radius']:.0%} of requests failed in the fault window, more than the {expected:.0%} that passed {fault['instance']}")
    own = spec.claims(entry, fault, thresholds) if spec.claims is not None else []
    completed = [f"{kind}: the rollout did not complete ({entry.get('upgrade_error')})"] if fault.get("upgrade_completed") is False else []
    # The injector's claims are about the stalled rollout, so they follow its own.
    return out + (own + completed if spec.target != "injector" else completed + own)
