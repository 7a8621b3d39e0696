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


@dataclass(frozen=True)
class LoadConfig:
    users: int = 10
    spawn_rate: float = 10.0
    rate_per_user: float = 5.0  # requests per second per user (constant_throughput)
    probe_interval_s: float = 0.05  # 20 probes/s: outages dated to within 50 ms
    probe_timeout_s: float = 2.0

    def validate(self) -> None:
        if self.users < 1:
            raise UsageError(f"--users must be at least 1, got {self.users}")
        if self.users * self.rate_per_user > 2000:
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
    """One Locust process; runs until stop() or its maximum duration."""

    def __init__(self, host: str, config: LoadConfig, out_dir: Path, max_duration_s: float, on_progress: Callable[[dict], None] | None = None) -> None:
        config.validate()
        self.out_dir = out_dir
        self.records = out_dir / "requests.jsonl"
        self.summary_path = out_dir / "load-summary.json"
        self.stop_file = out_dir / ".stop-load"
        self.config_path = out_dir / "load-config.json"
        self.on_progress = on_progress
        self.config_path.write_text(json.dumps({
            **asdict(config), "host": host, "duration_s": max_duration_s, "records": str(self.records),
            "summary": str(self.summary_path), "stop_file": str(self.stop_file),
        }))
        self.proc: subprocess.Popen[str] | None = None
        self.latest: dict[str, Any] = {}

    def start(self) -> None:
        self.stop_file.unlink(missing_ok=True)
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "patternbench.load.locust_process", str(self.config_path)],
            stdout=subprocess.PIPE, stderr=open(self.out_dir / "locust.log", "w"), text=True,
            env={**os.environ, "PYTHONUNBUFFERED": "1"},
        )
        threading.Thread(target=self._relay, daemon=True).start()

    def _relay(self) -> None:
        assert self.proc and self.proc.stdout
        for line in self.proc.stdout:
            try:
                msg = json.loads(line)
            except ValueError:
                continue
            if "progress" in msg:
                self.latest = msg["progress"]
                if self.on_progress:
                    self.on_progress(msg["progress"])

    def stop(self, timeout_s: float = 30) -> dict[str, Any]:
        """Ask the process to stop, wait for it, and return Locust's summary."""
        if self.proc is None:
            return {}
        self.stop_file.write_text("stop")
        try:
            self.proc.wait(timeout=timeout_s)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()
        if self.summary_path.exists():
            return json.loads(self.summary_path.read_text())
        return {}

    def __enter__(self) -> LoadProcess:
        self.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()
