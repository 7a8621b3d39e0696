"""Load sweeps: open-loop load at rising offered rates until errors or saturation, every
request recorded; per step the latency against offered rate and, given resource samples,
the agents' CPU per 1000 requests/s and memory per instance (the figures Istio publishes).

Runs against any URL, so it is tested on 127.0.0.1 and `bench` uses it for the harness's own
capacity. On a cluster it needs only the pattern's entry URL and a ResourceSampler running
over the sweep (the steps' start/end are on the same monotonic clock).

    python -m patternbench.load.sweep URL --rates 500,1000,2000 [--step-s 5] [--workers 2] [--out DIR]
"""

from __future__ import annotations

import argparse
import json
import math
import sys
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any, Callable

from patternbench.errors import UsageError
from patternbench.load.runner import LoadConfig, LoadProcess, read_jsonl
from patternbench.measure import agent_resources, whole_rounds
from patternbench.options import parse_sweep
from patternbench.results.plots import pyplot, save
from patternbench.results.rundir import REQUESTS

# A step is sustained when the load went out on schedule, nearly all of it came back good,
# and latency stayed far from a stall. Above these the target (or the harness) saturated.
MAX_ERROR_RATE = 0.01
MIN_ACHIEVED_SHARE = 0.97
MAX_LAG_P99_MS = 50.0
MAX_P99_MS = 100.0


@dataclass(frozen=True)
class Step:
    """One offered rate's outcome; times on the monotonic clock."""

    offered_rps: float
    start: float
    end: float
    due: int
    recorded: int
    failures: int
    achieved_rps: float
    p50_ms: float | None
    p99_ms: float | None
    lag_p99_ms: float | None
    cpu_share: list[float]
    saturated: str | None  # why this step is past what the target (or harness) sustains


def _rank(values: list[float], q: float) -> float | None:
    if not values:
        return None
    ordered = sorted(values)
    return ordered[max(1, math.ceil(q / 100 * len(ordered))) - 1]


def saturation(offered: float, recorded: int, due: int, failures: int, achieved: float, p99_ms: float | None, lag_p99_ms: float | None) -> str | None:
    """Why a step is not sustained, or None. Latency counts from the intended start, so a
    queue anywhere (target, network, sender) shows in p99."""
    if due == 0 or recorded == 0:
        return "nothing was sent"
    if recorded < due:
        return f"{due - recorded} of {due} requests due were never recorded"
    if failures / recorded > MAX_ERROR_RATE:
        return f"errors: {failures} of {recorded} failed"
    if achieved < MIN_ACHIEVED_SHARE * offered:
        return f"achieved {achieved:.0f}/s of {offered:.0f}/s offered"
    if lag_p99_ms is not None and lag_p99_ms > MAX_LAG_P99_MS:
        return f"the sender fell behind its schedule (p99 {lag_p99_ms:.0f} ms late)"
    if p99_ms is None or p99_ms > MAX_P99_MS:
        return f"p99 latency {p99_ms} ms from the intended start"
    return None


def step_from_records(offered: float, records: list[dict[str, Any]], summary: dict[str, Any], start: float, end: float) -> Step:
    """A step from its records (users only; probes are not load) and the load's summary."""
    users = [r for r in records if r.get("kind") == "user"]
    good = [float(r["ms"]) for r in users if not r.get("error")]
    lags = [float(r["lag_ms"]) for r in users if r.get("lag_ms") is not None]
    failures = len(users) - len(good)
    due = int(summary.get("due") or 0)
    # Requests sent per second over the schedule's own span (not counting the drain after it).
    times = [float(r["t"]) for r in users]
    span = (max(times) - min(times) + 1 / offered) if times else 1.0
    achieved = round(len(users) / span, 1)
    p99, lag99 = _rank(good, 99), _rank(lags, 99)
    cpu = summary.get("cpu_share")
    return Step(
        offered_rps=offered, start=start, end=end, due=due, recorded=len(users), failures=failures, achieved_rps=achieved,
        p50_ms=_rank(good, 50), p99_ms=p99, lag_p99_ms=lag99, cpu_share=cpu if isinstance(cpu, list) else [cpu] if cpu is not None else [],
        saturated=saturation(offered, len(users), due, failures, achieved, p99, lag99),
    )


def run_sweep(
    url: str, rates: list[float], out_dir: Path, step_s: float = 10.0, workers: int = 1, connections: int = 200,
    stop_when_saturated: bool = True, on_step: Callable[[Step], None] | None = None,
) -> list[Step]:
    """Each rate in turn for `step_s` seconds, every request recorded in
    out_dir/step-<rate>/requests.jsonl; stops after the first saturated step. steps.json
    holds the result as it grows."""
    out_dir.mkdir(parents=True, exist_ok=True)
    steps: list[Step] = []
    for rate in rates:
        step_dir = out_dir / f"step-{rate:g}"
        step_dir.mkdir(parents=True, exist_ok=True)
        (step_dir / REQUESTS).unlink(missing_ok=True)
        config = LoadConfig(rps=rate, workers=workers, connections=connections, probe_interval_s=1.0)
        load = LoadProcess(url, config, step_dir, max_duration_s=step_s)
        start = time.monotonic()
        try:
            load.start()
            summary = load.wait(timeout_s=step_s + 120)
        finally:
            load.stop()
        step = step_from_records(rate, read_jsonl(step_dir / REQUESTS), summary, start, time.monotonic())
        steps.append(step)
        (out_dir / "steps.json").write_text(json.dumps([asdict(s) for s in steps], indent=1))
        if on_step:
            on_step(step)
        if step.saturated and stop_when_saturated:
            break
    return steps


