"""`jobs/evaluate.py`: TensorZero's `evaluations` command-line flags, run directly or as a Ray
job, against a running gateway. Exit status 2 for a run that cannot start, 1 when a cutoff
fails, 0 otherwise."""

from __future__ import annotations

import argparse
import asyncio
import json
import sys
from dataclasses import replace

import httpx

from tensorzero_ray.config import ConfigError, load_config
from tensorzero_ray.evaluations.catalog import EvaluationSetupError, Evaluator, select
from tensorzero_ray.evaluations.runner import EvaluationRunner, EvaluationSpec
from tensorzero_ray.statistics import ScoreSummary

CACHE_MODES = ("on", "off", "read_only", "write_only")


def parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="evaluate", description=__doc__)
    p.add_argument("--config-file", default="./config/tensorzero.toml")
    p.add_argument("--gateway-url", default="http://127.0.0.1:8000")
    p.add_argument("--function-name")
    p.add_argument("--evaluator-names", help="comma-separated; default: every evaluator of the function")
    p.add_argument("-e", "--evaluation-name", help="deprecated: an [evaluations.NAME] table")
    p.add_argument("-d", "--dataset-name")
    p.add_argument("--datapoint-ids", help="comma-separated")
    p.add_argument("-v", "--variant-name")
    p.add_argument("--variants", help="a,b,c: sweep these variants over the same datapoints on Ray workers")
    p.add_argument("--workers", type=int, default=2, help="Ray workers of a sweep (default 2)")
    p.add_argument("--cpus-per-worker", type=float, default=0.25, help="CPUs each sweep worker reserves")
    p.add_argument("-c", "--concurrency", type=int, default=1)
    p.add_argument("-f", "--format", choices=("pretty", "jsonl"), default="pretty")
    p.add_argument("--inference-cache", choices=CACHE_MODES, default="on")
    p.add_argument("--max-datapoints", type=int)
    p.add_argument("--adaptive-stopping-precision", default="", help="evaluator=half_width,...")
    p.add_argument("--cutoffs", default="", help="evaluator=value,...: exit 1 when a mean is on the wrong side")
    return p


def pairs(text: str, flag: str, known: list[str]) -> dict[str, float]:
    found = {}
    for item in filter(None, (part.strip() for part in text.split(","))):
        name, sep, value = item.partition("=")
        if not sep:
            raise EvaluationSetupError(f"{flag}: `{item}` is not evaluator=number")
        if name not in known:
            raise EvaluationSetupError(f"{flag}: unknown evaluator `{name}` (this run has: {', '.join(known)})")
        try:
            found[name] = float(value)
        except ValueError:
            raise EvaluationSetupError(f"{flag}: `{value}` is not a number") from None
    return found


def variants_of(args) -> list[str]:
    if (args.variant_name is None) == (args.variants is None):
        raise EvaluationSetupError("exactly one of --variant-name or --variants is required")
    if args.variant_name is not None:
        return [args.variant_name]
    variants = [v for v in args.variants.split(",") if v]
    if len(variants) != len(set(variants)) or not variants:
        raise EvaluationSetupError(f"--variants needs distinct variant names, got `{args.variants}`")
    return variants


def build_spec(args, config) -> EvaluationSpec:
    names = [n for n in (args.evaluator_names or "").split(",") if n] or None
    function_name, evaluators = select(
        config, function_name=args.function_name, evaluator_names=names, evaluation_name=args.evaluation_name
    )
    variants = variants_of(args)
    for variant in variants:
        if variant not in config.functions[function_name].variants:
            known = ", ".join(sorted(config.functions[function_name].variants))
            raise EvaluationSetupError(f"Unknown variant `{variant}` of `{function_name}` (it has: {known})")
    if len(variants) > 1 and args.adaptive_stopping_precision:
        raise EvaluationSetupError("--adaptive-stopping-precision applies to one variant at a time")
    if args.max_datapoints is not None and args.datapoint_ids:
        raise EvaluationSetupError("--max-datapoints applies to --dataset-name only")
    known = [e.name for e in evaluators]
    return EvaluationSpec(
        function_name=function_name,
        evaluators=evaluators,
        variant_name=variants[0],
        dataset_name=args.dataset_name,
        datapoint_ids=[i for i in args.datapoint_ids.split(",") if i] if args.datapoint_ids else None,
        evaluation_name=args.evaluation_name,
        concurrency=args.concurrency,
        max_datapoints=args.max_datapoints,
        inference_cache=args.inference_cache,
        function_type=config.functions[function_name].type,
        precision_targets=pairs(args.adaptive_stopping_precision, "--adaptive-stopping-precision", known),
    )


