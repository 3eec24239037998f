"""The experiment report (beyond TensorZero): per-variant means with a fixed-sample interval and
an anytime-valid confidence sequence, each variant against a baseline, a sample-ratio-mismatch
check against the probabilities the sampler intended at each moment, and CUPED variance
reduction when a pre-period covariate is recorded as feedback on the same targets.

Confidence sequences use Robbins' normal mixture (Howard et al. 2021): for a mean with standard
error se after n units, the half-width se * sqrt((1 + m/n) * ln((n + m) / (m * alpha^2))) holds
at every n simultaneously with probability 1 - alpha; m (`tune_n`) is where it is tightest.
The variance is estimated, so the guarantee is asymptotic (Waudby-Smith et al. 2023)."""

from __future__ import annotations

import math
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any

from scipy.stats import chisquare

from tensorzero_ray.config.functions import AdaptiveExperimentation
from tensorzero_ray.errors import InvalidRequest, UnknownFunction
from tensorzero_ray.experimentation.feedback_statistics import targets_sql
from tensorzero_ray.experimentation.sampling import build_sampler
from tensorzero_ray.statistics import estimate, wilson
from tensorzero_ray.types.experiments import (
    Comparison,
    CupedResult,
    ExperimentReport,
    ExperimentReportRequest,
    Interval,
    SampleRatioCheck,
    VariantResult,
)

Query = Callable[[str, dict], Awaitable[list[dict[str, Any]]]]
# Below this p-value the assignments do not match the intended probabilities (a common bar:
# mismatches are usually bugs, so false alarms are kept rare).
SRM_P_VALUE = 0.001

LATEST = (
    "SELECT toUInt128(target_id) AS target, argMax(toFloat64(value), toUInt128(id)) AS v "
    "FROM {table} WHERE metric_name = {name} GROUP BY target"
)
SUMS_SQL = """
SELECT t.variant_name AS variant, count() AS n, sum(f.v) AS s, sum(f.v * f.v) AS ss,
       sum(c.has) AS nx, sum(c.has * f.v) AS sy_x, sum(c.x) AS sx, sum(c.x * c.x) AS sxx, sum(c.x * f.v) AS sxy
FROM ({metric}) AS f
INNER JOIN ({targets}) AS t ON f.target = t.target
LEFT JOIN (SELECT target, v AS x, 1 AS has FROM ({covariate})) AS c ON c.target = f.target
GROUP BY variant
"""
# Each episode counts under the sampling state in effect when it began (`bounds`: when each
# state after the first took effect).
ASSIGNMENTS_SQL = """
SELECT arrayCount(b -> b <= toUnixTimestamp64Milli(UUIDv7ToDateTime(episode_id)), {bounds:Array(Int64)}) AS state,
       variant_name AS variant, uniqExact(episode_id) AS episodes
FROM (
    SELECT episode_id, variant_name, tags FROM ChatInference WHERE function_name = {function:String}
    UNION ALL SELECT episode_id, variant_name, tags FROM JsonInference WHERE function_name = {function:String}
)
WHERE NOT mapContains(tags, 'tensorzero::variant_pinned') {namespace_filter}
GROUP BY state, variant
"""
STATES_SQL = (
    "SELECT toUnixTimestamp64Milli(effective_from) AS effective_from_ms, probabilities FROM AdaptiveExperimentState "
    "WHERE function_name = {function:String} AND namespace = {namespace:String} ORDER BY effective_from"
)


def sequence_half_width(stderr: float, count: float, alpha: float, tune_n: int) -> float:
    if count < 2 or not math.isfinite(stderr):
        return math.inf
    m = float(tune_n)
    return stderr * math.sqrt((1 + m / count) * math.log((count + m) / (m * alpha * alpha)))


