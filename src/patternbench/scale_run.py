"""`patternbench scale`: the same patterns measured at growing sizes. Per size, a generated
topology (generated_topology.layered) is deployed once per pattern and each pattern's mesh
agent is upgraded under load, as one run of the ordinary harness into
`<run>/services-<N>/` (so every trial has the usual evidence, summary and report); each
size's trials become points of `<run>/scale.json`, rewritten after every size so an
interrupted scale run keeps what it measured, then fitted, held out and projected
(scale_points.scale_document).

The node axis (NodeAxis) resizes the cluster between its points (a provider that Resizes:
the local one rebuilds itself with that many nodes) and measures every pattern at one
service count into `<run>/nodes-<N>/`; the cluster gets its first node count back at the end,
whatever happened.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from kubernetes import client
from kubernetes import config as kube_config

from patternbench.cluster.provider import Resizes
from patternbench.errors import UsageError
from patternbench.experiment import run_matrix, start_run
from patternbench.operate.deploy import forget_images
from patternbench.operate.kube import node_capacities
from patternbench.progress import Progress
from patternbench.results.report import write_report
from patternbench.results.scale_report import write_scale_report
from patternbench.scale_points import NODES_AXIS, NodeAxis, point, scale_document
from patternbench.specs.agents import AGENTS, AgentKind
from patternbench.specs.cases import Case, Profile
from patternbench.specs.generated_topology import layered
from patternbench.specs.patterns import Pattern, pattern_spec
from patternbench.specs.topology import check_capacity

SCALE = "scale.json"


def scale_case(pattern: Pattern) -> Case:
    """The case a size measures for a pattern: its mesh agent's rolling upgrade (the mesh
    is what watches the API server and sits on the request path); the control for none."""
    spec = pattern_spec(pattern)
    mesh = [name for name, agent in AGENTS.items() if agent.kind is AgentKind.MESH and spec.runs(name)]
    return Case(pattern, mesh[0] if mesh else None)


def size_dir_name(services: int) -> str:
    return f"services-{services:03d}"


def nodes_dir_name(nodes: int) -> str:
    return f"nodes-{nodes:02d}"


def check_sizes(provider: Any, patterns: list[Pattern], sizes: list[int], replicas: int, depth: int, node_axis: NodeAxis | None = None) -> None:
    """Every size in every pattern fits the cluster (check_capacity), and the node axis's
    service count fits each of its node counts (nodes like the first one), before anything is
    deployed."""
    api = kube_config.new_client_from_config(config_file=str(provider.kubeconfig()))
    nodes, running = node_capacities(client.CoreV1Api(api))
    for services in sizes:
        topology = layered(services, replicas, depth)
        for pattern in patterns:
            check_capacity(topology, pattern, nodes, used_pods=running)
    if node_axis and nodes:
        per_node_system = running / len(nodes)  # CoreDNS and the like, as now
        for count in node_axis.counts:
            topology = layered(node_axis.services, replicas, depth)
            for pattern in patterns:
                check_capacity(topology, pattern, [nodes[0]] * count, used_pods=round(per_node_system * count))


def run_scale(provider: Any, patterns: list[Pattern], sizes: list[int], replicas: int, depth: int, profile: Profile,
              results: Path, progress: Progress, node_axis: NodeAxis | None = None) -> Path:
    """Every size in turn, every pattern at each, then the node axis; returns the scale run's directory."""
    if node_axis and not isinstance(provider, Resizes):
        raise UsageError(f"--nodes {','.join(map(str, node_axis.counts))}: the {provider.name} provider cannot resize its cluster")
    check_sizes(provider, patterns, sizes, replicas, depth, node_axis)
    cases = [scale_case(p) for p in patterns]
    run_dir, meta = start_run(results, provider.name, profile, [c.id for c in cases], 1)
    meta.update({"scale": {"sizes": sizes, "replicas": replicas, "depth": depth, "patterns": [p.value for p in patterns],
                           "nodes": list(node_axis.counts) if node_axis else None, "nodes_at_services": node_axis.services if node_axis else None}})
    (run_dir / "run.json").write_text(json.dumps(meta, indent=1))
    points: list[dict[str, Any]] = []
    failed: dict[str, list[str]] = {}

    def measure(services: int, run_id: str, label: str, axis: str) -> None:
        topology = layered(services, replicas, depth)
        with progress.step(label):
            size_dir = run_matrix(provider, topology, cases, profile, run_dir, progress, run_id=run_id)
            summary = write_report(size_dir)
        failed.update({f"{run_id}, {case}": problems for case, problems in summary["failed_claims"].items()})
        for entry in summary["cases"].values():
            points.extend(point(trial, services, axis) for trial in entry.get("trials") or [entry])
        (run_dir / SCALE).write_text(json.dumps({"points": points}, indent=1))

    try:
        for i, services in enumerate(sizes, 1):
            measure(services, size_dir_name(services), f"size {i}/{len(sizes)}: {services} services x {replicas} pods", "services")
        if node_axis:
            first = now = len([n for n in provider.nodes() if not n.load])  # the apps' nodes: a load node keeps its place
            try:
                # The first node count is measured already when the service count is one of the sizes.
                todo = [n for n in node_axis.counts if n != first or node_axis.services not in sizes]
                todo.sort(key=lambda n: n != first)  # the count the cluster has now first: no resize for it
                for i, count in enumerate(todo, 1):
                    if count != now:
                        with progress.step(f"resize the cluster to {count} nodes"):
                            now = -1  # half-resized until it returns
                            provider.resize(count)
                            forget_images(provider)
                            now = count
                    measure(node_axis.services, nodes_dir_name(count), f"nodes {i}/{len(todo)}: {count} nodes, {node_axis.services} services", NODES_AXIS)
            finally:
                if now != first:
                    with progress.step(f"resize the cluster back to {first} nodes"):
                        provider.resize(first)
                        forget_images(provider)
    finally:
        # Interrupted or not, what was measured is fitted and reported (the fits skip a
        # figure with too few sizes).
        if points:
            doc = scale_document(points)
            doc["failed_claims"] = failed
            (run_dir / SCALE).write_text(json.dumps(doc, indent=1))
            write_scale_report(doc, run_dir)
    return run_dir
