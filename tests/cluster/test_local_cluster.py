"""The local cluster does what a cluster must: node Ready, DNS, Services, NodePorts, images."""

from __future__ import annotations

import json
import socket
import time
import urllib.request
from pathlib import Path

import pytest
from kubernetes import client
from tenacity import retry, retry_if_exception_type, stop_after_delay, wait_fixed

from patternbench.build.images import ImageArchive
from patternbench.cluster.local import hostnet
from patternbench.load.conntrack import forget_unnated
from patternbench.load.probe import probe_once
from patternbench.load.runner import read_jsonl
from patternbench.observe.host import KernelLog

pytestmark = pytest.mark.cluster


def get_json(url: str) -> tuple[int, dict]:
    try:
        with urllib.request.urlopen(url, timeout=5) as resp:
            return resp.status, json.loads(resp.read())
    except urllib.error.HTTPError as err:
        return err.code, json.loads(err.read() or b"{}")


@retry(stop=stop_after_delay(60), wait=wait_fixed(0.5), retry=retry_if_exception_type((OSError, AssertionError)), reraise=True)
def wait_ready_pods(core: client.CoreV1Api, namespace: str, selector: str, count: int) -> list[client.V1Pod]:
    pods = core.list_namespaced_pod(namespace, label_selector=selector, _request_timeout=5).items
    ready = [p for p in pods if any(c.type == "Ready" and c.status == "True" for c in (p.status.conditions or []))]
    assert len(ready) == count, f"{len(ready)}/{count} pods ready"
    return ready


def deploy_netcheck(api: object, namespace: str, image: ImageArchive, replicas: int = 2) -> int:
    """A netcheck Deployment behind a NodePort Service; returns the node port."""
    labels = {"app": "netcheck"}
    container = client.V1Container(
        name="netcheck",
        image=image.ref,
        image_pull_policy="Never",
        ports=[client.V1ContainerPort(container_port=8080)],
        readiness_probe=client.V1Probe(http_get=client.V1HTTPGetAction(path="/", port=8080), period_seconds=1),
    )
    deployment = client.V1Deployment(
        metadata=client.V1ObjectMeta(name="netcheck"),
        spec=client.V1DeploymentSpec(
            replicas=replicas,
            selector=client.V1LabelSelector(match_labels=labels),
            template=client.V1PodTemplateSpec(
                metadata=client.V1ObjectMeta(labels=labels), spec=client.V1PodSpec(containers=[container])
            ),
        ),
    )
    client.AppsV1Api(api).create_namespaced_deployment(namespace, deployment)
    service = client.V1Service(
        metadata=client.V1ObjectMeta(name="netcheck"),
        spec=client.V1ServiceSpec(
            type="NodePort", selector=labels, ports=[client.V1ServicePort(port=80, target_port=8080)]
        ),
    )
    created = client.CoreV1Api(api).create_namespaced_service(namespace, service)
    wait_ready_pods(client.CoreV1Api(api), namespace, "app=netcheck", replicas)
    port = created.spec.ports[0].node_port
    wait_answers(f"http://127.0.0.1:{port}/")
    return port


@retry(stop=stop_after_delay(30), wait=wait_fixed(0.2), retry=retry_if_exception_type(OSError), reraise=True)
def wait_answers(url: str) -> None:
    """kube-proxy programs a new Service a moment after its pods are Ready."""
    urllib.request.urlopen(url, timeout=2).close()


def test_coredns_is_ready(kube_api: object) -> None:
    pods = client.CoreV1Api(kube_api).list_namespaced_pod("kube-system", label_selector="k8s-app=kube-dns").items
    assert pods and all(any(c.type == "Ready" and c.status == "True" for c in p.status.conditions) for p in pods)


def test_pod_resolves_cluster_names_but_nothing_outside(kube_api: object, namespace: str, netcheck_image: ImageArchive) -> None:
    port = deploy_netcheck(kube_api, namespace, netcheck_image, replicas=1)
    base = f"http://127.0.0.1:{port}"
    status, body = get_json(f"{base}/resolve?host=kubernetes.default")
    assert status == 200, body
    assert body["addrs"] == ["10.96.0.1"]
    status, body = get_json(f"{base}/resolve?host=netcheck.{namespace}.svc.cluster.local")
    assert status == 200, body
    # CoreDNS has no upstream forwarder: outside names do not resolve.
    status, body = get_json(f"{base}/resolve?host=example.com")
    assert status == 502, body


def test_service_routes_to_every_pod_and_nodeport_answers_on_loopback(
    kube_api: object, namespace: str, netcheck_image: ImageArchive
) -> None:
    port = deploy_netcheck(kube_api, namespace, netcheck_image, replicas=2)
    pods = {p.metadata.name for p in wait_ready_pods(client.CoreV1Api(kube_api), namespace, "app=netcheck", 2)}
    seen_via_nodeport, seen_via_service = set(), set()
    deadline = time.monotonic() + 20  # the second endpoint may reach kube-proxy a moment later
    while time.monotonic() < deadline:
        status, body = get_json(f"http://127.0.0.1:{port}/")
        assert status == 200
        seen_via_nodeport.add(body["pod"])
        # From inside a pod, through the Service's DNS name and ClusterIP.
        status, body = get_json(f"http://127.0.0.1:{port}/fetch?url=http://netcheck.{namespace}.svc/")
        assert status == 200, body
        seen_via_service.add(body["pod"])
        if seen_via_nodeport == pods and seen_via_service == pods:
            break
    assert seen_via_nodeport == pods
    assert seen_via_service == pods


