"""Sidecar injection at admission (--injection webhook): the injector's template, derived
from the client-side render so the two injection modes cannot drift apart, and the objects
that deploy the injector (images/cmd/injector) with its serving certificate and webhook.

Pure functions only: nothing here talks to a cluster.

The template (JSON, the injector's TEMPLATE file) says what every app pod gets, without
naming any agent:

    {"version": "v1",
     "initContainers": [{...meshproxy...}, {...logagent...}],   # appended
     "volumes": [{"name": "mesh-token", ...}, {"name": "app-logs", ...}],   # appended
     "containers": {"app": {"env": [{"name": "MESH_PROXY", "value": "127.0.0.1:15001"}],   # set
                            "volumeMounts": [{"name": "app-logs", "mountPath": "/var/log/app"}]}}}   # appended

What is no pod change stays client-side in both modes: the Services' targetPort moved to the
proxy's inbound port, the proxy's Role and RoleBinding, the sink, an agent file's ConfigMap.
"""

from __future__ import annotations

import base64
import copy
import json
from typing import TYPE_CHECKING, Any, Iterable

from patternbench.errors import UsageError
from patternbench.pki import KeyPair, issue, new_ca
from patternbench.render import Obj, RenderOptions, app_objects, apply_rank, load_template, values
from patternbench.render.agent_objects import stand_in
from patternbench.render.pattern_objects import transform
from patternbench.specs.agents import Placement
from patternbench.specs.patterns import PatternSpec, pattern_spec

if TYPE_CHECKING:
    from patternbench.specs.topology import Pattern, Topology

ANNOTATION_INJECT = "patternbench.dev/inject"  # "false": the injector leaves the pod alone
ANNOTATION_INJECTED = "patternbench.dev/injected"  # the template version a pod was given
INJECTOR = "injector"  # its ServiceAccount, Deployment, Service, container and image name
TEMPLATE_CONFIGMAP = "injector-template"
TEMPLATE_KEY = "template.json"
TLS_SECRET = "injector-tls"
WEBHOOK_NAME = "sidecars.injector.patternbench.dev"
INJECTOR_PORT = 8443
# One admission call per pod and a mutation that takes microseconds: 5 s is TLS set-up on a
# loaded 2-core machine many times over, and keeps a hung injector from stalling a rollout
# for the default 10 s on every pod.
TIMEOUT_SECONDS = 5

# ---- rendering with and without the per-pod agents ---------------------------------------


def render_with(spec: PatternSpec, topology: Topology, opts: RenderOptions) -> list[Obj]:
    """render.render with a given spec (render() looks the pattern's up): the unsorted objects."""
    objs = load_template("namespaces.yaml", values(opts))
    objs += app_objects(topology, opts)
    if spec.placement:
        transform(spec, objs, topology, opts)
    return objs


def without_pod_agents(spec: PatternSpec) -> PatternSpec:
    """The pattern with its per-node agents only: what app pods look like before injection."""
    return PatternSpec(spec.pattern, {n: p for n, p in spec.placement.items() if p is Placement.NODE}, spec.lossless_log_upgrade)


def _app_deployments(objs: Iterable[Obj], opts: RenderOptions) -> dict[str, Obj]:
    return {
        o["metadata"]["name"]: o
        for o in objs
        if o["kind"] == "Deployment" and o["metadata"]["namespace"] == opts.app_namespace
    }


def _sidecar_spec(pattern: Pattern | str) -> PatternSpec:
    spec = pattern_spec(pattern)
    if not spec.agents_at(Placement.POD):
        raise UsageError(f"pattern {spec.name!r} runs no agent in app pods: there is nothing to inject")
    return spec


# ---- the template ---------------------------------------------------------------------------


def _appended(base: list[Any], full: list[Any], where: str) -> list[Any]:
    if full[: len(base)] != base:
        raise UsageError(f"{where}: the client-side transform changes what was there; a template only appends")
    return copy.deepcopy(full[len(base):])


def _env_set(base: list[Obj], full: list[Obj], where: str) -> list[Obj]:
    """The variables whose setting (drop the name, append the entry) turns base into full:
    the shortest tail of full that does it."""
    for k in range(len(full) + 1):
        tail = full[len(full) - k:]
        names = {e["name"] for e in tail}
        if [e for e in base if e["name"] not in names] == full[: len(full) - k]:
            return copy.deepcopy(tail)
    raise UsageError(f"{where}: the client-side transform removes variables; a template only sets them")


