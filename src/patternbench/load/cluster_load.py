"""The harness's side of load from inside the cluster (issue 23): a Locust master pod and N
worker pods (load/incluster.py, image build/load_image.py), their records pulled while they
run through the API server's pod proxy (no address of the pods need be reachable from the
harness), placed on the harness's timeline by a measured clock offset per pod, and checked
whole: every line a worker says it wrote must have arrived, or the load failed.
"""

from __future__ import annotations

import json
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable

from kubernetes import client
from kubernetes.client.rest import ApiException

from patternbench.errors import StepFailed
from patternbench.load.incluster_protocol import CONTROL_PORT, MASTER_PORT
from patternbench.load.placement import pod_placement
from patternbench.load.runner import LoadConfig
from patternbench.results.rundir import LOAD_SUMMARY, REQUESTS

ROLE_LABEL = "patternbench.dev/load"
CLOCK_SAMPLES = 15


class LoadFailed(Exception):
    """The in-cluster load did not run, or did not return every record."""


@dataclass(frozen=True)
class ClockOffset:
    """A pod's monotonic clock minus the harness's, from the round trip with the smallest
    time (Cristian's method): the pod read its clock somewhere inside the round trip, so the
    error is at most half of it."""

    offset_s: float
    uncertainty_s: float
    samples: int

    def as_dict(self) -> dict[str, float]:
        return {"offset_ms": round(self.offset_s * 1000, 3), "uncertainty_ms": round(self.uncertainty_s * 1000, 3), "samples": self.samples}


def best_offset(samples: list[tuple[float, float, float]]) -> ClockOffset:
    """From (harness sent, pod's clock, harness received) triples."""
    sent, pod, received = min(samples, key=lambda s: s[2] - s[0])
    return ClockOffset(pod - (sent + received) / 2, (received - sent) / 2, len(samples))


