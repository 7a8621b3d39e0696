"""The experiment with its load from inside the cluster (issue 23): the same cases as from the
host, the sidecar's and the DaemonSet's mesh upgrades, with Locust's master, workers and the
prober as pods on the load node. The same claims must hold, every entry must say where its
load ran, and the report must say it."""

from __future__ import annotations

from dataclasses import replace
from typing import Any

import pytest
from kubernetes import client

from patternbench.experiment import run_matrix
from patternbench.load.placement import LOAD_NODE_LABEL, is_load_node
from patternbench.results.report import write_report
from patternbench.results.summary import check_claims, expected_proxies
from patternbench.results.verdicts import Thresholds
from patternbench.specs.cases import PROFILES, default_matrix
from patternbench.specs.topology import Pattern, load_topology

pytestmark = pytest.mark.cluster


def test_the_mesh_upgrades_with_the_load_from_the_cluster_hold_every_claim(cluster: Any, kube_api: object, tmp_path: Any) -> None:
    load_nodes = [n.metadata.name for n in client.CoreV1Api(kube_api).list_node().items if is_load_node(n.metadata.labels)]
    if not load_nodes:
        pytest.fail(f"the session's cluster has no node labelled {LOAD_NODE_LABEL}: run the cluster tests with --load-nodes 1 (make test does)", pytrace=False)
    profile = PROFILES["short"]
    profile = replace(profile, load=replace(profile.load, load_from="cluster", pod_workers=2))
    cases = default_matrix([Pattern.SIDECAR, Pattern.DAEMONSET], ["mesh"], ["rolling"], "client", naive=False)
    assert [c.id for c in cases] == ["sidecar-mesh", "daemonset-mesh"]
    run_dir = run_matrix(cluster, load_topology(), cases, profile, tmp_path)
    summary = write_report(run_dir, Thresholds())
    calls = sum(len(s.calls) for s in load_topology().services)
    for name, entry in summary["cases"].items():
        assert entry["load_from"] == "cluster", name
        assert not entry["missing"], (name, entry["missing"])
        assert check_claims(entry, calls, Thresholds()) == [], name
        # The users' requests came back and went through the chain, with the pattern's hops.
        assert entry["total_requests"] > 50 and entry["load"]["exceptions"] == 0, (name, entry["total_requests"], entry["load"])
        assert entry["proxies_per_request"] == pytest.approx(expected_proxies(entry["pattern"], calls, cross_node_share=entry["cross_node_share"]), abs=0.01)
        assert entry["failed_requests"] == 0 and entry["downtime_s"] == 0, name
        # The load's pods are not the apps': the live containers are still the formula's,
        # counted on the apps' nodes only (the load node holds no agent).
        assert entry["containers_total"] == entry["containers_formula"], name
        assert entry["nodes"] == len(client.CoreV1Api(kube_api).list_node().items) - len(load_nodes), name
        # Its records came from the worker and prober pods, every probe among them.
        records = [line for line in (run_dir / name / "requests.jsonl").read_text().splitlines()]
        assert records and all('"load_pod":' in line for line in records), name
    assert "from inside the cluster" in (run_dir / "report.md").read_text()
