"""summary.json, report.md and the plots of a run directory, rebuilt from its raw records."""

from __future__ import annotations

import json
import statistics
from pathlib import Path
from typing import Any

from patternbench.calibration import CALIBRATION_FILE, load_calibration
from patternbench.errors import UsageError
from patternbench.load.runner import read_jsonl
from patternbench.load.sweep import render_sweep_plots
from patternbench.measure.attribution import CAUSES, by_owner
from patternbench.render import AGENT_CPU_M
from patternbench.results.agents_beside import agents_beside_text
from patternbench.results.answer import answer_text
from patternbench.results.durations import timeline_marks
from patternbench.results.plots import pyplot, save
from patternbench.results.report_format import fmt, pct, pick_case
from patternbench.results.rundir import CASE, DEPLOYMENT, REPORT, REQUESTS, RUN, SUMMARY, load_sweeps
from patternbench.results.summary import SCHEMA_VERSION, check_claims, summarize_case
from patternbench.results.trials import aggregate, differences, metric_values
from patternbench.results.verdicts import Thresholds
from patternbench.specs.agent_file import register_run_agents
from patternbench.specs.agents import AGENTS, AgentKind, agent_spec
from patternbench.specs.faults import FAULTS
from patternbench.specs.figures import columns, figure, plotted
from patternbench.specs.patterns import PATTERNS, PatternSpec
from patternbench.specs.topology import Agents, Service, Topology, containers_formula, parse_agents


def case_dirs(run_dir: Path) -> list[Path]:
    return sorted(p.parent for p in run_dir.glob("*/case.json"))


def _case_file(case_dir: Path, name: str) -> dict[str, Any]:
    """A case's JSON file, {} when absent or unreadable (summarize_case lists it as missing)."""
    try:
        doc = json.loads((case_dir / name).read_text())
    except (OSError, ValueError):
        return {}
    return doc if isinstance(doc, dict) else {}


def build_summary(run_dir: Path, thresholds: Thresholds = Thresholds(), slo_ms: float | None = None) -> dict[str, Any]:
    """Every case's entry from its trials' raw records; the claims are checked on each trial.
    `slo_ms` re-measures downtime with another deadline than the run's."""

    register_run_agents(run_dir)  # the run's own agent files, so its agents are known
    dirs = case_dirs(run_dir)
    if not dirs and not load_sweeps(run_dir):
        raise UsageError(f"{run_dir} holds no experiment case (no */case.json) and no sweep")
    by_case: dict[str, list[dict[str, Any]]] = {}
    for d in dirs:
        entry = summarize_case(d, slo_ms)
        entry["trial"] = int(_case_file(d, CASE).get("trial", 1))
        entry["dir"] = d.name
        deployment = _case_file(d, DEPLOYMENT)
        if deployment and "agents" in deployment:
            problems = check_claims(entry, deployment.get("calls_per_request", 0), thresholds, parse_agents(deployment["agents"]))
        elif deployment:  # which agents ran is unknown: no claim is checked against a guess
            problems = [f"{DEPLOYMENT} does not say which agents ran; its claims cannot be checked"]
        else:
            problems = [f"the case is incomplete: missing {', '.join(entry['missing']) or DEPLOYMENT}; its claims cannot be checked"]
        entry["claims_failed"] = problems
        by_case.setdefault(entry["case"], []).append(entry)
    cases, failures = {}, {}
    for name, trial_entries in by_case.items():
        trial_entries.sort(key=lambda e: e["trial"])
        many = len(trial_entries) > 1
        problems = [(f"trial {e['trial']}: " if many else "") + p for e in trial_entries for p in e["claims_failed"]]
        entry = aggregate(trial_entries)
        entry["claims_failed"] = problems
        # Causes add up over the trials: every failed request of every trial is explained.
        entry["failures_by_cause"] = sum_causes(e.get("failures_by_cause") for e in trial_entries)
        cases[name] = entry
        if problems:
            failures[name] = problems
    meta = json.loads((run_dir / RUN).read_text()) if (run_dir / RUN).exists() else {}
    planned = meta.get("cases_planned") or []
    order = {name: i for i, name in enumerate(planned)}
    cases = dict(sorted(cases.items(), key=lambda kv: (order.get(kv[0], len(order)), kv[0])))
    return {
        "schema": SCHEMA_VERSION,
        "run_id": run_dir.name,
        **meta,
        "cases": cases,
        "failed_claims": failures,
        "invalid_cases": [c for c, e in cases.items() if e["invalid"]],
        "incomplete_cases": [c for c, e in cases.items() if e["missing"]],
        "cases_not_run": [c for c in planned if c not in cases],
        "failures_by_cause": sum_causes(e.get("failures_by_cause") for e in cases.values()),
        "differences": differences(cases),
        "calibration": load_calibration(run_dir),
        "sweeps": load_sweeps(run_dir),
    }


def sum_causes(parts: Any) -> dict[str, int]:
    """{cause: count} added over several entries (`unattributed` always present)."""
    total: dict[str, int] = {"unattributed": 0}
    for part in parts:
        for name, n in (part or {}).items():
            total[name] = total.get(name, 0) + n
    return total


