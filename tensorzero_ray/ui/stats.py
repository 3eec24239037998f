"""Means with confidence intervals from aggregates (count, sum, sum of squares), so the
database does the per-row work and Python only sees one row per bucket."""

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
