"""A run directory's layout, one name per file: what the runner writes and what the summary,
the report and `patternbench report` read back, without a cluster (the offline side never
imports on-cluster code)."""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Any

from patternbench.errors import UsageError
from patternbench.specs.topology import Pattern

# ---- a case directory: results/<run>/<case>[.t<k>]/ ----
CASE = "case.json"  # the case and its profile, written first
DEPLOYMENT = "deployment.json"  # what was deployed: run id, entry, containers, placement, agents, forgotten bindings
TIMELINE = "timeline.jsonl"  # phase marks (PHASES) with monotonic and wall times
REQUESTS = "requests.jsonl"  # every request and probe the load sent
LOAD_SUMMARY = "load-summary.json"  # the load generator's own totals
LOAD_CONFIG = "load-config.json"  # the load generator's configuration
LOCUST_LOG = "locust.log"  # Locust's output
PODS = "pods.jsonl"  # the pod watch
PODS_BEFORE = "pods-before.json"  # app pods and restart counts before the upgrade
PODS_AFTER = "pods-after.json"  # ... and after it
RESOURCES = "resources.jsonl"  # container CPU and memory samples (metrics API)
APISERVER = "apiserver.jsonl"  # the API server's /metrics at the steady phase's start and end
ROLLOUTS = "rollouts.jsonl"  # each rollout status as it changed
ENDPOINTS = "endpoints.jsonl"  # the EndpointSlice watch
PRESSURE = "pressure.jsonl"  # host CPU pressure samples
SCHED = "sched.jsonl"  # per-container CPU wait (cgroup schedstats)
TRIPWIRE = "tripwire.jsonl"  # the host tripwire's kernel log lines
CONNTRACK_EVENTS = "conntrack-events.log"  # conntrack -E for the entry port
SINK = "sink.json"  # the log sink's settled counts
EVENTS = "events.json"  # FailedCreate events (webhook injection)
WARNINGS = "warnings.json"  # Warning events of the run's namespaces
MANIFESTS = "manifests.yaml"  # every object as applied (secrets redacted)

# ---- a run directory: results/<run>/ ----
RUN = "run.json"  # the run: profile, cases planned, repeat, provider, interrupted
SUMMARY = "summary.json"  # every case's figures and claims
REPORT = "report.md"  # the report
CALIBRATION = "calibration.json"  # the outage calibration the run carries
AGENTS_DIR = "agents"  # the agent files the run carried (agent_file.keep_with_run)
SWEEPS_DIR = "sweeps"  # <run>/sweeps/<pattern>/: each step's records, steps.json and cost.json


def load_sweeps(run_dir: Path) -> dict[str, dict[str, Any]]:
    """pattern -> its cost.json, for every pattern swept in this run."""
    order = [p.value for p in Pattern]
    docs = [json.loads(path.read_text()) for path in (run_dir / SWEEPS_DIR).glob("*/cost.json")]
    docs.sort(key=lambda d: (order.index(d["pattern"]) if d["pattern"] in order else len(order), d["pattern"]))
    return {d["pattern"]: d for d in docs}


def check_writable(directory: Path, shown: Path | None = None) -> None:
    """Create `directory` and prove a file can be written there; a one-line UsageError naming
    `shown` (default: the directory) otherwise. Checked before any cluster is touched."""
    try:
        directory.mkdir(parents=True, exist_ok=True)
        probe = directory / ".patternbench-write-test"
        probe.write_text("")
        probe.unlink()
    except OSError as exc:
        raise UsageError(f"cannot write results to {shown or directory}: {exc.strerror}") from None


# The phases a case's timeline marks, in the order a case passes them (a fault's or an
# upgrade's own marks fall between `before` and `after`). Every mark is one of these.
PHASES = (
    "setup", "warmup", "before",
    "upgrade_start", "template_switched", "deployments_restarted", "upgrade_failed", "upgrade_end", "old_pods_gone",
    "fault_start", "fault_in_place", "fault_end",
    "after", "load_failed", "end", "teardown",
)


class Timeline:
    """Phase marks on the monotonic clock, appended to timeline.jsonl as they happen."""

    def __init__(self, path: Path) -> None:
        self.path = path

    def mark(self, phase: str, **extra: Any) -> float:
        if phase not in PHASES:
            raise ValueError(f"unknown timeline phase {phase!r} (rundir.PHASES)")
        t = time.monotonic()
        with self.path.open("a") as handle:
            handle.write(json.dumps({"t": t, "wall": time.time(), "phase": phase, **extra}) + "\n")
        return t
