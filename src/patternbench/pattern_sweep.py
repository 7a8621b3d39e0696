"""Latency and cost against load, per pattern, on a real cluster: each pattern deployed once,
open-loop load at rising offered rates against its entry (load.sweep), the agents' CPU and
memory sampled from the kubelet over every step. What `run --sweep` adds to a run:
<run>/sweeps/<pattern>/ holds each step's records, steps.json and cost.json."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from kubernetes import config as kube_config

from patternbench.load.runner import read_jsonl
from patternbench.load.sweep import Step, cost_per_step, max_sustained, run_sweep
from patternbench.observe.resources import ResourceSampler
from patternbench.operate.deploy import deploy_run
from patternbench.operate.kube import Deployer
from patternbench.progress import Progress
from patternbench.results.durations import SWEEP_STEP_S
from patternbench.results.rundir import RESOURCES, SWEEPS_DIR
from patternbench.results.summary import is_agent_sample
from patternbench.specs.topology import Pattern, Topology

# Long enough for at least four resource samples per step (CPU comes from their differences).
STEP_S = SWEEP_STEP_S
SAMPLE_INTERVAL_S = 1.0


def sweep_pattern(
    provider: Any, topology: Topology, pattern: Pattern, rates: list[float], out_dir: Path,
    progress: Progress, step_s: float = STEP_S, workers: int = 1,
) -> list[dict[str, Any]]:
    """Deploy `pattern`, sweep its entry, undeploy; the per-step rows (cost.json)."""

    out_dir.mkdir(parents=True, exist_ok=True)
    run = deploy_run(provider, topology, pattern, progress=progress)
    api = kube_config.new_client_from_config(config_file=str(provider.kubeconfig()))
    samples_path = out_dir / RESOURCES
    sampler = ResourceSampler(api, list(run.namespaces), samples_path, interval_s=SAMPLE_INTERVAL_S).start()
    try:
        def said(s: Step) -> None:
            progress.say(
                f"   [{pattern.value}] {s.offered_rps:>6.0f}/s offered: {s.achieved_rps:>7.1f}/s, p50 {s.p50_ms} ms, "
                f"p99 {s.p99_ms} ms{'  saturated: ' + s.saturated if s.saturated else ''}"
            )

        steps = run_sweep(run.entry_url, rates, out_dir, step_s=step_s, workers=workers, on_step=said)
    finally:
        sampler.stop()
        with progress.step(f"[{pattern.value} sweep] undeploy"):
            Deployer(api, Progress(quiet=True)).undeploy(run.run_id, graceful=False, wait=False)
    rows = cost_per_step(steps, read_jsonl(samples_path), is_agent_sample)
    (out_dir / "cost.json").write_text(json.dumps({"pattern": pattern.value, "max_sustained_rps": max_sustained(steps), "steps": rows}, indent=1))
    return rows


def run_sweeps(
    provider: Any, topology: Topology, patterns: list[Pattern], rates: list[float], run_dir: Path, progress: Progress,
) -> None:
    """Every pattern in turn into run_dir/sweeps/<pattern>/."""
    for i, pattern in enumerate(patterns, 1):
        with progress.step(f"sweep {i}/{len(patterns)}: {pattern.value} at {', '.join(f'{r:g}' for r in rates)} req/s"):
            sweep_pattern(provider, topology, pattern, rates, run_dir / SWEEPS_DIR / pattern.value, progress)