def contention_text(cases: dict[str, Any]) -> list[str]:
    """Starvation made visible: per case, the host's CPU pressure and, per container, the
    share of its runnable time it waited for a CPU (medians of the trials)."""
    rows = [(name, e) for name, e in cases.items() if e.get("cpu_wait") or e.get("host_cpu_pressure") is not None]
    if not rows:
        return []
    out = [
        "## CPU contention", "",
        "Host CPU pressure is the share of time some runnable task waited for a CPU (PSI); per container, the share of its runnable time it waited "
        "(run-queue wait from schedstat) and the CPU it used, over the measured window (first trial). Latency and sweep results above were measured under this contention.", "",
        "The entry's kube-proxy column is the host kube-proxy's network programming latency during the case (from an endpoint change in the API "
        "to its rules in place; p50 / p99 as histogram bucket bounds) and the changes it programmed: while a change is not programmed, new "
        "connections still go to the old endpoints.", "",
        "| case | host CPU pressure | app wait | agents: wait (CPU s) | entry kube-proxy: programmed, p50 / p99 s |", "|---|---|---|---|---|",
    ]
    for name, e in rows:
        waits = e.get("cpu_wait") or {}
        app = waits.get("app") or {}
        agents = ", ".join(f"{c} {pct(w.get('wait_share'))} ({fmt(w.get('cpu_s'))})" for c, w in waits.items() if c != "app")
        proxy = e.get("entry_proxy") or {}
        programmed = f"{proxy.get('programmed')}, {fmt(proxy.get('p50_s'))} / {fmt(proxy.get('p99_s'))}" if proxy else "–"
        out.append(f"| {name} | {pct(e.get('host_cpu_pressure'))} | {pct(app.get('wait_share'))} | {agents or '–'} | {programmed} |")
    return out + [""]


def causes_text(summary: dict[str, Any]) -> list[str]:
    """Every failed request with its cause (attribution.py), per case and for the run."""

    total = summary.get("failures_by_cause") or {}
    if not sum(total.values()):
        return ["## Failed requests by cause", "", "No request failed in any measured window.", ""]
    used = [name for name in CAUSES if any((e.get("failures_by_cause") or {}).get(name) for e in summary["cases"].values())]
    out = [
        "## Failed requests by cause", "",
        "Every failed request is charged, from the evidence its case captured, to the pattern, to the harness or local provider, "
        "or left unattributed; claims fail on the pattern's and the unattributed ones. Counts add up over trials.", "",
        "| case | failed | pattern | harness | unattributed | " + " | ".join(used) + " |",
        "|---|---|---|---|---|" + "---|" * len(used),
    ]
    for name, e in summary["cases"].items():
        counts = e.get("failures_by_cause") or {}
        if not sum(counts.values()):
            continue
        owners = by_owner(counts)
        out.append(f"| {name} | {sum(counts.values())} | {owners['pattern']} | {owners['harness']} | {owners['unattributed']} | " + " | ".join(str(counts.get(c, 0)) for c in used) + " |")
    out += ["", *[f"- **{c}** ({CAUSES[c].owner}): {CAUSES[c].meaning}." for c in used], ""]
    answered = [(name, t, a) for name, e in summary["cases"].items() for t in (e.get("trials") or [e]) for a in t.get("failed_answers") or []]
    if answered:
        out += ["What the chain answered, for the failures answered with an error status (seconds from the upgrade's or fault's start):", ""]
        out += [f"- {name} (trial {t.get('trial', 1)}), {a['kind']} at {a['t_s']} s, HTTP {a['status']}: `{' '.join(a['answer'].split())}`" for name, t, a in answered]
        out.append("")
    return out


