"""CPU and memory per container, from the kubelet's Summary API through the API server's
node proxy (/api/v1/nodes/<node>/proxy/stats/summary): no metrics-server needed."""

from __future__ import annotations

import json
import threading
import time
from pathlib import Path
from typing import Any

from kubernetes import client


def summary_records(summary: dict[str, Any], namespaces: set[str], t: float, round_t: float | None = None) -> list[dict[str, Any]]:
    """One record per container of the given namespaces: millicores and MiB. `t` is when this
    node answered (CPU rates come from it); `round_t` names the sampling round over every
    node, so totals add up the whole cluster at one moment."""
    out = []
    for pod in summary.get("pods", []):
        ref = pod.get("podRef", {})
        if ref.get("namespace") not in namespaces:
            continue
        for container in pod.get("containers", []):
            cpu = container.get("cpu") or {}
            mem = (container.get("memory") or {}).get("workingSetBytes")
            if not cpu and mem is None:
                continue
            out.append({
                "t": t, "round": t if round_t is None else round_t, "namespace": ref.get("namespace"), "pod": ref.get("name"), "container": container.get("name"),
                # Cumulative CPU time: rates come from its differences (the kubelet's own
                # usageNanoCores is a rate over its last two scrapes and can be garbage right
                # after a container starts).
                "cpu_ns": cpu.get("usageCoreNanoSeconds"),
                "memory_mib": (mem or 0) / (1 << 20),
            })
    return out


class ResourceSampler:
    """Samples every `interval_s` into resources.jsonl until stopped."""

    def __init__(self, api: client.ApiClient, namespaces: list[str], out: Path, interval_s: float = 2.0) -> None:
        self.core = client.CoreV1Api(api)
        self.namespaces = set(namespaces)
        self.out = out
        self.interval_s = interval_s
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def sample(self) -> list[dict[str, Any]]:
        records = []
        round_t = time.monotonic()
        for node in self.core.list_node(_request_timeout=10).items:
            resp = self.core.connect_get_node_proxy_with_path(node.metadata.name, "stats/summary", _preload_content=False, _request_timeout=10)
            records += summary_records(json.loads(resp.data), self.namespaces, time.monotonic(), round_t)
        return records

    def _run(self) -> None:
        with self.out.open("a", buffering=1) as handle:
            while not self._stop.is_set():
                try:
                    for record in self.sample():
                        handle.write(json.dumps(record) + "\n")
                except Exception:  # noqa: BLE001 - a missed sample is a gap, not a failed run
                    pass
                self._stop.wait(self.interval_s)

    def start(self) -> ResourceSampler:
        self._thread.start()
        return self

    def stop(self) -> None:
        self._stop.set()
        self._thread.join(timeout=20)
