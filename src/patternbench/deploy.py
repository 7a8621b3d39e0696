"""Apply a run's objects, wait until they are rolled out, tear them down; one namespace pair per run.

Everything a run creates carries its run id as a label, so it can be found again: by
`undeploy`, and by the sweep that removes a crashed run's leftovers before the next one.
"""

from __future__ import annotations

import datetime as dt
import secrets
import urllib.error
import urllib.request
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterable

import urllib3
from kubernetes import client, config as kube_config
from kubernetes.client.rest import ApiException
from kubernetes.dynamic import DynamicClient
from kubernetes.dynamic.exceptions import DynamicApiError
from tenacity import RetryError, Retrying, retry_if_result, stop_after_delay, wait_fixed

from patternbench.agents import agent_spec
from patternbench.cluster.provider import abilities
from patternbench.errors import UsageError
from patternbench.images import ImageArchive, build_data_plane, on_demand_archives
from patternbench.load.conntrack import forget_unnated
from patternbench.patterns import pattern_spec
from patternbench.progress import Progress
from patternbench.render import Images, RenderOptions, render, to_yaml
from patternbench.rollout import rollout_status
from patternbench.render.injector_objects import injection_template, injector_objects, render_webhook
from patternbench.topology import NodeCapacity, check_capacity


RUN_LABEL = "patternbench.dev/run"
OWNER_LABEL = "patternbench.dev/owner"
ROLE_LABEL = "patternbench.dev/role"
FIELD_MANAGER = "patternbench"
REQUEST_TIMEOUT = 15  # seconds, for every API call

Obj = dict[str, Any]


def new_run_id(now: dt.datetime | None = None) -> str:
    """A DNS-label run id that sorts by time: pb-YYMMDD-HHMMSS-xxxx."""
    now = now or dt.datetime.now(dt.timezone.utc)
    return f"pb-{now:%y%m%d-%H%M%S}-{secrets.token_hex(2)}"


def poll(what: str, check: Any, timeout_s: float, interval_s: float = 0.5) -> Any:
    """tenacity: call `check` until it returns a truthy value; UsageError after the deadline."""
    try:
        return Retrying(stop=stop_after_delay(timeout_s), wait=wait_fixed(interval_s), retry=retry_if_result(lambda r: not r))(check)
    except RetryError:
        raise UsageError(f"timed out after {timeout_s:.0f}s waiting for {what}") from None