def max_sustained(steps: list[Step]) -> float:
    """The highest offered rate sustained before the first saturated step (0 if none)."""
    best = 0.0
    for s in steps:
        if s.saturated:
            break
        best = max(best, s.offered_rps)
    return best


def cost_per_step(steps: list[Step], samples: list[dict[str, Any]], is_agent: Callable[[dict[str, Any]], bool]) -> list[dict[str, Any]]:
    """Per step, from resource samples taken during it: the agents' CPU per 1000 requests/s
    (vCPU, as Istio publishes it) and memory per agent instance."""

    out = []
    for s in steps:
        window = whole_rounds(samples, s.start, s.end)
        res = agent_resources(window, is_agent)
        cpu_m = res["agent_cpu_m_total"]
        out.append({
            "offered_rps": s.offered_rps,
            "achieved_rps": s.achieved_rps,
            "p50_ms": s.p50_ms,
            "p99_ms": s.p99_ms,
            "agent_vcpu_per_1k_rps": round(cpu_m / 1000 / (s.achieved_rps / 1000), 4) if cpu_m is not None and s.achieved_rps > 0 else None,
            "agent_memory_mib_per_instance": res["agent_memory_mib_per_instance"],
            "agent_instances": res["agent_instances"],
            "saturated": s.saturated,
        })
    return out


def render_sweep_plots(out_dir: Path, sweeps: dict[str, list[dict[str, Any]]]) -> list[Path]:
    """latency-vs-load.png (p50 and p99 against offered rate, one line per pattern) and
    cost-per-1k-rps.png (agent vCPU per 1000 requests/s and MiB per instance)."""
    plt = pyplot()
    if plt is None:
        return []
    made = []
    fig, ax = plt.subplots(figsize=(7, 4))
    for name, rows in sweeps.items():
        xs = [r["offered_rps"] for r in rows]
        line = ax.plot(xs, [r["p99_ms"] for r in rows], "o-", label=f"{name} p99")[0]
        ax.plot(xs, [r["p50_ms"] for r in rows], "s--", color=line.get_color(), label=f"{name} p50", ms=4)
        for r in rows:
            if r.get("saturated"):
                ax.annotate("saturated", (r["offered_rps"], r["p99_ms"] or 0), fontsize=7, color="red")
    ax.set_xlabel("offered rate (requests/s, open loop)")
    ax.set_ylabel("latency from the intended start (ms)")
    ax.set_yscale("log")
    ax.legend(fontsize=7)
    made.append(save(fig, out_dir / "latency-vs-load.png"))
    if any(r.get("agent_vcpu_per_1k_rps") is not None for rows in sweeps.values() for r in rows):
        fig, (a1, a2) = plt.subplots(1, 2, figsize=(10, 4))
        for name, rows in sweeps.items():
            xs = [r["offered_rps"] for r in rows]
            a1.plot(xs, [r.get("agent_vcpu_per_1k_rps") for r in rows], "o-", label=name)
            a2.plot(xs, [r.get("agent_memory_mib_per_instance") for r in rows], "o-", label=name)
        a1.set_ylabel("agent vCPU per 1000 requests/s")
        a2.set_ylabel("agent memory per instance (MiB)")
        for ax in (a1, a2):
            ax.set_xlabel("offered rate (requests/s)")
            ax.legend(fontsize=7)
        made.append(save(fig, out_dir / "cost-per-1k-rps.png"))
    return made


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m patternbench.load.sweep")
    parser.add_argument("url")
    parser.add_argument("--rates", required=True)
    parser.add_argument("--step-s", type=float, default=5.0)
    parser.add_argument("--workers", type=int, default=1)
    parser.add_argument("--out", type=Path, default=Path("results") / "sweep")
    args = parser.parse_args(argv)
    try:
        rates = parse_sweep(args.rates)
        steps = run_sweep(args.url, rates, args.out, args.step_s, args.workers,
                          on_step=lambda s: print(f"  {s.offered_rps:>8.0f}/s offered: {s.achieved_rps:>8.1f}/s, p50 {s.p50_ms} ms, p99 {s.p99_ms} ms, lag p99 {s.lag_p99_ms} ms {s.saturated or ''}", flush=True))
    except UsageError as exc:
        print(f"sweep: {exc}", file=sys.stderr)
        return 2
    render_sweep_plots(args.out, {"target": cost_per_step(steps, [], lambda _: False)})
    print(f"max sustained {max_sustained(steps):g}/s; {args.out / 'steps.json'}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
