"""The local cluster's nodes are real, separate nodes: pods talk across them, every node
reaches Services and DNS, a hostNetwork pod binds its own node's address, a node's log
directory holds that node's pods only, and a node that lost its kubelet is repaired."""

from __future__ import annotations

import json
import os
import signal
import time
import urllib.error
import urllib.request

import pytest
from kubernetes import client
from tenacity import retry, retry_if_exception_type, stop_after_delay, wait_fixed

from patternbench.build.images import ImageArchive
from patternbench.load.placement import LOAD_NODE_LABEL, is_load_node

pytestmark = pytest.mark.cluster


def get_json(url: str, timeout: float = 5) -> tuple[int, dict]:
    try:
        with urllib.request.urlopen(url, timeout=timeout) as resp:
            status, body = resp.status, resp.read()
    except urllib.error.HTTPError as err:
        status, body = err.code, err.read()
    try:
        return status, json.loads(body or b"{}")
    except ValueError:
        return status, {"text": body[:200].decode(errors="replace")}


def node_names(api: object) -> list[str]:
    return sorted(n.metadata.name for n in client.CoreV1Api(api).list_node().items)


@retry(stop=stop_after_delay(90), wait=wait_fixed(0.5), retry=retry_if_exception_type((OSError, AssertionError)), reraise=True)
def ready_pods_on_every_node(api: object, namespace: str, selector: str, nodes: int) -> dict[str, client.V1Pod]:
    """node name -> the DaemonSet's Ready pod on it."""
    pods = client.CoreV1Api(api).list_namespaced_pod(namespace, label_selector=selector, _request_timeout=5).items
    ready = {p.spec.node_name: p for p in pods if any(c.type == "Ready" and c.status == "True" for c in (p.status.conditions or []))}
    assert len(ready) == nodes, f"Ready on {sorted(ready)} of {nodes} nodes"
    return ready


def netcheck_daemonset(api: object, namespace: str, image: ImageArchive, name: str, host_network: bool = False, port: int = 8080) -> None:
    """netcheck on every node; with a read-only hostPath of the node's /var/log/pods."""
    labels = {"app": name}
    container = client.V1Container(
        name="netcheck", image=image.ref, image_pull_policy="Never",
        env=[client.V1EnvVar(name="PORT", value=str(port)),
             client.V1EnvVar(name="NODE_NAME", value_from=client.V1EnvVarSource(field_ref=client.V1ObjectFieldSelector(field_path="spec.nodeName")))],
        readiness_probe=client.V1Probe(http_get=client.V1HTTPGetAction(path="/", port=port), period_seconds=1),
        volume_mounts=[client.V1VolumeMount(name="pod-logs", mount_path="/host/pod-logs", read_only=True)],
    )
    spec = client.V1PodSpec(
        containers=[container], host_network=host_network,
        # Every node, a load node too (it tolerates any taint, as node-level DaemonSets such as
        # kube-proxy's do): the load's pods must reach the others like any pod.
        tolerations=[client.V1Toleration(operator="Exists")],
        volumes=[client.V1Volume(name="pod-logs", host_path=client.V1HostPathVolumeSource(path="/var/log/pods", type="Directory"))],
    )
    ds = client.V1DaemonSet(
        metadata=client.V1ObjectMeta(name=name),
        spec=client.V1DaemonSetSpec(
            selector=client.V1LabelSelector(match_labels=labels),
            template=client.V1PodTemplateSpec(metadata=client.V1ObjectMeta(labels=labels), spec=spec),
        ),
    )
    client.AppsV1Api(api).create_namespaced_daemon_set(namespace, ds)


@pytest.fixture
def on_every_node(kube_api: object, namespace: str, netcheck_image: ImageArchive, cluster: object) -> dict[str, client.V1Pod]:
    netcheck_daemonset(kube_api, namespace, netcheck_image, "netcheck")
    svc = client.V1Service(metadata=client.V1ObjectMeta(name="netcheck"), spec=client.V1ServiceSpec(
        selector={"app": "netcheck"}, ports=[client.V1ServicePort(port=80, target_port=8080)]))
    client.CoreV1Api(kube_api).create_namespaced_service(namespace, svc)
    return ready_pods_on_every_node(kube_api, namespace, "app=netcheck", len(node_names(kube_api)))


def test_nodes_are_ready_separate_and_share_the_machine_honestly(kube_api: object, cluster: object) -> None:
    nodes = client.CoreV1Api(kube_api).list_node().items
    settings = cluster.settings  # type: ignore[attr-defined]
    expected = len(settings.nodes)  # the apps' nodes and the load nodes share the machine
    assert len(nodes) == expected
    # The load nodes, and only they, carry the load's label and taint.
    load = {n.metadata.name for n in nodes if is_load_node(n.metadata.labels)}
    assert load == {n.name for n in settings.nodes if n.load}
    for node in nodes:
        tainted = any(t.key == LOAD_NODE_LABEL and t.effect == "NoSchedule" for t in node.spec.taints or [])
        assert tainted == (node.metadata.name in load), node.metadata.name
    ips = set()
    for node in nodes:
        assert node.status.node_info.kubelet_version.startswith("v1.34.")
        assert any(c.type == "Ready" and c.status == "True" for c in node.status.conditions)
        ips.add(next(a.address for a in node.status.addresses if a.type == "InternalIP"))
        # Each node offers its share of the machine, not the whole machine.
        cpu_m = int(node.status.allocatable["cpu"].removesuffix("m")) if node.status.allocatable["cpu"].endswith("m") else int(node.status.allocatable["cpu"]) * 1000
        assert cpu_m <= (os.cpu_count() or 1) * 1000 // expected + 1
    assert len(ips) == expected


