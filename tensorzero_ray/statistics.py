"""Means with 95% confidence intervals: from aggregates (count, sum, sum of squares) so the
database does the per-row work, Wilson intervals for proportions, and the summary of an
evaluator's scores as TensorZero's evaluations report it."""

from __future__ import annotations

import math
from dataclasses import dataclass

# Two-sided 95% Student t critical values for 1..30 degrees of freedom; 1.96 beyond.
_T95 = (
    12.706, 4.303, 3.182, 2.776, 2.571, 2.447, 2.365, 2.306, 2.262, 2.228,
    2.201, 2.179, 2.160, 2.145, 2.131, 2.120, 2.110, 2.101, 2.093, 2.086,
    2.080, 2.074, 2.069, 2.064, 2.060, 2.056, 2.052, 2.048, 2.045, 2.042,
)  # fmt: skip


def t95(degrees_of_freedom: int) -> float:
    if degrees_of_freedom < 1:
        return math.inf
    return _T95[degrees_of_freedom - 1] if degrees_of_freedom <= len(_T95) else 1.96


@dataclass(frozen=True)
class Estimate:
    count: int
    mean: float
    low: float
    high: float

    @property
    def half_width(self) -> float:
        return (self.high - self.low) / 2


Z95 = 1.959963984540054


def wilson(count: int, successes: float) -> Estimate | None:
    """A proportion's 95% Wilson score interval: inside 0..1 by construction and honest near
    0 and 1 and for few samples, where the normal interval is not (TensorZero's evaluations use
    it for boolean metrics)."""
    if count <= 0:
        return None
    p = successes / count
    z2 = Z95 * Z95
    centre = (p + z2 / (2 * count)) / (1 + z2 / count)
    half = Z95 * math.sqrt(p * (1 - p) / count + z2 / (4 * count * count)) / (1 + z2 / count)
    return Estimate(count, p, max(centre - half, 0.0), min(centre + half, 1.0))


def estimate(count: int, total: float, total_squares: float) -> Estimate | None:
    """Mean and 95% interval from the sample's count, sum and sum of squares (Student t on
    the sample variance; a single observation has an unbounded interval)."""
    if count <= 0:
        return None
    mean = total / count
    if count == 1:
        return Estimate(1, mean, -math.inf, math.inf)
    variance = max(total_squares - count * mean * mean, 0.0) / (count - 1)
    half = t95(count - 1) * math.sqrt(variance / count)
    return Estimate(count, mean, mean - half, mean + half)


@dataclass(frozen=True)
class PairedDifference:
    """Mean of (b - a) over the datapoints both variants were scored on, with a 95% interval."""

    count: int
    mean: float
    low: float
    high: float

    @property
    def significant(self) -> bool:
        return self.low > 0 or self.high < 0


def paired_difference(pairs: list[tuple[float, float]]) -> PairedDifference | None:
    """Paired, because both variants answered the same datapoints: the spread between
    datapoints cancels out and a smaller difference becomes visible than two separate
    intervals would show. Student t on the differences."""
    count = len(pairs)
    if count == 0:
        return None
    differences = [b - a for a, b in pairs]
    mean = sum(differences) / count
    if count == 1:
        return PairedDifference(1, mean, -math.inf, math.inf)
    variance = sum((d - mean) ** 2 for d in differences) / (count - 1)
    half = t95(count - 1) * math.sqrt(variance / count)
    return PairedDifference(count, mean, mean - half, mean + half)


@dataclass(frozen=True)
class ScoreSummary:
    """An evaluator's scores as TensorZero reports them: mean, standard error (n >= 2) and a
    95% interval, Wilson for booleans, mean +- 1.96 standard errors for floats."""

    count: int
    mean: float
    stderr: float | None
    low: float
    high: float

    @property
    def half_width(self) -> float:
        return max(self.mean - self.low, self.high - self.mean)


def summarize(scores: list[float], boolean: bool) -> ScoreSummary | None:
    count = len(scores)
    if count == 0:
        return None
    mean = sum(scores) / count
    stderr = None
    if count >= 2:
        variance = sum((s - mean) ** 2 for s in scores) / (count - 1)
        stderr = math.sqrt(variance / count)
    if boolean:
        interval = wilson(count, sum(scores))
        return ScoreSummary(count, mean, stderr, interval.low, interval.high)
    if stderr is None:
        return ScoreSummary(count, mean, None, -math.inf, math.inf)
    return ScoreSummary(count, mean, stderr, mean - Z95 * stderr, mean + Z95 * stderr)
