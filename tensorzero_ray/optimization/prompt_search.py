"""`jobs/prompt_optimization.py`: a MIPRO-style search over one function's prompt, on Ray.

A proposal model (any model of the config, through the gateway) rewrites the baseline
variant's system template from training examples; few-shot example sets are drawn from the
training split; optuna's TPE sampler searches (instruction, example set). Each trial runs its
candidate as a dynamic variant on a minibatch of the training split, in steps on Ray tasks,
scored by the function's evaluator; optuna's median pruner stops weak trials after a step.
The best few are then scored on the whole validation split beside the baseline, paired on
the same datapoints. The study lives in the output folder (optuna's journal), so a stopped
run resumes. Every inference is stored, internal and tagged `prompt_optimization_run`; the
config is written only with --write-config. Exit status 2 when it cannot start."""

from __future__ import annotations

import argparse
import asyncio
import json
import random
import sys
from dataclasses import dataclass, field
from functools import partial
from pathlib import Path
from typing import Any

import httpx

from tensorzero_ray.config import ConfigError, load_config
from tensorzero_ray.config.files import TextFile
from tensorzero_ray.config.functions import JsonFunctionConfig
from tensorzero_ray.config.variants import ChatCompletionVariantConfig, PathRef
from tensorzero_ray.evaluations.catalog import EvaluationSetupError, Evaluator, select
from tensorzero_ray.evaluations.runner import EvaluationRunner, EvaluationSpec
from tensorzero_ray.optimization.prompt_candidates import (
    ProposalError,
    candidate_config,
    current_instruction,
    example_sets,
    propose_instructions,
    with_examples,
)
from tensorzero_ray.optimization.prompt_report import write_report
from tensorzero_ray.optimization.snippet import snippet_home, variant_snippet, write_snippet
from tensorzero_ray.statistics import PairedDifference, ScoreSummary, paired_difference, summarize

CANDIDATES_FILE = "candidates.json"
STUDY_FILE = "study.journal"


class SetupError(Exception):
    pass


def parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="prompt_optimization", description=__doc__.split("\n\n")[0])
    p.add_argument("--gateway-url", default="http://127.0.0.1:8000")
    p.add_argument("--config", required=True, help="the tensorzero.toml (path or glob) the gateway runs")
    p.add_argument("--function-name", required=True)
    p.add_argument("--variant-name", required=True, help="the chat_completion variant to improve on")
    p.add_argument("--dataset-name", required=True, help="datapoints with reference outputs")
    p.add_argument("--evaluator", help="the function's evaluator to maximise (default: its first)")
    p.add_argument("--proposal-model", required=True, help="a model of the config that writes instructions")
    p.add_argument("--output", required=True, type=Path, help="a folder: study, templates, snippet, report")
    p.add_argument("--new-variant-name", help="default: <variant>_optimized")
    p.add_argument("--instructions", type=int, default=6, help="instructions to propose (beside the current)")
    p.add_argument("--example-sets", type=int, default=4, help="few-shot sets (the first has no examples)")
    p.add_argument("--examples-per-set", type=int, default=3)
    p.add_argument("--trials", type=int, default=16)
    p.add_argument("--minibatch", type=int, default=8, help="training datapoints per trial")
    p.add_argument("--steps", type=int, default=2, help="pruning checkpoints per trial")
    p.add_argument("--val-fraction", type=float, default=0.5)
    p.add_argument("--top", type=int, default=3, help="trials scored on the validation split")
    p.add_argument("--workers", type=int, default=2, help="Ray tasks at a time (trials evaluated in parallel)")
    p.add_argument("--cpus-per-worker", type=float, default=0.25)
    p.add_argument("--concurrency", type=int, default=8, help="inferences in flight per worker")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--inference-cache", choices=("on", "off", "read_only", "write_only"), default="on",
                   help="a candidate seen before is answered from the cache (as evaluations are)")  # fmt: skip
    p.add_argument("--write-config", type=Path, help="append the new variant to this config file")
    return p


@dataclass
class Plan:
    """Everything the search needs, fixed before the first trial (and saved for a resume)."""

    function_name: str
    function: Any
    baseline_name: str
    baseline: ChatCompletionVariantConfig
    objective: Evaluator
    train: list[dict[str, Any]]
    validation: list[dict[str, Any]]
    instructions: list[str]
    example_sets: list[list[dict[str, Any]]]
    run_id: str
    prefix: str
    inference_cache: str = "on"
    proposal_errors: list[str] = field(default_factory=list)

    def system_text(self, instruction: int, examples: int) -> str:
        return with_examples(self.instructions[instruction], self.example_sets[examples])

    def spec(self, variant_name: str, dynamic: dict | None, concurrency: int) -> EvaluationSpec:
        return EvaluationSpec(
            function_name=self.function_name,
            evaluators=[self.objective],
            variant_name=variant_name,
            concurrency=concurrency,
            inference_cache=self.inference_cache,
            tags={"prompt_optimization_run": self.run_id},
            source="prompt_optimization",
            dynamic_variant=dynamic,
        )


