"""Print, deterministically, everything the patterns and agents decide without a cluster:
every pattern's rendered objects (naive and not, several agent sets), its container formula,
hops, proxies, requests, upgrade targets, node placement, fault checks and the case matrices.

Run it before and after a refactor of patterns or agents and diff the two outputs:
`python scripts/behaviour_snapshot.py > before.txt` ... `diff before.txt after.txt`.
"""

from __future__ import annotations

import json
import sys
from itertools import product

from patternbench import measure
from patternbench.errors import UsageError
from patternbench.operate.upgrade import upgrade_targets
from patternbench.render import Images, RenderOptions, render, to_yaml
from patternbench.results import summary
from patternbench.specs.cases import default_matrix, fault_matrix, fault_smoke
from patternbench.specs.faults import FAULTS, check_fault, runs_on_nodes
from patternbench.specs.topology import (
    Agents,
    Pattern,
    containers_formula,
    expected_hop_counts,
    expected_hops,
    load_topology,
    requested,
)

RUN_ID = "pb-snapshot"
AGENT_SETS = [Agents(), Agents(mesh=False), Agents(logging=False), Agents(extra_agents=2), Agents(mesh=False, logging=False, extra_agents=1)]
UPGRADED = ("mesh", "logging")


def out(*parts: object) -> None:
    print(*parts)


def main() -> int:
    base = load_topology()
    for agents, pattern in product(AGENT_SETS, Pattern):
        topology = base.with_agents(agents)
        tag = f"{pattern.value} {agents}"
        for naive, registry in ((False, None), (True, None), (False, "reg.example/pb")):
            opts = RenderOptions(run_id=RUN_ID, images=Images.under(registry), naive=naive, log_token="snapshot-token")
            objs = render(topology, pattern, opts)
            out(f"=== render {tag} naive={naive} registry={registry}")
            out(to_yaml(objs))
            if not naive and registry is None:
                for agent in UPGRADED:
                    out(f"--- upgrade_targets {tag} {agent}: {upgrade_targets(objs, agent)}")
        for nodes in range(1, 5):
            out(f"--- {tag} nodes={nodes} containers_formula={containers_formula(topology, pattern, nodes)} requested={requested(topology, pattern, nodes)}")
        out(f"--- {tag} expected_hops={expected_hops(topology, pattern)}")
    for pattern, calls, mesh in product(Pattern, range(0, 4), (True, False)):
        out(f"--- hop_counts {pattern.value} calls={calls} mesh={mesh} {expected_hop_counts(pattern, calls, mesh)}"
            f" proxies={summary.expected_proxies(pattern.value, calls, mesh)}")
    for pattern, agent in product(Pattern, UPGRADED):
        out(f"--- runs_on_nodes {pattern.value} {agent} {runs_on_nodes(pattern, agent)}")
        for fault in FAULTS:
            try:
                result = check_fault(fault, pattern, agent, frozenset(FAULTS), "local").name
            except UsageError as exc:
                result = f"UsageError: {exc}"
            out(f"--- check_fault {fault} {pattern.value} {agent}: {result}")
    for pattern in Pattern:
        try:
            result = check_fault("apiserver-down", pattern, None, frozenset(FAULTS), "local").name
        except UsageError as exc:
            result = f"UsageError: {exc}"
        out(f"--- check_fault apiserver-down {pattern.value} None: {result}")
    out("--- default_matrix", [c.id for c in default_matrix()])
    for patterns in ([Pattern.SIDECAR], [Pattern.HYBRID, Pattern.NONE], list(Pattern)):
        for agents_sel in (None, ["logging"], ["mesh"]):
            out("--- default_matrix", [p.value for p in patterns], agents_sel, [c.id for c in default_matrix(patterns, agents_sel)])
            out("--- fault_matrix", [p.value for p in patterns], agents_sel, [c.id for c in fault_matrix(None, patterns, agents_sel)])
    out("--- fault_matrix default", [c.id for c in fault_matrix()])
    out("--- fault_smoke", [c.id for c in fault_smoke()])
    # Hop classification of a few Via trails (sidecar, node).
    record = {
        "kind": "user", "status": 200, "via": "1.1 sidecar/fe-1 (n1)", "entry": ["fe-1", "n1"],
        "calls": [
            {"src": ["fe-1", "n1"], "dst": ["or-1", "n2"], "via": "1.1 sidecar/or-1 (n2), 1.1 sidecar/fe-1 (n1)"},
            {"src": ["or-1", "n2"], "dst": ["pa-1", "n2"], "via": "1.1 node/n2 (n2), 1.1 node/n2 (n2)"},
        ],
    }
    out("--- hop_summary", json.dumps(measure.hop_summary([record]), sort_keys=True))
    # The claims on synthetic entries: every pattern x agent, with and without fault.
    for pattern, agent in product(Pattern, (*UPGRADED, None)):
        entry = {
            "pattern": pattern.value, "agent": agent, "naive": False, "missing": [], "containers_total": 9, "containers_formula": 9,
            "proxies_per_request": 5, "hops": {"loopback": 5, "same_node": 1, "cross_node": 1}, "max_nodes_down_at_once": 2,
            "fault": None, "app_pods_recreated": 6, "app_container_restarts": 0, "app_pods": 6, "failed_requests": 0,
            "downtime_s": 0.0, "log_lines_lost": 3, "log_lines_duplicated": 0, "log_max_batch_lines": 0,
        }
        out(f"--- check_claims {pattern.value} {agent}: {summary.check_claims(entry, 2)}")
        if agent:
            fault = {"kind": "agent-kill", "expected_blast_radius": None, "blast_radius": 0.0, "failed_in_window": 1, "upgrade_completed": None, "instance": None}
            out(f"--- check_claims fault {pattern.value} {agent}: {summary.check_claims({**entry, 'fault': fault}, 2)}")
    figures_snapshot()
    faults_snapshot()
    return 0


