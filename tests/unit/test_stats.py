from __future__ import annotations

import random
import statistics

import pytest

from patternbench.stats import Interval, bootstrap_ci, bootstrap_difference


def test_same_trials_give_the_same_interval() -> None:
    values = [0.9, 1.4, 1.1, 0.7, 1.0]
    assert bootstrap_ci(values) == bootstrap_ci(list(values))
    ci = bootstrap_ci(values)
    assert ci is not None and ci.value == 1.0 and ci.low <= 1.0 <= ci.high


def test_empty_and_single() -> None:
    assert bootstrap_ci([]) is None
    assert bootstrap_ci([3.0]) == Interval(3.0, 3.0, 3.0)
    assert bootstrap_difference([], [1.0]) is None


def test_three_trials_give_about_their_range() -> None:
    ci = bootstrap_ci([1.0, 2.0, 10.0])
    assert ci is not None and ci.value == 2.0
    assert ci.low == pytest.approx(1.0) and ci.high == pytest.approx(10.0)


def test_the_interval_covers_the_true_median_about_95_percent_of_the_time() -> None:
    """Coverage measured, not assumed: 200 samples of 25 from N(10, 1); the nominal level
    is 95 %, the percentile bootstrap of a median lands a little under or over."""
    rng = random.Random(1)
    covered = 0
    for i in range(200):
        sample = [rng.gauss(10, 1) for _ in range(25)]
        ci = bootstrap_ci(sample, resamples=400, seed=i)
        assert ci is not None
        covered += ci.low <= 10 <= ci.high
    assert 0.88 <= covered / 200 <= 0.995


def test_a_real_difference_excludes_zero_and_noise_does_not() -> None:
    rng = random.Random(2)
    slow = [rng.gauss(12, 1) for _ in range(8)]
    fast = [rng.gauss(10, 1) for _ in range(8)]
    diff = bootstrap_difference(slow, fast)
    assert diff is not None and diff.excludes_zero() and diff.low > 0
    assert diff.value == pytest.approx(statistics.median(slow) - statistics.median(fast))
    same = bootstrap_difference([1.0, 1.2, 0.9, 1.1], [1.05, 0.95, 1.15, 1.0])
    assert same is not None and not same.excludes_zero()