def test_loaded_image_runs_with_its_stamped_version(kube_api: object, namespace: str, netcheck_image: ImageArchive) -> None:
    port = deploy_netcheck(kube_api, namespace, netcheck_image, replicas=1)
    status, body = get_json(f"http://127.0.0.1:{port}/")
    assert status == 200
    assert body["version"] == "test"
    pod = client.CoreV1Api(kube_api).list_namespaced_pod(namespace).items[0]
    assert pod.status.container_statuses[0].image.endswith("netcheck:test")


def _patch_selector(api: object, namespace: str, selector: dict[str, str]) -> None:
    client.CoreV1Api(api).patch_namespaced_service("netcheck", namespace, {"spec": {"selector": selector}})


@retry(stop=stop_after_delay(60), wait=wait_fixed(0.2), retry=retry_if_exception_type(AssertionError), reraise=True)
def _until_probes(port: int, how: str | None, in_a_row: int = 5) -> None:
    """Until new connections (kernel-chosen source ports) fail `how`, or answer (None)."""
    for _ in range(in_a_row):
        r = probe_once("127.0.0.1", port, 2.0)
        assert r.get("how") == how and (how is not None or r["status"] == 200), r


def test_a_rejected_connections_source_port_is_refused_by_the_host_until_its_binding_is_forgotten(
    kube_api: object, namespace: str, netcheck_image: ImageArchive, tmp_path: Path
) -> None:
    """The stray refusals of issue 18, made on purpose. While a Service has no endpoint,
    kube-proxy REJECTs its new connections with an ICMP error, and conntrack keeps each one's
    un-NATed SYN_SENT binding for 120 s. Once the Service has endpoints again, a connection
    from such a source port matches the old binding, is not NATed, and the host itself resets
    it. Upstream behaves the same (kubernetes#48719; kube-proxy cleans up UDP only); deploy
    deletes the bindings its readiness poll left (conntrack.forget_unnated)."""
    port = deploy_netcheck(kube_api, namespace, netcheck_image, replicas=1)
    _patch_selector(kube_api, namespace, {"app": "nobody"})
    _until_probes(port, "icmp-refused")
    frees = [socket.socket(), socket.socket()]  # two distinct free ports, held at once
    for free in frees:
        free.bind(("127.0.0.1", 0))
    sports = [free.getsockname()[1] for free in frees]
    for free in frees:
        free.close()
    for sport in sports:
        assert probe_once("127.0.0.1", port, 2.0, source_port=sport)["how"] == "icmp-refused"

    _patch_selector(kube_api, namespace, {"app": "netcheck"})
    _until_probes(port, None)
    # The first port's stale binding refuses it (and ends with that reset) ...
    tripwire = KernelLog(hostnet.TRIPWIRE_PREFIX, tmp_path / "tripwire.jsonl").start()
    again = probe_once("127.0.0.1", port, 2.0, source_port=sports[0])
    tripwire.stop()
    assert again["how"] == "rst-refused", again  # the Service answers every other port
    # ... and the host's tripwire saw its SYN leave un-NATed.
    assert ("nodnat", sports[0], port) in {(r["kind"], r["sport"], r["dport"]) for r in read_jsonl(tmp_path / "tripwire.jsonl")}
    # ... the second's is deleted before it is used: every rejected connection's binding
    # (the waits' ones too), and none that was NATed.
    forgotten = forget_unnated("127.0.0.1", port)
    assert sports[1] in {e["orig"]["sport"] for e in forgotten} and sports[0] not in {e["orig"]["sport"] for e in forgotten}
    assert all(e["state"] == "SYN_SENT" and e["reply"]["src"] == "127.0.0.1" for e in forgotten), forgotten
    assert probe_once("127.0.0.1", port, 2.0, source_port=sports[1])["status"] == 200


def test_the_tripwire_logs_a_pods_reset_of_a_nodeport_connection_that_never_completed(
    kube_api: object, namespace: str, netcheck_image: ImageArchive, tmp_path: Path
) -> None:
    """kube-proxy sends the connection to a ready pod that listens on another port: the pod
    resets it, and the tripwire names that pod's address."""
    port = deploy_netcheck(kube_api, namespace, netcheck_image, replicas=1)
    pod_ip = wait_ready_pods(client.CoreV1Api(kube_api), namespace, "app=netcheck", 1)[0].status.pod_ip
    client.CoreV1Api(kube_api).patch_namespaced_service("netcheck", namespace, {"spec": {"ports": [{"port": 80, "targetPort": 8081}]}})
    tripwire = KernelLog(hostnet.TRIPWIRE_PREFIX, tmp_path / "tripwire.jsonl").start()
    _until_probes(port, "rst-refused")
    tripwire.stop()
    resets = [r for r in read_jsonl(tmp_path / "tripwire.jsonl") if r["kind"] == "podrst"]
    assert resets and {(r["src"], r["sport"]) for r in resets} == {(pod_ip, 8081)}
