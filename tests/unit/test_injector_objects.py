"""Webhook injection (sidecar_injection.py): the template derived from the client-side render, the
Python model of the injector, the injector's objects. The Go injector's tests read
images/internal/inject/testdata, written from here (run this file to rewrite it)."""

from __future__ import annotations

import base64
import json
import sys
from pathlib import Path
from typing import Any

import pytest
from cryptography import x509

from patternbench.errors import UsageError
from patternbench.render import Images, RenderOptions, find, render
from patternbench.render import injector_objects as injection
from patternbench.render.injector_objects import (
    ANNOTATION_INJECTED,
    equal_apart_from_injection,
    inject_pod,
    injection_template,
    injector_objects,
    render_webhook,
    render_with,
    serving_certificate,
    skip_reason,
    without_pod_agents,
)
from patternbench.specs.agent_file import load_agent_file
from patternbench.specs.patterns import PATTERNS, pattern_spec
from patternbench.specs.topology import Agents, Pattern, load_topology

REPO = Path(__file__).resolve().parents[2]
GO_TESTDATA = REPO / "images" / "internal" / "inject" / "testdata"
OWN = REPO / "agents" / "own-logagent.yaml"
OPTS = RenderOptions(run_id="pb-test-0001", pod_logs_dir="/logs/pods", agent_state_dir="/state", log_token="0123456789abcdef")
TOPO = load_topology()
AGENT_SETS = [
    Agents(), Agents(extra_agents=2), Agents(mesh=False), Agents(logging=False), Agents(mesh=False, logging=False, extra_agents=1),
    Agents(mesh=False, logging=False),  # nothing to inject: the client side still leaves empty lists
]
SIDECAR_BEARING = [p for p, spec in PATTERNS.items() if any(pl.value == "pod" for pl in spec.placement.values())]


def app_deployments(objs: list[dict[str, Any]], opts: RenderOptions = OPTS) -> dict[str, dict[str, Any]]:
    return {d["metadata"]["name"]: d for d in find(objs, "Deployment") if d["metadata"]["namespace"] == opts.app_namespace}


def pod_from(deployment: dict[str, Any]) -> dict[str, Any]:
    """A pod as its ReplicaSet creates it from the Deployment's template (what the webhook sees)."""
    template = deployment["spec"]["template"]
    meta = deployment["metadata"]
    return {
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {"generateName": f"{meta['name']}-5d4f8b7c9-", "namespace": meta["namespace"], **json.loads(json.dumps(template["metadata"]))},
        "spec": json.loads(json.dumps(template["spec"])),
    }


def test_sidecar_bearing_patterns_are_known() -> None:
    assert set(SIDECAR_BEARING) == {Pattern.SIDECAR, Pattern.HYBRID}


@pytest.mark.parametrize("pattern", list(Pattern))
def test_render_with_is_render(pattern: Pattern) -> None:
    # injection derives from render_with; it must stay render() itself.
    assert sorted(map(json.dumps, render_with(pattern_spec(pattern), TOPO, OPTS))) == sorted(map(json.dumps, render(TOPO, pattern, OPTS)))


@pytest.mark.parametrize("pattern", SIDECAR_BEARING)
@pytest.mark.parametrize("agents", AGENT_SETS, ids=repr)
def test_webhook_injection_gives_the_client_side_pods(pattern: Pattern, agents: Agents) -> None:
    topology = TOPO.with_agents(agents)
    template = injection_template(topology, pattern, OPTS)
    client = render(topology, pattern, OPTS)
    webhook = render_webhook(topology, pattern, OPTS)
    # Everything but the app pod templates is the same in both modes (Services, RBAC, sink, DaemonSets).
    strip = lambda objs: [o for o in objs if o not in app_deployments(objs).values()]  # noqa: E731
    assert strip(webhook) == strip(client)
    for name, deployment in app_deployments(client).items():
        pod = pod_from(app_deployments(webhook)[name])
        injected = inject_pod(pod, template)
        assert injected["metadata"]["annotations"][ANNOTATION_INJECTED] == "v1"
        assert equal_apart_from_injection(injected, pod_from(deployment))
        assert injected["spec"]["containers"] == pod_from(deployment)["spec"]["containers"]


