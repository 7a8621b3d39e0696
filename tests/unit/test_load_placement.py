"""Where the load runs (load/placement.py): the flag's defaults per provider, the load node's
check on a cluster's node list, and the local cluster's load nodes (labelled, tainted, left
out of the apps' node count)."""

from __future__ import annotations

import pytest
from kubernetes import client

from patternbench.cluster.local.configs import kubelet_args, kubelet_config
from patternbench.cluster.local.settings import LocalSettings, MachineSize
from patternbench.cluster.registry import PROVIDERS
from patternbench.errors import UsageError
from patternbench.load.placement import LOAD_NODE_LABEL, check_load_nodes, pod_placement
from patternbench.run_options import load_from_of, provider_options, resolve_run


def node(name: str, load: bool = False, ready: bool = True, cordoned: bool = False) -> client.V1Node:
    return client.V1Node(
        metadata=client.V1ObjectMeta(name=name, labels={LOAD_NODE_LABEL: "true"} if load else {"kubernetes.io/hostname": name}),
        spec=client.V1NodeSpec(unschedulable=cordoned or None),
        status=client.V1NodeStatus(conditions=[client.V1NodeCondition(type="Ready", status="True" if ready else "False")]),
    )


def getter(**values: object):
    defaults = {"provider": "local", "nodes": "3", "profile": "short", "max_failed_requests": "0", "repeat": "1", "results": "results"}
    merged = {**defaults, **values}
    return lambda dest: merged.get(dest)


def test_each_provider_says_where_its_load_runs_by_default() -> None:
    assert {name: entry.load_from for name, entry in PROVIDERS.items()} == {"local": "host", "kind": "host", "gke": "cluster", "kubeconfig": "cluster"}
    assert load_from_of(getter(provider="gke")) == "cluster"
    assert load_from_of(getter(provider="gke", load_from="host")) == "host"
    plan = resolve_run(getter(load_from="cluster", load_workers="3"))
    assert (plan.profile.load.load_from, plan.profile.load.pod_workers) == ("cluster", 3)
    assert resolve_run(getter()).profile.load.load_from == "host"


def test_a_local_run_from_the_cluster_asks_for_a_load_node() -> None:
    assert provider_options(getter(load_from="cluster")).min_load_nodes == 1
    assert provider_options(getter()).min_load_nodes == 0
    assert provider_options(getter()).load_nodes is None  # what the cluster has
    assert provider_options(getter(load_nodes="2")).load_nodes == 2


def test_the_load_nodes_are_found_and_the_apps_keep_theirs() -> None:
    assert check_load_nodes([node("a"), node("b"), node("load", load=True)]) == ["load"]
    with pytest.raises(UsageError, match="needs a Ready node labelled"):
        check_load_nodes([node("a"), node("b")])
    with pytest.raises(UsageError, match="needs a Ready node labelled"):
        check_load_nodes([node("a"), node("load", load=True, ready=False)])
    with pytest.raises(UsageError, match="needs a Ready node labelled"):  # labelled, but none free
        check_load_nodes([node("a"), node("load", load=True, cordoned=True)])
    with pytest.raises(UsageError, match="none is left for the apps"):
        check_load_nodes([node("load", load=True), node("b", ready=False)])


def test_the_load_pods_select_the_load_node_and_tolerate_its_taint() -> None:
    placed = pod_placement()
    assert placed["node_selector"] == {LOAD_NODE_LABEL: "true"}
    [toleration] = placed["tolerations"]
    assert (toleration.key, toleration.value, toleration.effect) == (LOAD_NODE_LABEL, "true", "NoSchedule")


def test_local_load_nodes_follow_the_apps_nodes_labelled_and_tainted() -> None:
    s = LocalSettings(node_count=3, load_node_count=1)
    assert [n.name for n in s.nodes] == ["pb-node-1", "pb-node-2", "pb-node-3", "pb-node-4"]
    assert [n.load for n in s.nodes] == [False, False, False, True]
    load_args = kubelet_args(s, s.nodes[3])
    assert f"--node-labels={LOAD_NODE_LABEL}=true" in load_args
    assert f"--register-with-taints={LOAD_NODE_LABEL}=true:NoSchedule" in load_args
    assert not any("load-node" in a for a in kubelet_args(s, s.nodes[0]))
    # Every node's reservation counts all four nodes (they share the machine).
    machine = MachineSize(cpus=4, memory_mib=16384)
    assert "systemReserved:\n  cpu: 3000m" in kubelet_config(s, s.nodes[0], machine)