@dataclass
class Deployer:
    api: client.ApiClient
    progress: Progress = field(default_factory=Progress)

    def __post_init__(self) -> None:
        self.core = client.CoreV1Api(self.api)
        self.rbac = client.RbacAuthorizationV1Api(self.api)
        self.admission = client.AdmissionregistrationV1Api(self.api)
        self._dynamic: DynamicClient | None = None

    @property
    def dynamic(self) -> DynamicClient:
        if self._dynamic is None:
            self._dynamic = DynamicClient(self.api)
        return self._dynamic

    # ---- before anything is created --------------------------------------------------

    def check_namespaces_free(self, objs: Iterable[Obj], run_id: str) -> None:
        """A namespace of the same name that patternbench did not create is a clash."""
        for obj in objs:
            if obj["kind"] != "Namespace":
                continue
            name = obj["metadata"]["name"]
            try:
                existing = self.core.read_namespace(name, _request_timeout=REQUEST_TIMEOUT)
            except ApiException as exc:
                if exc.status == 404:
                    continue
                raise
            labels = existing.metadata.labels or {}
            if labels.get(OWNER_LABEL) != "patternbench" or labels.get(RUN_LABEL) != run_id:
                raise UsageError(f"namespace {name!r} already exists and was not created by this patternbench run")

    def sweep(self, keep_run: str | None = None, wait: bool = False) -> list[str]:
        """Delete every earlier run's namespaces and cluster-wide objects (found by label).
        Runs never share names, so a new run need not wait until the old one is gone."""
        swept = set()
        for ns in self.core.list_namespace(label_selector=f"{OWNER_LABEL}=patternbench", _request_timeout=REQUEST_TIMEOUT).items:
            run = (ns.metadata.labels or {}).get(RUN_LABEL)
            if run and run != keep_run:
                swept.add(run)
        for run in sorted(swept):
            self.undeploy(run, wait=False, graceful=False)
        if swept and wait:
            self.wait_gone(None, exclude=keep_run)
        return sorted(swept)

    # ---- apply and wait --------------------------------------------------------------

    def apply(self, objs: list[Obj]) -> None:
        """Server-side apply, in the given order (namespaces and RBAC first)."""
        for obj in objs:
            resource = self.dynamic.resources.get(api_version=obj["apiVersion"], kind=obj["kind"])
            namespace = obj["metadata"].get("namespace")
            try:
                resource.server_side_apply(
                    body=obj, name=obj["metadata"]["name"], namespace=namespace,
                    field_manager=FIELD_MANAGER, force_conflicts=True, _request_timeout=REQUEST_TIMEOUT,
                )
            except DynamicApiError as exc:
                reason = exc.summary() if hasattr(exc, "summary") else str(exc)
                raise UsageError(f"the API server refused {obj['kind']} {namespace or ''}/{obj['metadata']['name']}: {reason}") from None

    def wait_rolled_out(self, objs: list[Obj], timeout_s: float = 180) -> None:
        """Wait until every Deployment and DaemonSet is rolled out (kubectl's rules)."""
        for obj in objs:
            if obj["kind"] not in ("Deployment", "DaemonSet"):
                continue
            self.wait_one(obj["kind"], obj["metadata"]["namespace"], obj["metadata"]["name"], timeout_s)

    def wait_one(self, kind: str, namespace: str, name: str, timeout_s: float, on_status: Any = None) -> None:
        """Poll one rollout until kubectl would call it done; `on_status(kind, name, status)`
        sees every status as it changes (the rollout's progress on the timeline)."""
        apps = client.AppsV1Api(self.api)
        read = apps.read_namespaced_deployment if kind == "Deployment" else apps.read_namespaced_daemon_set
        last = {"message": ""}

        def done() -> bool:
            try:
                raw = read(name, namespace, _request_timeout=REQUEST_TIMEOUT)
            except (ApiException, urllib3.exceptions.HTTPError) as exc:
                # The API server may be away for a moment (restarting, or a fault a case
                # injected): keep waiting, as `kubectl rollout status` re-watches.
                if isinstance(exc, ApiException) and exc.status is not None and exc.status < 500:
                    raise
                return False
            live = self.api.sanitize_for_serialization(raw)
            live["kind"] = kind
            status = rollout_status(live)
            if on_status is not None and status.message != last["message"]:
                on_status(kind, name, status)
            last["message"] = status.message
            return status.done

        try:
            poll(f"{kind} {namespace}/{name}", done, timeout_s)
        except UsageError:
            raise UsageError(f"{kind} {namespace}/{name} did not roll out in {timeout_s:.0f}s: {last['message']}{self._pod_problem(namespace)}") from None

    def _pod_problem(self, namespace: str) -> str:
        """The first reason a pod of the namespace is not running, for the error message."""
        for event in self.core.list_namespaced_event(namespace, _request_timeout=REQUEST_TIMEOUT).items[-20:]:
            if event.type == "Warning":
                return f" ({event.reason}: {event.message})"
        return ""

    # ---- teardown --------------------------------------------------------------------

    def undeploy(self, run_id: str | None = None, wait: bool = True, timeout_s: float = 120, graceful: bool = True) -> None:
        """Delete a run's (or every run's) namespaces and cluster-wide objects. graceful=False
        kills the pods at once (grace period 0): for teardown after the measurements."""
        selector = f"{RUN_LABEL}={run_id}" if run_id else f"{OWNER_LABEL}=patternbench"
        # The injector's webhook first: with failurePolicy Fail it must not outlive its injector.
        self.admission.delete_collection_mutating_webhook_configuration(label_selector=selector, _request_timeout=REQUEST_TIMEOUT)
        for ns in self.core.list_namespace(label_selector=selector, _request_timeout=REQUEST_TIMEOUT).items:
            if not graceful:
                self.core.delete_collection_namespaced_pod(ns.metadata.name, grace_period_seconds=0, _request_timeout=REQUEST_TIMEOUT)
            try:
                self.core.delete_namespace(ns.metadata.name, propagation_policy="Background", _request_timeout=REQUEST_TIMEOUT)
            except ApiException as exc:
                if exc.status != 404:
                    raise
        cluster_selector = f"{RUN_LABEL}={run_id}" if run_id else f"{OWNER_LABEL}=patternbench"
        self.rbac.delete_collection_cluster_role_binding(label_selector=cluster_selector, _request_timeout=REQUEST_TIMEOUT)
        self.rbac.delete_collection_cluster_role(label_selector=cluster_selector, _request_timeout=REQUEST_TIMEOUT)
        if wait:
            self.wait_gone(run_id, timeout_s=timeout_s)

    def wait_gone(self, run_id: str | None, timeout_s: float = 120, exclude: str | None = None) -> None:
        selector = f"{RUN_LABEL}={run_id}" if run_id else f"{OWNER_LABEL}=patternbench"

        def gone() -> bool:
            items = self.core.list_namespace(label_selector=selector, _request_timeout=REQUEST_TIMEOUT).items
            return not [ns for ns in items if (ns.metadata.labels or {}).get(RUN_LABEL) != exclude]

        poll("the run's namespaces to be deleted", gone, timeout_s)

    def leftovers(self, run_id: str) -> list[str]:
        """Anything of the run still in the cluster (namespaces, cluster roles, bindings)."""
        selector = f"{RUN_LABEL}={run_id}"
        found = [f"namespace/{n.metadata.name}" for n in self.core.list_namespace(label_selector=selector).items]
        found += [f"clusterrole/{r.metadata.name}" for r in self.rbac.list_cluster_role(label_selector=selector).items]
        found += [f"clusterrolebinding/{b.metadata.name}" for b in self.rbac.list_cluster_role_binding(label_selector=selector).items]
        found += [f"mutatingwebhookconfiguration/{w.metadata.name}" for w in self.admission.list_mutating_webhook_configuration(label_selector=selector).items]
        return found


