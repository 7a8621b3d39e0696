"""A generated topology (--services) deployed for real: its container count is the formula,
every request makes the calls the topology says (one per level, route one), the hops are the
pattern's, and the load reaches every service."""

from __future__ import annotations

import json
import urllib.request
from collections import Counter
from typing import Iterator

import pytest
from kubernetes import client, config

from patternbench.load.records import answer_trail
from patternbench.measure import calls, crosses_nodes, request_hops
from patternbench.operate.deploy import DeployedRun, deploy_run
from patternbench.operate.kube import Deployer, live_containers
from patternbench.progress import Progress
from patternbench.specs.generated_topology import layered
from patternbench.specs.topology import Pattern, containers_formula, expected_hop_counts

pytestmark = pytest.mark.cluster

TOPOLOGY = layered(6)  # the entry, then 2 and 3 services: two calls per request
REQUESTS = 60


def get(url: str) -> tuple[int, str, dict, bytes]:
    with urllib.request.urlopen(url, timeout=10) as resp:
        body = resp.read()
        return resp.status, resp.headers.get("Via", ""), json.loads(body), body


@pytest.fixture(params=[Pattern.SIDECAR.value, Pattern.DAEMONSET.value])
def deployed(request: pytest.FixtureRequest, cluster: object) -> Iterator[tuple[DeployedRun, client.ApiClient]]:
    run = deploy_run(cluster, TOPOLOGY, Pattern(request.param), progress=Progress(quiet=True))
    api = config.new_client_from_config(config_file=str(cluster.kubeconfig()))  # type: ignore[attr-defined]
    try:
        yield run, api
    finally:
        Deployer(api, Progress(quiet=True)).undeploy(run.run_id, graceful=False)


def test_generated_topology_spreads_requests_over_every_service(deployed: tuple[DeployedRun, client.ApiClient]) -> None:
    run, api = deployed
    pattern = Pattern(run.pattern)
    assert live_containers(client.CoreV1Api(api), run.namespaces) == containers_formula(TOPOLOGY, pattern, run.nodes)
    served: Counter[str] = Counter()
    for _ in range(REQUESTS):
        status, via, answer, body = get(run.entry_url)
        assert status == 200, answer
        served[answer["service"]] += 1
        made = list(calls(answer))
        assert len(made) == TOPOLOGY.calls_per_request, answer
        for _caller, callee, down in made:
            served[callee] += 1
            assert down["status"] == 200, down
        record = {"via": via, **answer_trail(body)}
        crossed = sum(bool(crosses_nodes(call)) for call in record["calls"])
        want = expected_hop_counts(pattern, TOPOLOGY.calls_per_request, TOPOLOGY.agents.mesh, cross_node_share=crossed / len(record["calls"]))
        hops = request_hops(record)
        assert sum(hops.values()) == pytest.approx(want["total"]) and hops.get("loopback", 0) == want["loopback"], (hops, want)
    assert set(served) == {s.name for s in TOPOLOGY.services}, f"services never reached in {REQUESTS} requests: {sorted({s.name for s in TOPOLOGY.services} - set(served))}"
    assert served[TOPOLOGY.entry] == REQUESTS and sum(served.values()) == REQUESTS * (1 + TOPOLOGY.calls_per_request)
