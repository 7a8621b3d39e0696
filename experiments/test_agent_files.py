"""Agents brought in by agent files (agents/*.yaml), upgraded v1 -> v2 under load in every
pattern they support, beside the built-in agent they stand in for. Each case must hold the
claims of its kind (a DaemonSet log-agent upgrade loses no line, a node-agent upgrade leaves
the app alone, a sidecar upgrade recreates every app pod), and the agent's own containers
must be the ones measured."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from patternbench.experiment import run_case
from patternbench.load.runner import read_jsonl
from patternbench.measure import agent_resources, whole_rounds
from patternbench.pytest_plugin import PLAN
from patternbench.results.summary import check_claims, is_agent_sample, summarize_case
from patternbench.results.verdicts import Thresholds
from patternbench.specs.agent_file import keep_with_run, load_agent_file
from patternbench.specs.agents import AGENTS
from patternbench.specs.cases import Case, Profile
from patternbench.specs.patterns import PATTERNS, Pattern, pattern_spec
from patternbench.specs.topology import load_topology

pytestmark = pytest.mark.cluster

AGENT_FILES = sorted((Path(__file__).resolve().parents[1] / "agents").glob("*.yaml"))


def file_cases(config: pytest.Config) -> list[Case]:
    """Per agent file, one upgrade case per pattern it can run in (--pattern narrows them)."""
    chosen = set(config.stash[PLAN].patterns or [])
    cases = []
    known = dict(AGENTS)
    for path in AGENT_FILES:
        spec = load_agent_file(path)
        for pattern in PATTERNS:
            # Hybrid places a log agent as the DaemonSet does, a mesh proxy as the sidecar
            # pattern does: one case per placement is enough here (make study runs hybrid).
            if pattern is Pattern.HYBRID or (chosen and pattern not in chosen):
                continue
            if pattern_spec(pattern).placement and pattern_spec(pattern).runs(spec.name):
                cases.append(Case(pattern, spec.name))
    # Registered for the test that runs the case only: the upgrade matrix (collected
    # after this file) must not pick the shipped agent files up.
    AGENTS.clear()
    AGENTS.update(known)
    return cases


def pytest_generate_tests(metafunc: pytest.Metafunc) -> None:
    if "file_case" in metafunc.fixturenames:
        cases = file_cases(metafunc.config)
        metafunc.parametrize("file_case", cases, ids=[c.id for c in cases])


def test_agent_file_upgrade(file_case: Case, cluster: Any, experiment_run: dict[str, Any], profile: Profile, thresholds: Thresholds) -> None:
    spec = load_agent_file(next(p for p in AGENT_FILES if p.stem == file_case.agent))
    keep_with_run([spec], experiment_run["dir"])  # the session's report must know the agent too
    topology = load_topology()
    case_dir = run_case(cluster, topology, file_case, profile, experiment_run["dir"] / file_case.id)
    entry = summarize_case(case_dir)
    experiment_run["entries"][file_case.id] = entry
    assert not entry["missing"], f"incomplete case: {entry['missing']}"
    assert entry["upgrade_duration_s"] is not None
    assert entry["containers_total"] == entry["containers_formula"]
    # Before the upgrade (no rollout mixing old and new instances), the agent containers the
    # kubelet reported are exactly the pattern's formula's, the file's agent among them.
    agents = pattern_spec(file_case.pattern).containers(topology, entry["nodes"]) - topology.app_pods
    marks = {m["phase"]: m["t"] for m in read_jsonl(case_dir / "timeline.jsonl")}
    before = whole_rounds(read_jsonl(case_dir / "resources.jsonl"), float("-inf"), marks["upgrade_start"])
    assert agent_resources(before, is_agent_sample)["agent_instances"] == agents
    assert {r["container"] for r in before if is_agent_sample(r)} >= {file_case.agent}
    assert entry["agent_cpu_m_total"] and entry["agent_memory_mib_total"]
    calls = sum(len(s.calls) for s in topology.services)
    assert check_claims(entry, calls, thresholds) == []