def derive_template(base: Obj, injected: Obj, version: str) -> dict[str, Any]:
    """The template that turns pod template `base` into `injected` (Deployment pod templates
    without and with the client-side injection). Anything a template cannot express is a
    UsageError, checked by applying the result to `base`."""
    b, f = base["spec"], injected["spec"]
    template: dict[str, Any] = {
        "version": version,
        "initContainers": _appended(b.get("initContainers") or [], f.get("initContainers") or [], "initContainers"),
        "volumes": _appended(b.get("volumes") or [], f.get("volumes") or [], "volumes"),
        "containers": {},
    }
    base_containers = {c["name"]: c for c in b["containers"]}
    if [c["name"] for c in f["containers"]] != list(base_containers):
        raise UsageError("containers: the client-side transform adds or removes app containers; a template cannot")
    for c in f["containers"]:
        before = base_containers[c["name"]]
        changes: dict[str, Any] = {}
        env = _env_set(before.get("env") or [], c.get("env") or [], f"containers.{c['name']}.env")
        mounts = _appended(before.get("volumeMounts") or [], c.get("volumeMounts") or [], f"containers.{c['name']}.volumeMounts")
        if env:
            changes["env"] = env
        if mounts:
            changes["volumeMounts"] = mounts
        if changes:
            template["containers"][c["name"]] = changes
    if not equal_apart_from_injection(inject_pod(base, template), injected):
        raise UsageError("the client-side transform changes more of the pod than a template can express")
    return template


def injection_template(
    topology: Topology, pattern: Pattern | str, opts: RenderOptions, version: str = "v1", upgraded: Iterable[str] | None = None
) -> dict[str, Any]:
    """The injector's template for this run: what the client-side render adds to every app
    pod, found by rendering the pattern with and without its per-pod agents and comparing an
    app Deployment's pod template. Every app Deployment must get the same (one template
    serves them all). At a version past v1, the upgradable per-pod agents (`upgraded`: their
    names, default all) run that version's image, as upgrade.upgrade_agent would patch it."""
    spec = _sidecar_spec(pattern)
    full = _app_deployments(render_with(spec, topology, opts), opts)
    base = _app_deployments(render_with(without_pod_agents(spec), topology, opts), opts)
    templates = [derive_template(base[name]["spec"]["template"], d["spec"]["template"], version) for name, d in full.items()]
    if any(t != templates[0] for t in templates[1:]):
        raise UsageError("the client-side transform gives different services different sidecars; one template cannot")
    template = templates[0]
    if version != "v1":
        wanted = None if upgraded is None else set(upgraded)
        agents = {}
        for agent in spec.agents_at(Placement.POD):
            agent = stand_in(agent, opts)
            if agent.upgradable and version in agent.versions and (wanted is None or agent.name in wanted or agent.slot in wanted):
                agents[agent.container] = agent
        for container in template["initContainers"]:
            agent = agents.get(container["name"])
            if agent is not None:
                container["image"] = agent.image_for(version, container["image"])
    return template


# ---- the injector's work, in Python (images/internal/inject does the same in Go) -------------


def skip_reason(pod: Obj, template: dict[str, Any]) -> str:
    """Why the injector leaves a pod alone ("" if it injects)."""
    annotations = pod.get("metadata", {}).get("annotations") or {}
    if annotations.get(ANNOTATION_INJECT) == "false":
        return f"{ANNOTATION_INJECT}=false"
    if ANNOTATION_INJECTED in annotations:
        return f"already injected ({annotations[ANNOTATION_INJECTED]})"
    spec = pod["spec"]
    present = {c["name"] for c in (spec.get("initContainers") or []) + (spec.get("containers") or [])}
    for c in template.get("initContainers") or []:
        if c["name"] in present:
            return f"already has container {c['name']}"
    return ""