def evaluate_points(gateway_url: str, spec: EvaluationSpec, points: list[dict]) -> list[float | None]:
    """One Ray task: the candidate on these datapoints, the objective's score for each (None
    where the inference or the evaluator failed)."""

    async def go() -> list[float | None]:
        async with httpx.AsyncClient(base_url=gateway_url, timeout=300) as http:
            runner = EvaluationRunner(http, spec)
            scores: dict[str, float | None] = {}
            async for record in runner.evaluate(points):
                if record["type"] == "success":
                    value = record["evaluations"].get(spec.evaluators[0].name)
                    scores[record["datapoint"]["id"]] = None if value is None else float(value)
            return [scores.get(point["id"]) for point in points]

    return asyncio.run(go())


async def prepare(args, http: httpx.AsyncClient) -> Plan:
    try:
        config = load_config(args.config)
    except ConfigError as exc:
        raise SetupError(f"cannot load {args.config}: {exc}") from None
    function = config.functions.get(args.function_name)
    if function is None:
        raise SetupError(f"Unknown function `{args.function_name}`")
    baseline = function.variants.get(args.variant_name)
    if not isinstance(baseline, ChatCompletionVariantConfig):
        raise SetupError(
            f"`{args.variant_name}` is not a chat_completion variant of `{args.function_name}`"
            if baseline is not None
            else f"Unknown variant `{args.variant_name}` of function `{args.function_name}`"
        )
    if not config.has_model(args.proposal_model):
        raise SetupError(f"Unknown proposal model `{args.proposal_model}`")
    try:
        _, evaluators = select(
            config, function_name=args.function_name, evaluator_names=[args.evaluator] if args.evaluator else None
        )
    except EvaluationSetupError as exc:
        raise SetupError(str(exc)) from None
    objective = evaluators[0]
    spec = EvaluationSpec(function_name=args.function_name, evaluators=[objective], variant_name=args.variant_name,
                          dataset_name=args.dataset_name,
                          function_type="json" if isinstance(function, JsonFunctionConfig) else "chat")  # fmt: skip
    try:
        points = await EvaluationRunner(http, spec).datapoints()
    except EvaluationSetupError as exc:
        raise SetupError(str(exc)) from None
    random.Random(args.seed).shuffle(points)
    n_val = max(2, round(len(points) * args.val_fraction))
    validation, train = points[:n_val], points[n_val:]
    if len(train) < args.minibatch:
        raise SetupError(
            f"Dataset `{args.dataset_name}` has {len(points)} datapoints: {n_val} go to validation, which leaves "
            f"{len(train)} for training, fewer than --minibatch {args.minibatch} (lower it or --val-fraction)"
        )
    args.output.mkdir(parents=True, exist_ok=True)
    saved = args.output / CANDIDATES_FILE
    prefix = f"{args.variant_name}_search"
    plan = partial(
        Plan, function_name=args.function_name, function=function, baseline_name=args.variant_name,
        baseline=baseline, objective=objective, train=train, validation=validation, prefix=prefix,
        inference_cache=args.inference_cache,
    )  # fmt: skip
    if saved.exists():
        state = json.loads(saved.read_text())
        by_id = {p["id"]: p for p in points}
        sets = [[by_id[i] for i in ids if i in by_id] for ids in state["example_sets"]]
        return plan(instructions=state["instructions"], example_sets=sets, run_id=state["run_id"])
    run_id = f"{args.function_name}-{random.Random().getrandbits(48):012x}"
    try:
        instructions, errors = await propose_instructions(
            http, model=args.proposal_model, current=current_instruction(baseline), train=train,
            count=args.instructions, seed=args.seed, tags={"prompt_optimization_run": run_id},
        )  # fmt: skip
    except ProposalError as exc:
        raise SetupError(str(exc)) from None
    sets = example_sets(train, args.example_sets, args.examples_per_set, args.seed)
    saved.write_text(json.dumps({
        "run_id": run_id, "instructions": instructions, "example_sets": [[p["id"] for p in s] for s in sets],
    }, indent=1))  # fmt: skip
    return plan(instructions=instructions, example_sets=sets, run_id=run_id, proposal_errors=errors)


@dataclass
class TrialRun:
    trial: Any
    chunks: list[list[dict]]
    step: int = 0
    scores: list[float | None] = field(default_factory=list)


