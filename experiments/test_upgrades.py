"""The seed's claims, asserted on a real cluster under Locust load, per pattern x agent.

Each case deploys its pattern, drives traffic, upgrades one agent from v1 to v2 (the
control upgrades nothing), and these tests assert on what was measured.
"""

from __future__ import annotations

from typing import Any

import pytest

from patternbench.results.summary import expected_proxies
from patternbench.results.verdicts import Thresholds, charged_failures
from patternbench.specs.agents import Placement
from patternbench.specs.cases import Case
from patternbench.specs.patterns import pattern_spec
from patternbench.specs.topology import Pattern, expected_hop_counts, load_topology

pytestmark = pytest.mark.cluster

CALLS = sum(len(s.calls) for s in load_topology().services)


def placement(case: Case) -> Placement | None:
    return pattern_spec(case.pattern).placement_of(case.agent) if case.agent else None


def test_case(case: Case, result: dict[str, Any], claims: list[str], thresholds: Thresholds) -> None:
    """Every claim for the case at once (the report lists them too); the named checks below
    say the same things one by one, so a failure reads as the claim it breaks."""
    assert not result["missing"], f"incomplete case: {result['missing']}"
    # Live containers are the seed's formula.
    assert result["containers_total"] == result["containers_formula"]
    # Hop trails are those the pattern implies, classified from where the pods ran (through
    # ambient L4 proxies alone: one proxy per call within a node, two across nodes).
    share = result["cross_node_share"]
    assert result["proxies_per_request"] == pytest.approx(expected_proxies(case.pattern.value, CALLS, cross_node_share=share), abs=0.01)
    hops = result["hops"]
    want = expected_hop_counts(case.pattern, CALLS, cross_node_share=share)
    assert "unknown" not in hops
    assert round(sum(hops.values()), 3) == pytest.approx(want["total"], abs=0.01) and hops.get("loopback", 0) == want["loopback"], hops
    if result["nodes"] > 1:
        # Replicas spread over the nodes: some calls cross nodes, each as one cross-node hop,
        # or, through a waypoint (a pod of its own on any node), up to two.
        detour = 2 if any(m.own_pod for m in pattern_spec(case.pattern).proxies()) else 1
        assert result["cross_node_share"] > 0
        assert 0 < hops.get("cross_node", 0) <= detour * CALLS
    if result.get("node_rollouts") is not None:
        # A DaemonSet rolls node by node: never more than one node without its agent.
        assert {r["node"] for r in result["node_rollouts"]} and result["max_nodes_down_at_once"] <= 1
    assert result["latency_ms"]["before"]["p50"] is not None
    # Every failed request has a cause the evidence decides: none is left unattributed.
    assert sum(result["failures_by_cause"].values()) == result["failed_requests"]
    assert result["unattributed_failures"] == 0, result["failures_by_cause"]
    if case.agent is None:
        # The control: nothing of a pattern to fail, so nothing charged to one.
        assert result["app_pods_recreated"] == 0 and charged_failures(result) == 0, result["failures_by_cause"]
        return
    if placement(case) is Placement.NODE:
        # The DaemonSet replaced its agent on every node, one node at a time.
        assert len(result["node_rollouts"] or []) == result["nodes"], result["node_rollouts"]
        # A DaemonSet agent upgrade recreates no app pod and restarts no app container.
        assert result["app_pods_recreated"] == 0
        assert result["app_container_restarts"] == 0
    elif placement(case) is Placement.SERVICE:
        # A waypoint upgrade is its own Deployments' rollout: the app pods are left alone.
        assert result["app_pods_recreated"] == 0
        assert result["app_container_restarts"] == 0
    elif case.upgrade == "in-place":
        # In place: no app pod recreated, exactly one container (the sidecar) restarted per pod.
        assert result["app_pods_recreated"] == 0
        assert result["app_container_restarts"] == result["app_pods"]
    else:
        # A rolling sidecar agent upgrade recreates every app pod.
        assert result["app_pods_recreated"] == result["app_pods"]
    if not case.naive:
        # Zero-downtime settings: failed requests the pattern is charged with (or that no
        # evidence explains) during the upgrade within the threshold.
        assert charged_failures(result) <= thresholds.max_failed_requests, (
            f"{result['failed_requests']} failed ({result['failures_by_cause']}), downtime {result['downtime_s']}s"
        )
    if case.agent == "logging" and case.upgrade == "in-place":
        # Each restarted sidecar log agent resumes from its checkpoint: at most one batch again.
        assert (result["log_lines_duplicated"] or 0) <= (result["log_max_batch_lines"] or 0) * result["app_pods"]
    if case.agent == "logging" and case.pattern is Pattern.DAEMONSET:
        # A DaemonSet log-agent upgrade loses no log line.
        assert result["log_lines_lost"] == 0
        assert result["log_lines_duplicated"] == 0
    assert claims == []