def live_containers(core: client.CoreV1Api, namespaces: Iterable[str]) -> int:
    """Running app and agent containers, as the API reports them (native sidecars included)."""
    count = 0
    for namespace in namespaces:
        pods = core.list_namespaced_pod(namespace, label_selector=f"{ROLE_LABEL} in (app,agent)", _request_timeout=REQUEST_TIMEOUT)
        for pod in pods.items:
            if pod.metadata.deletion_timestamp is not None:
                continue
            statuses = (pod.status.container_statuses or []) + (pod.status.init_container_statuses or [])
            count += sum(1 for s in statuses if s.state and s.state.running is not None)
    return count


def placement(core: client.CoreV1Api, namespaces: Iterable[str]) -> list[dict[str, str]]:
    """Every app and agent pod with the node it runs on (as the scheduler placed it)."""
    found = []
    for namespace in namespaces:
        pods = core.list_namespaced_pod(namespace, label_selector=f"{ROLE_LABEL} in (app,agent)", _request_timeout=REQUEST_TIMEOUT)
        for pod in pods.items:
            if pod.metadata.deletion_timestamp is None:
                found.append({
                    "pod": pod.metadata.name, "namespace": namespace, "node": pod.spec.node_name or "",
                    "role": (pod.metadata.labels or {}).get(ROLE_LABEL, ""),
                    "app": (pod.metadata.labels or {}).get("app.kubernetes.io/name", ""),
                })
    return sorted(found, key=lambda p: (p["role"], p["app"], p["node"], p["pod"]))


# ---- a whole run's deployment ------------------------------------------------------------


@dataclass
class DeployedRun:
    """What `deploy_run` made: enough to reach it, measure it and remove it."""

    run_id: str
    pattern: str
    objects: list[Obj]
    app_namespace: str
    agents_namespace: str
    entry_url: str
    nodes: int
    injection: str = "client"
    entry_service: str = ""  # the NodePort Service the load enters by
    render_options: Any = None  # the RenderOptions it was rendered with (webhook upgrades re-derive the template)
    # Bindings the readiness poll left un-NATed in this host's conntrack, deleted before any
    # load (conntrack.forget_unnated); each would have refused a later connection.
    forgotten_bindings: list[dict[str, Any]] = field(default_factory=list)

    @property
    def namespaces(self) -> tuple[str, str]:
        return (self.app_namespace, self.agents_namespace)


# Providers (by object) this process has already loaded the images into.
_IMAGES_LOADED: set[Any] = set()


