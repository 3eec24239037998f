"""An experiment's report: per-variant means with fixed-sample and anytime-valid intervals,
comparisons with a baseline, the sample-ratio check and CUPED. One definition for the HTTP
route, the report job and the function page."""

from __future__ import annotations

from pydantic import BaseModel, Field

from tensorzero_ray.types.inference import NullMeansDefault


class ExperimentReportRequest(NullMeansDefault):
    metric_name: str
    covariate_metric: str | None = None
    baseline: str | None = None
    namespace: str | None = None
    alpha: float = Field(default=0.05, gt=0, lt=1)
    # The sample size around which the confidence sequences are tightest (fixed in advance, so
    # they stay valid however often the report is read).
    tune_n: int = Field(default=100, ge=1)


class Interval(BaseModel):
    low: float
    high: float


class VariantResult(BaseModel):
    variant_name: str
    units: int
    mean: float
    # Valid for one look at this sample size (Student t; Wilson for booleans).
    interval: Interval | None
    # Valid at every look: peeking does not inflate the error rate.
    sequence: Interval | None
    adjusted_mean: float | None = None
    adjusted_sequence: Interval | None = None


class Comparison(BaseModel):
    variant_name: str
    baseline: str
    difference: float
    sequence: Interval | None
    verdict: str


class SampleRatioCheck(BaseModel):
    """Assignments (episodes) per variant against what the sampling probabilities intended."""

    observed: dict[str, int]
    expected: dict[str, float]
    chi_square: float | None
    p_value: float | None
    mismatch: bool
    # Episodes that went to variants the experiment gives no probability (fallbacks, pins).
    outside: dict[str, int] = Field(default_factory=dict)


class CupedResult(BaseModel):
    covariate_metric: str
    theta: float
    units_with_covariate: int
    variance_reduction: float


class ExperimentReport(BaseModel):
    function_name: str
    metric_name: str
    level: str
    optimize: str
    alpha: float
    baseline: str | None
    variants: list[VariantResult]
    comparisons: list[Comparison]
    sample_ratio: SampleRatioCheck | None
    cuped: CupedResult | None = None