@dataclass
class ClusterLoad:
    """One run of users from the cluster against `target` (an in-cluster URL)."""

    core: client.CoreV1Api
    namespace: str
    image: str
    target: str
    records: Path
    workers: int = 2
    users: int = 4
    rate_per_user: float = 5.0
    spawn_rate: float = 10.0
    duration_s: float = 10.0
    probe_interval_s: float | None = None  # a probe stream from its own pod (probe.py), or none
    probe_timeout_s: float = 2.0
    rps: float | None = None  # the open loop instead of users: this rate, shared by the workers
    # The pods read the harness's own clock (the local provider: one kernel, no time
    # namespace): records keep their `t`, and the measured offsets only check the method.
    clock_shared: bool = False
    name: str = "pb-load"
    on_load_nodes: bool = True  # the pods select the load nodes and tolerate their taint (placement.py)
    on_progress: Callable[[dict[str, Any]], None] | None = None
    pulled: dict[str, int] = field(default_factory=dict)  # bytes read per worker
    lines: dict[str, int] = field(default_factory=dict)  # lines appended per worker
    clocks: dict[str, ClockOffset] = field(default_factory=dict)
    counts: dict[str, int] = field(default_factory=lambda: {"requests": 0, "failures": 0})
    started: float = 0.0
    _last_pull: tuple[float, int] = (0.0, 0)  # (when, requests) at the last pull, for the progress rate

    @property
    def master(self) -> str:
        return f"{self.name}-master"

    @property
    def worker_names(self) -> list[str]:
        return [f"{self.name}-worker-{i}" for i in range(self.workers)]

    @property
    def prober(self) -> str | None:
        return f"{self.name}-prober" if self.probe_interval_s else None

    @property
    def sources(self) -> list[str]:
        """The pods whose records come back: the workers, and the prober if any."""
        return [*self.worker_names, *([self.prober] if self.prober else [])]

    def settings(self, **extra: Any) -> str:
        return json.dumps({"host": self.target, "rate_per_user": self.rate_per_user, "users": self.users, "spawn_rate": self.spawn_rate,
                           "duration_s": self.duration_s, "workers": self.workers, "probe_interval_s": self.probe_interval_s, "probe_timeout_s": self.probe_timeout_s,
                           "rps": self.rps, **extra})

    def pod(self, name: str, role: str, settings: str) -> client.V1Pod:
        """A pod under the restricted Pod Security level: non-root, no capabilities, read-only root."""
        security = client.V1SecurityContext(
            run_as_non_root=True, allow_privilege_escalation=False, read_only_root_filesystem=True,
            capabilities=client.V1Capabilities(drop=["ALL"]), seccomp_profile=client.V1SeccompProfile(type="RuntimeDefault"),
        )
        container = client.V1Container(
            name="load", image=self.image, image_pull_policy="IfNotPresent", args=[role],
            env=[client.V1EnvVar(name="PB_LOAD", value=settings)],
            ports=[client.V1ContainerPort(container_port=CONTROL_PORT, name="control"), client.V1ContainerPort(container_port=MASTER_PORT, name="locust")],
            readiness_probe=client.V1Probe(http_get=client.V1HTTPGetAction(path="/healthz", port=CONTROL_PORT), period_seconds=1),
            resources=client.V1ResourceRequirements(requests={"cpu": "10m", "memory": "64Mi"}, limits={"memory": "256Mi"}),
            security_context=security,
            volume_mounts=[client.V1VolumeMount(name="records", mount_path="/records"), client.V1VolumeMount(name="tmp", mount_path="/tmp")],
        )
        return client.V1Pod(
            metadata=client.V1ObjectMeta(name=name, labels={ROLE_LABEL: role, "patternbench.dev/load-run": self.name}),
            spec=client.V1PodSpec(
                containers=[container], restart_policy="Never", automount_service_account_token=False, termination_grace_period_seconds=2,
                **(pod_placement() if self.on_load_nodes else {}),
                volumes=[client.V1Volume(name="records", empty_dir=client.V1EmptyDirVolumeSource()),
                         client.V1Volume(name="tmp", empty_dir=client.V1EmptyDirVolumeSource())],
            ),
        )

    # ---- lifecycle -----------------------------------------------------------------

    def start(self, timeout_s: float = 120) -> None:
        """The master first (the workers are given its address, so no DNS is needed), then
        the workers; returns when every pod is Ready and each clock is measured."""
        self.core.create_namespaced_pod(self.namespace, self.pod(self.master, "master", self.settings()))
        master_ip = self._wait_ready(self.master, timeout_s).status.pod_ip
        for name in self.worker_names:
            self.core.create_namespaced_pod(self.namespace, self.pod(name, "worker", self.settings(master_host=master_ip)))
        if self.prober:  # it runs until stopped: the load's end stops it
            self.core.create_namespaced_pod(self.namespace, self.pod(self.prober, "prober", self.settings(duration_s=self.duration_s + 600)))
        for name in self.sources:
            self._wait_ready(name, timeout_s)
            self.clocks[name] = self.clock(name)
        self.records.parent.mkdir(parents=True, exist_ok=True)
        self.started = time.monotonic()

    def run(self, timeout_s: float | None = None) -> dict[str, Any]:
        """Pull records until the master says done and every worker's lines are in; the
        master's summary with the per-worker checks."""
        deadline = time.monotonic() + (timeout_s or self.duration_s + 120)
        state: dict[str, Any] = {}
        while time.monotonic() < deadline:
            self.pull()
            state = self.state(self.master)
            if state.get("phase") == "failed":
                raise LoadFailed(f"the load master failed: {state.get('error')}")
            if state.get("phase") == "done":
                break
            time.sleep(1.0)
        else:
            raise LoadFailed(f"the in-cluster load did not finish within its time (master: {state.get('phase')})")
        if self.prober:
            self._post(self.prober, "stop")
        written = {name: self._final_written(name) for name in self.sources}
        self.pull()
        short = {n: (self.lines.get(n, 0), w) for n, w in written.items() if self.lines.get(n, 0) != w}
        if short:
            raise LoadFailed(f"records lost between the workers and the harness: {short} (pulled, written)")
        summary = dict(state["summary"])
        summary.update({"load_from": "cluster", "worker_lines": dict(self.lines), "clock_shared": self.clock_shared,
                        "clock": {n: c.as_dict() for n, c in self.clocks.items()}})
        return summary

    def _final_written(self, name: str) -> int:
        for _ in range(50):
            state = self.state(name)
            if state.get("phase") in ("done", "failed"):
                return int(state.get("written", 0))
            time.sleep(0.2)
        raise LoadFailed(f"{name} did not stop (phase {self.state(name).get('phase')})")

    def stop(self) -> None:
        """End the load now (run() then returns with what was sent)."""
        self._post(self.master, "stop")

    def delete(self) -> None:
        for name in [self.master, *self.sources]:
            try:
                self.core.delete_namespaced_pod(name, self.namespace, grace_period_seconds=0)
            except ApiException as exc:
                if exc.status != 404:
                    raise

    # ---- reading the pods ------------------------------------------------------------

    def _get(self, pod: str, path: str) -> bytes:
        try:
            resp = self.core.connect_get_namespaced_pod_proxy_with_path(f"{pod}:{CONTROL_PORT}", self.namespace, path, _preload_content=False, _request_timeout=10)
        except ApiException as exc:  # a pod gone or not serving: its records can no longer come back
            raise LoadFailed(f"load pod {pod} does not answer ({exc.status} {exc.reason}): its records are lost") from None
        return resp.data

    def _post(self, pod: str, path: str) -> None:
        try:
            self.core.connect_post_namespaced_pod_proxy_with_path(f"{pod}:{CONTROL_PORT}", self.namespace, path, _request_timeout=10)
        except ApiException as exc:
            raise LoadFailed(f"load pod {pod} does not answer ({exc.status} {exc.reason})") from None

    def state(self, pod: str) -> dict[str, Any]:
        return json.loads(self._get(pod, "state"))

    def clock(self, pod: str, samples: int = CLOCK_SAMPLES) -> ClockOffset:
        taken = []
        for _ in range(samples):
            sent = time.monotonic()
            doc = json.loads(self._get(pod, "clock"))
            taken.append((sent, float(doc["mono"]), time.monotonic()))
        return best_offset(taken)

    def pull(self) -> int:
        """Append each source's new lines to the records file, `t` moved onto the harness's
        clock and the pod named; returns the lines appended."""
        appended = 0
        with self.records.open("a") as out:
            for name in self.sources:
                data = self._get(name, f"records/{self.pulled.get(name, 0)}")
                if not data:
                    continue
                self.pulled[name] = self.pulled.get(name, 0) + len(data)
                offset = self.clocks[name].offset_s if name in self.clocks and not self.clock_shared else 0.0
                lines = data.decode().splitlines()
                for line in lines:
                    record = json.loads(line)
                    if record.get("kind") == "user":
                        self.counts["requests"] += 1
                        self.counts["failures"] += bool(record.get("error"))
                    record["t"] = record["t"] - offset
                    record["load_pod"] = name
                    out.write(json.dumps(record, separators=(",", ":")) + "\n")
                self.lines[name] = self.lines.get(name, 0) + len(lines)
                appended += len(lines)
        if self.on_progress and self.started:
            # The rate since the last pull: the users start before the clocks are measured,
            # so the count since `started` would overstate it.
            now, (then, before) = time.monotonic(), self._last_pull
            self._last_pull = (now, self.counts["requests"])
            rate = (self.counts["requests"] - before) / (now - then) if then else 0.0
            self.on_progress({**self.counts, "elapsed_s": round(now - self.started, 1), "rps": round(rate, 1)})
        return appended

    def _wait_ready(self, name: str, timeout_s: float) -> client.V1Pod:
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            pod = self.core.read_namespaced_pod(name, self.namespace)
            phase = pod.status.phase
            if phase in ("Failed", "Succeeded"):
                raise LoadFailed(f"load pod {name} ended ({phase}) before it was ready")
            if any(c.type == "Ready" and c.status == "True" for c in pod.status.conditions or []):
                return pod
            time.sleep(0.3)
        raise LoadFailed(f"load pod {name} was not Ready within {timeout_s:.0f} s")


