"""`jobs/judge_calibration.py`: an LLM judge's agreement with people on the same outputs, so a
user knows whether to trust its scores. Exit status 2 when the evaluator is unknown or no
output has both scores yet."""

from __future__ import annotations

import argparse
import asyncio
import json
import sys

import httpx

from tensorzero_ray.config import ConfigError, load_config
from tensorzero_ray.config.functions import LlmJudgeEvaluator
from tensorzero_ray.evaluations.calibration import boolean_agreement, float_agreement, kappa_reading
from tensorzero_ray.evaluations.catalog import EvaluationSetupError, select


def parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="judge_calibration", description=__doc__)
    p.add_argument("--config-file", default="./config/tensorzero.toml")
    p.add_argument("--gateway-url", default="http://127.0.0.1:8000")
    p.add_argument("--function-name")
    p.add_argument("-e", "--evaluation-name")
    p.add_argument("--evaluator-name", required=True, help="the llm_judge evaluator to check")
    p.add_argument("--format", choices=("pretty", "json"), default="pretty")
    return p


async def report(args, http: httpx.AsyncClient, out=sys.stdout) -> int:
    try:
        config = load_config(args.config_file)
        names = None if args.evaluation_name else [args.evaluator_name]
        _, evaluators = select(
            config, function_name=args.function_name, evaluator_names=names, evaluation_name=args.evaluation_name
        )
        evaluator = next((e for e in evaluators if e.name == args.evaluator_name), None)
        if evaluator is None:
            raise EvaluationSetupError(f"Unknown evaluator `{args.evaluator_name}`")
        if not isinstance(evaluator.config, LlmJudgeEvaluator):
            raise EvaluationSetupError(f"`{evaluator.name}` is a `{evaluator.config.type}` evaluator, not an LLM judge")
        answer = await http.post("/internal/evaluations/judge_agreement", json={"metric_name": evaluator.metric_name})
        if answer.status_code != 200:
            raise EvaluationSetupError(f"the gateway answered {answer.status_code}: {answer.text}")
        pairs = answer.json()["pairs"]
        if not pairs:
            raise EvaluationSetupError(
                f"No output has both a judge score and a human score for `{evaluator.name}` yet: add human feedback "
                "(tags tensorzero::datapoint_id and tensorzero::human_feedback) on evaluated inferences"
            )
    except (ConfigError, EvaluationSetupError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    if evaluator.boolean:
        found = boolean_agreement([(bool(p["judge"]), bool(p["human"])) for p in pairs])
        body = {
            "evaluator": evaluator.name,
            "count": found.count,
            "accuracy": found.accuracy,
            "accuracy_95": [found.accuracy_low, found.accuracy_high],
            "cohens_kappa": found.kappa,
            "confusion": {
                f"judge_{j}": {f"human_{h}": n for h, n in row.items()} for j, row in found.confusion.items()
            },
        }
        lines = [
            f"{evaluator.name}: {found.count} outputs scored by both the judge and a person",
            f"  agreement {found.accuracy:.3f} (95% {found.accuracy_low:.3f}-{found.accuracy_high:.3f})",
            f"  Cohen's kappa {found.kappa:.3f}: {kappa_reading(found.kappa)}"
            if found.kappa is not None
            else f"  Cohen's kappa: {kappa_reading(None)}",
            "                 human true  human false",
            f"  judge true   {found.confusion[True][True]:>11} {found.confusion[True][False]:>12}",
            f"  judge false  {found.confusion[False][True]:>11} {found.confusion[False][False]:>12}",
        ]
    else:
        found = float_agreement([(float(p["judge"]), float(p["human"])) for p in pairs])
        body = {
            "evaluator": evaluator.name,
            "count": found.count,
            "correlation": found.correlation,
            "mean_absolute_difference": found.mean_absolute_difference,
        }
        correlation = "undefined" if found.correlation is None else f"{found.correlation:.3f}"
        lines = [
            f"{evaluator.name}: {found.count} outputs scored by both the judge and a person",
            f"  correlation {correlation}, mean absolute difference {found.mean_absolute_difference:.3f}",
        ]
    out.write(json.dumps(body) + "\n" if args.format == "json" else "\n".join(lines) + "\n")
    return 0


def main(argv: list[str] | None = None) -> int:
    args = parser().parse_args(argv)

    async def go() -> int:
        async with httpx.AsyncClient(base_url=args.gateway_url, timeout=60) as http:
            return await report(args, http)

    return asyncio.run(go())