@dataclass
class Sums:
    n: int = 0
    s: float = 0.0
    ss: float = 0.0
    nx: int = 0
    sy_x: float = 0.0
    sx: float = 0.0
    sxx: float = 0.0
    sxy: float = 0.0

    @property
    def mean(self) -> float:
        return self.s / self.n

    @property
    def variance(self) -> float:
        return max(self.ss - self.n * self.mean**2, 0.0) / (self.n - 1) if self.n > 1 else math.nan

    def adjusted(self, theta: float, x_bar: float) -> tuple[float, float]:
        """Mean and sample variance of y - theta (x - x_bar); units without a covariate keep y."""
        total = self.s - theta * (self.sx - self.nx * x_bar)
        cross = self.sxy - x_bar * self.sy_x
        spread = self.sxx - 2 * x_bar * self.sx + self.nx * x_bar * x_bar
        squares = self.ss - 2 * theta * cross + theta * theta * spread
        variance = (squares - total * total / self.n) / (self.n - 1) if self.n > 1 else math.nan
        return total / self.n, variance


def _add(a: Sums, b: Sums) -> Sums:
    return Sums(*(getattr(a, f) + getattr(b, f) for f in ("n", "s", "ss", "nx", "sy_x", "sx", "sxx", "sxy")))


async def experiment_report(config, query: Query, function_name: str, request: ExperimentReportRequest):
    function = config.functions.get(function_name)
    if function is None:
        raise UnknownFunction(function_name)
    metric = config.metrics.get(request.metric_name)
    if metric is None:
        raise InvalidRequest(f"Unknown metric: `{request.metric_name}` is not in the config's [metrics]")
    covariate = None
    if request.covariate_metric is not None:
        covariate = config.metrics.get(request.covariate_metric)
        if covariate is None:
            raise InvalidRequest(
                f"Unknown metric: covariate `{request.covariate_metric}` is not in the config's [metrics]"
            )
        if covariate.level != metric.level:
            raise InvalidRequest(
                f"The covariate `{request.covariate_metric}` is {covariate.level}-level and the metric is "
                f"{metric.level}-level: they must be recorded on the same targets"
            )
    if request.baseline is not None and request.baseline not in function.variants:
        raise InvalidRequest(f"Unknown variant: baseline `{request.baseline}` is not a variant of `{function_name}`")
    experimentation = function.experimentation
    if request.namespace and experimentation is not None:
        experimentation = experimentation.namespaces.get(request.namespace, experimentation)

    sums = await _sums(query, function_name, request, metric, covariate)
    theta, x_bar, cuped = _cuped(sums, request.covariate_metric)
    boolean = metric.type == "boolean"
    variants = [_variant(name, s, boolean, request, theta, x_bar) for name, s in sorted(sums.items())]
    by_name = {v.variant_name: v for v in variants}
    baseline = request.baseline or _default_baseline(experimentation, function, by_name)
    comparisons = [
        _compare(sums[name], sums[baseline], name, baseline, request, metric.optimize, boolean, theta, x_bar)
        for name in sorted(sums)
        if baseline in sums and name != baseline
    ]
    sample_ratio = await _sample_ratio(query, function_name, function, experimentation, request.namespace)
    return ExperimentReport(
        function_name=function_name,
        metric_name=request.metric_name,
        level=metric.level,
        optimize=metric.optimize,
        alpha=request.alpha,
        baseline=baseline if baseline in sums else None,
        variants=variants,
        comparisons=comparisons,
        sample_ratio=sample_ratio,
        cuped=cuped,
    )


