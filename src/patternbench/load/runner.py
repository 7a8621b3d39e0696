"""The orchestrator's side of the load: start the Locust process, relay its progress, stop it."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import threading
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any, Callable

from patternbench.errors import UsageError
from patternbench.lifeline import die_with_parent
from patternbench.load.placement import parse_load_from, parse_load_workers
from patternbench.load.records import merge_summaries
from patternbench.load.workloads import workload_spec
from patternbench.results.rundir import LOAD_CONFIG, LOAD_SUMMARY, REQUESTS


@dataclass(frozen=True)
class LoadConfig:
    users: int = 10
    spawn_rate: float = 10.0
    rate_per_user: float = 5.0  # requests per second per user (constant_throughput)
    # 40 probes/s: an outage's start and end are each dated to within 25 ms, so its length to
    # within 50 ms (measured by `patternbench calibrate`).
    probe_interval_s: float = 0.025
    probe_timeout_s: float = 2.0
    # Open-loop mode: with `rps` set the users are replaced by requests on a fixed schedule
    # (openloop.py), spread over `workers` processes (one per core is what helps).
    rps: float | None = None
    workers: int = 1
    connections: int = 200  # keep-alive connections per worker
    request_timeout_s: float = 5.0
    # Where the load runs (placement.py): this machine's processes, or a Locust master,
    # `pod_workers` worker pods and a prober pod on the cluster's load node(s) (cluster_load.py).
    load_from: str = "host"
    pod_workers: int = 2
    # What is sent (workloads.py): with a gRPC workload, grpcload's channels carry it at the
    # users' rate (or --rps) and Locust sends the probes only.
    workload: str = "http"
    grpc_channels: int = 4
    grpc_streams: int = 4
    stream_rate: float = 10.0  # messages per second per Watch stream

    def validate(self) -> None:
        parse_load_from(self.load_from)
        if workload_spec(self.workload).grpc:
            if self.load_from != "host":
                raise UsageError(f"--workload {self.workload} runs its gRPC clients on this machine for now: it needs --load-from host")
            if not (1 <= self.grpc_channels <= 64 and 1 <= self.grpc_streams <= 256 and 0.1 <= self.stream_rate <= 100):
                raise UsageError("gRPC load: 1..64 channels, 1..256 streams, 0.1..100 messages/s per stream")
        parse_load_workers(self.pod_workers)
        if self.rps is not None:
            if not self.rps > 0:
                raise UsageError(f"--rps must be positive, got {self.rps:g}")
            if not 1 <= self.workers <= 64 or self.connections < 1:
                raise UsageError(f"open-loop load needs 1..64 workers and at least one connection, got {self.workers} and {self.connections}")
        elif self.users < 1:
            raise UsageError(f"--users must be at least 1, got {self.users}")
        if self.rps is None and self.users * self.rate_per_user > 2000:
            raise UsageError(f"--users {self.users} x {self.rate_per_user}/s is more than one load process can drive here (2000 req/s)")
        if self.rate_per_user <= 0 or self.spawn_rate <= 0:
            raise UsageError("the request rate and the spawn rate must be positive")
        if not 0.01 <= self.probe_interval_s <= 1:
            raise UsageError("the probe interval must be within 0.01..1 s")


def read_jsonl(path: Path) -> list[dict[str, Any]]:
    """Records of a JSON-lines file; a line cut short by an interruption is skipped."""
    if not path.exists():
        return []
    out = []
    for line in path.read_text().splitlines():
        try:
            out.append(json.loads(line))
        except ValueError:
            continue
    return out


class LoadProcess:
    """The load: one Locust process, or in open-loop mode `workers` processes that each send
    their share of the rate and append to the same records file (one write per line with
    O_APPEND, so lines never interleave). Runs until stop() or its maximum duration."""

    def __init__(
        self, host: str, config: LoadConfig, out_dir: Path, max_duration_s: float, on_progress: Callable[[dict], None] | None = None,
        conntrack: bool = False, grpcload: Path | None = None,
    ) -> None:
        """`conntrack`: a refused probe looks its connection up in this host's conntrack
        table (the provider's `conntrack_here` ability: the entry's NAT happens here).
        `grpcload`: the gRPC load client's binary, for a gRPC workload."""
        config.validate()
        self.grpc = workload_spec(config.workload).grpc
        if self.grpc and grpcload is None:
            raise UsageError(f"--workload {config.workload} needs the grpcload binary (experiment.prepare_load builds it)")
        self.grpcload = grpcload
        self.config_workload = config.workload
        self.grpc_summary = out_dir / "load-summary.grpc.json"
        self.out_dir = out_dir
        self.records = out_dir / REQUESTS
        self.summary_path = out_dir / LOAD_SUMMARY
        self.stop_file = out_dir / ".stop-load"
        self.config_path = out_dir / LOAD_CONFIG
        self.on_progress = on_progress
        workers = config.workers if config.rps is not None and not self.grpc else 1
        self.config_paths: list[Path] = []
        self.summary_paths: list[Path] = []
        for k in range(workers):
            suffix = "" if k == 0 else f".w{k}"
            path = out_dir / f"load-config{suffix}.json"
            summary = out_dir / f"load-summary{suffix}.json" if workers == 1 else out_dir / f"load-summary.w{k}.json"
            path.write_text(json.dumps({
                **asdict(config), "rps": config.rps / workers if config.rps is not None else None,
                "worker": k, "workers": workers, "host": host, "duration_s": max_duration_s, "records": str(self.records),
                "summary": str(summary), "stop_file": str(self.stop_file), "conntrack": conntrack, "grpc_summary": str(self.grpc_summary),
                # With a gRPC workload, Locust sends the probes only.
                "users_off": self.grpc,
            }))
            self.config_paths.append(path)
            self.summary_paths.append(summary)
        self.procs: list[subprocess.Popen[str]] = []
        self.latest: dict[str, Any] = {}
        self._per_worker: dict[str, dict[str, Any]] = {}

    @property
    def proc(self) -> subprocess.Popen[str] | None:
        return self.procs[0] if self.procs else None

    def start(self) -> None:
        self.stop_file.unlink(missing_ok=True)
        for k, path in enumerate(self.config_paths):
            proc = subprocess.Popen(
                [sys.executable, "-m", "patternbench.load.locust_process", str(path)],
                stdout=subprocess.PIPE, stderr=open(self.out_dir / ("locust.log" if k == 0 else f"locust.w{k}.log"), "w"), text=True,
                env={**os.environ, "PYTHONUNBUFFERED": "1"},
                preexec_fn=die_with_parent,  # a killed orchestrator takes its load with it
            )
            self.procs.append(proc)
            threading.Thread(target=self._relay, args=(proc,), daemon=True).start()
        if self.grpc:
            assert self.grpcload is not None
            proc = subprocess.Popen(
                [str(self.grpcload), str(self.config_paths[0])], stdout=subprocess.PIPE, stderr=open(self.out_dir / "grpcload.log", "w"), text=True,
                preexec_fn=die_with_parent,
            )
            self.procs.append(proc)
            threading.Thread(target=self._relay, args=(proc,), daemon=True).start()

    def _relay(self, proc: subprocess.Popen[str]) -> None:
        assert proc.stdout
        for line in proc.stdout:
            try:
                msg = json.loads(line)
            except ValueError:
                continue
            if "progress" in msg:
                self._per_worker[str(msg["progress"].get("worker", 0))] = msg["progress"]
                rows = list(self._per_worker.values())
                self.latest = {
                    "elapsed_s": max(r["elapsed_s"] for r in rows),
                    "requests": sum(r["requests"] for r in rows),
                    "failures": sum(r["failures"] for r in rows),
                    "rps": round(sum(r["rps"] for r in rows), 1),
                }
                if self.on_progress:
                    self.on_progress(self.latest)

    def wait(self, timeout_s: float) -> dict[str, Any]:
        """Wait for a run bounded by its maximum duration to end by itself; its summary."""
        for proc in self.procs:
            proc.wait(timeout=timeout_s)
        return self._summary()

    def stop(self, timeout_s: float = 30) -> dict[str, Any]:
        """Ask the processes to stop, wait for them, and return the (merged) summary."""
        if not self.procs:
            return {}
        self.stop_file.write_text("stop")
        for proc in self.procs:
            try:
                proc.wait(timeout=timeout_s)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()
        return self._summary()

    def _summary(self) -> dict[str, Any]:
        parts = [json.loads(p.read_text()) for p in self.summary_paths if p.exists()]
        if not parts:
            return {}
        if self.grpc:
            # The gRPC client's own count; a client that never wrote one is a gap (summary.load_gaps).
            grpc = json.loads(self.grpc_summary.read_text()) if self.grpc_summary.exists() else {"missing": True}
            merged = {**parts[0], "load_from": "host", "workload": self.config_workload, "grpc": grpc}
            self.summary_path.write_text(json.dumps(merged))
            return merged
        if len(self.summary_paths) == 1:
            return {**parts[0], "load_from": "host"}
        merged = merge_summaries(parts)
        merged.update(workers_reporting=f"{len(parts)}/{len(self.summary_paths)}", load_from="host")
        self.summary_path.write_text(json.dumps(merged))
        return merged

    def __enter__(self) -> LoadProcess:
        self.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()