def inject_pod(pod: Obj, template: dict[str, Any]) -> Obj:
    """The pod (or pod template) as the injector's patch leaves it: a copy."""
    pod = copy.deepcopy(pod)
    if skip_reason(pod, template):
        return pod
    spec = pod["spec"]

    def append(owner: Obj, key: str, items: list[Obj]) -> None:
        if items:  # the Go side adds an absent array only when it has something to put in it
            if owner.get(key) is None:
                owner[key] = []
            owner[key].extend(copy.deepcopy(items))

    append(spec, "initContainers", template.get("initContainers") or [])
    append(spec, "volumes", template.get("volumes") or [])
    for container in spec["containers"]:
        changes = (template.get("containers") or {}).get(container["name"])
        if not changes:
            continue
        for e in changes.get("env") or []:
            container["env"] = [x for x in container.get("env") or [] if x["name"] != e["name"]] + [copy.deepcopy(e)]
        append(container, "volumeMounts", changes.get("volumeMounts") or [])
    metadata = pod.setdefault("metadata", {})
    if metadata.get("annotations") is None:
        metadata["annotations"] = {}
    metadata["annotations"][ANNOTATION_INJECTED] = template["version"]
    return pod


def _stored(value: Any) -> Any:
    """An object as the API server stores it: a pod's empty lists are omitted (omitempty),
    so [] and absent are the same pod; so are null and absent."""
    if isinstance(value, dict):
        return {k: _stored(v) for k, v in value.items() if v is not None and v != []}
    if isinstance(value, list):
        return [_stored(v) for v in value]
    return value


def without_injection_annotations(pod: Obj) -> Obj:
    pod = copy.deepcopy(pod)
    annotations = pod.get("metadata", {}).get("annotations")
    if annotations:
        for key in (ANNOTATION_INJECTED, ANNOTATION_INJECT):
            annotations.pop(key, None)
        if not annotations:
            del pod["metadata"]["annotations"]
    return _stored(pod)


def equal_apart_from_injection(a: Obj, b: Obj) -> bool:
    """Whether two pods (or pod templates) are the same apart from the injection annotations."""
    return without_injection_annotations(a) == without_injection_annotations(b)


def render_webhook(topology: Topology, pattern: Pattern | str, opts: RenderOptions) -> list[Obj]:
    """The run's objects when the webhook injects: the client-side render with each app
    Deployment's pod template as it is before injection. Everything that is no pod change
    (Services' targetPort, RBAC, the sink, DaemonSets, agent files' ConfigMaps) stays."""

    spec = _sidecar_spec(pattern)
    objs = render_with(spec, topology, opts)
    base = _app_deployments(render_with(without_pod_agents(spec), topology, opts), opts)
    for name, deployment in _app_deployments(objs, opts).items():
        deployment["spec"]["template"] = copy.deepcopy(base[name]["spec"]["template"])
    return sorted(objs, key=apply_rank)


# ---- the injector's objects -----------------------------------------------------------------


def service_dns_names(opts: RenderOptions) -> tuple[str, ...]:
    """The names the API server may dial the injector by (it uses <svc>.<ns>.svc)."""
    ns = opts.agents_namespace
    return (f"{INJECTOR}.{ns}.svc", f"{INJECTOR}.{ns}.svc.cluster.local", f"{INJECTOR}.{ns}", INJECTOR)


def serving_certificate(opts: RenderOptions) -> tuple[KeyPair, KeyPair]:
    """A CA of the run's own and the injector's serving certificate signed by it: (ca, leaf).
    The CA goes to the webhook's caBundle, the leaf to the injector's TLS Secret; the CA's
    key is needed by nobody after this and is not kept."""
    ca = new_ca(f"patternbench-injector-ca-{opts.run_id}")
    leaf = issue(ca, f"{INJECTOR}.{opts.agents_namespace}.svc", dns_names=service_dns_names(opts), server=True)
    return ca, leaf


def injector_image(opts: RenderOptions) -> str:
    """patternbench.local/injector:v1, under the run's registry if it has one (beside the app)."""
    return opts.images.app.rsplit("/", 1)[0] + f"/{INJECTOR}:v1"