def test_template_is_what_the_client_side_render_adds() -> None:
    topology = TOPO.with_agents(Agents(extra_agents=1))
    template = injection_template(topology, Pattern.SIDECAR, OPTS)
    client = app_deployments(render(topology, Pattern.SIDECAR, OPTS))["frontend"]["spec"]["template"]["spec"]
    bare = app_deployments(render(topology, Pattern.NONE, OPTS))["frontend"]["spec"]["template"]["spec"]
    assert "initContainers" not in bare and "volumes" not in bare
    assert template["version"] == "v1"
    assert template["initContainers"] == client["initContainers"]
    assert [c["name"] for c in template["initContainers"]] == ["meshproxy", "logagent", "agent-omega-0"]
    assert template["volumes"] == client["volumes"]
    assert template["containers"] == {
        "app": {
            "env": [{"name": "MESH_PROXY", "value": "127.0.0.1:15001"}, {"name": "LOG_PATH", "value": "/var/log/app/app.log"}],
            "volumeMounts": [{"name": "app-logs", "mountPath": "/var/log/app"}],
        }
    }


def test_hybrid_template_has_the_mesh_only_and_keeps_node_changes_client_side() -> None:
    template = injection_template(TOPO, Pattern.HYBRID, OPTS)
    assert [c["name"] for c in template["initContainers"]] == ["meshproxy"]
    assert template["containers"] == {"app": {"env": [{"name": "MESH_PROXY", "value": "127.0.0.1:15001"}]}}
    assert {d["metadata"]["name"] for d in find(render_webhook(TOPO, Pattern.HYBRID, OPTS), "DaemonSet")} == {"logagent"}


def test_v2_template_moves_the_upgradable_agents_only() -> None:
    topology = TOPO.with_agents(Agents(extra_agents=1))
    images = lambda t: {c["name"]: c["image"] for c in t["initContainers"]}  # noqa: E731
    v2 = injection_template(topology, Pattern.SIDECAR, OPTS, "v2")
    assert v2["version"] == "v2"
    assert images(v2) == {
        "meshproxy": "patternbench.local/meshproxy:v2", "logagent": "patternbench.local/logagent:v2",
        "agent-omega-0": "patternbench.local/agent-omega:v1",  # never upgraded
    }
    mesh_only = injection_template(topology, Pattern.SIDECAR, OPTS, "v2", upgraded=["mesh"])
    assert images(mesh_only)["logagent"] == "patternbench.local/logagent:v1"
    # Apart from the images, v2 is v1.
    v1 = injection_template(topology, Pattern.SIDECAR, OPTS)
    for c in v1["initContainers"] + v2["initContainers"]:
        c.pop("image")
    assert {k: v for k, v in v1.items() if k != "version"} == {k: v for k, v in v2.items() if k != "version"}


def test_an_agent_file_sidecar_is_injected_the_same_way() -> None:
    spec = load_agent_file(OWN, check_archives=False)
    opts = RenderOptions(run_id="pb-test-0001", stand_ins=(spec.name,))
    template = injection_template(TOPO, Pattern.SIDECAR, opts)
    assert [c["name"] for c in template["initContainers"]] == ["meshproxy", "own-logagent"]
    client = app_deployments(render(TOPO, Pattern.SIDECAR, opts), opts)
    for name, deployment in app_deployments(render_webhook(TOPO, Pattern.SIDECAR, opts), opts).items():
        assert equal_apart_from_injection(inject_pod(pod_from(deployment), template), pod_from(client[name]))
    v2 = injection_template(TOPO, Pattern.SIDECAR, opts, "v2", upgraded=["logging"])
    assert {c["name"]: c["image"] for c in v2["initContainers"]}["own-logagent"] == "patternbench.local/logagent:v2"


@pytest.mark.parametrize("pattern", [Pattern.NONE, Pattern.DAEMONSET])
def test_patterns_without_sidecars_have_nothing_to_inject(pattern: Pattern) -> None:
    with pytest.raises(UsageError, match="nothing to inject"):
        injection_template(TOPO, pattern, OPTS)


