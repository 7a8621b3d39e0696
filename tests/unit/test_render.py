from __future__ import annotations

import pytest

from patternbench.render import RenderOptions, agent_cpu_requested_m, find, render, to_yaml
from patternbench.specs.topology import Agents, Pattern, load_topology

OPTS = RenderOptions(run_id="pb-test-0001", pod_logs_dir="/logs/pods", agent_state_dir="/state")
TOPO = load_topology()


def app_deployments(objs):
    """The application's Deployments (not the ambient waypoints beside them)."""
    return [
        d for d in find(objs, "Deployment")
        if d["metadata"]["namespace"] == OPTS.app_namespace and d["spec"]["template"]["metadata"]["labels"].get("patternbench.dev/role") == "app"
    ]


def strip_transformations(deployment):
    """The app container and pod fields every pattern shares."""
    pod = deployment["spec"]["template"]["spec"]
    app = next(c for c in pod["containers"] if c["name"] == "app")
    env = {e["name"] for e in app["env"]} - {"MESH_PROXY", "MESH_TUNNEL", "LOG_PATH"}
    return app["image"], sorted(env), app["securityContext"], deployment["spec"]["replicas"]


def test_every_pattern_renders_the_same_application() -> None:
    base = [strip_transformations(d) for d in app_deployments(render(TOPO, Pattern.NONE, OPTS))]
    for pattern in Pattern:
        assert [strip_transformations(d) for d in app_deployments(render(TOPO, pattern, OPTS))] == base


def test_none_has_no_agent() -> None:
    objs = render(TOPO, Pattern.NONE, OPTS)
    assert not find(objs, "DaemonSet")
    assert all(len(d["spec"]["template"]["spec"]["containers"]) == 1 for d in app_deployments(objs))
    assert all("initContainers" not in d["spec"]["template"]["spec"] for d in app_deployments(objs))


def test_sidecar_injects_agents_and_routes_services_through_the_inbound_port() -> None:
    objs = render(TOPO.with_agents(Agents(extra_agents=2)), Pattern.SIDECAR, OPTS)
    for d in app_deployments(objs):
        init = d["spec"]["template"]["spec"]["initContainers"]
        assert [c["name"] for c in init] == ["meshproxy", "logagent", "agent-omega-0", "agent-omega-1"]
        assert all(c["restartPolicy"] == "Always" for c in init)  # native sidecars
        app = d["spec"]["template"]["spec"]["containers"][0]
        env = {e["name"]: e.get("value") for e in app["env"]}
        assert env["MESH_PROXY"] == "127.0.0.1:15001" and env["LOG_PATH"] == "/var/log/app/app.log"
    for svc in find(objs, "Service"):
        if svc["metadata"]["namespace"] == OPTS.app_namespace:
            assert svc["spec"]["ports"][0]["targetPort"] == 15006
    assert not find(objs, "DaemonSet")


def test_daemonset_pattern_points_the_app_at_the_node_proxy() -> None:
    objs = render(TOPO, Pattern.DAEMONSET, OPTS)
    names = {d["metadata"]["name"] for d in find(objs, "DaemonSet")}
    assert names == {"meshproxy", "logagent"}
    proxy = find(objs, "DaemonSet", "meshproxy")[0]
    assert proxy["spec"]["template"]["spec"]["hostNetwork"] is True
    assert proxy["spec"]["updateStrategy"]["rollingUpdate"] == {"maxSurge": 1, "maxUnavailable": 0}
    logagent = find(objs, "DaemonSet", "logagent")[0]
    volumes = {v["name"]: v for v in logagent["spec"]["template"]["spec"]["volumes"]}
    assert volumes["pod-logs"]["hostPath"]["path"] == "/logs/pods"
    mounts = {m["name"]: m for m in logagent["spec"]["template"]["spec"]["containers"][0]["volumeMounts"]}
    assert mounts["pod-logs"]["readOnly"] is True
    for d in app_deployments(objs):
        env = {e["name"]: e.get("value") for e in d["spec"]["template"]["spec"]["containers"][0]["env"]}
        assert env["MESH_PROXY"] == "$(NODE_IP):15001"
        assert "LOG_PATH" not in env  # the node agent reads the container's stdout
        assert "initContainers" not in d["spec"]["template"]["spec"]


def test_hybrid_has_mesh_sidecar_and_logging_per_node() -> None:
    objs = render(TOPO.with_agents(Agents(extra_agents=1)), Pattern.HYBRID, OPTS)
    assert {d["metadata"]["name"] for d in find(objs, "DaemonSet")} == {"logagent", "agent-omega-0"}
    for d in app_deployments(objs):
        assert [c["name"] for c in d["spec"]["template"]["spec"]["initContainers"]] == ["meshproxy"]


