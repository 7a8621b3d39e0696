"""Latency and cost against load on the cluster: each pattern deployed once, open-loop load at
rising offered rates. Without --sweep, a short smoke on the DaemonSet pattern (make test);
with --sweep R1,R2,..., every selected pattern at those rates."""

from __future__ import annotations

from typing import Any

import pytest

from patternbench.load.sweep import MIN_ACHIEVED_SHARE
from patternbench.pattern_sweep import STEP_S, SWEEPS_DIR, sweep_pattern
from patternbench.progress import Progress
from patternbench.pytest_plugin import PLAN
from patternbench.specs.topology import Pattern, containers_formula, load_topology

pytestmark = pytest.mark.cluster

# Rates every pattern sustains on 2 cores (the matrix runs at 20-50 req/s), steps just long
# enough for four resource samples.
SMOKE_RATES = [25.0, 50.0]
SMOKE_STEP_S = 4.0


def pytest_generate_tests(metafunc: pytest.Metafunc) -> None:
    if "swept" in metafunc.fixturenames:
        config = metafunc.config
        chosen = config.stash[PLAN].patterns or []
        swept = (chosen or list(Pattern)) if config.stash[PLAN].sweep else [Pattern.DAEMONSET]
        metafunc.parametrize("swept", swept, ids=[p.value for p in swept])


def test_sweep(swept: Pattern, cluster: Any, experiment_run: dict[str, Any], request: pytest.FixtureRequest) -> None:
    rates = request.config.stash[PLAN].sweep
    step_s = STEP_S if rates else SMOKE_STEP_S
    topology = load_topology()
    out = experiment_run["dir"] / SWEEPS_DIR / swept.value
    rows = sweep_pattern(cluster, topology, swept, rates or SMOKE_RATES, out, Progress(), step_s=step_s)
    experiment_run["sweeps"].append(swept.value)

    assert (out / "cost.json").exists()
    # The lowest rate is one the matrix itself runs at: it must be sustained, on schedule.
    first = rows[0]
    assert first["saturated"] is None, first
    assert first["achieved_rps"] >= MIN_ACHIEVED_SHARE * first["offered_rps"]
    assert first["p50_ms"] <= first["p99_ms"]
    # The agents the kubelet reported are the pattern's: its formula less the bare app.
    agents = containers_formula(topology, swept, cluster_nodes(cluster)) - containers_formula(topology, Pattern.NONE, cluster_nodes(cluster))
    for row in rows:
        if agents == 0:
            assert row["agent_instances"] == 0 and row["agent_vcpu_per_1k_rps"] is None
        else:
            assert row["agent_instances"] == pytest.approx(agents, abs=0.01), row
            assert row["agent_vcpu_per_1k_rps"] > 0 and row["agent_memory_mib_per_instance"] > 0, row


def cluster_nodes(cluster: Any) -> int:
    """The apps' nodes: a load node holds no agent."""
    return len([n for n in cluster.nodes() if not n.load])