def test_a_transform_a_template_cannot_express_is_refused() -> None:
    base = {"metadata": {}, "spec": {"containers": [{"name": "app", "env": [{"name": "A", "value": "1"}]}]}}
    removed = {"metadata": {}, "spec": {"containers": [{"name": "app"}]}}
    with pytest.raises(UsageError, match="removes"):
        injection_template_from(base, removed)
    other = {"metadata": {}, "spec": {"containers": [{"name": "app", "env": [{"name": "A", "value": "1"}]}], "hostNetwork": True}}
    with pytest.raises(UsageError, match="more of the pod"):
        injection_template_from(base, other)
    # Setting a variable already there (set_env: drop it, append it) is expressible.
    moved = {"metadata": {}, "spec": {"containers": [{"name": "app", "env": [{"name": "B", "value": "2"}, {"name": "A", "value": "3"}]}]}}
    base2 = {"metadata": {}, "spec": {"containers": [{"name": "app", "env": [{"name": "A", "value": "1"}, {"name": "B", "value": "2"}]}]}}
    assert injection_template_from(base2, moved)["containers"] == {"app": {"env": [{"name": "A", "value": "3"}]}}


def injection_template_from(base: dict[str, Any], full: dict[str, Any]) -> dict[str, Any]:
    return injection.derive_template(base, full, "v1")


def test_injection_is_idempotent_and_can_be_refused() -> None:
    template = injection_template(TOPO, Pattern.SIDECAR, OPTS)
    pod = pod_from(app_deployments(render_webhook(TOPO, Pattern.SIDECAR, OPTS))["frontend"])
    once = inject_pod(pod, template)
    assert skip_reason(once, template).startswith("already injected")
    assert inject_pod(once, template) == once
    # Client-side injected pods (the sidecars already there) are left alone too.
    client = pod_from(app_deployments(render(TOPO, Pattern.SIDECAR, OPTS))["frontend"])
    assert skip_reason(client, template) == "already has container meshproxy"
    assert inject_pod(client, template) == client
    opted_out = json.loads(json.dumps(pod))
    opted_out["metadata"]["annotations"] = {"patternbench.dev/inject": "false"}
    assert inject_pod(opted_out, template) == opted_out


def test_injector_objects_and_webhook_configuration() -> None:
    template = injection_template(TOPO, Pattern.SIDECAR, OPTS)
    objs = injector_objects(OPTS, template)
    assert [o["kind"] for o in objs] == ["ServiceAccount", "Secret", "ConfigMap", "Service", "Deployment", "MutatingWebhookConfiguration"]
    assert all(o["metadata"]["labels"]["patternbench.dev/run"] == OPTS.run_id for o in objs)
    assert all(o["metadata"]["namespace"] == OPTS.agents_namespace for o in objs[:-1])
    config = json.loads(objs[2]["data"]["template.json"])
    assert config == template
    deployment = objs[4]
    assert deployment["spec"]["replicas"] == 2
    container = deployment["spec"]["template"]["spec"]["containers"][0]
    assert container["image"] == "patternbench.local/injector:v1"
    env = {e["name"]: e["value"] for e in container["env"]}
    assert env["TEMPLATE"] == "/etc/injector/template/template.json"
    [hook] = objs[5]["webhooks"]
    assert hook["failurePolicy"] == "Fail" and hook["sideEffects"] == "None" and hook["admissionReviewVersions"] == ["v1"]
    assert hook["reinvocationPolicy"] == "Never" and 1 <= hook["timeoutSeconds"] <= 30
    assert hook["namespaceSelector"] == {"matchLabels": {"kubernetes.io/metadata.name": OPTS.app_namespace}}
    assert hook["objectSelector"] == {"matchLabels": {"patternbench.dev/role": "app"}}
    # The selectors match the app pods and the app namespace the client side renders.
    ns = find(render(TOPO, Pattern.NONE, OPTS), "Namespace", OPTS.app_namespace)[0]
    assert ns["metadata"]["name"] == OPTS.app_namespace
    for d in app_deployments(render_webhook(TOPO, Pattern.SIDECAR, OPTS)).values():
        assert d["spec"]["template"]["metadata"]["labels"]["patternbench.dev/role"] == "app"
    assert hook["clientConfig"]["service"] == {"namespace": OPTS.agents_namespace, "name": "injector", "path": "/mutate", "port": 443}
    # The injector's own pods are out of the webhook's reach (no lock-out).
    assert deployment["metadata"]["namespace"] != OPTS.app_namespace
    assert deployment["spec"]["template"]["metadata"]["labels"]["patternbench.dev/role"] != "app"


