"""The README's recipes, proven: a toy fault, agent or pattern registered where its recipe
says reaches every reader (the matrix, the checks, rendering, the summary's claims, the
report). The figure's recipe is proven in test_figures.py."""

from __future__ import annotations

from typing import Any

import pytest

from patternbench.render import RenderOptions, find, render
from patternbench.render.agent_objects import BUILT_IN, AgentObjects
from patternbench.results import report
from patternbench.results.summary import check_claims, is_agent_sample
from patternbench.results.verdicts import Thresholds
from patternbench.specs.agents import AGENTS, AgentKind, AgentSpec, Placement
from patternbench.specs.cases import fault_matrix
from patternbench.specs.faults import FAULTS, FaultSpec, check_fault, injectable
from patternbench.specs.patterns import PATTERNS, Pattern, PatternSpec
from patternbench.specs.topology import load_topology


def _toy_claims(entry: dict[str, Any], fault: dict[str, Any], thresholds: Thresholds) -> list[str]:
    return [f"toy-fault cost {fault['failed_in_window']} requests"] if fault["failed_in_window"] else []


def _toy_section(cases: dict[str, Any]) -> list[str]:
    hit = [name for name, e in cases.items() if (e.get("fault") or {}).get("kind") == "toy-fault"]
    return ["## The toy fault", "", *[f"- {name}" for name in hit]] if hit else []


def _faulted_entry(kind: str, failed: int) -> dict[str, Any]:
    return {
        "case": "sidecar-mesh-toy", "pattern": "sidecar", "agent": "mesh", "naive": False, "missing": [],
        "containers_total": 9, "containers_formula": 9, "proxies_per_request": 5, "hops": {"total": 7, "loopback": 5},
        "max_nodes_down_at_once": 1, "app_pods_recreated": 0, "app_container_restarts": 0, "app_pods": 6,
        "failed_requests": failed, "pattern_failures": failed, "unattributed_failures": 0, "downtime_s": 0.0,
        "fault": {"kind": kind, "duration_s": 0.0, "target": None, "failed_in_window": failed, "requests_in_window": 10,
                  "blast_radius": 0.0, "expected_blast_radius": None, "instance": None, "window_s": 1.0, "affected_pods": [],
                  "affected_nodes": [], "upgrade_completed": None},
    }


def test_a_fault_registered_in_one_place_reaches_the_matrix_the_checks_the_claims_and_the_report(monkeypatch: pytest.MonkeyPatch) -> None:
    toy = FaultSpec("toy-fault", "a toy: one agent instance killed", "agent", False, False, action="kill",
                    request_path_only=True, claims=_toy_claims, note="TOY NOTE", section=_toy_section)
    monkeypatch.setitem(FAULTS, toy.name, toy)
    cases = fault_matrix(["toy-fault"])
    assert cases and all(c.fault == "toy-fault" for c in cases)
    assert {c.agent for c in cases} <= {"mesh", "l4proxy", "waypoint"}  # request_path_only: no log agent
    assert "toy-fault" in injectable(frozenset({"kill"})) and "toy-fault" not in injectable(frozenset({"freeze"}))
    check_fault("toy-fault", Pattern.SIDECAR, "mesh", injectable(frozenset({"kill"})), "local")
    assert "toy-fault cost 3 requests" in check_claims(_faulted_entry("toy-fault", 3), 2)
    assert not any("toy-fault" in c for c in check_claims(_faulted_entry("toy-fault", 0), 2))
    entries = {"sidecar-mesh-toy": _faulted_entry("toy-fault", 3)}
    text = "\n".join(report.faults_text(entries) + report.fault_sections(entries))
    assert "TOY NOTE" in text and "## The toy fault" in text and "- sidecar-mesh-toy" in text


def _toy_sidecar(objs: list[dict[str, Any]], opts: RenderOptions, instances: int) -> None:
    for deployment in find(objs, "Deployment"):
        if deployment["metadata"]["namespace"] == opts.app_namespace and instances:
            deployment["spec"]["template"]["spec"].setdefault("initContainers", []).append(
                {"name": "toy-agent", "image": "patternbench.local/toy:v1", "restartPolicy": "Always"})


def test_a_built_in_agent_reaches_rendering_the_container_count_and_the_resource_samples(monkeypatch: pytest.MonkeyPatch) -> None:
    toy = AgentSpec("toy", AgentKind.GENERIC, image="toy", container="toy-agent", switch="mesh", versions=("v1",),
                    upgradable=False, container_names=("toy-agent",), placements=frozenset({Placement.POD}))
    monkeypatch.setitem(AGENTS, "toy", toy)  # the spec (specs/agents.py)
    monkeypatch.setitem(BUILT_IN, "toy", AgentObjects(sidecar=_toy_sidecar))  # its objects (render/agent_objects.py)
    sidecar = PATTERNS[Pattern.SIDECAR]
    monkeypatch.setitem(PATTERNS, Pattern.SIDECAR, PatternSpec(Pattern.SIDECAR, {**sidecar.placement, "toy": Placement.POD}))
    topology = load_topology()
    objs = render(topology, Pattern.SIDECAR, RenderOptions(run_id="pb-recipe", nodes=3))
    apps = [d for d in find(objs, "Deployment") if d["metadata"]["namespace"] == "pb-recipe"]
    assert apps and all("toy-agent" in [c["name"] for c in d["spec"]["template"]["spec"]["initContainers"]] for d in apps)
    before = sidecar.containers(topology, 3)
    assert PATTERNS[Pattern.SIDECAR].containers(topology, 3) == before + topology.app_pods  # one more container per app pod
    assert is_agent_sample({"container": "toy-agent"}) and not is_agent_sample({"container": "app"})


def test_every_registered_pattern_reaches_the_claims_section() -> None:
    """The report's claims read the pattern registry, not a list of four."""
    def entry(pattern: str, agent: str | None) -> dict[str, Any]:
        return {"case": f"{pattern}-{agent}", "pattern": pattern, "agent": agent, "naive": False, "upgrade_strategy": "rolling",
                "injection": "client", "containers_total": 9, "containers_formula": 9, "agent_cpu_m_total": 1.0,
                "agent_memory_mib_total": 2.0, "agent_instances": 3, "agent_memory_mib_per_instance": 0.7,
                "app_pods_recreated": 0, "app_container_restarts": 0, "failed_requests": 0, "downtime_s": 0.0,
                "upgrade_duration_s": 1.0, "log_lines_lost": 0, "proxies_per_request": 4, "hops": {},
                "latency_ms": {"before": {"p50": 1.0, "p99": 2.0}}}
    cases = {"none-control": entry("none", None), "ambient-l4-l4proxy": entry("ambient-l4", "l4proxy"), "ambient-waypoint": entry("ambient", "waypoint")}
    text = "\n".join(report.claims_text(cases))
    for pattern in ("none", "ambient-l4", "ambient"):
        assert f"- {pattern}: 9 live containers" in text and f"- {pattern}: 4 proxies per request" in text