def render_markdown(summary: dict[str, Any]) -> str:
    cases = summary["cases"]
    lines = [f"# patternbench report — {summary['run_id']}", ""]
    if summary.get("interrupted"):
        lines += ["**This run was interrupted**: the numbers below are what was measured before it stopped.", ""]
    if summary["incomplete_cases"]:
        lines += [f"Incomplete cases: {', '.join(summary['incomplete_cases'])}.", ""]
    if summary.get("cases_not_run"):
        lines += [f"Cases planned but not run: {', '.join(summary['cases_not_run'])}.", ""]
    if summary["invalid_cases"]:
        lines += [f"**Invalid** (Locust warned that its CPU was saturated, so its timings are not trustworthy): {', '.join(summary['invalid_cases'])}.", ""]
    lines += answer_text(summary)
    lines += [
        "## Side by side", "",
        "| case | containers (live / formula) | proxies per request | hops loopback / same node / cross node | calls crossing nodes | p50 / p99 ms before | p99 ms during | failed requests | downtime s | max outage s | app pods recreated | app restarts | agent CPU m | agent MiB | log lines lost / dup | upgrade s |",
        "|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    for name, e in cases.items():
        before = e["latency_ms"]["before"]
        during = e["latency_ms"]["during"] or {}
        hops = e.get("hops") or {}
        lines.append(
            f"| {name} | {fmt(e['containers_total'])} / {fmt(e['containers_formula'])} | {fmt(e['proxies_per_request'])} "
            f"| {fmt(hops.get('loopback', 0))} / {fmt(hops.get('same_node', 0))} / {fmt(hops.get('cross_node', 0))} | {pct(e.get('cross_node_share'))} | {fmt(before['p50'])} / {fmt(before['p99'])} "
            f"| {fmt(during.get('p99'))} | {e['failed_requests']} of {e['total_requests']} | {fmt(e['downtime_s'])} | {fmt(e['max_outage_s'])} "
            f"| {fmt(e['app_pods_recreated'])} | {fmt(e['app_container_restarts'])} | {fmt(e['agent_cpu_m_total'])} | {fmt(e['agent_memory_mib_total'])} "
            f"| {fmt(e['log_lines_lost'])} / {fmt(e['log_lines_duplicated'])} | {fmt(e['upgrade_duration_s'])} |"
        )
    lines += ["", *claims_text(cases), "", *agents_beside_text(cases, summary.get("failed_claims") or {}), *lifecycle_text(cases), *nodes_text(cases), "", *faults_text(cases), "", *long_lived_text(cases)]
    lines += [*trials_text(summary), *differences_text(summary), *sweeps_text(summary), *calibration_text(summary)]
    lines += causes_text(summary)
    lines += contention_text(cases)
    lines += ["## Claims checked", ""]
    if summary["failed_claims"]:
        for case, problems in summary["failed_claims"].items():
            lines += [f"- **{case}**: " + "; ".join(problems)]
    else:
        lines += ["Every asserted claim held in every case."]
    lines += [
        "", "## Notes", "",
        "- Failed requests and downtime count from the upgrade's start to the end of the run; downtime comes from the open-loop probe stream (one request every 25 ms, new connection each). A probe is unavailable if it fails or takes longer than the deadline (slo_ms), dated from its start; an outage runs until the service is next seen answering within the deadline. error_downtime_s: probes that failed within the deadline (refused, reset, error status); slow_downtime_s: no good answer within it (hang, dropped packets, timeout).",
        load_from_text(cases),
        "- Locust's users are closed-loop: while the service is slow they send less, so their request counts understate load during an outage. The probe stream is what dates outages.",
        "- Naive cases drop the drains and the node proxy's socket handover; their downtime is reported, not asserted.",
        f"- Resource policy: every built-in agent requests the same CPU in total in every pattern, {AGENT_CPU_M}m per app pod it serves "
        "(a sidecar its pod, a node agent its node's share of the app pods, a waypoint its service's pods); under contention the kernel shares CPU "
        "by these requests. Requested per case (millicores, all instances): " + _requested(cases) + ".",
        "- Plots: latency.png (latency and errors over time, upgrade window shaded), agents.png (agent CPU and memory per case), containers.png (containers vs services, formulas and measured points), grouping.png (requests per proxy instance).",
        "- Hops are classified from the pod and node names the apps and proxies recorded in each answer: loopback inside a pod, same node between pods (or a pod and its node's proxy) of one node, cross node between nodes.",
    ]
    return "\n".join(lines) + "\n"


def long_lived_text(cases: dict[str, Any]) -> list[str]:
    """Long-lived connections (issue 24), for the cases that ran a gRPC workload: what each
    upgrade did to the RPCs, the streams and the HTTP/2 connections through the replaced
    proxies, as the load and the apps saw them (measure/longlived.py)."""
    grpc = {n: e for n, e in cases.items() if e.get("workload") not in (None, "http")}
    if not grpc:
        return []
    out = [
        "## Long-lived connections", "",
        "gRPC channels held open across the upgrade (images/cmd/grpcload), counted from the upgrade's start to the end of the case, which waits until every old pod is gone. "
        "A replaced connection ended with a GOAWAY and then the client's close (**goaway**: a clean drain), a GOAWAY and then the server's close with streams still open "
        "(**goaway-then-cut**), or with no GOAWAY (**cut**). The load sees its own connections to the entry; the apps report theirs to the next hop, through a sidecar or "
        "their node's proxy. Reconnect: how long the channel went without a connection that had heard from its server (0 when the GOAWAY let it open the next one before the old one ended; a channel reconnects only when a call needs it).", "",
        "With repeated trials the counts are the trials' medians, and the breakdowns in parentheses are summed over all trials.", "",
        "| case | workload | RPCs failed | streams broken (where) | longest stream gap s | connections replaced (how) | reconnect p99 s | HTTP/2 drain |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for name, e in grpc.items():
        rpcs = f"{e.get('rpcs_failed')} of {e.get('rpcs')}" if e.get("rpcs") else "—"
        broken = f"{e.get('streams_broken')} ({_counts(e.get('streams_broken_by'))})" if e.get("streams_broken") else fmt(e.get("streams_broken"))
        replaced = f"{e.get('connections_replaced')} ({_counts(e.get('connections_replaced_by'))})" if e.get("connections_replaced") else fmt(e.get("connections_replaced"))
        out.append(f"| {name} | {e['workload']} | {rpcs} | {broken} | {fmt(e.get('stream_gap_max_s'))} | {replaced} | {fmt(e.get('reconnect_p99_s'))} | {e.get('http2_drain') or '—'} |")
    return out + [""]


def _counts(counts: dict[str, int] | None) -> str:
    return ", ".join(f"{k} {v}" for k, v in (counts or {}).items()) or "—"


def load_from_text(cases: dict[str, Any]) -> str:
    """Where the load ran, as each case's load reported it."""
    where: dict[str, list[str]] = {}
    for name, e in cases.items():
        where.setdefault(str(e.get("load_from") or "unknown"), []).append(name)
    said = {
        "host": "from this machine (Locust processes at the entry's NodePort)",
        "cluster": "from inside the cluster (a Locust master, worker pods and a prober pod on the load node(s), at the entry Service's cluster address; "
        "records pulled through the API server and placed on the harness's clock by a measured offset per pod)",
        "unknown": "not recorded (an older run, or the load never reported)",
    }
    if len(where) == 1:
        return f"- The load ran {said.get(next(iter(where)), next(iter(where)))}."
    return "- The load ran " + "; ".join(f"{said.get(k, k)} in {', '.join(v)}" for k, v in sorted(where.items())) + "."


def _requested(cases: dict[str, Any]) -> str:
    seen: dict[str, str] = {}
    for e in cases.values():
        req = e.get("agent_cpu_requested_m")
        if req and e["pattern"] not in seen:
            seen[e["pattern"]] = ", ".join(f"{k} {v}" for k, v in sorted(req.items()))
    return "; ".join(f"{p}: {r}" for p, r in seen.items()) or "not recorded"


def _ci(entry: dict[str, Any], metric: str, value: Any) -> str:
    ci = entry.get(f"{metric}_ci95")
    return fmt(value) + (f" [{fmt(ci[0])}, {fmt(ci[1])}]" if ci else "")


def trials_text(summary: dict[str, Any]) -> list[str]:
    """Medians and 95 % bootstrap intervals per case, when cases ran more than once."""
    cases = summary["cases"]
    counts = {len(e.get("trials") or [e]) for e in cases.values()}
    if max(counts, default=1) < 2:
        return []
    out = [
        "## Repeated trials", "",
        f"Trials per case: {', '.join(str(n) for n in sorted(counts))}, run in interleaved order (a b c a b c). "
        "Each figure is the median over the trials with its 95 % percentile-bootstrap interval in brackets. "
        "With 3 trials the interval is about the range of the trials and its real coverage is below 95 %; more trials (`--repeat`) narrow it honestly.", "",
        "| case | trials | " + " | ".join(columns()) + " |",
        "|---|---|" + "---|" * len(columns()),
    ]
    for name, e in cases.items():
        # A column of one figure shows its interval; a shared one ("a / b") the values only.
        cells = [_ci(e, figs[0].name, figs[0].of(e)) if len(figs) == 1 else " / ".join(fmt(f.of(e)) for f in figs) for figs in columns().values()]
        out.append(f"| {name} | {len(e.get('trials') or [e])} | " + " | ".join(cells) + " |")
    shared = {name: e["trials"] for name, e in cases.items() if any(not t.get("fresh_deployment", True) for t in e.get("trials") or [])}
    if shared:
        out += ["", "Trials that shared their pattern's deployment (deployed once per run; each upgrade of an agent "
                "rolls it the other way, so every trial is one rolling upgrade) upgraded in these directions; in brackets, "
                "the agents' mean age when sampled (their memory rises through their first minute, so a pattern's first trial, "
                "on a fresh deployment, samples younger agents than the next):", ""]
        out += [f"- {name}: " + ", ".join(_direction(t) for t in trials) for name, trials in shared.items()]
    return out + ["", "Plot: intervals.png (each figure per case, trials as dots, the interval as an error bar).", ""]


def _direction(trial: dict[str, Any]) -> str:
    """One shared trial's upgrade direction and its agents' age: "v2→v1 (agents 31 s old)"."""
    versions = "→".join(trial["upgrade_versions"]) if trial.get("upgrade_versions") else "no upgrade"
    age = trial.get("agent_age_s")
    return versions + (f" (agents {age:.0f} s old)" if age is not None else "")


def differences_text(summary: dict[str, Any]) -> list[str]:
    """Sidecar minus DaemonSet per metric: a difference counts only when its interval excludes zero."""
    rows = summary.get("differences") or []
    if not rows:
        return []
    out = [
        "## Sidecar vs DaemonSet", "",
        "Difference of the medians (sidecar − DaemonSet) over the trials, its 95 % bootstrap interval, and whether the interval excludes zero "
        "(only then does the difference count). With one trial per case there is no interval: run with `--repeat 3` or more.", "",
        "| metric | sidecar case | DaemonSet case | difference | 95 % interval | excludes zero |",
        "|---|---|---|---|---|---|",
    ]
    for r in rows:
        ci = f"[{fmt(r['ci95'][0])}, {fmt(r['ci95'][1])}]" if r["ci95"] else "–"
        verdict = "–" if r["excludes_zero"] is None else ("**yes**" if r["excludes_zero"] else "no")
        out.append(f"| {r['metric']} | {r['a']} | {r['b']} | {fmt(r['difference'])} | {ci} | {verdict} |")
    return out + [""]


def sweeps_text(summary: dict[str, Any]) -> list[str]:
    """Latency and agent cost against offered load, per pattern (run --sweep)."""
    sweeps = summary.get("sweeps") or {}
    if not sweeps:
        return []
    out = [
        "## Latency and cost against load", "",
        "Open-loop load at rising offered rates, latency from each request's intended start; agent CPU and memory from the kubelet over each step. "
        "A sweep stops at the first step not sustained (errors above 1 %, under 97 % of the rate achieved, the sender behind schedule, or p99 above 100 ms). "
        "Plots: latency-vs-load.png, cost-per-1k-rps.png.", "",
        "| pattern | offered /s | achieved /s | p50 ms | p99 ms | agent vCPU per 1000 req/s | agent MiB per instance | agent instances | sustained |",
        "|---|---|---|---|---|---|---|---|---|",
    ]
    for pattern, doc in sweeps.items():
        for r in doc["steps"]:
            out.append(
                f"| {pattern} | {fmt(r['offered_rps'], 0)} | {fmt(r['achieved_rps'], 1)} | {fmt(r['p50_ms'])} | {fmt(r['p99_ms'])} "
                f"| {fmt(r['agent_vcpu_per_1k_rps'], 3)} | {fmt(r['agent_memory_mib_per_instance'], 1)} | {fmt(r['agent_instances'], 1)} | {'no: ' + r['saturated'] if r['saturated'] else 'yes'} |"
            )
    out += ["", "Highest rate sustained: " + ", ".join(f"{p} {fmt(d['max_sustained_rps'], 0)}/s" for p, d in sweeps.items()) + ".", ""]
    return out


def calibration_text(summary: dict[str, Any]) -> list[str]:
    """The outage measurement's own error bar: the latest calibration, injected vs measured."""
    cal = summary.get("calibration")
    out = ["## Measurement error (calibration)", ""]
    if not cal:
        return out + ["No calibration found: run `patternbench calibrate` (it writes results/calibration.json, which later runs carry). "
                      "Until then the downtime figures have no measured error bar.", ""]
    out += [
        f"Latest calibration ({cal.get('when')}, target {cal.get('target')}, deadline {fmt(cal.get('slo_ms'))} ms, probe every "
        f"{fmt(cal.get('probe_interval_s'), 3)} s): downtime figures carry ±{fmt(cal.get('max_error_ms'), 1)} ms, the worst error over every injected outage."
        + ("" if cal.get("source", "run") == "run" else
           f" This run carries no calibration of its own: this is the latest one {cal['source']} ({CALIBRATION_FILE} in its parent directory), made at another time."),
        "",
        "| kind | injected s | measured s | error ms | start / end error ms |",
        "|---|---|---|---|---|",
    ]
    for r in cal.get("rows") or []:
        out.append(f"| {r['kind']} | {fmt(r['injected_s'], 3)} | {fmt(r['measured_s'], 3)} | {fmt(r['error_ms'], 1)} | {fmt(r['start_error_ms'], 1)} / {fmt(r['end_error_ms'], 1)} |")
    return out + [""]


def render_interval_plots(run_dir: Path, summary: dict[str, Any]) -> Path | None:
    """intervals.png: per figure, each case's median with its interval as an error bar and
    every trial as a dot. Only when some case ran more than once."""
    cases = summary["cases"]
    if max((len(e.get("trials") or [e]) for e in cases.values()), default=1) < 2:
        return None
    plt = pyplot()
    if plt is None:
        return None


    metrics = [f.name for f in plotted()]
    names = list(cases)
    fig, axes = plt.subplots(len(metrics), 1, figsize=(max(6, 0.8 * len(names) + 2), 2.4 * len(metrics)), squeeze=False)
    for ax, metric in zip(axes[:, 0], metrics):
        for x, name in enumerate(names):
            e = cases[name]
            values = metric_values(e.get("trials") or [e], metric)
            if not values:
                continue
            mid = statistics.median(values)
            ci = e.get(f"{metric}_ci95")
            if ci:
                ax.errorbar([x], [mid], yerr=[[mid - ci[0]], [ci[1] - mid]], fmt="s", color="tab:blue", capsize=4, ms=5)
            else:
                ax.plot([x], [mid], "s", color="tab:blue", ms=5)
            ax.plot([x] * len(values), values, ".", color="k", ms=3, alpha=0.6)
        ax.set_ylabel(f"{metric}\n({figure(metric).unit})", fontsize=7)
        ax.set_xticks(range(len(names)))
        ax.set_xticklabels(names, rotation=40, fontsize=7, ha="right")
        ax.grid(axis="y", alpha=0.3)
    fig.suptitle("medians, 95 % bootstrap intervals (bars), trials (dots)", fontsize=9)
    return save(fig, run_dir / "intervals.png")


def nodes_text(cases: dict[str, Any]) -> list[str]:
    """What the nodes saw: where the pods ran, how many requests each proxy instance carried
    (request grouping), and each node's agent replacement in DaemonSet rollouts."""
    out = ["## Per node", ""]
    placed = next((e for e in cases.values() if e.get("pods_per_node")), None)
    if placed:
        out.append(f"App pods per node: {', '.join(f'{n} {c}' for n, c in placed['pods_per_node'].items())} ({placed['nodes']} nodes).")
        out.append("")
    out += ["**Request grouping** (requests each mesh proxy instance carried before, during and after the upgrade: a node proxy serves all its node's pods):", ""]
    out += ["| case | proxy | instances | min | median | max |", "|---|---|---|---|---|---|"]
    for name, e in cases.items():
        for mode, g in (e.get("request_grouping") or {}).items():
            out.append(f"| {name} | {mode} | {g['instances']} | {g['min']} | {fmt(g['median'], 1)} | {g['max']} |")
    rollouts = {n: e for n, e in cases.items() if e.get("node_rollouts")}
    if rollouts:
        out += ["", "**Node-by-node DaemonSet rollouts** (seconds from the upgrade's start: when the node's old agent stopped serving, when its successor was Ready, and how long the node had none):", ""]
        out += ["| case | agent | node | old stopped s | new Ready s | node without agent s |", "|---|---|---|---|---|---|"]
        for name, e in rollouts.items():
            for r in sorted(e["node_rollouts"], key=lambda r: (r["new_ready_s"] is None, r["new_ready_s"] or 0)):
                out.append(f"| {name} | {r['workload']} | {r['node']} | {fmt(r['old_stopped_s'])} | {fmt(r['new_ready_s'])} | {fmt(r['down_s'])} |")
            out.append(f"| {name} | | **most nodes without their agent at once** | | | **{e['max_nodes_down_at_once']}** |")
    return out


def _hit(target: dict[str, Any] | None) -> str:
    """What a fault hit, as the timeline recorded its target."""
    if not target:
        return "the API server"
    if "deployment" in target:
        return f"the {target['deployment']} ({len(target['pods'])} pods on {', '.join(target['nodes'])})"
    return f"{target['container']} of {target['pod']} on {target['node']}"


def faults_text(cases: dict[str, Any]) -> list[str]:
    """The blast-radius section: what each injected fault cost, beside what the model says
    it may cost. Empty when the run injected no fault."""
    faulted = {n: e for n, e in cases.items() if e.get("fault")}
    if not faulted:
        return []
    out = [
        "## Blast radius: what a failed agent costs", "",
        "Each fault was injected under load with a real mechanism (signals to the agent's own process on the local provider) "
        "and measured in its window: from the injection until the faulted agent served again (pod watch), its timed end, "
        "or the last failed request, whichever came last. *Through it* is the share of requests before the fault whose "
        "Via trail passed the faulted proxy instance: a dead instance can fail at most those (the model's bound, asserted "
        "with 10 points of slack). A sidecar carries one pod's traffic; a node proxy carries every call that starts or ends "
        "on its node, which with calls spread over 3 nodes is most requests.", "",
        "| case | fault | hit | failed in window | blast radius | through it before | window s | first failure s | agent serving again s | affected pods / nodes | log lost / repeated | rollout completed |",
        "|---|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    for name, e in faulted.items():
        f = e["fault"]
        hit = _hit(f.get("target"))
        duration = f" ({fmt(f['duration_s'], 0)} s)" if f.get("duration_s") else ""
        completed = "–" if f.get("upgrade_completed") is None else ("yes" if f["upgrade_completed"] else f"**no** ({e.get('upgrade_error')})")
        out.append(
            f"| {name} | {f['kind']}{duration} | {hit} | {f['failed_in_window']} of {f['requests_in_window']} | {pct(f['blast_radius'])} "
            f"| {pct(f.get('expected_blast_radius'))} | {fmt(f['window_s'])} | {fmt(f.get('detect_s'))} | {fmt(f.get('recovery_s'))} "
            f"| {len(f['affected_pods'])} / {len(f['affected_nodes'])} | {fmt(e.get('log_lines_lost'))} / {fmt(e.get('log_lines_duplicated'))} | {completed} |"
        )
    out += ["", "Failed share of the requests in the fault window by the node their entry pod ran on:", ""]
    for name, e in faulted.items():
        rows = e["fault"].get("blast_radius_by_node") or {}
        if rows:
            parts = ", ".join(f"{node} {r['failed']}/{r['requests']} ({pct(r['share_failed'])})" for node, r in rows.items())
            unattributed = e["fault"].get("unattributed_failures")
            out.append(f"- {name}: {parts}" + (f"; {unattributed} failed before reaching any app" if unattributed else ""))
    injected = {e["fault"]["kind"] for e in faulted.values()}
    out += [line for note in dict.fromkeys(FAULTS[k].note for k in injected if FAULTS[k].note) for line in ("", note)]  # type: ignore[misc]
    return out


def fault_sections(cases: dict[str, Any]) -> list[str]:
    """The sections faults declare (FaultSpec.section), each once, in the registry's order."""
    sections = dict.fromkeys(spec.section for spec in FAULTS.values() if spec.section is not None)
    return [line for section in sections for line in section(cases)]  # type: ignore[misc]


def lifecycle_text(cases: dict[str, Any]) -> list[str]:
    """Rolling vs in-place sidecar upgrades beside the DaemonSet's, per agent, and the answer
    to whether the sidecar still loses on lifecycle, from the measured numbers."""
    out: list[str] = []
    for agent in ("mesh", "logging"):
        rows = [("sidecar, rolling", pick_case(cases, "sidecar", agent)), ("sidecar, in place", pick_case(cases, "sidecar", agent, strategy="in-place")),
                ("sidecar, in place, no drain", pick_case(cases, "sidecar", agent, naive=True, strategy="in-place")), ("DaemonSet", pick_case(cases, "daemonset", agent))]
        rows = [(label, e) for label, e in rows if e]
        if not any(label.startswith("sidecar, in place") for label, _ in rows):
            continue
        if not out:
            out = ["## Lifecycle: rolling and in-place sidecar upgrades against the DaemonSet", ""]
        out += [f"**{agent} agent**", "", "| upgrade | duration s | app pods recreated | container restarts | failed requests | downtime s | log lines lost / dup |", "|---|---|---|---|---|---|---|"]
        for label, e in rows:
            out.append(f"| {label} | {fmt(e['upgrade_duration_s'])} | {e['app_pods_recreated']} | {e['app_container_restarts']} | {e['failed_requests']} | {fmt(e['downtime_s'])} | {fmt(e['log_lines_lost'])} / {fmt(e['log_lines_duplicated'])} |")
        in_place, node = dict(rows).get("sidecar, in place"), dict(rows).get("DaemonSet")
        incomplete = [label for label, e in rows if e.get("missing") or e.get("app_container_restarts") is None or e.get("failed_requests") is None]
        if in_place and node and incomplete:
            out += ["", f"No verdict: {', '.join(incomplete)} did not complete (its counts are missing).", ""]
        elif in_place and node:
            worse = []
            if (in_place["upgrade_duration_s"] or 0) > (node["upgrade_duration_s"] or 0):
                worse.append(f"it takes {in_place['upgrade_duration_s'] / max(node['upgrade_duration_s'] or 1e-9, 1e-9):.1f}x as long ({fmt(in_place['upgrade_duration_s'])} s against {fmt(node['upgrade_duration_s'])} s)")
            if in_place["app_container_restarts"] > node["app_container_restarts"]:
                worse.append(f"it restarts {in_place['app_container_restarts']} containers inside app pods against {node['app_container_restarts']}")
            if in_place["failed_requests"] > node["failed_requests"]:
                worse.append(f"{in_place['failed_requests']} requests failed against {node['failed_requests']}")
            if (in_place["log_lines_duplicated"] or 0) > (node["log_lines_duplicated"] or 0):
                worse.append(f"{in_place['log_lines_duplicated']} log lines were shipped twice against {node['log_lines_duplicated'] or 0}")
            verdict = (f"With in-place upgrades the sidecar recreates {in_place['app_pods_recreated']} app pods, but it still loses to the DaemonSet on lifecycle: " + "; ".join(worse) + "."
                       if worse else f"With in-place upgrades the sidecar no longer loses to the DaemonSet on lifecycle in this run ({in_place['app_pods_recreated']} pods recreated, as fast, as few failures).")
            out += ["", verdict]
        out.append("")
    return out + fault_sections(cases)


def _representative(cases: dict[str, Any], spec: PatternSpec) -> dict[str, Any] | None:
    """The case that shows a pattern in the claims: its mesh agent's upgrade, else its control."""
    mesh = [a.name for a in AGENTS.values() if a.kind is AgentKind.MESH and spec.runs(a.name)]
    return next((e for e in (pick_case(cases, spec.name, a) for a in mesh) if e), None) or pick_case(cases, spec.name, None)


def claims_text(cases: dict[str, Any]) -> list[str]:
    """The seed's three claims, answered with the measured numbers where the run has them."""
    out = ["## The seed's three claims", ""]
    shown = [e for e in (_representative(cases, spec) for spec in PATTERNS.values()) if e]
    out += ["**1. Resources.** Sidecars multiply containers: S·R·(1+k') against S·R + nodes·k'."]
    for e in shown:
        if e:
            out.append(f"- {e['pattern']}: {e['containers_total']} live containers (formula {e['containers_formula']}); agents use {fmt(e['agent_cpu_m_total'])} m CPU and {fmt(e['agent_memory_mib_total'])} MiB in {e['agent_instances']} instances ({fmt(e['agent_memory_mib_per_instance'])} MiB each).")
    out += ["", "**2. Lifecycle.** Upgrading a sidecar recreates every app pod; upgrading a DaemonSet agent touches none, but interrupts its node unless it hands its sockets over."]
    for e in cases.values():
        if e["agent"]:
            out.append(f"- {e['case']}: {e['app_pods_recreated']} app pods recreated, {e['app_container_restarts']} restarts, {e['failed_requests']} failed requests, {fmt(e['downtime_s'])} s downtime, upgrade took {fmt(e['upgrade_duration_s'])} s" + (f", log lines lost {e['log_lines_lost']}" if agent_spec(e['agent']).kind is AgentKind.LOG else "") + ".")
    out += ["", "**3. Network distance.** A sidecar is a loopback hop from its app; a node agent a network hop away, shared by the node's pods."]
    for e in shown:
        if e:
            lat = e["latency_ms"]["before"]
            agents = e.get("requests_per_agent") or {}
            grouping = f"; busiest proxy instance carried {max(agents.values())} requests over {len(agents)} instances" if agents else ""
            out.append(f"- {e['pattern']}: {fmt(e['proxies_per_request'])} proxies per request, hops {e.get('hops')}; p50 {fmt(lat['p50'])} ms, p99 {fmt(lat['p99'])} ms before the upgrade{grouping}.")
    return out


def render_plots(run_dir: Path, summary: dict[str, Any]) -> list[Path]:
    """PNG plots; skipped (with a note) if matplotlib is not importable."""
    plt = pyplot()
    if plt is None:
        return []
    made = []
    # Latency and errors over time, upgrade window marked, one panel per case.
    firsts = {e["trials"][0]["dir"] for e in summary["cases"].values() if e.get("trials")}
    dirs = [d for d in case_dirs(run_dir) if not firsts or d.name in firsts]
    if not dirs:
        return []
    fig, axes = plt.subplots(len(dirs), 1, figsize=(10, 2.2 * len(dirs)), squeeze=False)
    for ax, d in zip(axes[:, 0], dirs):
        marks = timeline_marks(d)
        records = read_jsonl(d / REQUESTS)
        t0 = marks.get("before", min((r["t"] for r in records), default=0))
        good = [r for r in records if r.get("kind") == "user" and not r.get("error")]
        ax.plot([r["t"] - t0 for r in good], [r["ms"] for r in good], ".", ms=1.5, label="latency (ms)")
        # Error rate on a second axis: failed share of all requests per half second.
        bins: dict[int, list[int]] = {}
        for r in records:
            b = bins.setdefault(int((r["t"] - t0) * 2), [0, 0])
            b[0] += 1
            b[1] += 1 if r.get("error") else 0
        twin = ax.twinx()
        keys = sorted(bins)
        twin.step([k / 2 for k in keys], [100 * bins[k][1] / bins[k][0] for k in keys], where="post", color="red", lw=0.8)
        twin.set_ylim(0, 100)
        twin.set_ylabel("errors %", color="red", fontsize=7)
        if "upgrade_start" in marks:
            ax.axvspan(marks["upgrade_start"] - t0, marks.get("upgrade_end", marks["upgrade_start"]) - t0, color="orange", alpha=0.25, label="upgrade")
        ax.set_title(d.name, fontsize=9)
        if good:
            ax.set_yscale("log")
        ax.legend(fontsize=7, loc="upper left")
    axes[-1, 0].set_xlabel("seconds since the measured phase began")
    made.append(save(fig, run_dir / "latency.png"))

    cases = summary["cases"]
    names = [n for n, e in cases.items() if e["agent_cpu_m_total"] is not None]
    if names:
        fig, (a1, a2) = plt.subplots(1, 2, figsize=(10, 3.5))
        a1.bar(names, [cases[n]["agent_cpu_m_total"] for n in names])
        a1.set_ylabel("agent CPU (millicores, total)")
        a2.bar(names, [cases[n]["agent_memory_mib_total"] for n in names], color="tab:green")
        a2.set_ylabel("agent memory (MiB, total)")
        for ax in (a1, a2):
            ax.tick_params(axis="x", rotation=60, labelsize=7)
        made.append(save(fig, run_dir / "agents.png"))

    grouped = [(n, e["requests_per_agent"]) for n, e in cases.items() if e.get("requests_per_agent")]
    if grouped:
        # The article's request grouping: requests per proxy instance, one box per case.
        fig, ax = plt.subplots(figsize=(10, 3.5))
        ax.boxplot([list(per.values()) for _, per in grouped], showfliers=True)
        for i, (_, per) in enumerate(grouped, 1):
            ax.plot([i] * len(per), list(per.values()), "k.", ms=4)
        ax.set_xticks(range(1, len(grouped) + 1), [n for n, _ in grouped], rotation=60, fontsize=7)
        ax.set_ylabel("requests carried per proxy instance")
        made.append(save(fig, run_dir / "grouping.png"))

    faulted = [d for d in dirs if (summary["cases"].get(d.name) or {}).get("fault")]
    if faulted:
        # Errors over time per entry node around each fault: what a node agent's failure
        # costs against a sidecar's, at a glance.
        fig, axes = plt.subplots(len(faulted), 1, figsize=(10, 2.2 * len(faulted)), squeeze=False)
        for ax, d in zip(axes[:, 0], faulted):
            marks = timeline_marks(d)
            t0 = marks["fault_start"]
            users = [r for r in read_jsonl(d / REQUESTS) if r.get("kind") == "user"]
            per_node: dict[str, dict[int, list[int]]] = {}
            for r in users:
                node = (r.get("entry") or [None, None])[1] or "no answer"
                b = per_node.setdefault(node, {}).setdefault(int((r["t"] - t0) * 4), [0, 0])
                b[0] += 1
                b[1] += 0 if 200 <= int(r.get("status") or 0) < 400 and not r.get("error") else 1
            for node, bins in sorted(per_node.items()):
                keys = sorted(bins)
                ax.step([k / 4 for k in keys], [100 * bins[k][1] / bins[k][0] for k in keys], where="post", lw=0.9, label=node)
            ax.axvspan(0, max(marks.get("fault_end", t0) - t0, 0.1), color="red", alpha=0.15)
            ax.set_xlim(-3, 8)
            ax.set_ylim(-2, 102)
            ax.set_ylabel("failed %", fontsize=7)
            ax.set_title(f"{d.name} (by entry node)", fontsize=9)
            ax.legend(fontsize=6, loc="upper right")
        axes[-1, 0].set_xlabel("seconds from the fault's injection")
        made.append(save(fig, run_dir / "faults.png"))

    # Containers vs number of services (R = 2 replicas, k' = 2 agents, on the run's nodes),
    # measured points on top.
    nodes = next((e["nodes"] for e in cases.values() if e.get("nodes")), 1)
    fig, ax = plt.subplots(figsize=(6, 4))
    xs = list(range(1, 21))
    for pattern in PATTERNS:
        ys = [containers_formula(Topology(tuple(Service(f"s{i}", 2) for i in range(n)), "s0", Agents()), pattern, nodes) for n in xs]
        ax.plot(xs, ys, label=f"{pattern.value} (formula)")
    for e in cases.values():
        if e["containers_total"] is not None and e["app_pods"]:
            ax.plot([e["app_pods"] / 2], [e["containers_total"]], "ko", ms=4)
    ax.set_xlabel(f"services (2 replicas each, {nodes} nodes)")
    ax.set_ylabel("containers")
    ax.legend(fontsize=8)
    made.append(save(fig, run_dir / "containers.png"))
    return made


def write_report(run_dir: Path, thresholds: Thresholds = Thresholds(), slo_ms: float | None = None) -> dict[str, Any]:
    """Write summary.json, report.md and the plots; returns the summary."""
    if not run_dir.is_dir():
        raise UsageError(f"{run_dir} is not a run directory")
    summary = build_summary(run_dir, thresholds, slo_ms)
    (run_dir / SUMMARY).write_text(json.dumps(summary, indent=1, sort_keys=False))
    (run_dir / REPORT).write_text(render_markdown(summary))
    render_plots(run_dir, summary)
    render_interval_plots(run_dir, summary)
    if summary["sweeps"]:
        render_sweep_plots(run_dir, {p: d["steps"] for p, d in summary["sweeps"].items()})
    return summary
