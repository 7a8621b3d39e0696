"""An agent file's cases beside the built-in agent's (issue 25): the report's pairs, and the
claims of a stand-in's case read from its own proxy modes."""

from __future__ import annotations

from pathlib import Path

from patternbench.results.agents_beside import agents_beside_text
from patternbench.results.summary import check_claims
from patternbench.results.verdicts import Thresholds
from patternbench.specs.agent_file import load_agent_file
from patternbench.specs.agents import Placement
from patternbench.specs.patterns import case_pattern_spec, pattern_spec

HAPROXY = Path(__file__).resolve().parents[2] / "agents" / "haproxy.yaml"


def entry(case: str, pattern: str, agent: str, failed: int, proxies: float, hops: dict, strategy: str = "rolling") -> dict:
    return {
        "case": case, "pattern": pattern, "agent": agent, "naive": False, "upgrade_strategy": strategy, "injection": "client", "fault": None,
        "failed_requests": failed, "total_requests": 400, "downtime_s": 0.1 * failed, "proxies_per_request": proxies, "hops": hops,
        "latency_ms": {"before": {"p50": 2.0, "p99": 9.0}, "during": None}, "agent_cpu_m_per_instance": 5.0, "agent_cpu_m_total": 30.0,
        "agent_memory_mib_per_instance": 3.1, "agent_memory_mib_total": 18.6, "app_pods_recreated": 0, "upgrade_duration_s": 3.5,
        "containers_total": 12, "containers_formula": 12, "max_nodes_down_at_once": 1, "unattributed_failures": 0, "missing": [],
        "app_container_restarts": 0, "upgrade_error": None, "failures_by_cause": {},
    }


def test_each_file_agent_case_sits_beside_the_built_in_one_of_its_pattern() -> None:
    load_agent_file(HAPROXY)
    cases = {
        "daemonset-mesh": entry("daemonset-mesh", "daemonset", "mesh", 0, 4.0, {"same_node": 4.0, "cross_node": 2.0}),
        "sidecar-mesh": entry("sidecar-mesh", "sidecar", "mesh", 0, 5.0, {"loopback": 5.0, "same_node": 1.0}),
        "daemonset-haproxy": entry("daemonset-haproxy", "daemonset", "haproxy", 2, 2.0, {"same_node": 3.0, "cross_node": 1.0}),
        "sidecar-haproxy-in-place": entry("sidecar-haproxy-in-place", "sidecar", "haproxy", 0, 5.0, {"loopback": 5.0, "same_node": 1.0}, "in-place"),
    }
    lines = agents_beside_text(cases, {"daemonset-haproxy": ["2 requests failed during the upgrade"]})
    rows = [line for line in lines if line.startswith("| ") and not line.startswith("| case")]
    # daemonset-haproxy beside daemonset-mesh; the in-place case has no built-in twin here.
    assert [r.split(" | ")[0] for r in rows] == ["| daemonset-mesh", "| daemonset-haproxy"]
    assert rows[0].endswith("| held |") and rows[1].endswith("| 2 requests failed during the upgrade |")
    assert "| 2 of 400 | 0.20 | 2.00 | 0 / 3.00 / 1.00 |" in rows[1]
    assert agents_beside_text({"sidecar-mesh": cases["sidecar-mesh"]}, {}) == []


def test_a_stand_ins_case_expects_its_own_proxy_modes() -> None:
    """HAProxy per node sends each call straight to the callee's pod (Via mode egress): one
    proxy per call, where meshproxy's node proxies make two; its case's claims expect one."""
    agent = load_agent_file(HAPROXY)
    assert agent.proxy_mode(Placement.NODE).name == "egress" and agent.proxy_mode(Placement.POD).name == "sidecar"
    ours, theirs = pattern_spec("daemonset"), case_pattern_spec("daemonset", "haproxy")
    assert ours.expected_proxies(2) == 4 and theirs.expected_proxies(2) == 2
    assert theirs.runs_on_nodes("haproxy") and theirs.placement_of("haproxy") is Placement.NODE
    assert case_pattern_spec("sidecar", "haproxy").expected_proxies(2) == pattern_spec("sidecar").expected_proxies(2) == 5
    good = entry("daemonset-haproxy", "daemonset", "haproxy", 0, 2.0, {"same_node": 3.0, "cross_node": 1.0})
    assert check_claims(good, 2, Thresholds()) == []
    # Two proxies per call would be meshproxy's node hops, not HAProxy's: a failed claim.
    wrong = entry("daemonset-haproxy", "daemonset", "haproxy", 0, 4.0, {"same_node": 4.0, "cross_node": 2.0})
    assert any("proxies per request 4.0 != 2" in f for f in check_claims(wrong, 2, Thresholds()))