def test_serving_certificate_is_for_the_service_and_signed_by_the_bundle() -> None:
    objs = injector_objects(OPTS, injection_template(TOPO, Pattern.SIDECAR, OPTS))
    secret, hook = objs[1], objs[5]["webhooks"][0]
    leaf = x509.load_pem_x509_certificate(base64.b64decode(secret["data"]["tls.crt"]))
    ca = x509.load_pem_x509_certificate(base64.b64decode(hook["clientConfig"]["caBundle"]))
    names = leaf.extensions.get_extension_for_class(x509.SubjectAlternativeName).value.get_values_for_type(x509.DNSName)
    assert f"injector.{OPTS.agents_namespace}.svc" in names
    leaf.verify_directly_issued_by(ca)
    ca2, leaf2 = serving_certificate(OPTS)
    assert ca2.cert.subject != leaf2.cert.subject


def test_the_injector_image_is_built_with_the_data_plane_in_v1_only() -> None:
    from patternbench.build import images

    assert "injector" in images.DATA_PLANE and "injector" not in images.AGENT_IMAGES
    assert injection.injector_image(OPTS) == "patternbench.local/injector:v1"
    assert injection.injector_image(RenderOptions(run_id="r", images=Images.under("registry.example/pb"))) == "registry.example/pb/injector:v1"


def test_without_pod_agents_keeps_node_agents() -> None:
    spec = without_pod_agents(pattern_spec(Pattern.HYBRID))
    assert spec.placement == {"logging": pattern_spec(Pattern.HYBRID).placement["logging"], "agent-omega": pattern_spec(Pattern.HYBRID).placement["agent-omega"]}


# ---- the Go injector's test data ---------------------------------------------------------


def go_testdata() -> dict[str, str]:
    """Per case: pod.json (a pod as the webhook sees it), template.json, want.json (the
    client-side rendered pod spec it must become)."""
    cases = {
        "sidecar": (TOPO.with_agents(Agents(extra_agents=1)), Pattern.SIDECAR),
        "hybrid": (TOPO, Pattern.HYBRID),
    }
    files: dict[str, str] = {}
    dump = lambda obj: json.dumps(obj, indent=1, sort_keys=True) + "\n"  # noqa: E731
    for case, (topology, pattern) in cases.items():
        client = app_deployments(render(topology, pattern, OPTS))["orders"]
        webhook = app_deployments(render_webhook(topology, pattern, OPTS))["orders"]
        files[f"{case}/pod.json"] = dump(pod_from(webhook))
        files[f"{case}/template.json"] = dump(injection_template(topology, pattern, OPTS))
        files[f"{case}/want.json"] = dump(client["spec"]["template"]["spec"])
    files["sidecar/template-v2.json"] = dump(injection_template(TOPO.with_agents(Agents(extra_agents=1)), Pattern.SIDECAR, OPTS, "v2"))
    return files


def test_go_testdata_is_current() -> None:
    for path, text in go_testdata().items():
        assert (GO_TESTDATA / path).read_text() == text, f"{path} is stale: run python {Path(__file__).relative_to(REPO)}"


if __name__ == "__main__":
    for path, text in go_testdata().items():
        (GO_TESTDATA / path).parent.mkdir(parents=True, exist_ok=True)
        (GO_TESTDATA / path).write_text(text)
        print("wrote", GO_TESTDATA / path, file=sys.stderr)


def test_why_the_api_server_could_not_call_the_webhook_is_one_line() -> None:
    import json as _json

    from kubernetes.client import ApiException

    from patternbench.operate.webhook_injector import webhook_call_failure

    def refusal(message: str) -> ApiException:
        exc = ApiException(status=500)
        exc.body = _json.dumps({"kind": "Status", "message": message})
        return exc

    down = refusal('Internal error occurred: failed calling webhook "inject.patternbench.dev": failed to call webhook: '
                   'Post "https://injector.pb-x-agents.svc:443/mutate?timeout=5s": no endpoints available for service "injector"')
    assert webhook_call_failure(down) == 'Post "https://injector.pb-x-agents.svc:443/mutate?timeout=5s": no endpoints available for service "injector"'
    refused = refusal('Internal error occurred: failed calling webhook "inject.patternbench.dev": failed to call webhook: Post '
                      '"https://injector.pb-x-agents.svc:443/mutate?timeout=5s": dial tcp 10.96.0.12:443: connect: connection refused')
    assert webhook_call_failure(refused).endswith("dial tcp 10.96.0.12:443: connect: connection refused")
    assert webhook_call_failure(refusal('pods "x" is forbidden: violates PodSecurity "restricted:latest"')) == ""
    garbled = ApiException(status=500)
    garbled.body = "not json"
    assert webhook_call_failure(garbled) == ""