def node_capacities(core: client.CoreV1Api) -> tuple[list[Any], int]:
    """Ready nodes' allocatable pods/CPU/memory, and how many pods already run."""

    def cpu_m(q: str) -> int:
        return int(float(q[:-1])) if q.endswith("m") else int(float(q) * 1000)

    def mem_mi(q: str) -> int:
        units = {"Ki": 1 / 1024, "Mi": 1, "Gi": 1024, "Ti": 1024 * 1024}
        for suffix, factor in units.items():
            if q.endswith(suffix):
                return int(float(q[: -len(suffix)]) * factor)
        return int(float(q) / (1 << 20))

    nodes = []
    for node in core.list_node(_request_timeout=REQUEST_TIMEOUT).items:
        ready = any(c.type == "Ready" and c.status == "True" for c in node.status.conditions or [])
        if not ready:
            continue
        alloc = node.status.allocatable
        nodes.append(NodeCapacity(node.metadata.name, int(alloc["pods"]), cpu_m(alloc["cpu"]), mem_mi(alloc["memory"])))
    running = len(core.list_pod_for_all_namespaces(field_selector="status.phase=Running", _request_timeout=REQUEST_TIMEOUT).items)
    return nodes, running


def deploy_run(
    provider: Any,
    topology: Any,
    pattern: Any,
    *,
    run_id: str | None = None,
    naive: bool = False,
    results_dir: Any = None,
    progress: Progress | None = None,
    timeout_s: float = 180,
    agent: str | None = None,
    serving_label: bool = False,
    injection: str = "client",
) -> DeployedRun:
    """Render, check, load images, apply and wait: the pattern's objects, rolled out and Ready."""

    progress = progress or Progress()

    pattern_spec(pattern).check(topology)
    run_id = run_id or new_run_id()
    able = abilities(provider)
    pod_logs_dir, agent_state_dir = able.node_paths
    images = Images.under(able.registry)
    # An agent from an agent file takes its built-in agent's place in this run.
    stand_ins = (agent,) if agent is not None and agent_spec(agent).stands_in_for else ()
    # The nodes first (a read): node agents' requests follow their count (render.size_agent_requests).
    try:
        api = kube_config.new_client_from_config(config_file=str(provider.kubeconfig()))
        deployer = Deployer(api, progress)
        nodes, running = node_capacities(deployer.core)
    except UsageError:
        raise
    except Exception as exc:  # noqa: BLE001 - an unreachable cluster is an environment problem
        raise UsageError(f"the {provider.name} cluster is not reachable (is it up? `patternbench cluster up`): {type(exc).__name__}") from None
    opts = RenderOptions(run_id=run_id, images=images, pod_logs_dir=pod_logs_dir, agent_state_dir=agent_state_dir, naive=naive, stand_ins=stand_ins, serving_label=serving_label, nodes=len(nodes))
    injector: list[Obj] = []
    if injection == "webhook":
        objs = render_webhook(topology, pattern, opts)
        injector = injector_objects(opts, injection_template(topology, pattern, opts, "v1"))
    else:
        objs = render(topology, pattern, opts)
    check_capacity(topology, pattern, nodes, used_pods=running)
    deployer.check_namespaces_free(objs, run_id)
    with progress.step("sweep earlier runs"):
        swept = deployer.sweep(keep_run=run_id)
    if swept:
        progress.say(f"   removed leftovers of {', '.join(swept)}")
    if provider.capabilities.can_load_images and id(provider) not in _IMAGES_LOADED:
        with progress.step("build and load images"):
            provider.load_images(build_data_plane())
        _IMAGES_LOADED.add(id(provider))
    # An agent file's images: its own OCI archives, or images patternbench builds on demand.
    own = [ImageArchive(ref=str(a), path=a, digest="", size_bytes=a.stat().st_size) for name in stand_ins for a in agent_spec(name).archives]
    refs = [ref for name in stand_ins for ref in (agent_spec(name).images_by_version or {}).values()]
    if provider.capabilities.can_load_images and (own or refs) and (id(provider), tuple(refs)) not in _IMAGES_LOADED:
        with progress.step(f"build and load the {', '.join(stand_ins)} agent's images"):
            archives = own + on_demand_archives(refs)
            if archives:
                provider.load_images(archives)
        _IMAGES_LOADED.add((id(provider), tuple(refs)))
    if results_dir is not None:
        out = Path(results_dir)
        out.mkdir(parents=True, exist_ok=True)
        from patternbench.webhook_injector import redacted

        (out / "manifests.yaml").write_text(to_yaml(redacted(objs + injector)))
    if injector:
        apply_with_injector(deployer, objs, injector, opts.app_namespace, opts.agents_namespace, progress, timeout_s)
    else:
        with progress.step(f"apply {len(objs)} objects ({pattern.value} pattern, run {run_id})"):
            deployer.apply(objs)
    with progress.step("wait until every Deployment and DaemonSet is rolled out"):
        deployer.wait_rolled_out(objs, timeout_s)
    objs = objs + injector
    entry = next(o for o in objs if o["kind"] == "Service" and o["spec"].get("type") == "NodePort")
    live = deployer.core.read_namespaced_service(entry["metadata"]["name"], opts.app_namespace, _request_timeout=REQUEST_TIMEOUT)
    if able.entry_host is not None:
        host = able.entry_host
    else:  # a NodePort answers on every node's address
        node = deployer.core.read_node(nodes[0].name, _request_timeout=REQUEST_TIMEOUT)
        host = next(a.address for a in node.status.addresses if a.type == "InternalIP")
    entry_url = f"http://{host}:{live.spec.ports[0].node_port}/"
    with progress.step(f"wait until the whole chain answers at {entry_url}"):
        # /readyz?chain=1, not /: it follows every call of the chain but writes no log line
        # that a test then counts. Several in a row: each node's kube-proxy programs a new
        # Service a moment after its pods are Ready, and one answer covers one path only.
        wait_answers(entry_url + "readyz?chain=1", timeout_s=60, in_a_row=CHAIN_ANSWERS_IN_A_ROW)
    forgotten: list[dict[str, Any]] = []
    if able.conntrack_here:
        # The poll's first tries, rejected before kube-proxy had the Service's endpoints, left
        # un-NATed bindings that would refuse the probe that next draws one of their source
        # ports (within 120 s): the stray refusals of issue 18.
        forgotten = forget_unnated(host, live.spec.ports[0].node_port)
        if forgotten:
            progress.say(f"   forgot {len(forgotten)} un-NATed conntrack binding(s) the readiness poll left at {entry_url}")
    return DeployedRun(
        run_id=run_id, pattern=pattern.value, objects=objs, app_namespace=opts.app_namespace,
        agents_namespace=opts.agents_namespace, entry_url=entry_url, nodes=len(nodes), injection=injection, render_options=opts,
        entry_service=entry["metadata"]["name"], forgotten_bindings=forgotten,
    )


