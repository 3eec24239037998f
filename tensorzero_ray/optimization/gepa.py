"""GEPA (spec §6.4): evolve a function's templates with an analysis model that critiques
answers and a mutation model that rewrites templates, keeping an instance-wise Pareto
frontier over the validation split (each datapoint x evaluator is an instance; a variant on
the frontier is best on at least one). Parents are drawn in proportion to the instances they
lead; a child that Pareto-dominates its parent on the minibatch is scored on validation and
joins the frontier. Returns the new variants on the frontier, with their statistics."""

from __future__ import annotations

import copy
import math
import random
import re
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any

import httpx
import orjson
from pydantic import TypeAdapter

from tensorzero_ray.config.functions import EvaluatorConfig
from tensorzero_ray.evaluations.catalog import Evaluator
from tensorzero_ray.evaluations.runner import EvaluationRunner, EvaluationSpec
from tensorzero_ray.optimization.prompt_candidates import answer_text, input_text
from tensorzero_ray.types.optimization import GepaTask

EVALUATOR_CONFIG: TypeAdapter = TypeAdapter(EvaluatorConfig)
ROLES = ("system", "user", "assistant")
ANALYZE_SYSTEM = (
    "You review one answer of an LLM application. You see the application's templates, the input, the answer, "
    "the reference answer when there is one, and the scores the answer got. Say briefly what is wrong with the "
    "answer, if anything, and what in the templates should change so that answers score better."
)
MUTATE_SYSTEM = (
    "You rewrite the templates of an LLM application so that its answers score better. You see the current "
    "templates (a JSON object: template name -> text) and reviews of recent answers. Keep every {{ placeholder }}. "
    "Reply with one JSON object with the same keys and the new texts, nothing else."
)


class GepaError(Exception):
    pass


@dataclass
class Candidate:
    name: str
    config: dict[str, Any]
    initial: bool
    scores: dict[tuple[str, str], float] = field(default_factory=dict)


def templates_of(config: dict[str, Any]) -> dict[str, str]:
    found = {role: config[f"{role}_template"]["contents"] for role in ROLES if f"{role}_template" in config}
    found.update({name: ref["path"]["contents"] for name, ref in config.get("templates", {}).items()})
    return found


def with_templates(config: dict[str, Any], texts: dict[str, str]) -> dict[str, Any]:
    changed = copy.deepcopy(config)
    for name, text in texts.items():
        if name in changed.get("templates", {}):
            changed["templates"][name]["path"]["contents"] = text
        else:
            changed[f"{name}_template"] = {"path": f"gepa/{name}", "contents": text}
    return changed


def parse_templates(text: str, expected: set[str]) -> dict[str, str] | None:
    """The mutation model's JSON (a fenced block is unwrapped); None unless it gives texts
    for known templates only."""
    match = re.search(r"\{.*\}", text, re.S)
    try:
        data = orjson.loads(match.group(0)) if match else None
    except orjson.JSONDecodeError:
        return None
    if not isinstance(data, dict) or not data or not set(data) <= expected:
        return None
    if not all(isinstance(value, str) and value.strip() for value in data.values()):
        return None
    return data