async def _sums(query: Query, function_name: str, request, metric, covariate) -> dict[str, Sums]:
    targets = targets_sql(metric.level, request.namespace)

    def latest(kind, name_param: str) -> str:
        table = "BooleanMetricFeedback" if kind.type == "boolean" else "FloatMetricFeedback"
        return LATEST.replace("{table}", table).replace("{name}", name_param)

    covariate_sql = latest(covariate, "{covariate:String}") if covariate else "SELECT 0 AS target, 0.0 AS v WHERE 0"
    sql = (
        SUMS_SQL.replace("{metric}", latest(metric, "{metric:String}"))
        .replace("{targets}", targets)
        .replace("{covariate}", covariate_sql)
    )
    rows = await query(
        sql,
        {
            "function": function_name,
            "metric": request.metric_name,
            "covariate": request.covariate_metric or "",
            "namespace": request.namespace or "",
        },
    )
    return {
        r["variant"]: Sums(
            int(r["n"]),
            *(float(r[k]) for k in ("s", "ss")),
            int(r["nx"]),
            *(float(r[k]) for k in ("sy_x", "sx", "sxx", "sxy")),
        )  # fmt: skip
        for r in rows
    }


def _cuped(sums: dict[str, Sums], covariate_metric: str | None) -> tuple[float, float, CupedResult | None]:
    if covariate_metric is None or not sums:
        return 0.0, 0.0, None
    total = Sums()
    for s in sums.values():
        total = _add(total, s)
    if total.nx < 3:
        return 0.0, 0.0, CupedResult(covariate_metric=covariate_metric, theta=0.0, units_with_covariate=total.nx,
                                     variance_reduction=0.0)  # fmt: skip
    x_bar = total.sx / total.nx
    y_bar_x = total.sy_x / total.nx
    var_x = total.sxx - total.nx * x_bar * x_bar
    theta = (total.sxy - total.nx * x_bar * y_bar_x) / var_x if var_x > 0 else 0.0
    _, adjusted_variance = total.adjusted(theta, x_bar)
    reduction = 1 - adjusted_variance / total.variance if total.variance > 0 else 0.0
    return theta, x_bar, CupedResult(covariate_metric=covariate_metric, theta=theta, units_with_covariate=total.nx,
                                     variance_reduction=reduction)  # fmt: skip


def _variant(name: str, s: Sums, boolean: bool, request, theta: float, x_bar: float) -> VariantResult:
    interval = None
    if boolean:
        found = wilson(s.n, s.s)
        interval = Interval(low=found.low, high=found.high) if found else None
    else:
        found = estimate(s.n, s.s, s.ss)
        interval = Interval(low=found.low, high=found.high) if found and s.n > 1 else None
    stderr = math.sqrt(_sequence_variance(s.variance, boolean) / s.n) if s.n > 1 else math.inf
    half = sequence_half_width(stderr, s.n, request.alpha, request.tune_n)
    # A boolean's mean lies in [0, 1], so its sequence can be cut to that range and stay valid.
    low, high = (0.0, 1.0) if boolean else (-math.inf, math.inf)
    result = VariantResult(
        variant_name=name, units=s.n, mean=s.mean, interval=interval,
        sequence=Interval(low=max(low, s.mean - half), high=min(high, s.mean + half)) if math.isfinite(half) else None,
    )  # fmt: skip
    if request.covariate_metric is not None:
        mean, variance = s.adjusted(theta, x_bar)
        half = sequence_half_width(math.sqrt(max(variance, 0.0) / s.n), s.n, request.alpha, request.tune_n)
        result.adjusted_mean = mean
        result.adjusted_sequence = Interval(low=mean - half, high=mean + half) if math.isfinite(half) else None
    return result


def _sequence_variance(estimated: float, boolean: bool) -> float:
    """Booleans use 1/4, the largest variance a 0/1 value can have: their sequences then hold
    exactly (Hoeffding), not only asymptotically, and a run of identical outcomes does not
    collapse them to a point."""
    return 0.25 if boolean else estimated