class InClusterLoad:
    """The in-cluster load behind the host load's interface (runner.LoadProcess): start()
    returns once the pods are Ready and sending, stop() ends the load and returns the
    summary; the records land in out_dir/requests.jsonl as the pods write them."""

    def __init__(
        self, core: client.CoreV1Api, namespace: str, image: str, target: str, config: LoadConfig, out_dir: Path, max_duration_s: float,
        on_progress: Callable[[dict[str, Any]], None] | None = None, clock_shared: bool = False, name: str = "pb-load",
    ) -> None:
        config.validate()
        self.out_dir = out_dir
        self.load = ClusterLoad(
            core, namespace, image, target, out_dir / REQUESTS, workers=config.pod_workers, users=config.users, rate_per_user=config.rate_per_user,
            spawn_rate=config.spawn_rate, duration_s=max_duration_s, probe_interval_s=config.probe_interval_s, probe_timeout_s=config.probe_timeout_s,
            rps=config.rps, clock_shared=clock_shared, name=name, on_progress=on_progress,
        )
        self._thread: threading.Thread | None = None
        self._result: dict[str, Any] = {}
        self._error: BaseException | None = None
        self._stopped = False

    def start(self) -> None:
        """A load that cannot start (a pod never Ready) stops the run with one line: no case
        can be measured without it."""
        try:
            self.load.start()
        except LoadFailed as exc:
            self.load.delete()
            raise StepFailed("start the in-cluster load", str(exc), f"kubectl -n {self.load.namespace} describe pods") from None
        except BaseException:
            self.load.delete()
            raise
        self._thread = threading.Thread(target=self._run, daemon=True, name=f"{self.load.name}-pull")
        self._thread.start()

    def _run(self) -> None:
        try:
            self._result = self.load.run()
        except BaseException as exc:  # noqa: BLE001 - stop() raises it in the caller's thread
            self._error = exc

    def stop(self, timeout_s: float = 60) -> dict[str, Any]:
        """End the load, wait for its last records, delete its pods; the summary. A load that
        lost records or pods raises LoadFailed."""
        if self._thread is None or self._stopped:
            return self._result
        self._stopped = True
        try:
            if self._thread.is_alive():
                try:
                    self.load.stop()
                except LoadFailed as exc:
                    self._error = self._error or exc
                self._thread.join(timeout_s)
            if self._thread.is_alive():
                raise LoadFailed(f"the in-cluster load did not end within {timeout_s:.0f} s of being stopped")
            if self._error is not None:
                raise self._error
            (self.out_dir / LOAD_SUMMARY).write_text(json.dumps(self._result))
            return self._result
        finally:
            self.load.delete()