def failed_cutoffs(stats: dict[str, ScoreSummary | None], evaluators: list[Evaluator], cutoffs: dict) -> list[str]:
    failed = []
    for evaluator in evaluators:
        cutoff = cutoffs.get(evaluator.name)
        summary = stats.get(evaluator.name)
        if cutoff is None:
            continue
        if summary is None:
            failed.append(f"{evaluator.name}: no scores")
        elif (summary.mean < cutoff) if evaluator.optimize == "max" else (summary.mean > cutoff):
            failed.append(f"{evaluator.name}: mean {summary.mean:.4f} vs cutoff {cutoff}")
    return failed


def describe(summary: ScoreSummary | None) -> str:
    if summary is None:
        return "no scores"
    stderr = f"{summary.stderr:.4f}" if summary.stderr is not None else "n/a"
    interval = f"[{summary.low:.4f}, {summary.high:.4f}]" if summary.stderr is not None or summary.count > 1 else ""
    return f"{summary.mean:.4f} ± {stderr} (n={summary.count}) 95% {interval}".rstrip()


async def run(args, client: httpx.AsyncClient, out=sys.stdout) -> int:
    try:
        config = load_config(args.config_file)
        spec = build_spec(args, config)
        cutoffs = pairs(args.cutoffs, "--cutoffs", [e.name for e in spec.evaluators])
        if args.variants is not None:
            return await sweep(args, client, spec, cutoffs, out)
        runner = EvaluationRunner(client, spec)
        async for record in runner.run():
            if args.format == "jsonl":
                out.write(json.dumps(record, default=str) + "\n")
            elif "num_datapoints" in record:
                out.write(f"Run {record['evaluation_run_id']}: {record['num_datapoints']} datapoints\n")
            else:
                summary = runner.summary
                done = summary.completed + summary.errors
                bar = "#" * (30 * done // max(summary.num_datapoints, 1))
                out.write(f"\r[{bar:<30}] {done}/{summary.num_datapoints}")
            out.flush()
    except (ConfigError, EvaluationSetupError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    stats = runner.summary.statistics(spec.evaluators)
    if args.format == "pretty":
        out.write("\n")
        if runner.summary.stopped_early:
            out.write("Stopped early: every targeted evaluator reached its precision\n")
        for name, summary in stats.items():
            out.write(f"{name}: {describe(summary)}\n")
        if runner.summary.errors:
            out.write(f"{runner.summary.errors} datapoint(s) failed\n")
    failed = failed_cutoffs(stats, spec.evaluators, cutoffs)
    for line in failed:
        print(f"cutoff failed: {line}", file=sys.stderr)
    return 1 if failed else 0


async def sweep(args, client: httpx.AsyncClient, spec: EvaluationSpec, cutoffs: dict, out) -> int:
    """`--variants a,b,c`: every variant over the same datapoints, on Ray workers."""
    from tqdm import tqdm

    from tensorzero_ray.evaluations.sweep import run_sweep, table

    variants = variants_of(args)
    points = await EvaluationRunner(client, spec).datapoints()
    runners = {variant: EvaluationRunner(client, replace(spec, variant_name=variant)) for variant in variants}
    for variant, runner in runners.items():
        await runner.record_run([variant], len(points))
    run_ids = {variant: runner.run_id for variant, runner in runners.items()}
    progress = tqdm(total=len(points) * len(variants), desc="evaluating", file=sys.stderr, mininterval=1.0)

    def on_record(record: dict) -> None:
        progress.update(1)
        if args.format == "jsonl":
            out.write(json.dumps(record, default=str) + "\n")

    try:
        results = await asyncio.to_thread(
            run_sweep, args.gateway_url, spec, run_ids, points,
            workers=args.workers, cpus_per_worker=args.cpus_per_worker, on_record=on_record,
        )  # fmt: skip
    finally:
        progress.close()
    for variant, runner in runners.items():
        await runner.record_run([variant], len(points), "complete")
    if args.format == "pretty":
        for name, result in results.items():
            out.write(f"{name}: run {result.run_id}, {len(result.scores)} datapoints, {result.errors} failed\n")
        out.write(table(results, spec.evaluators, variants[0]))
    failed = [
        f"{name}: {line}"
        for name, result in results.items()
        for line in failed_cutoffs({e.name: result.summary(e) for e in spec.evaluators}, spec.evaluators, cutoffs)
    ]
    for line in failed:
        print(f"cutoff failed: {line}", file=sys.stderr)
    return 1 if failed else 0


def main(argv: list[str] | None = None) -> int:
    args = parser().parse_args(argv)

    async def go() -> int:
        timeout = httpx.Timeout(300.0, connect=10.0)
        async with httpx.AsyncClient(base_url=args.gateway_url, timeout=timeout) as client:
            return await run(args, client)

    return asyncio.run(go())
