"""Percentiles of measured values, and medians and 95 % bootstrap intervals over repeated
trials and differences between two cases: plain Python with a seeded random.Random, so the same trials give the same interval.

With few trials the percentile bootstrap of a median is coarse: for 3 trials its interval is
essentially the range of the trials, and its real coverage is below the nominal 95 %. The
report says so; more trials (`--repeat`) narrow it honestly.
"""

from __future__ import annotations

import math
import random
import statistics
from dataclasses import dataclass
from typing import Callable, Sequence

RESAMPLES = 2000
SEED = 11  # fixed: an interval is a function of the trials, not of the moment it was computed
LEVEL = 0.95


@dataclass(frozen=True)
class Interval:
    """A point estimate with its bootstrap interval."""

    value: float
    low: float
    high: float

    def excludes_zero(self) -> bool:
        return self.low > 0 or self.high < 0


def percentile(values: Sequence[float], q: float) -> float | None:
    """Nearest-rank percentile (q in 0..100) of measured values: always one of them, never an
    interpolation; None for no values. Every latency and baseline percentile is this one."""
    if not values:
        return None
    ordered = sorted(values)
    return ordered[max(1, math.ceil(q / 100 * len(ordered))) - 1]


def _quantile(ordered: Sequence[float], q: float) -> float:
    """Linear-interpolated quantile of sorted values (numpy's default, 'linear'): the
    bootstrap's interval bounds over resampled medians, not a measured percentile."""
    if not ordered:
        raise ValueError("no values")
    pos = q * (len(ordered) - 1)
    lo = int(pos)
    hi = min(lo + 1, len(ordered) - 1)
    return ordered[lo] + (ordered[hi] - ordered[lo]) * (pos - lo)


def bootstrap_ci(
    values: Sequence[float],
    statistic: Callable[[Sequence[float]], float] = statistics.median,
    resamples: int = RESAMPLES,
    level: float = LEVEL,
    seed: int = SEED,
) -> Interval | None:
    """The statistic (default: median) of `values` and its percentile-bootstrap interval.
    None for no values; a single value gives a zero-width interval (nothing to resample)."""
    data = [float(v) for v in values]
    if not data:
        return None
    point = float(statistic(data))
    if len(data) == 1:
        return Interval(point, point, point)
    rng = random.Random(seed)
    n = len(data)
    stats = sorted(float(statistic([data[rng.randrange(n)] for _ in range(n)])) for _ in range(resamples))
    alpha = (1 - level) / 2
    return Interval(point, _quantile(stats, alpha), _quantile(stats, 1 - alpha))


def bootstrap_difference(
    a: Sequence[float],
    b: Sequence[float],
    statistic: Callable[[Sequence[float]], float] = statistics.median,
    resamples: int = RESAMPLES,
    level: float = LEVEL,
    seed: int = SEED,
) -> Interval | None:
    """statistic(a) - statistic(b) with a percentile-bootstrap interval, each side resampled
    on its own (the trials of two cases are independent). None if either side is empty."""
    xs, ys = [float(v) for v in a], [float(v) for v in b]
    if not xs or not ys:
        return None
    point = float(statistic(xs)) - float(statistic(ys))
    if len(xs) == 1 and len(ys) == 1:
        return Interval(point, point, point)
    rng = random.Random(seed)
    diffs = sorted(
        float(statistic([xs[rng.randrange(len(xs))] for _ in xs])) - float(statistic([ys[rng.randrange(len(ys))] for _ in ys]))
        for _ in range(resamples)
    )
    alpha = (1 - level) / 2
    return Interval(point, _quantile(diffs, alpha), _quantile(diffs, 1 - alpha))