def _faulted(name: str, pattern: str, agent: str | None, kind: str, k: int) -> dict:
    """A synthetic faulted case entry whose numbers vary with k (so every claim can fire)."""
    return {
        "case": name, "pattern": pattern, "agent": agent, "naive": False, "missing": [], "upgrade_strategy": "rolling",
        "containers_total": 9, "containers_formula": 9, "proxies_per_request": 5, "hops": {"loopback": 5, "same_node": 1, "cross_node": 1},
        "max_nodes_down_at_once": 1, "app_pods_recreated": 0, "app_container_restarts": 0, "app_pods": 6,
        "injection": "webhook" if kind.startswith("injector") else "client", "failed_requests": k, "pattern_failures": k,
        "unattributed_failures": 0, "failures_by_cause": {"rst-refused": k}, "downtime_s": 0.1 * k, "upgrade_duration_s": 10.0 + k,
        "log_lines_lost": k, "log_lines_duplicated": 3 * k, "log_max_batch_lines": 2, "upgrade_error": "timeout" if k else None,
        "fault": {
            "kind": kind, "duration_s": 5.0, "target": {"container": "meshproxy", "pod": "p-1", "node": "n1"},
            "failed_in_window": k, "requests_in_window": 100, "blast_radius": 0.05 * k, "expected_blast_radius": 0.1,
            "instance": "sidecar/p-1", "window_s": 2.0, "detect_s": 0.5, "recovery_s": 1.5, "affected_pods": ["p-1"] * k,
            "affected_nodes": ["n1"], "upgrade_completed": (k == 0) if "during" in kind else None,
            "blast_radius_by_node": {"n1": {"failed": k, "requests": 50, "share_failed": k / 50}},
            "pod_creations_refused": k, "app_pods_created_during_fault": k, "app_pods_without_sidecar": ["p-2"] * k,
        },
    }


def faults_snapshot() -> None:
    """Each fault's claims and the report's fault sections, on synthetic entries."""
    from patternbench.results import report
    from patternbench.specs.faults import FAULTS

    cases = {}
    for kind in FAULTS:
        for pattern, agent in (("sidecar", "mesh"), ("daemonset", "logging"), ("sidecar", "logging"), ("none", None)):
            for k in (0, 3):
                name = f"{pattern}-{agent}-{kind}-{k}"
                entry = _faulted(name, pattern, agent, kind, k)
                out(f"--- fault claims {name}: {summary.check_claims(entry, 2)}")
                cases[name] = entry
    cases["sidecar-mesh-webhook"] = {**_faulted("x", "sidecar", "mesh", "agent-kill", 0), "fault": None, "injection": "webhook"}
    out("--- faults_text", "\n".join(report.faults_text(cases)))
    out("--- lifecycle_text", "\n".join(report.lifecycle_text(cases)))


def _trial(pattern: str, k: int) -> dict:
    """One synthetic trial's summary entry, its figures varying with the trial."""
    return {
        "case": f"{pattern}-mesh", "pattern": pattern, "agent": "mesh", "naive": False, "missing": [], "invalid": False,
        "downtime_s": 0.1 * k, "error_downtime_s": 0.05 * k, "slow_downtime_s": 0.0, "failed_requests": k,
        "latency_ms": {"before": {"p50": 3.0 + k, "p99": 20.0 + 2 * k}, "during": {"p50": 4.0, "p99": 30.0 + k}},
        "agent_cpu_m_total": 40.0 + k + (10 if pattern == "sidecar" else 0), "agent_memory_mib_total": 60.0 + k,
        "agent_cpu_m_per_instance": 5.0 + k, "agent_memory_mib_per_instance": 7.0, "log_lines_lost": k % 2,
        "containers_total": 9, "hops": {"loopback": 5},
    }


def figures_snapshot() -> None:
    """What every figure decides: intervals over trials, the sidecar-vs-DaemonSet differences,
    the baseline's figures and its comparison, and the report's tables of them."""
    from patternbench.results import baseline, report, trials

    cases = {f"{p}-mesh": trials.aggregate([_trial(p, k) for k in (1, 2, 4)]) for p in ("sidecar", "daemonset")}
    out("--- aggregate", json.dumps(cases, sort_keys=False))
    diffs = trials.differences(cases)
    out("--- differences", json.dumps(diffs))
    doc = {"cases": cases, "differences": diffs}
    base = baseline.update_baseline(None, [doc], "local", today="2026-01-01")
    out("--- baseline", json.dumps(base))
    worse = {"cases": {name: {**e, "downtime_s": e["downtime_s"] + 1, "failed_requests": e["failed_requests"] + 9} for name, e in cases.items()}}
    out("--- compare", [repr(c) for c in baseline.compare(base, worse)])
    out("--- trials_text", "\n".join(report.trials_text(doc)))
    out("--- differences_text", "\n".join(report.differences_text(doc)))


if __name__ == "__main__":
    sys.exit(main())
