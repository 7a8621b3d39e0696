"""A thin Kubernetes client: apply objects, wait until they are rolled out, poll, tear them
down; the cluster facts a run asks (live containers, placement, node capacity).

Everything a run creates carries its run id as a label, so it can be found again: by
`undeploy`, and by the sweep that removes a crashed run's leftovers before the next one.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Iterable

import urllib3
from kubernetes import client
from kubernetes.client.rest import ApiException
from kubernetes.dynamic import DynamicClient
from kubernetes.dynamic.exceptions import DynamicApiError
from tenacity import RetryError, Retrying, retry_if_result, stop_after_delay, wait_fixed

from patternbench.errors import UsageError
from patternbench.load.placement import is_load_node
from patternbench.operate.rollout import rollout_status
from patternbench.progress import Progress
from patternbench.specs.topology import NodeCapacity

RUN_LABEL = "patternbench.dev/run"
OWNER_LABEL = "patternbench.dev/owner"
ROLE_LABEL = "patternbench.dev/role"
FIELD_MANAGER = "patternbench"
REQUEST_TIMEOUT = 15  # seconds, for every API call

Obj = dict[str, Any]


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
            # The namespace first: once it terminates, no controller makes its pods again.
            try:
                self.core.delete_namespace(ns.metadata.name, propagation_policy="Background", _request_timeout=REQUEST_TIMEOUT)
            except ApiException as exc:
                if exc.status != 404:
                    raise
            if not graceful:
                try:
                    self.core.delete_collection_namespaced_pod(ns.metadata.name, grace_period_seconds=0, _request_timeout=REQUEST_TIMEOUT)
                except urllib3.exceptions.HTTPError:
                    # The API server goes on deleting after the client stops waiting. Seen: 24
                    # pods with sidecars on 2 busy cores took over 15 s, the timeout aborted the
                    # undeploy before its namespace was deleted, and the ReplicaSets kept making
                    # the pods again under every later test.
                    pass
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
        if not ready or is_load_node(node.metadata.labels):  # the load's node holds no app pod or agent
            continue
        alloc = node.status.allocatable
        nodes.append(NodeCapacity(node.metadata.name, int(alloc["pods"]), cpu_m(alloc["cpu"]), mem_mi(alloc["memory"])))
    running = len(core.list_pod_for_all_namespaces(field_selector="status.phase=Running", _request_timeout=REQUEST_TIMEOUT).items)
    return nodes, running