def template_configmap(opts: RenderOptions, template: dict[str, Any]) -> Obj:
    """The ConfigMap the injector reads its template from. One key, updated in place to move
    the injector to another version (the kubelet swaps the mounted file; the injector
    notices within a second of that, see images/internal/inject/watch.go)."""
    return {
        "apiVersion": "v1",
        "kind": "ConfigMap",
        "metadata": {
            "name": TEMPLATE_CONFIGMAP,
            "namespace": opts.agents_namespace,
            "labels": {"patternbench.dev/run": opts.run_id, "patternbench.dev/template-version": template["version"]},
        },
        "data": {TEMPLATE_KEY: json.dumps(template, indent=1, sort_keys=True) + "\n"},
    }


def _b64(data: bytes) -> str:
    return base64.b64encode(data).decode()


def injector_objects(opts: RenderOptions, template: dict[str, Any], certs: tuple[KeyPair, KeyPair] | None = None) -> list[Obj]:
    """Everything that runs the injector, in apply order. Apply the ServiceAccount, Secret,
    ConfigMap, Service and Deployment, wait for the Deployment, then the
    MutatingWebhookConfiguration, and only then the app Deployments: with failurePolicy Fail
    an app pod created before the injector answers is refused (and retried by its
    ReplicaSet), never admitted bare."""
    ca, leaf = certs or serving_certificate(opts)
    ns, run = opts.agents_namespace, opts.run_id
    labels = {"app.kubernetes.io/name": INJECTOR, "patternbench.dev/run": run}
    meta = {"namespace": ns, "labels": labels}
    service_account = {"apiVersion": "v1", "kind": "ServiceAccount", "metadata": {"name": INJECTOR, **meta}, "automountServiceAccountToken": False}
    secret = {
        "apiVersion": "v1",
        "kind": "Secret",
        "type": "kubernetes.io/tls",
        "metadata": {"name": TLS_SECRET, **meta},
        "data": {"tls.crt": _b64(leaf.cert_pem), "tls.key": _b64(leaf.key_pem)},
    }
    service = {
        "apiVersion": "v1",
        "kind": "Service",
        "metadata": {"name": INJECTOR, **meta},
        "spec": {"selector": {"app.kubernetes.io/name": INJECTOR}, "ports": [{"name": "https", "port": 443, "targetPort": INJECTOR_PORT}]},
    }
    probe = {"httpGet": {"path": "/readyz", "port": INJECTOR_PORT, "scheme": "HTTPS"}, "periodSeconds": 1}
    pod_labels = {**labels, "patternbench.dev/role": INJECTOR}
    deployment = {
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "metadata": {"name": INJECTOR, **meta},
        "spec": {
            # Two replicas on different nodes: with failurePolicy Fail, an injector lost with
            # its node (the fault experiments stop nodes) would refuse every app pod the
            # ReplicaSets recreate elsewhere until it is rescheduled; the second one answers.
            # Its cost (a few MiB, no CPU at rest) is measurement infrastructure, like the sink.
            "replicas": 2,
            "selector": {"matchLabels": {"app.kubernetes.io/name": INJECTOR}},
            "strategy": {"type": "RollingUpdate", "rollingUpdate": {"maxUnavailable": 0, "maxSurge": 1}},
            "template": {
                "metadata": {"labels": pod_labels},
                "spec": {
                    "serviceAccountName": INJECTOR,
                    "automountServiceAccountToken": False,  # it reads files, never the API
                    "enableServiceLinks": False,
                    "terminationGracePeriodSeconds": 15,
                    "topologySpreadConstraints": [{
                        "maxSkew": 1,
                        "topologyKey": "kubernetes.io/hostname",
                        "whenUnsatisfiable": "ScheduleAnyway",
                        "labelSelector": {"matchLabels": {"app.kubernetes.io/name": INJECTOR}},
                    }],
                    "securityContext": {
                        "runAsNonRoot": True, "runAsUser": 65532, "runAsGroup": 65532,
                        "seccompProfile": {"type": "RuntimeDefault"},
                    },
                    "containers": [{
                        "name": INJECTOR,
                        "image": injector_image(opts),
                        "imagePullPolicy": "IfNotPresent",
                        "ports": [{"name": "https", "containerPort": INJECTOR_PORT}],
                        "env": [
                            {"name": "LISTEN", "value": f":{INJECTOR_PORT}"},
                            {"name": "TEMPLATE", "value": f"/etc/injector/template/{TEMPLATE_KEY}"},
                            {"name": "TLS_CERT", "value": "/etc/injector/tls/tls.crt"},
                            {"name": "TLS_KEY", "value": "/etc/injector/tls/tls.key"},
                            {"name": "RELOAD", "value": "1s"},
                        ],
                        "readinessProbe": probe,
                        "livenessProbe": {**probe, "httpGet": {**probe["httpGet"], "path": "/healthz"}, "periodSeconds": 5},
                        "volumeMounts": [
                            {"name": "template", "mountPath": "/etc/injector/template", "readOnly": True},
                            {"name": "tls", "mountPath": "/etc/injector/tls", "readOnly": True},
                        ],
                        "resources": {"requests": {"cpu": "10m", "memory": "16Mi"}, "limits": {"memory": "64Mi"}},
                        "securityContext": {
                            "allowPrivilegeEscalation": False, "readOnlyRootFilesystem": True, "capabilities": {"drop": ["ALL"]},
                        },
                    }],
                    # Mounted as directories, never with subPath: a subPath mount is never
                    # updated, so the template switch would not reach the injector.
                    "volumes": [
                        {"name": "template", "configMap": {"name": TEMPLATE_CONFIGMAP}},
                        {"name": "tls", "secret": {"secretName": TLS_SECRET}},
                    ],
                },
            },
        },
    }
    return [service_account, secret, template_configmap(opts, template), service, deployment, webhook_configuration(opts, ca)]


