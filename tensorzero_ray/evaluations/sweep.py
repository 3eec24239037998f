"""Several variants over the same datapoints at once: datapoints x variants in shards spread
over Ray workers (each shard an async runner with its own bounded concurrency), each variant
its own evaluation run, then a side-by-side table and paired comparisons."""

from __future__ import annotations

import asyncio
import math
from dataclasses import dataclass, field, replace
from typing import Any

from tensorzero_ray.evaluations.catalog import EvaluationSetupError, Evaluator
from tensorzero_ray.evaluations.runner import EvaluationSpec
from tensorzero_ray.statistics import PairedDifference, ScoreSummary, paired_difference, summarize


@dataclass
class VariantResult:
    variant_name: str
    run_id: str
    # datapoint id -> evaluator -> score (None: not applicable or failed)
    scores: dict[str, dict[str, Any]] = field(default_factory=dict)
    errors: int = 0

    def summary(self, evaluator: Evaluator) -> ScoreSummary | None:
        values = [float(s[evaluator.name]) for s in self.scores.values() if s.get(evaluator.name) is not None]
        return summarize(values, evaluator.boolean)


def check_capacity(workers: int, cpus_per_worker: float) -> None:
    """The cluster is shared with the stack: say what is missing at once instead of waiting."""
    from tensorzero_ray.cluster import cpu_shortfall

    short = cpu_shortfall(workers, cpus_per_worker, "--workers or --cpus-per-worker")
    if short is not None:
        raise EvaluationSetupError(f"Not enough CPUs for the sweep: {short}")


def shards(points: list[dict], variants: list[str], workers: int) -> list[tuple[str, list[dict]]]:
    """(variant, datapoints) pieces, a few per worker so a slow piece does not hold the end."""
    size = max(1, math.ceil(len(points) * len(variants) / (workers * 4)))
    return [(v, points[i : i + size]) for v in variants for i in range(0, len(points), size)]


def _evaluate_shard(gateway_url: str, spec: EvaluationSpec, run_id: str, points: list[dict]) -> list[dict]:
    import httpx

    from tensorzero_ray.evaluations.runner import EvaluationRunner

    async def go() -> list[dict]:
        timeout = httpx.Timeout(300.0, connect=10.0)
        async with httpx.AsyncClient(base_url=gateway_url, timeout=timeout) as client:
            return [record async for record in EvaluationRunner(client, spec, run_id).evaluate(points)]

    return asyncio.run(go())


def run_sweep(
    gateway_url: str,
    spec: EvaluationSpec,
    run_ids: dict[str, str],
    points: list[dict],
    *,
    workers: int,
    cpus_per_worker: float,
    on_record=None,
) -> dict[str, VariantResult]:
    import ray

    if not ray.is_initialized():
        ray.init(address="auto", logging_level="ERROR")
    check_capacity(workers, cpus_per_worker)
    remote = ray.remote(num_cpus=cpus_per_worker, max_retries=0)(_evaluate_shard)
    variants = list(run_ids)
    results = {v: VariantResult(v, run_ids[v]) for v in variants}
    pending = {}
    queue = shards(points, variants, workers)
    while queue or pending:
        while queue and len(pending) < workers:
            variant, piece = queue.pop(0)
            ref = remote.remote(gateway_url, replace(spec, variant_name=variant), results[variant].run_id, piece)
            pending[ref] = variant
        ready, _ = ray.wait(list(pending), num_returns=1)
        variant = pending.pop(ready[0])
        for record in ray.get(ready[0]):
            record["variant_name"] = variant
            result = results[variant]
            if record["type"] == "error":
                result.errors += 1
                result.scores[record["datapoint_id"]] = {}
            else:
                result.scores[record["datapoint"]["id"]] = record["evaluations"]
            if on_record is not None:
                on_record(record)
    return results


def comparisons(
    results: dict[str, VariantResult], evaluators: list[Evaluator], baseline: str
) -> list[tuple[Evaluator, str, PairedDifference | None]]:
    """Each other variant against the baseline, per evaluator, on shared datapoints."""
    found = []
    for evaluator in evaluators:
        for name, result in results.items():
            if name == baseline:
                continue
            base = results[baseline].scores
            pairs = [
                (float(base[d][evaluator.name]), float(scores[evaluator.name]))
                for d, scores in result.scores.items()
                if scores.get(evaluator.name) is not None and base.get(d, {}).get(evaluator.name) is not None
            ]
            found.append((evaluator, name, paired_difference(pairs)))
    return found


def verdict(evaluator: Evaluator, difference: PairedDifference | None, baseline: str, other: str) -> str:
    if difference is None:
        return "no shared datapoints"
    if not difference.significant:
        return "no significant difference"
    better = difference.mean > 0 if evaluator.optimize == "max" else difference.mean < 0
    return f"{other} is better" if better else f"{baseline} is better"


def table(results: dict[str, VariantResult], evaluators: list[Evaluator], baseline: str) -> str:
    lines = []
    width = max(len(v) for v in results) + 2
    for evaluator in evaluators:
        lines.append(f"\n{evaluator.name} ({'boolean' if evaluator.boolean else 'float'}, {evaluator.optimize})")
        lines.append(f"  {'variant':<{width}} {'mean':>8}  {'95% interval':<19} {'n':>6}")
        for name, result in results.items():
            summary = result.summary(evaluator)
            if summary is None:
                lines.append(f"  {name:<{width}} {'-':>8}  {'no scores':<19} {0:>6}")
                continue
            interval = f"[{summary.low:.4f}, {summary.high:.4f}]" if math.isfinite(summary.low) else "needs 2+ scores"
            lines.append(f"  {name:<{width}} {summary.mean:>8.4f}  {interval:<19} {summary.count:>6}")
    compared = comparisons(results, evaluators, baseline)
    if compared:
        lines.append(f"\nPaired differences against {baseline} (same datapoints; other minus {baseline}):")
        for evaluator, other, difference in compared:
            if difference is None or not math.isfinite(difference.low):
                shown = "too few shared scores"
            else:
                shown = f"{difference.mean:+.4f} [{difference.low:+.4f}, {difference.high:+.4f}] (n={difference.count})"
            lines.append(f"  {evaluator.name}: {other}: {shown}: {verdict(evaluator, difference, baseline, other)}")
    return "\n".join(lines) + "\n"
