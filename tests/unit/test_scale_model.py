"""The growth model against data whose true model is known: coefficients inside their
intervals, the held-out size predicted within the noise, crossovers where the lines cross."""

from __future__ import annotations

import numpy as np
import pytest

from patternbench.errors import UsageError
from patternbench.scale_model import crossover, fit, holdout

SIZES = [3, 6, 12, 24, 48]


def points(per_pod: float, per_node: float, base: float, noise: float, seed: int = 1, trials: int = 3) -> list[dict]:
    rng = np.random.default_rng(seed)
    out = []
    for services in SIZES:
        for nodes in (2, 3, 4):
            for _ in range(trials):
                pods = 2 * services
                y = base + per_pod * pods + per_node * nodes
                out.append({"services": services, "pods": pods, "nodes": nodes, "mib": y * (1 + rng.normal(0, noise))})
    return out


def test_fit_recovers_known_coefficients_and_its_intervals_cover_them() -> None:
    model = fit(points(per_pod=5.0, per_node=12.0, base=30.0, noise=0.02), "mib", ["1", "pods", "nodes"])
    assert model.coef == pytest.approx((30.0, 5.0, 12.0), rel=0.1)
    # A 95 % interval misses now and then: over 40 data sets it must hold the truth mostly.
    covered = 0
    for seed in range(40):
        m = fit(points(5.0, 12.0, 30.0, noise=0.02, seed=seed), "mib", ["1", "pods", "nodes"], draws=300)
        covered += m.low[1] <= 5.0 <= m.high[1]
    assert covered >= 32, f"the per-pod interval held the true value in {covered} of 40 data sets"


def test_exact_data_fits_exactly_and_predicts_the_held_out_size() -> None:
    data = points(per_pod=5.0, per_node=12.0, base=30.0, noise=0.0)
    held = holdout(data, "mib", ["1", "pods", "nodes"])
    assert held.size == 48 and held.error == pytest.approx(0.0, abs=1e-9)
    noisy = holdout(points(5.0, 12.0, 30.0, noise=0.03), "mib", ["1", "pods", "nodes"])
    assert abs(noisy.error) < 0.05 and noisy.band[0] <= noisy.predicted <= noisy.band[1]


def test_a_wrong_model_shows_in_the_held_out_error() -> None:
    # Quadratic growth (every watcher receives every change) fitted with a straight line.
    data = [{"services": s, "pods": 2 * s, "events": (2 * s) ** 2} for s in SIZES]
    assert holdout(data, "events", ["1", "pods"]).error < -0.2
    assert holdout(data, "events", ["1", "pods*pods"]).error == pytest.approx(0.0, abs=1e-9)


def test_crossover_of_two_lines() -> None:
    sidecar = fit([{"pods": p, "mib": 4.0 * p} for p in (6, 12, 24)], "mib", ["pods"])
    node = fit([{"pods": p, "mib": 40.0 + 1.0 * p} for p in (6, 12, 24)], "mib", ["1", "pods"])
    # 4p = 40 + p at p = 13.3: from 14 pods up the sidecars cost more.
    assert crossover(sidecar, node, lambda pods: {"pods": pods}, 1, 100) == 14
    assert crossover(sidecar, node, lambda pods: {"pods": pods}, 20, 100) is None


def test_too_few_points_or_unknown_terms_are_errors() -> None:
    with pytest.raises(UsageError, match="fewer than its 3 terms"):
        fit([{"pods": 1, "nodes": 1, "y": 1.0}], "y", ["1", "pods", "nodes"])
    with pytest.raises(UsageError, match="needs 'nodes'"):
        fit([{"pods": 1, "y": 1.0}, {"pods": 2, "y": 2.0}], "y", ["1", "nodes"])


def test_a_design_that_cannot_be_fitted_is_an_error_not_a_hang() -> None:
    same_nodes = [{"pods": p, "nodes": 3, "y": float(p)} for p in (6, 12, 24)]
    with pytest.raises(UsageError, match="cannot tell"):
        fit(same_nodes, "y", ["1", "pods", "nodes"])
