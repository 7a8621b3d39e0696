"""Growth models for the scale runs: a figure measured at several sizes is fitted, per pattern,
as a linear model in the counts that drive it (pods, nodes, ...), with 95 % intervals from a
bootstrap over the measured points; the largest size is held out and predicted from the
rest, so the projection to sizes this machine cannot hold comes with its own measured error.

Pure functions over plain points (dicts of counts and figures): nothing here touches a cluster.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Callable, Mapping, Sequence

import numpy as np

from patternbench.errors import UsageError

Point = Mapping[str, Any]
INTERCEPT = "1"
BOOTSTRAP = 2000


@dataclass(frozen=True)
class Fit:
    """y = sum(coef[t] * point[t]) over the terms (INTERCEPT is the constant 1)."""

    figure: str
    terms: tuple[str, ...]
    coef: tuple[float, ...]
    low: tuple[float, ...]  # 2.5 % bootstrap percentile of each coefficient
    high: tuple[float, ...]  # 97.5 %
    points: int
    boot: np.ndarray  # bootstrap coefficient draws, one row per draw (for prediction bands)

    def value(self, counts: Point) -> float:
        """The fit's prediction alone."""
        return float(np.dot(self.coef, design([counts], self.terms)[0]))

    def predict(self, counts: Point) -> tuple[float, float, float]:
        """(prediction, band low, band high): the fit and the 95 % band of its bootstrap draws."""
        x = design([counts], self.terms)[0]
        draws = self.boot @ x
        return float(np.dot(self.coef, x)), float(np.percentile(draws, 2.5)), float(np.percentile(draws, 97.5))

    def as_dict(self) -> dict[str, Any]:
        return {
            "figure": self.figure, "points": self.points,
            "terms": {t: {"coef": round(c, 6), "low": round(lo, 6), "high": round(hi, 6)} for t, c, lo, hi in zip(self.terms, self.coef, self.low, self.high)},
        }


def term_value(point: Point, term: str) -> float:
    """A term is a count of the point, INTERCEPT, or a product of counts joined by '*'."""
    if term == INTERCEPT:
        return 1.0
    value = 1.0
    for name in term.split("*"):
        if name not in point:
            raise UsageError(f"scale model: term {term!r} needs {name!r}, which the point does not have")
        value *= float(point[name])
    return value


def design(points: Sequence[Point], terms: Sequence[str]) -> np.ndarray:
    return np.array([[term_value(p, t) for t in terms] for p in points], dtype=float)


def fit(points: Sequence[Point], figure: str, terms: Sequence[str], seed: int = 0, draws: int = BOOTSTRAP) -> Fit:
    """Least squares of `figure` on `terms`, with bootstrap intervals (points resampled with
    replacement; a draw whose design is rank-deficient is drawn again)."""
    usable = [p for p in points if p.get(figure) is not None]
    if len(usable) < len(terms):
        raise UsageError(f"scale model: {figure} has {len(usable)} measured points, fewer than its {len(terms)} terms")
    x = design(usable, terms)
    y = np.array([float(p[figure]) for p in usable])
    coef = np.linalg.lstsq(x, y, rcond=None)[0]
    if np.linalg.matrix_rank(x) < len(terms):
        raise UsageError(f"scale model: {figure}'s points cannot tell {', '.join(terms)} apart (a count that never changes?)")
    rng = np.random.default_rng(seed)
    boot = []
    for _ in range(50 * draws):  # a draw that repeats too few distinct points is drawn again
        if len(boot) == draws:
            break
        idx = rng.integers(0, len(usable), len(usable))
        if np.linalg.matrix_rank(x[idx]) == len(terms):
            boot.append(np.linalg.lstsq(x[idx], y[idx], rcond=None)[0])
    table = np.array(boot) if boot else coef[np.newaxis, :]
    low, high = np.percentile(table, 2.5, axis=0), np.percentile(table, 97.5, axis=0)
    return Fit(figure, tuple(terms), tuple(map(float, coef)), tuple(map(float, low)), tuple(map(float, high)), len(usable), table)


@dataclass(frozen=True)
class Holdout:
    """The largest size predicted from a fit on the smaller ones."""

    figure: str
    size_key: str
    size: float
    predicted: float
    band: tuple[float, float]
    measured: float

    @property
    def error(self) -> float | None:
        """Relative error of the prediction (None when the measured value is 0)."""
        return (self.predicted - self.measured) / self.measured if self.measured else None

    def as_dict(self) -> dict[str, Any]:
        err = self.error
        return {"figure": self.figure, self.size_key: self.size, "predicted": round(self.predicted, 4), "band": [round(b, 4) for b in self.band],
                "measured": round(self.measured, 4), "error": None if err is None else round(err, 4)}


def holdout(points: Sequence[Point], figure: str, terms: Sequence[str], size_key: str = "services", seed: int = 0) -> Holdout:
    """Fit on every point below the largest `size_key`, predict the mean of the largest's points."""
    usable = [p for p in points if p.get(figure) is not None]
    largest = max(float(p[size_key]) for p in usable)
    train = [p for p in usable if float(p[size_key]) < largest]
    test = [p for p in usable if float(p[size_key]) == largest]
    model = fit(train, figure, terms, seed)
    counts = {k: float(np.mean([float(p[k]) for p in test])) for t in terms if t != INTERCEPT for k in t.split("*")}
    predicted, lo, hi = model.predict(counts)
    measured = float(np.mean([float(p[figure]) for p in test]))
    return Holdout(figure, size_key, largest, predicted, (lo, hi), measured)


def crossover(a: Fit, b: Fit, counts_at: Callable[[int], Point], start: int, upto: int) -> int | None:
    """The first size from `start` to `upto` at which the order of a's and b's predictions no
    longer holds (they meet or swap; counts_at gives a size's counts: pods, nodes, ...); None
    if it holds throughout."""
    def order(size: int) -> float:
        counts = counts_at(size)
        return float(np.sign(a.value(counts) - b.value(counts)))

    first = order(start)
    for size in range(start + 1, upto + 1):
        if order(size) != first:
            return size
    return None
