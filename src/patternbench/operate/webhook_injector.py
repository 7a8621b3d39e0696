"""Webhook injection on a cluster (--injection webhook): deploy the injector before the app,
check that the API server really injects, switch the injector's template to v2, and upgrade
the sidecars the way a webhook-injected mesh does (Istio: new template, then restart the
Deployments; SidecarSet-style: new template for new pods, running pods patched in place).
The pure side (template, objects, certificate) is render/injector_objects.py."""

from __future__ import annotations

import copy
import json
import time
from typing import Any

from kubernetes import client

from patternbench.errors import UsageError
from patternbench.operate.kube import REQUEST_TIMEOUT, poll
from patternbench.render import Obj
from patternbench.render.injector_objects import ANNOTATION_INJECTED, INJECTOR, INJECTOR_PORT, TEMPLATE_CONFIGMAP, TEMPLATE_KEY


def redacted(objs: list[Obj]) -> list[Obj]:
    """The objects as saved with a run's results: no Secret's data (the injector's key)."""
    out = []
    for obj in objs:
        if obj["kind"] == "Secret":
            obj = {**copy.deepcopy(obj), "data": {k: "(redacted)" for k in obj.get("data", {})}}
        out.append(obj)
    return out


def probe_pod(deployment: Obj) -> Obj:
    """A pod as an app Deployment would create it (its template, which complies with the
    namespace's Pod Security), to create with dryRun: the API server runs admission on it."""
    template = copy.deepcopy(deployment["spec"]["template"])
    return {"apiVersion": "v1", "kind": "Pod", "metadata": {"generateName": "injection-probe-", **template["metadata"]}, "spec": template["spec"]}


def injected_version(core: client.CoreV1Api, namespace: str, deployment: Obj) -> str | None:
    """What the API server's admission does to a new app pod now: the template version the
    injector stamped on it, or None if the pod was not injected (dry run: nothing is created)."""
    pod = core.create_namespaced_pod(namespace, probe_pod(deployment), dry_run="All", _request_timeout=REQUEST_TIMEOUT)
    return (pod.metadata.annotations or {}).get(ANNOTATION_INJECTED)


def wait_injecting(core: client.CoreV1Api, namespace: str, deployment: Obj, version: str, timeout_s: float = 30, in_a_row: int = 5) -> None:
    """Until new app pods get `version` from the injector, `in_a_row` dry runs running (the
    Service spreads them over the replicas; the API server's webhook informer takes a moment
    to see a new configuration)."""
    seen: dict[str, Any] = {"streak": 0, "last": None, "unreachable": ""}

    def injecting() -> bool:
        try:
            seen["last"] = injected_version(core, namespace, deployment)
        except client.ApiException as exc:
            seen["last"], seen["unreachable"] = f"refused ({exc.status})", webhook_call_failure(exc)
        seen["streak"] = seen["streak"] + 1 if seen["last"] == version else 0
        return seen["streak"] >= in_a_row

    try:
        poll(f"new app pods to be injected with {version}", injecting, timeout_s, interval_s=0.2)
    except UsageError:
        if seen["unreachable"]:
            raise UsageError(
                f"the API server cannot call the injector webhook ({seen['unreachable']}): it must reach the injector's Service "
                f"(port 443 -> pod port {INJECTOR_PORT}); on a GKE private cluster allow TCP {INJECTOR_PORT} from the control plane to the nodes") from None
        raise UsageError(f"the injector did not inject {version} within {timeout_s:.0f}s (a new app pod got: {seen['last']})") from None


def webhook_call_failure(exc: client.ApiException) -> str:
    """Why the API server could not call a webhook, from its refusal ('' if the refusal
    was something else): the tail of its message, one line."""
    try:
        message = str(json.loads(exc.body or "{}").get("message") or "")
    except (ValueError, AttributeError):
        message = str(exc.body or "")
    if "failed calling webhook" not in message:
        return ""
    why = message.split("failed calling webhook", 1)[1].split(": ", 1)[-1].removeprefix("failed to call webhook: ")
    return " ".join(why.split())[-200:]


def injector_versions(core: client.CoreV1Api, namespace: str) -> dict[str, str]:
    """Each injector pod's template version, read from its /template through the API server."""
    out = {}
    for pod in core.list_namespaced_pod(namespace, label_selector=f"app.kubernetes.io/name={INJECTOR}", _request_timeout=REQUEST_TIMEOUT).items:
        if pod.metadata.deletion_timestamp is not None or pod.status.phase != "Running":
            continue
        try:
            resp = core.connect_get_namespaced_pod_proxy_with_path(
                f"https:{pod.metadata.name}:{INJECTOR_PORT}", namespace, "template", _preload_content=False, _request_timeout=REQUEST_TIMEOUT,
            )
            out[pod.metadata.name] = json.loads(resp.data).get("version", "?")
        except (client.ApiException, ValueError):
            out[pod.metadata.name] = "?"
    return out


def switch_template(api: client.ApiClient, namespace: str, template: dict[str, Any], timeout_s: float = 60) -> float:
    """Update the injector's template and wait until every injector pod serves it (the
    kubelet rewrites ConfigMap volumes on its sync, ~10 s here, then the injector's 1 s poll).
    Returns when the last one did (monotonic)."""
    core = client.CoreV1Api(api)
    core.patch_namespaced_config_map(TEMPLATE_CONFIGMAP, namespace, {"data": {TEMPLATE_KEY: json.dumps(template, sort_keys=True)}}, _request_timeout=REQUEST_TIMEOUT)
    version = template["version"]
    deadline, seen = time.monotonic() + timeout_s, {}
    while time.monotonic() < deadline:
        seen = injector_versions(core, namespace)
        if seen and all(v == version for v in seen.values()):
            return time.monotonic()
        time.sleep(0.5)
    raise UsageError(f"the injector pods did not take template {version} within {timeout_s:.0f}s: {seen}")


def restart_deployments(api: client.ApiClient, deployments: list[Obj]) -> None:
    """`kubectl rollout restart`: a new pod-template annotation, so every pod is recreated
    (and injected again, now from the new template)."""
    apps = client.AppsV1Api(api)
    now = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())
    patch = {"spec": {"template": {"metadata": {"annotations": {"kubectl.kubernetes.io/restartedAt": now}}}}}
    for d in deployments:
        apps.patch_namespaced_deployment(d["metadata"]["name"], d["metadata"]["namespace"], patch, _request_timeout=REQUEST_TIMEOUT)