def search(args, plan: Plan, log) -> Any:
    """The optuna study, trials evaluated `--workers` at a time on Ray tasks."""
    import optuna
    import ray
    from optuna.storages import JournalStorage
    from optuna.storages.journal import JournalFileBackend
    from optuna.trial import TrialState

    optuna.logging.set_verbosity(optuna.logging.WARNING)
    storage = JournalStorage(JournalFileBackend(str(args.output / STUDY_FILE)))
    study = optuna.create_study(
        study_name="prompt_search", storage=storage, direction="maximize", load_if_exists=True,
        sampler=optuna.samplers.TPESampler(seed=args.seed, n_startup_trials=min(4, args.trials)),
        pruner=optuna.pruners.MedianPruner(n_startup_trials=2, n_warmup_steps=0),
    )  # fmt: skip
    for stale in study.get_trials(deepcopy=False, states=(TrialState.RUNNING,)):
        study.tell(stale.number, state=TrialState.FAIL)  # a run stopped midway left it open
    done = len(study.get_trials(deepcopy=False))
    if done:
        log(f"resuming: {done} trial(s) already in {args.output / STUDY_FILE}")
    remote = ray.remote(num_cpus=args.cpus_per_worker, max_retries=0)(evaluate_points)
    active: dict[Any, TrialRun] = {}
    asked = done

    def launch(run: TrialRun) -> None:
        instruction, examples = run.trial.params["instruction"], run.trial.params["examples"]
        name = f"{plan.prefix}_t{run.trial.number}"
        dynamic = candidate_config(plan.baseline, plan.system_text(instruction, examples))
        spec = plan.spec(name, dynamic, args.concurrency)
        active[remote.remote(args.gateway_url, spec, run.chunks[run.step])] = run

    while active or asked < args.trials:
        while asked < args.trials and len(active) < args.workers:
            trial = study.ask()
            trial.suggest_categorical("instruction", list(range(len(plan.instructions))))
            trial.suggest_categorical("examples", list(range(len(plan.example_sets))))
            batch = random.Random(args.seed * 7919 + trial.number).sample(plan.train, args.minibatch)
            size = -(-len(batch) // args.steps)
            launch(TrialRun(trial, [batch[i : i + size] for i in range(0, len(batch), size)]))
            asked += 1
        ready, _ = ray.wait(list(active), num_returns=1)
        run = active.pop(ready[0])
        number = run.trial.number
        try:
            run.scores += ray.get(ready[0])
        except Exception as exc:  # noqa: BLE001 - a trial that breaks is recorded as failed, the study goes on
            study.tell(run.trial, state=TrialState.FAIL)
            log(f"trial {number}: failed: {type(exc).__name__}: {exc}")
            continue
        valid = [s for s in run.scores if s is not None]
        if not valid:
            study.tell(run.trial, state=TrialState.FAIL)
            log(f"trial {number}: failed: every inference or score failed")
            continue
        value = sum(valid) / len(valid)
        run.trial.report(value, run.step)
        if run.step + 1 < len(run.chunks):
            if run.trial.should_prune():
                study.tell(run.trial, state=TrialState.PRUNED)
                log(f"trial {number}: pruned at {value:.3f} after step {run.step + 1}")
                continue
            run.step += 1
            launch(run)
            continue
        study.tell(run.trial, value)
        log(f"trial {number}: {value:.3f} (instruction {run.trial.params['instruction']}, "
            f"examples {run.trial.params['examples']}); best so far {study.best_value:.3f}")  # fmt: skip
    return study


@dataclass
class Validated:
    name: str
    params: dict[str, int] | None
    scores: list[float | None]
    summary: ScoreSummary | None
    versus_baseline: PairedDifference | None = None


def validate(args, plan: Plan, study) -> tuple[Validated, list[Validated]]:
    """The baseline and the best `--top` distinct candidates on the whole validation split."""
    import ray
    from optuna.trial import TrialState

    ranked = sorted(study.get_trials(deepcopy=False, states=(TrialState.COMPLETE,)), key=lambda t: -t.value)
    chosen: list[dict[str, int]] = []
    for trial in ranked:
        if trial.params not in chosen and len(chosen) < args.top:
            chosen.append(dict(trial.params))
    remote = ray.remote(num_cpus=args.cpus_per_worker, max_retries=0)(evaluate_points)
    points = plan.validation
    size = -(-len(points) // args.workers)
    shards = [points[i : i + size] for i in range(0, len(points), size)]
    jobs: list[tuple[str, dict | None, dict | None]] = [(plan.baseline_name, None, None)]
    for index, params in enumerate(chosen):
        dynamic = candidate_config(plan.baseline, plan.system_text(params["instruction"], params["examples"]))
        jobs.append((f"{plan.prefix}_top{index}", params, dynamic))
    refs = {
        name: [remote.remote(args.gateway_url, plan.spec(name, dynamic, args.concurrency), shard) for shard in shards]
        for name, _, dynamic in jobs
    }
    results = []
    for name, params, _ in jobs:
        scores = [score for ref in refs[name] for score in ray.get(ref)]
        valid = [s for s in scores if s is not None]
        results.append(Validated(name, params, scores, summarize(valid, plan.objective.boolean)))
    baseline, candidates = results[0], results[1:]
    for candidate in candidates:
        pairs = [(b, c) for b, c in zip(baseline.scores, candidate.scores) if b is not None and c is not None]
        candidate.versus_baseline = paired_difference(pairs)
    return baseline, candidates


def write_variant(args, plan: Plan, winner: Validated) -> tuple[str, str]:
    """The winner's system template as a file, and the variant's config snippet naming it."""
    name = args.new_variant_name or f"{plan.baseline_name}_optimized"
    template_path = args.output / "templates" / name / "system.minijinja"
    template_path.parent.mkdir(parents=True, exist_ok=True)
    text = plan.system_text(winner.params["instruction"], winner.params["examples"])
    template_path.write_text(text)
    written = TextFile(path=str(template_path.resolve()), contents=text)
    if "system" in plan.baseline.templates:
        templates = {**plan.baseline.templates, "system": PathRef(path=written)}
        variant = plan.baseline.model_copy(update={"templates": templates})
    else:
        variant = plan.baseline.model_copy(update={"system_template": written})
    home = snippet_home(args.config, args.write_config)
    sampling = {
        key: value
        for key in ("temperature", "max_tokens", "top_p", "seed", "presence_penalty", "frequency_penalty")
        if (value := getattr(plan.baseline, key)) is not None
    }
    snippet = variant_snippet(
        home=home, function_name=plan.function_name, function=plan.function, variant_name=name,
        model_name=plan.baseline.model, template=variant, weight=0.0, sampling=sampling,
    )  # fmt: skip
    return name, snippet


def main(argv: list[str] | None = None) -> int:
    args = parser().parse_args(argv)
    if min(args.workers, args.concurrency, args.trials, args.minibatch, args.steps, args.top) < 1:
        print("error: --workers, --concurrency, --trials, --minibatch, --steps and --top must be at least 1",
              file=sys.stderr)  # fmt: skip
        return 2
    if not 0 < args.val_fraction < 1:
        print("error: --val-fraction must be between 0 and 1", file=sys.stderr)
        return 2

    def log(line: str) -> None:
        print(line, file=sys.stderr, flush=True)

    async def setup() -> Plan:
        async with httpx.AsyncClient(base_url=args.gateway_url, timeout=300) as http:
            return await prepare(args, http)

    try:
        plan = asyncio.run(setup())
    except SetupError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    except httpx.HTTPError as exc:
        print(f"error: could not reach the gateway at {args.gateway_url}: {exc}", file=sys.stderr)
        return 2
    for error in plan.proposal_errors:
        log(f"a proposal failed (the search goes on without it): {error}")
    log(f"{len(plan.instructions)} instructions x {len(plan.example_sets)} example sets; "
        f"{len(plan.train)} training and {len(plan.validation)} validation datapoints; run {plan.run_id}")  # fmt: skip
    from tensorzero_ray.cluster import cpu_shortfall

    short = cpu_shortfall(args.workers, args.cpus_per_worker, "--workers or --cpus-per-worker")
    if short is not None:
        print(f"error: not enough CPUs for the trial tasks: {short}", file=sys.stderr)
        return 2
    study = search(args, plan, log)
    from optuna.trial import TrialState

    if not study.get_trials(deepcopy=False, states=(TrialState.COMPLETE,)):
        print("error: no trial completed; see the failures above", file=sys.stderr)
        return 1
    baseline, candidates = validate(args, plan, study)
    winner = max(candidates, key=lambda c: c.summary.mean if c.summary else float("-inf"))
    name, snippet = write_variant(args, plan, winner)
    (args.output / "variant.toml").write_text(snippet)
    report = write_report(args.output, plan, study, baseline, candidates, winner, name)
    if args.write_config is not None:
        write_snippet(args.write_config, snippet)
        log(f"config snippet appended to {args.write_config}")
    print(report.splitlines()[0])
    print(f"report: {args.output / 'report.md'}; template and snippet in {args.output}")
    print("Add this variant to your config:\n")
    print(snippet)
    return 0
