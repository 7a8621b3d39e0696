from __future__ import annotations

import threading
import time
from pathlib import Path

import pytest

from patternbench.load.sweep import Step, cost_per_step, max_sustained, render_sweep_plots, run_sweep, saturation
from patternbench.outages import LocalTarget


def test_saturation_reasons() -> None:
    assert saturation(1000, 1000, 1000, 0, 995, 8.0, 2.0) is None
    assert "never recorded" in saturation(1000, 990, 1000, 0, 990, 8.0, 2.0)
    assert "errors" in saturation(1000, 1000, 1000, 20, 995, 8.0, 2.0)
    assert "achieved" in saturation(1000, 900, 900, 0, 900, 8.0, 2.0)
    assert "fell behind" in saturation(1000, 1000, 1000, 0, 995, 8.0, 80.0)
    assert "p99 latency" in saturation(1000, 1000, 1000, 0, 995, 400.0, 2.0)


def step(rate: float, start: float, end: float, saturated: str | None = None) -> Step:
    return Step(rate, start, end, int(rate), int(rate), 0, rate, 1.0, 5.0, 1.0, [0.3], saturated)


def test_max_sustained_stops_at_the_first_saturated_step() -> None:
    assert max_sustained([step(100, 0, 1), step(200, 1, 2), step(400, 2, 3, "p99"), step(800, 3, 4)]) == 200
    assert max_sustained([step(100, 0, 1, "errors")]) == 0


def test_cost_per_1000_rps_from_the_samples_in_each_step(tmp_path: Path) -> None:
    # One agent: 0.1 s CPU per second at 500/s (100 m), 0.4 s per second at 2000/s (400 m).
    samples = [{"t": t, "pod": "p", "container": "meshproxy", "cpu_ns": int(t * 1e8), "memory_mib": 20.0} for t in (0.0, 1.0, 2.0)]
    samples += [{"t": t, "pod": "p", "container": "meshproxy", "cpu_ns": int(2e8 + (t - 3) * 4e8), "memory_mib": 30.0} for t in (3.0, 4.0, 5.0)]
    rows = cost_per_step([step(500, 0, 2), step(2000, 3, 5)], samples, lambda s: s["container"] == "meshproxy")
    assert rows[0]["agent_vcpu_per_1k_rps"] == pytest.approx(0.2)  # 0.1 vCPU / 0.5 k rps
    assert rows[1]["agent_vcpu_per_1k_rps"] == pytest.approx(0.2)  # 0.4 vCPU / 2 k rps
    assert rows[1]["agent_memory_mib_per_instance"] == 30.0
    made = render_sweep_plots(tmp_path, {"sidecar": rows, "daemonset": rows})
    assert [p.name for p in made] == ["latency-vs-load.png", "cost-per-1k-rps.png"]
    assert all(p.stat().st_size > 1000 for p in made)


def test_a_sweep_against_a_local_server_stops_at_its_first_saturated_step(tmp_path: Path) -> None:
    """Real load on a real server. After two steps the server starts holding every request
    for 0.3 s (past the 100 ms p99 bound), so the third step is saturated on p99 whatever the
    machine. Which earlier step a loaded machine may already fail is its speed, not the
    sweep's behaviour, so the test asserts only that: the sweep stops at its first saturated
    step, keeps its records, and never runs past the gated step."""
    target = LocalTarget().start()
    seen: list[Step] = []

    def on_step(s: Step) -> None:
        seen.append(s)
        if len(seen) == 2:
            def slow() -> None:  # from now on every request waits 0.3 s
                while True:
                    target.gate.clear()
                    time.sleep(0.3)
                    target.gate.set()
                    time.sleep(0.001)
            threading.Thread(target=slow, daemon=True).start()

    try:
        steps = run_sweep(target.url, [50, 100, 150, 200], tmp_path, step_s=1.5, on_step=on_step)
    finally:
        target.stop()
    assert 1 <= len(steps) <= 3 and [s.offered_rps for s in steps] == [50, 100, 150][:len(steps)]
    assert all(s.saturated is None for s in steps[:-1]) and steps[-1].saturated, steps
    if len(steps) == 3:
        assert "p99" in steps[2].saturated
    assert max_sustained(steps) == (steps[-2].offered_rps if len(steps) > 1 else 0)
    for s in steps[:-1]:
        assert s.recorded == s.due and s.due == pytest.approx(s.offered_rps * 1.5, rel=0.1)
    assert (tmp_path / "steps.json").exists() and all((tmp_path / f"step-{s.offered_rps:g}" / "requests.jsonl").exists() for s in steps)
