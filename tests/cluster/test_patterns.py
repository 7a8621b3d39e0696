"""Each pattern deployed for real: pods Ready under Pod Security, container counts equal the
seed's formulas, hop trails as the pattern implies, log lines reach the sink, undeploy is clean."""

from __future__ import annotations

import json
import urllib.request
from collections import Counter
from typing import Iterator

import pytest
from kubernetes import client, config
from tenacity import Retrying, retry_if_exception_type, stop_after_delay, wait_fixed

from patternbench.load.records import answer_trail
from patternbench.measure import call_hops, calls, crosses_nodes, pods_in, request_hops, via_kinds
from patternbench.observe.logsink import sink_stats
from patternbench.operate.deploy import DeployedRun, deploy_run
from patternbench.operate.kube import Deployer, live_containers
from patternbench.progress import Progress
from patternbench.specs.patterns import pattern_spec
from patternbench.specs.topology import Pattern, containers_formula, expected_hop_counts, load_topology

pytestmark = pytest.mark.cluster

TOPOLOGY = load_topology()


@pytest.fixture(params=[p.value for p in Pattern])
def deployed(request: pytest.FixtureRequest, cluster: object) -> Iterator[tuple[DeployedRun, client.ApiClient]]:
    pattern = Pattern(request.param)
    run = deploy_run(cluster, TOPOLOGY, pattern, progress=Progress(quiet=True))
    api = config.new_client_from_config(config_file=str(cluster.kubeconfig()))  # type: ignore[attr-defined]
    try:
        yield run, api
    finally:
        Deployer(api, Progress(quiet=True)).undeploy(run.run_id, graceful=False)


def get(url: str) -> tuple[int, str, dict, bytes]:
    with urllib.request.urlopen(url, timeout=10) as resp:
        body = resp.read()
        return resp.status, resp.headers.get("Via", ""), json.loads(body), body


def test_pattern_end_to_end(deployed: tuple[DeployedRun, client.ApiClient]) -> None:
    run, api = deployed
    pattern = Pattern(run.pattern)
    core = client.CoreV1Api(api)

    # Every pod Ready: the API server accepted them all under the namespaces' Pod Security.
    for ns in run.namespaces:
        for pod in core.list_namespaced_pod(ns).items:
            assert any(c.type == "Ready" and c.status == "True" for c in pod.status.conditions or []), pod.metadata.name
    events = [e for ns in run.namespaces for e in core.list_namespaced_event(ns).items if e.reason == "FailedCreate"]
    assert events == [], [e.message for e in events]

    # The live container count is the seed's formula.
    assert live_containers(core, run.namespaces) == containers_formula(TOPOLOGY, pattern, run.nodes)

    # Hop trails: what the pattern implies on every call, and on the entry.
    served: Counter[str] = Counter()
    crossing_calls = 0
    spec = pattern_spec(pattern)
    calls_per_request = sum(len(s.calls) for s in TOPOLOGY.services)
    for _ in range(30):
        status, via, answer, body = get(run.entry_url)
        assert status == 200, answer
        served += pods_in(answer)
        # Hops from where things ran: a call between pods on different nodes is exactly one
        # cross-node hop, whatever the pattern; a call within a node none.
        record = {"via": via, **answer_trail(body)}
        crossed_here = 0
        for call in record["calls"]:
            crossed = crosses_nodes(call)
            assert crossed is not None, call
            # The proxies this call passed (its Via, or an ambient call's tunnel trail) are
            # those the pattern implies for a call within or across nodes.
            assert sorted(via_kinds(call["via"])) == spec.call_kinds(crossed, TOPOLOGY.agents.mesh), call
            if not any(m.own_pod for m in spec.proxies(TOPOLOGY.agents.mesh)):
                # No waypoint between: a call across nodes is exactly one cross-node hop.
                assert call_hops(call).count("cross_node") == int(crossed), call
            crossed_here += crossed
        crossing_calls += crossed_here
        want = expected_hop_counts(pattern, calls_per_request, TOPOLOGY.agents.mesh, cross_node_share=crossed_here / max(1, len(record["calls"])))
        hops = request_hops(record)
        assert "unknown" not in hops and sum(hops.values()) == pytest.approx(want["total"]) and hops["loopback"] == want["loopback"], (hops, want)
        for _caller, _callee, down in calls(answer):
            # The request as the callee saw it carries the L7 proxies' Via entries.
            assert via_kinds(down["answer"].get("via")) == spec.request_via_kinds(TOPOLOGY.agents.mesh)
        entry_kinds = via_kinds(via)
        assert entry_kinds == (["sidecar"] if pattern in (Pattern.SIDECAR, Pattern.HYBRID) else [])

    if run.nodes > 1:
        assert crossing_calls > 0, "replicas spread over the nodes, yet no call crossed a node"

    # Logs: with a log agent, every line each pod wrote reaches the sink, once.
    if pattern is Pattern.NONE:
        return

    def all_arrived() -> None:
        stats = sink_stats(api, run.agents_namespace)
        received = {pod: counts["received"] for pod, counts in stats["sources"].items()}
        assert received == dict(served), f"sink {received} != served {dict(served)}"
        assert stats["total"]["missing"] == 0 and stats["total"]["duplicated"] == 0

    for attempt in Retrying(stop=stop_after_delay(20), wait=wait_fixed(0.5), retry=retry_if_exception_type(AssertionError), reraise=True):
        with attempt:
            all_arrived()


def test_undeploy_leaves_nothing(cluster: object) -> None:
    run = deploy_run(cluster, TOPOLOGY, Pattern.DAEMONSET, progress=Progress(quiet=True))
    api = config.new_client_from_config(config_file=str(cluster.kubeconfig()))  # type: ignore[attr-defined]
    deployer = Deployer(api, Progress(quiet=True))
    assert deployer.leftovers(run.run_id)  # there was something to remove
    deployer.undeploy(run.run_id)  # graceful, as `patternbench undeploy` does
    assert deployer.leftovers(run.run_id) == []