def _compare(
    a: Sums, base: Sums, name: str, baseline: str, request, optimize: str, boolean: bool, theta: float, x_bar: float
):
    """Difference of means (adjusted when a covariate is given) with an anytime-valid interval;
    the effective sample size of two independent means is their harmonic mean."""
    if request.covariate_metric is not None:
        stats = [(*s.adjusted(theta, x_bar), s.n) for s in (a, base)]
    else:
        stats = [(s.mean, _sequence_variance(s.variance, boolean), s.n) for s in (a, base)]
    (mean_a, var_a, n_a), (mean_b, var_b, n_b) = stats
    difference = mean_a - mean_b
    sequence = None
    verdict = "not enough data"
    if n_a > 1 and n_b > 1 and math.isfinite(var_a) and math.isfinite(var_b):
        stderr = math.sqrt(var_a / n_a + var_b / n_b)
        effective = 2 / (1 / n_a + 1 / n_b)
        half = sequence_half_width(stderr, effective, request.alpha, request.tune_n)
        bound = 1.0 if boolean and request.covariate_metric is None else math.inf
        sequence = Interval(low=max(-bound, difference - half), high=min(bound, difference + half))
        if sequence.low > 0 or sequence.high < 0:
            better = (difference > 0) == (optimize == "max")
            verdict = f"{name} is {'better' if better else 'worse'} than {baseline}"
        else:
            verdict = "no significant difference yet"
    return Comparison(variant_name=name, baseline=baseline, difference=difference, sequence=sequence, verdict=verdict)


def _default_baseline(experimentation, function, found: dict[str, VariantResult]) -> str | None:
    """The first candidate of the experiment, else the variant with the most units."""
    if experimentation is not None and experimentation.candidate_variants:
        first = list(experimentation.candidate_variants)[0]
        if first in found:
            return first
    return max(found.values(), key=lambda v: v.units).variant_name if found else None


async def _sample_ratio(query: Query, function_name: str, function, experimentation, namespace: str | None):
    history = await _intended(query, function_name, function, experimentation, namespace)
    namespace_filter = "AND tags['tensorzero::namespace'] = {namespace:String}" if namespace else ""
    rows = await query(
        ASSIGNMENTS_SQL.replace("{namespace_filter}", namespace_filter),
        {"function": function_name, "namespace": namespace or "", "bounds": [start for start, _ in history[1:]]},
    )
    if not rows:
        return None
    observed: dict[str, int] = {}
    expected: dict[str, float] = {}
    per_state: dict[int, int] = {}
    for row in rows:
        observed[row["variant"]] = observed.get(row["variant"], 0) + int(row["episodes"])
        per_state[int(row["state"])] = per_state.get(int(row["state"]), 0) + int(row["episodes"])
    for index, episodes in per_state.items():
        for name, p in history[index][1].items():
            if p > 0:
                expected[name] = expected.get(name, 0.0) + p * episodes
    inside = [name for name in expected if expected[name] > 0]
    outside = {name: count for name, count in observed.items() if name not in inside}
    seen = [observed.get(name, 0) for name in inside]
    planned = [expected[name] for name in inside]
    chi, p_value = None, None
    if len(inside) >= 2 and sum(seen) > 0:
        scale = sum(seen) / sum(planned)
        result = chisquare(seen, [e * scale for e in planned])
        chi, p_value = float(result.statistic), float(result.pvalue)
    return SampleRatioCheck(
        observed=observed, expected={n: round(e, 3) for n, e in expected.items()}, chi_square=chi, p_value=p_value,
        mismatch=p_value is not None and p_value < SRM_P_VALUE, outside=outside,
    )  # fmt: skip


async def _intended(
    query: Query, function_name: str, function, experimentation, namespace: str | None
) -> list[tuple[int, dict[str, float]]]:
    """(start ms, probabilities) of each sampling state in order: one for static weights; the
    initial equal shares then every stored track-and-stop state for adaptive experiments."""
    sampler = build_sampler(function_name, function.variants, experimentation)
    if not isinstance(experimentation, AdaptiveExperimentation):
        return [(0, sampler.probabilities())]
    rows = await query(STATES_SQL, {"function": function_name, "namespace": namespace or ""})
    return [(0, sampler.probabilities(0)), *((int(r["effective_from_ms"]), dict(r["probabilities"])) for r in rows)]