def test_naive_drops_drain_and_handover() -> None:
    objs = render(TOPO, Pattern.DAEMONSET, RenderOptions(run_id="pb-test-0001", naive=True))
    proxy = find(objs, "DaemonSet", "meshproxy")[0]
    assert proxy["spec"]["updateStrategy"]["rollingUpdate"] == {"maxSurge": 0, "maxUnavailable": 1}
    env = {e["name"]: e.get("value") for e in proxy["spec"]["template"]["spec"]["containers"][0]["env"]}
    assert env["REUSE_PORT"] == "false" and env["DRAIN"] == "0s"


@pytest.mark.parametrize("pattern", list(Pattern))
def test_app_containers_meet_restricted_pod_security(pattern: Pattern) -> None:
    for d in app_deployments(render(TOPO, pattern, OPTS)):
        pod = d["spec"]["template"]["spec"]
        assert pod["securityContext"]["runAsNonRoot"] is True
        assert pod["securityContext"]["seccompProfile"] == {"type": "RuntimeDefault"}
        assert pod.get("hostNetwork") is not True
        for c in pod["containers"] + pod.get("initContainers", []):
            sc = c["securityContext"]
            assert sc["allowPrivilegeEscalation"] is False and sc["readOnlyRootFilesystem"] is True
            assert sc["capabilities"] == {"drop": ["ALL"]}
        assert not any("hostPath" in v for v in pod.get("volumes", []))


def test_only_the_mesh_proxy_gets_api_access() -> None:
    objs = render(TOPO, Pattern.SIDECAR, OPTS)
    role = find(objs, "Role")[0]
    assert role["rules"] == [{"apiGroups": ["discovery.k8s.io"], "resources": ["endpointslices"], "verbs": ["list", "watch"]}]
    for d in app_deployments(objs):
        pod = d["spec"]["template"]["spec"]
        assert pod["automountServiceAccountToken"] is False
        mounts = {c["name"]: [m["name"] for m in c.get("volumeMounts", [])] for c in pod["containers"] + pod["initContainers"]}
        assert [n for n, m in mounts.items() if "mesh-token" in m] == ["meshproxy"]
    cluster_role = find(render(TOPO, Pattern.DAEMONSET, OPTS), "ClusterRole")[0]
    assert cluster_role["rules"] == role["rules"]


def test_namespaces_carry_run_labels_and_pod_security() -> None:
    objs = render(TOPO, Pattern.SIDECAR, OPTS)
    ns = {n["metadata"]["name"]: n["metadata"]["labels"] for n in find(objs, "Namespace")}
    assert ns[OPTS.app_namespace]["pod-security.kubernetes.io/enforce"] == "restricted"
    assert all(labels["patternbench.dev/run"] == OPTS.run_id for labels in ns.values())
    assert objs[0]["kind"] == "Namespace" and objs[-1]["kind"] == "Deployment"


def test_entry_service_is_a_nodeport_and_yaml_is_applyable() -> None:
    objs = render(TOPO, Pattern.NONE, OPTS)
    nodeports = [s["metadata"]["name"] for s in find(objs, "Service") if s["spec"].get("type") == "NodePort"]
    assert nodeports == ["frontend"]
    assert "kind: Deployment" in to_yaml(objs)


def test_images_under_a_registry() -> None:
    from patternbench.render import Images

    pushed = Images.under("registry.example:5000/team")
    assert pushed.meshproxy == "registry.example:5000/team/meshproxy:v1"
    assert Images.under(None) == Images()


@pytest.mark.parametrize("pattern", [p for p in Pattern if p is not Pattern.NONE])
def test_every_pattern_requests_the_same_agent_cpu_in_total_as_the_sidecars(pattern: Pattern) -> None:
    """The resource policy: 10m of CPU request per app pod served, for each agent, whether
    it runs per pod (sidecar), per node (the node's share of the pods) or per service (a
    waypoint: its service's pods)."""
    from dataclasses import replace

    totals = agent_cpu_requested_m(render(TOPO, pattern, replace(OPTS, nodes=3)), nodes=3)
    assert totals and set(totals.values()) == {10 * TOPO.app_pods}, totals
    # Without a node count (a render outside a cluster) every agent keeps one sidecar's request.
    assert {c["resources"]["requests"]["cpu"] for o in find(render(TOPO, pattern, OPTS), "DaemonSet") for c in o["spec"]["template"]["spec"]["containers"]} <= {"10m"}