class Gepa:
    def __init__(self, http: httpx.AsyncClient, task_id: str, task: GepaTask, progress: Callable[[dict], Awaitable]):
        self.http = http
        self.task_id = task_id
        self.task = task
        self.request = task.request
        self.progress = progress
        self.rng = random.Random(self.request.seed)
        self.evaluators = [
            Evaluator(name, EVALUATOR_CONFIG.validate_python(raw), self.request.function_name, task.evaluation_name)
            for name, raw in task.evaluators.items()
        ]
        self.tags = {"gepa_task": task_id}

    async def datapoints(self) -> tuple[list[dict], list[dict]]:
        request = self.request

        async def read(name: str) -> list[dict]:
            spec = self._spec("", None)
            spec.dataset_name, spec.max_datapoints = name, request.max_datapoints
            return await EvaluationRunner(self.http, spec).datapoints()

        if request.dataset_name is not None:
            points = await read(request.dataset_name)
            self.rng.shuffle(points)
            if len(points) < 2:
                raise GepaError(f"Dataset `{request.dataset_name}` has {len(points)} datapoint(s); the split needs 2")
            half = len(points) // 2
            return points[half:], points[:half]
        return await read(request.train_dataset_name), await read(request.val_dataset_name)

    def _spec(self, variant_name: str, dynamic: dict | None) -> EvaluationSpec:
        return EvaluationSpec(
            function_name=self.request.function_name,
            evaluators=self.evaluators,
            variant_name=variant_name,
            evaluation_name=self.task.evaluation_name,
            concurrency=self.request.max_concurrency,
            tags=self.tags,
            source="gepa",
            function_type=self.task.function_type,
            dynamic_variant=dynamic,
        )

    async def evaluate(self, candidate: Candidate, points: list[dict]) -> tuple[dict, list[dict]]:
        """(scores by (datapoint, evaluator), the records for the analysis)."""
        spec = self._spec(candidate.name, None if candidate.initial else candidate.config)
        scores: dict[tuple[str, str], float] = {}
        records = []
        async for record in EvaluationRunner(self.http, spec).evaluate(points):
            if record["type"] != "success":
                continue
            records.append(record)
            for evaluator, value in record["evaluations"].items():
                if value is not None:
                    scores[(record["datapoint"]["id"], evaluator)] = float(value)
        return scores, records

    def _signed(self, evaluator: str, value: float) -> float:
        optimize = next(e.optimize for e in self.evaluators if e.name == evaluator)
        return value if optimize == "max" else -value

    def leads(self, candidates: list[Candidate]) -> dict[str, int]:
        """How many instances each candidate is (one of) the best on; missing scores lose."""
        counts = {c.name: 0 for c in candidates}
        instances = {key for c in candidates for key in c.scores}
        for key in instances:
            values = {c.name: self._signed(key[1], c.scores[key]) for c in candidates if key in c.scores}
            best = max(values.values())
            for name, value in values.items():
                if value == best:
                    counts[name] += 1
        return counts

    def dominates(self, child: dict, parent: dict) -> bool:
        """Child at least as good on every evaluator's mean over the minibatch, better on one."""
        better = False
        for evaluator in self.evaluators:
            mine = [self._signed(evaluator.name, v) for (_, e), v in child.items() if e == evaluator.name]
            theirs = [self._signed(evaluator.name, v) for (_, e), v in parent.items() if e == evaluator.name]
            if not mine:
                return False
            a, b = sum(mine) / len(mine), sum(theirs) / len(theirs) if theirs else -math.inf
            if a < b:
                return False
            better = better or a > b
        return better

    async def _ask(self, model: str, system: str, text: str) -> str:
        body = {
            "model_name": model,
            "input": {"system": system, "messages": [{"role": "user", "content": text}]},
            "internal": True,
            "tags": self.tags,
        }
        if self.request.max_tokens is not None:
            body["params"] = {"chat_completion": {"max_tokens": self.request.max_tokens}}
        response = await self.http.post("/inference", json=body)
        if response.status_code != 200:
            raise GepaError(f"`{model}` failed: {response.status_code} {response.text[:300]}")
        return answer_text(response.json().get("content")).strip()

    async def mutate(self, parent: Candidate, records: list[dict]) -> dict[str, str] | None:
        templates = templates_of(parent.config)
        reviews = []
        for record in records:
            shown = (
                f"Templates: {orjson.dumps(templates).decode()}\n\nInput:\n{input_text(record['datapoint']['input'])}\n\n"
                f"Answer:\n{answer_text(record['response'].get('output', record['response'].get('content')))}\n\n"
                f"Reference:\n{answer_text(record['datapoint'].get('output'))}\n\n"
                f"Scores: {orjson.dumps(record['evaluations']).decode()}"
            )
            reviews.append(await self._ask(self.request.analysis_model, ANALYZE_SYSTEM, shown))
        ask = f"Current templates:\n{orjson.dumps(templates).decode()}\n\nReviews:\n" + "\n\n".join(
            f"- {review}" for review in reviews
        )
        if self.request.include_inference_for_mutation and records:
            first = records[0]
            ask += f"\n\nAn input it answered:\n{input_text(first['datapoint']['input'])}"
        return parse_templates(await self._ask(self.request.mutation_model, MUTATE_SYSTEM, ask), set(templates))

    async def run(self) -> dict[str, Any]:
        train, validation = await self.datapoints()
        candidates = [Candidate(name, config, True) for name, config in self.task.variants.items()]
        for candidate in candidates:
            candidate.scores, _ = await self.evaluate(candidate, validation)
        prefix = self.request.variant_prefix or "gepa"
        created = 0
        for iteration in range(self.request.max_iterations):
            await self.progress({"iteration": iteration, "max_iterations": self.request.max_iterations,
                                 "frontier": len(candidates)})  # fmt: skip
            leads = self.leads(candidates)
            pool = [c for c in candidates if leads[c.name] > 0] or candidates
            parent = self.rng.choices(pool, weights=[max(leads[c.name], 1) for c in pool])[0]
            batch = self.rng.sample(train, min(self.request.batch_size, len(train)))
            parent_scores, records = await self.evaluate(parent, batch)
            texts = await self.mutate(parent, records)
            if texts is None:
                continue
            child = Candidate(f"{prefix}_{created}", with_templates(parent.config, texts), False)
            created += 1
            child_scores, _ = await self.evaluate(child, batch)
            if self.dominates(child_scores, parent_scores):
                child.scores, _ = await self.evaluate(child, validation)
                candidates.append(child)
        leads = self.leads(candidates)
        kept = [c for c in candidates if not c.initial and leads[c.name] > 0]
        return {
            "variants": {c.name: c.config for c in kept},
            "statistics": {c.name: self.statistics(c) for c in candidates if c in kept or c.initial},
        }

    def statistics(self, candidate: Candidate) -> dict[str, dict[str, Any]]:
        out = {}
        for evaluator in self.evaluators:
            values = [v for (_, e), v in candidate.scores.items() if e == evaluator.name]
            count = len(values)
            mean = sum(values) / count if count else None
            stdev = (
                math.sqrt(sum((v - mean) ** 2 for v in values) / (count - 1))
                if count > 1 and mean is not None
                else None
            )
            out[evaluator.name] = {"mean": mean, "stdev": stdev, "count": count}
        return out