def test_pods_reach_each_other_across_nodes(on_every_node: dict[str, client.V1Pod]) -> None:
    for src_node, src in on_every_node.items():
        for dst_node, dst in on_every_node.items():
            status, body = get_json(f"http://{src.status.pod_ip}:8080/fetch?url=http://{dst.status.pod_ip}:8080/")
            assert status == 200, (src_node, dst_node, body)
            assert body["pod"] == dst.metadata.name and body["node"] == dst_node


def test_every_node_reaches_services_and_dns(on_every_node: dict[str, client.V1Pod], namespace: str) -> None:
    pods = {p.metadata.name for p in on_every_node.values()}
    for node, pod in on_every_node.items():
        base = f"http://{pod.status.pod_ip}:8080"
        status, body = get_json(f"{base}/resolve?host=kubernetes.default")
        assert status == 200 and body["addrs"] == ["10.96.0.1"], (node, body)
        status, body = get_json(f"{base}/resolve?host=example.com")
        assert status == 502, (node, body)  # no upstream forwarder: nothing leaves the machine
        seen = set()
        deadline = time.monotonic() + 20  # each node's kube-proxy learns new endpoints a moment after Ready
        while seen != pods and time.monotonic() < deadline:
            status, body = get_json(f"{base}/fetch?url=http://netcheck.{namespace}.svc/")
            if status == 200:  # refused until this node's kube-proxy has the Service
                seen.add(body["pod"])
        assert seen == pods, f"from {node} the Service reached {sorted(seen)}"
        # The API server through the kubernetes Service, from this node's pod network.
        status, _ = get_json(f"{base}/fetch?url=http://10.96.0.1:443/")
        assert status == 400  # plain HTTP to the TLS port: the API server answered


def test_a_hostnetwork_pod_binds_its_own_nodes_address(kube_api: object, namespace: str, netcheck_image: ImageArchive) -> None:
    netcheck_daemonset(kube_api, namespace, netcheck_image, "hostnet", host_network=True, port=18080)
    pods = ready_pods_on_every_node(kube_api, namespace, "app=hostnet", len(node_names(kube_api)))
    for node in client.CoreV1Api(kube_api).list_node().items:
        ip = next(a.address for a in node.status.addresses if a.type == "InternalIP")
        pod = pods[node.metadata.name]
        assert pod.status.pod_ip == ip
        status, body = get_json(f"http://{ip}:18080/")
        # It shares the node's network namespace and hostname, as on a real node.
        assert status == 200 and body["node"] == node.metadata.name and body["pod"] == node.metadata.name


def test_a_node_sees_only_its_own_pods_logs(on_every_node: dict[str, client.V1Pod], kube_api: object) -> None:
    everywhere = client.CoreV1Api(kube_api).list_pod_for_all_namespaces().items
    for node, pod in on_every_node.items():
        status, body = get_json(f"http://{pod.status.pod_ip}:8080/ls?dir=/host/pod-logs")
        assert status == 200, body
        # /var/log/pods/<namespace>_<pod>_<uid>: its own pod's, and none of a pod on another
        # node (pods deleted earlier may leave theirs until the kubelet collects them).
        seen = {name.split("_")[1] for name in body["names"]}
        assert pod.metadata.name in seen
        elsewhere = {p.metadata.name for p in everywhere if p.spec.node_name and p.spec.node_name != node}
        assert elsewhere and not seen & elsewhere, f"{node} sees logs of pods elsewhere: {sorted(seen & elsewhere)}"


def test_a_killed_kubelet_shows_in_status_and_up_repairs_it(cluster: object, kube_api: object) -> None:
    from patternbench.cluster.local.provider import LocalProvider

    if not isinstance(cluster, LocalProvider):
        pytest.skip("only the local provider's own daemons can be killed here")
    node = cluster.settings.nodes[-1]
    kubelet = next(d for d in cluster.daemons() if d.key == f"{node.name}/kubelet")
    os.kill(kubelet.pid(), signal.SIGKILL)
    status = {n.name: n for n in cluster.node_status(cluster.status())}
    assert not status[node.name].ready and not status[node.name].daemons_healthy
    assert all(n.ready for name, n in status.items() if name != node.name)
    assert not cluster.is_up()
    cluster.create()  # repairs in place: restarts that kubelet, leaves the rest alone
    assert cluster.is_up()
    assert all(n.ready for n in cluster.node_status(cluster.status()))
