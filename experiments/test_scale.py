"""`patternbench scale` on the local cluster, short: three sizes (2, 4, 6 services) of a generated topology in the
control, sidecar and DaemonSet patterns, then the node axis (the cluster rebuilt with 2 and
4 nodes, 2 services; its 3-node point is the services axis's). What the API server's own
metrics say must follow the patterns (EndpointSlice watches: one per sidecar proxy, one per
node proxy), the container formulas must hold at every size and node count, the held-out
largest size and node count must be predicted from the others, and the cluster must have
its 3 nodes again at the end."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from patternbench.progress import Progress
from patternbench.pytest_plugin import PLAN
from patternbench.scale_points import NodeAxis
from patternbench.scale_run import SCALE, run_scale
from patternbench.specs.agents import AgentKind
from patternbench.specs.cases import Profile
from patternbench.specs.generated_topology import layered
from patternbench.specs.patterns import Pattern, pattern_spec

pytestmark = pytest.mark.cluster

SIZES = [2, 4, 6]  # light enough for make test on 2 cores; 12 services put the load average at 43
NODES = NodeAxis((2, 3, 4), 2)
PATTERNS = [Pattern.NONE, Pattern.SIDECAR, Pattern.DAEMONSET]


@pytest.fixture(scope="module")
def scale(request: pytest.FixtureRequest, cluster: Any, profile: Profile) -> tuple[Path, dict[str, Any]]:
    run_dir = run_scale(cluster, PATTERNS, SIZES, 2, 2, profile, request.config.stash[PLAN].results, Progress(), NODES)
    return run_dir, json.loads((run_dir / SCALE).read_text())


def at(doc: dict[str, Any], pattern: Pattern, services: int, nodes: int = 3) -> list[dict[str, Any]]:
    return [p for p in doc["points"] if p["pattern"] == pattern.value and p["services"] == services and p["nodes"] == nodes]


def test_every_size_and_pattern_was_measured_and_the_formula_held(scale: tuple[Path, dict[str, Any]]) -> None:
    _, doc = scale
    for pattern in PATTERNS:
        for services in SIZES:
            points = at(doc, pattern, services)
            assert points, f"{pattern.value} at {services} services was not measured"
            for p in points:
                assert p["pods"] == 2 * services
                assert p["containers_total"] == p["containers_formula"], p


def test_endpointslice_watches_follow_the_mesh_instances(scale: tuple[Path, dict[str, Any]]) -> None:
    """From the API server's own metrics: over the control's watches, one more per mesh proxy
    instance, so per pod with sidecars and per node with a DaemonSet, at every size."""
    _, doc = scale
    for services in SIZES:
        control = at(doc, Pattern.NONE, services)[0]["apiserver_endpointslice_watchers"]
        assert control is not None, "the API server's metrics were not read"
        for pattern in (Pattern.SIDECAR, Pattern.DAEMONSET):
            point = at(doc, pattern, services)[0]
            want = pattern_spec(pattern).running(AgentKind.MESH, layered(services), point["nodes"])
            assert point["apiserver_endpointslice_watchers"] - control == want, (pattern.value, services, point["apiserver_watchers"])


def test_the_largest_size_is_predicted_from_the_smaller_ones(scale: tuple[Path, dict[str, Any]]) -> None:
    run_dir, doc = scale
    for pattern in (Pattern.SIDECAR, Pattern.DAEMONSET):
        held = doc["holdout"][pattern.value]
        assert held["containers_total"]["error"] == pytest.approx(0.0, abs=1e-9)  # the formula is linear in pods
        assert abs(held["apiserver_endpointslice_watchers"]["error"]) <= 0.15, held["apiserver_endpointslice_watchers"]
        assert held["containers_total"]["services"] == max(SIZES)
    assert set(doc["projection"]) == {"100", "300", "1000"}
    report = (run_dir / "report.md").read_text()
    assert report.startswith("# At scale") and "## The largest size, held out" in report


def test_the_node_axis_resized_the_cluster_and_its_formulas_and_watches_held(scale: tuple[Path, dict[str, Any]], cluster: Any) -> None:
    _, doc = scale
    for nodes in NODES.counts:
        control = at(doc, Pattern.NONE, NODES.services, nodes)
        assert control and control[0]["nodes"] == nodes, f"the control at {nodes} nodes was not measured"
        for pattern in (Pattern.SIDECAR, Pattern.DAEMONSET):
            point = at(doc, pattern, NODES.services, nodes)[0]
            assert point["containers_total"] == point["containers_formula"], point
            want = pattern_spec(pattern).running(AgentKind.MESH, layered(NODES.services), nodes)
            assert point["apiserver_endpointslice_watchers"] - control[0]["apiserver_endpointslice_watchers"] == want, (pattern.value, nodes, point["apiserver_watchers"])
    # The DaemonSet's containers grow by its agents per node: the largest count is predicted exactly.
    held = doc["holdout_nodes"][Pattern.DAEMONSET.value]["containers_total"]
    assert held["nodes"] == max(NODES.counts) and held["error"] == pytest.approx(0.0, abs=1e-9)
    assert "nodes" in doc["fits"][Pattern.DAEMONSET.value]["containers_total"]["terms"]
    assert set(doc["projection"]["1000"][Pattern.DAEMONSET.value]["containers_total"]["nodes"]) == {"10", "50"}
    nodes = [n for n in cluster.nodes() if n.ready]
    assert len([n for n in nodes if not n.load]) == 3, "the cluster did not get its 3 nodes back"
    # A load node keeps its place through every resize (the node axis counts the apps' nodes).
    assert len([n for n in nodes if n.load]) == cluster.settings.load_node_count, nodes
