"""Blast radius: a fault injected with a real mechanism under load, per pattern, and what the
model says it may cost (summary.fault_claims, explained in the report), asserted on what
was measured. Without --fault, one case per pattern (make test); with --fault KIND, the
fault family for it."""

from __future__ import annotations

from typing import Any

import pytest

from patternbench.specs.cases import Case
from patternbench.specs.faults import fault_spec, runs_on_nodes
from patternbench.specs.topology import Pattern

pytestmark = [pytest.mark.cluster, pytest.mark.faults]


def test_fault(case: Case, result: dict[str, Any], claims: list[str]) -> None:
    assert not result["missing"], f"incomplete case: {result['missing']}"
    fault = result["fault"]
    assert fault is not None and fault["kind"] == case.fault
    # The live containers are still the formula: the fault did not leave a pod behind.
    assert result["containers_total"] == result["containers_formula"]
    if fault_spec(fault["kind"]).target == "injector":
        # The refusals and the absence of pods admitted without their sidecar are claims;
        # here: the fault hit the whole injector, and the rollout went on after it.
        assert fault["target"]["deployment"] == "injector" and len(fault["target"]["pods"]) == 2, fault["target"]
        assert fault["upgrade_completed"] and result["app_pods_recreated"] == result["app_pods"]
    elif fault["target"]:
        target = fault["target"]
        # What the fault hit is among what the pod watch saw affected, on its node.
        assert target["pod"] in fault["affected_pods"] and target["node"] in fault["affected_nodes"]
        assert fault["recovery_s"] is not None, "the faulted agent never served again"
        if case.agent and not runs_on_nodes(case.pattern, case.agent):
            # A sidecar fault touches its own pod only.
            assert [p for p in fault["affected_pods"] if p != target["pod"]] == [], fault["affected_pods"]
    if case.fault == "apiserver-down" and case.pattern is Pattern.NONE:
        assert result["failed_requests"] == 0
    assert claims == []