def apply_with_injector(deployer: Deployer, objs: list[Obj], injector: list[Obj], app_ns: str, agents_ns: str, progress: Progress, timeout_s: float) -> None:
    """The injector first, Ready, its webhook in force (a dry-run app pod comes back
    injected), and only then the app Deployments: with failurePolicy Fail an app pod created
    earlier would be refused, and one admitted before the API server saw the webhook would
    run without its sidecars."""
    from patternbench.webhook_injector import wait_injecting

    apps = [o for o in objs if o["kind"] == "Deployment" and o["metadata"]["namespace"] == app_ns]
    rest = [o for o in objs if o not in apps]
    webhook = [o for o in injector if o["kind"] == "MutatingWebhookConfiguration"]
    with progress.step(f"apply {len(rest) + len(injector) - len(webhook)} objects and the sidecar injector"):
        deployer.apply(rest + [o for o in injector if o not in webhook])
        deployer.wait_one("Deployment", agents_ns, "injector", timeout_s)
    with progress.step("register the injection webhook and wait until new app pods are injected"):
        deployer.apply(webhook)
        wait_injecting(deployer.core, app_ns, apps[0], "v1")
    with progress.step(f"apply {len(apps)} app Deployments (sidecars injected at admission)"):
        deployer.apply(apps)


CHAIN_ANSWERS_IN_A_ROW = 10


def wait_answers(url: str, timeout_s: float, in_a_row: int = 1) -> None:
    """Until `url` answers 200 `in_a_row` times running: kube-proxy programs a new Service a
    moment after its pods are Ready, on each node in its own time."""

    streak = 0

    def answers() -> bool:
        nonlocal streak
        try:
            with urllib.request.urlopen(url, timeout=3) as resp:
                ok = resp.status == 200
        except (OSError, urllib.error.URLError):
            ok = False
        streak = streak + 1 if ok else 0
        return streak >= in_a_row

    poll(f"{url} to answer {in_a_row} times in a row", answers, timeout_s, interval_s=0.1)