def webhook_configuration(opts: RenderOptions, ca: KeyPair) -> Obj:
    """The MutatingWebhookConfiguration of this run (cluster-scoped, so named and labelled
    by the run and the owner like the ClusterRoles, for undeploy and the sweep of a crashed
    run's leftovers)."""
    return {
        "apiVersion": "admissionregistration.k8s.io/v1",
        "kind": "MutatingWebhookConfiguration",
        "metadata": {
            "name": f"patternbench-injector-{opts.run_id}",
            "labels": {"patternbench.dev/run": opts.run_id, "patternbench.dev/owner": "patternbench"},
        },
        "webhooks": [{
            "name": WEBHOOK_NAME,
            "clientConfig": {
                "service": {"namespace": opts.agents_namespace, "name": INJECTOR, "path": "/mutate", "port": 443},
                "caBundle": _b64(ca.cert_pem),
            },
            "rules": [{"operations": ["CREATE"], "apiGroups": [""], "apiVersions": ["v1"], "resources": ["pods"], "scope": "Namespaced"}],
            # Exactly this run's app namespace, by the name label the API server puts on every
            # namespace (kubernetes.io/metadata.name, immutable): the injector's own namespace,
            # kube-system and every other run are out of reach, so the injector can never
            # block its own pods or, left over from a crashed run, another run's; and the
            # rendered namespace needs no extra label.
            "namespaceSelector": {"matchLabels": {"kubernetes.io/metadata.name": opts.app_namespace}},
            # Only app pods (the sink and the node agents live elsewhere anyway).
            "objectSelector": {"matchLabels": {"patternbench.dev/role": "app"}},
            # Fail, not Ignore. With Ignore, a pod created while the injector cannot answer
            # runs without its sidecars and without MESH_PROXY and LOG_PATH, silently: its
            # Service still sends traffic to the proxy's inbound port, where nothing listens,
            # and its log lines go nowhere: the run would measure a broken pattern as if it
            # were the pattern. With Fail the pod is refused, its ReplicaSet retries with
            # backoff, and an injector outage shows as what it is: a slower rollout, in the
            # rollout timings. No pod ever runs without its sidecars. The price: the injector
            # must be ready before app pods are created (injector_objects' order) and stay
            # up (two replicas); the namespace selector keeps that price inside this run.
            "failurePolicy": "Fail",
            "matchPolicy": "Equivalent",
            "sideEffects": "None",
            "admissionReviewVersions": ["v1"],
            "timeoutSeconds": TIMEOUT_SECONDS,
            # Never: no other mutating webhook in a patternbench cluster changes app pods
            # after this one, and one call per pod keeps admission latency (part of every
            # rollout measured) at one round trip. The injector is idempotent, so IfNeeded
            # would be harmless, only slower.
            "reinvocationPolicy": "Never",
        }],
    }
