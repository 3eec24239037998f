"""One evaluation run: every datapoint of a dataset through a pinned variant via the gateway,
each evaluator's score stored as feedback, statistics as TensorZero reports them (spec §7).

The runner only talks HTTP to a gateway, so the same code runs from a shell, inside a Ray job
or in a test against an in-process gateway."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from typing import Any

import httpx

from tensorzero_ray.config.functions import LlmJudgeEvaluator
from tensorzero_ray.evaluations.catalog import EvaluationSetupError, Evaluator, judge_input
from tensorzero_ray.evaluations.human_feedback import DERIVED_TAG
from tensorzero_ray.evaluations.scoring import heuristic_score
from tensorzero_ray.ids import uuid7
from tensorzero_ray.statistics import ScoreSummary, summarize

PAGE = 1000
# Stands for the judge's inference when a person's earlier score was reused instead.
HUMAN = "human"


@dataclass
class EvaluationSpec:
    function_name: str
    evaluators: list[Evaluator]
    variant_name: str
    dataset_name: str | None = None
    datapoint_ids: list[str] | None = None
    evaluation_name: str | None = None
    concurrency: int = 1
    max_datapoints: int | None = None
    inference_cache: str = "on"
    precision_targets: dict[str, float] = field(default_factory=dict)
    tags: dict[str, str] = field(default_factory=dict)
    source: str = "cli"
    function_type: str = "chat"
    # A variant not in the config (a prompt search's candidate), run under `variant_name`.
    dynamic_variant: dict[str, Any] | None = None


@dataclass
class RunSummary:
    evaluation_run_id: str
    num_datapoints: int
    completed: int = 0
    errors: int = 0
    stopped_early: bool = False
    scores: dict[str, list[float]] = field(default_factory=dict)

    def statistics(self, evaluators: list[Evaluator]) -> dict[str, ScoreSummary | None]:
        return {e.name: summarize(self.scores.get(e.name, []), e.boolean) for e in evaluators}


class EvaluationRunner:
    def __init__(self, client: httpx.AsyncClient, spec: EvaluationSpec, run_id: str | None = None):
        self.client = client
        self.spec = spec
        self.run_id = run_id or str(uuid7())
        self.summary = RunSummary(self.run_id, 0)

    async def datapoints(self) -> list[dict[str, Any]]:
        try:
            return await self._datapoints()
        except GatewayFailure as exc:
            raise EvaluationSetupError(f"Could not read the datapoints: {exc}") from None

    async def _datapoints(self) -> list[dict[str, Any]]:
        spec = self.spec
        if (spec.dataset_name is None) == (spec.datapoint_ids is None):
            raise EvaluationSetupError("exactly one of --dataset-name or --datapoint-ids is required")
        if spec.datapoint_ids is not None:
            found = await self._post("/v1/datasets/get_datapoints", {"ids": spec.datapoint_ids})
            points = found["datapoints"]
            missing = sorted(set(spec.datapoint_ids) - {p["id"] for p in points})
            if missing:
                raise EvaluationSetupError(f"Unknown datapoint `{missing[0]}`")
        else:
            points = []
            limit = spec.max_datapoints or 10**9
            while len(points) < limit:
                body = {
                    "function_name": spec.function_name,
                    "limit": min(PAGE, limit - len(points)),
                    "offset": len(points),
                }
                page = (await self._post(f"/v1/datasets/{spec.dataset_name}/list_datapoints", body))["datapoints"]
                points += page
                if len(page) < body["limit"]:
                    break
            if not points:
                raise EvaluationSetupError(
                    f"Dataset `{spec.dataset_name}` has no datapoints for function `{spec.function_name}`"
                )
        wrong = [p["id"] for p in points if p["function_name"] != spec.function_name]
        if wrong:
            raise EvaluationSetupError(
                f"Datapoint `{wrong[0]}` belongs to another function than `{spec.function_name}`"
            )
        return points

    async def run(self) -> AsyncIterator[dict[str, Any]]:
        """JSONL records as TensorZero's runner writes them: the run header, then one record per
        datapoint as it finishes. Stops early once every targeted evaluator is precise enough."""
        points = await self.datapoints()
        await self.record_run([self.spec.variant_name], len(points))
        yield {"evaluation_run_id": self.run_id, "num_datapoints": len(points)}
        async for record in self.evaluate(points):
            yield record
        await self.record_run(
            [self.spec.variant_name], len(points), "stopped_early" if self.summary.stopped_early else "complete"
        )

    async def record_run(self, variant_names: list[str], num_datapoints: int, status: str = "running") -> None:
        """The run's row (which function, dataset, variants and metrics), for the UI's lists;
        recorded again once the run ends, so one that never does shows as incomplete."""
        spec = self.spec
        body = {
            "evaluation_run_id": self.run_id,
            "evaluation_name": spec.evaluation_name or "",
            "function_name": spec.function_name,
            "function_type": spec.function_type,
            "dataset_name": spec.dataset_name or "",
            "variant_names": variant_names,
            "metrics": [
                {
                    "name": e.metric_name,
                    "evaluator_name": e.name,
                    "value_type": "boolean" if e.boolean else "float",
                    "optimize": e.optimize,
                }
                for e in spec.evaluators
            ],  # fmt: skip
            "source": spec.source,
            "num_datapoints": num_datapoints,
            "status": status,
        }
        try:
            await self._post("/internal/evaluations/runs", body)
        except GatewayFailure as exc:
            raise EvaluationSetupError(f"Could not record the run: {exc}") from None

    async def evaluate(self, points: list[dict[str, Any]]) -> AsyncIterator[dict[str, Any]]:
        """Records for these datapoints as they finish (a sweep gives each worker a share)."""
        self.summary.num_datapoints += len(points)
        gate = asyncio.Semaphore(max(1, self.spec.concurrency))
        done: asyncio.Queue = asyncio.Queue()

        async def one(point: dict) -> None:
            async with gate:
                try:
                    record = await self._evaluate(point)
                except Exception as exc:  # noqa: BLE001 - a datapoint that breaks is reported, the run goes on
                    record = {"type": "error", "datapoint_id": point["id"], "message": f"{type(exc).__name__}: {exc}"}
                await done.put(record)

        tasks = [asyncio.create_task(one(point)) for point in points]
        try:
            for _ in points:
                record = await done.get()
                self._count(record)
                yield record
                if self._precise_enough():
                    self.summary.stopped_early = True
                    break
        finally:
            for task in tasks:
                task.cancel()
            await asyncio.gather(*tasks, return_exceptions=True)

    def _count(self, record: dict) -> None:
        if record["type"] == "error":
            self.summary.errors += 1
            return
        self.summary.completed += 1
        for name, value in record["evaluations"].items():
            if value is not None:
                self.summary.scores.setdefault(name, []).append(float(value))

    def _precise_enough(self) -> bool:
        targets = self.spec.precision_targets
        if not targets:
            return False
        stats = self.summary.statistics(self.spec.evaluators)
        return all(stats.get(name) is not None and stats[name].half_width <= target for name, target in targets.items())

    async def _evaluate(self, point: dict) -> dict[str, Any]:
        try:
            response = await self._infer(point)
        except GatewayFailure as exc:
            return {"type": "error", "datapoint_id": point["id"], "message": str(exc)}
        output = response.get("output", response.get("content"))
        evaluations: dict[str, Any] = {}
        errors: dict[str, str] = {}

        async def score(evaluator: Evaluator) -> None:
            try:
                value, judge_id = await self._score(evaluator, point, output)
            except GatewayFailure as exc:
                errors[evaluator.name] = str(exc)
                return
            evaluations[evaluator.name] = value
            if value is not None:
                await self._feedback(evaluator, point, response["inference_id"], value, judge_id)

        try:
            await asyncio.gather(*(score(e) for e in self.spec.evaluators))
        except GatewayFailure as exc:
            errors.setdefault("feedback", str(exc))
        return {
            "type": "success",
            "datapoint": point,
            "response": response,
            "evaluations": {e.name: evaluations.get(e.name) for e in self.spec.evaluators},
            "evaluator_errors": errors,
        }

    def _tags(self, point: dict) -> dict[str, str]:
        tags = {
            **self.spec.tags,
            "tensorzero::evaluation_run_id": self.run_id,
            "tensorzero::datapoint_id": point["id"],
        }
        if self.spec.dataset_name is not None:
            tags["tensorzero::dataset_name"] = self.spec.dataset_name
        if self.spec.evaluation_name is not None:
            tags["tensorzero::evaluation_name"] = self.spec.evaluation_name
        return tags

    async def _infer(self, point: dict) -> dict[str, Any]:
        body: dict[str, Any] = {
            "function_name": self.spec.function_name,
            "variant_name": self.spec.variant_name,
            "input": point["input"],
            "internal": True,
            "tags": self._tags(point),
            "cache_options": {"enabled": self.spec.inference_cache},
        }
        if self.spec.dynamic_variant is not None:
            body["internal_dynamic_variant_config"] = self.spec.dynamic_variant
        for key in ("additional_tools", "allowed_tools", "tool_choice", "parallel_tool_calls", "output_schema"):
            if point.get(key) is not None:
                body[key] = point[key]
        return await self._post("/inference", body)

    async def _score(self, evaluator: Evaluator, point: dict, output: Any) -> tuple[Any, str | None]:
        if not isinstance(evaluator.config, LlmJudgeEvaluator):
            return heuristic_score(evaluator.config, point.get("output"), output), None
        judge = evaluator.config
        reference = point.get("output")
        if judge.include.reference_output and reference is None:
            return None, None
        human = await self._post(
            f"/internal/evaluations/datapoints/{point['id']}/get_human_feedback",
            {"metric_name": evaluator.metric_name, "output": output},
        )
        if human["feedback"] is not None:
            # A person already scored this very output: their verdict, not the judge's.
            return human["feedback"]["value"], HUMAN

        answer = await self._post(
            "/inference",
            {
                "function_name": evaluator.judge_function,
                "input": judge_input(judge, point["input"], output, reference),
                "internal": True,
                "tags": {**self._tags(point), "tensorzero::evaluator_name": evaluator.name},
            },
        )
        parsed = (answer.get("output") or {}).get("parsed")
        if not isinstance(parsed, dict) or "score" not in parsed:
            raise GatewayFailure(f"judge `{evaluator.name}` answered outside its schema: {answer.get('output')}")
        return parsed["score"], answer["inference_id"]

    async def _feedback(self, evaluator: Evaluator, point: dict, inference_id: str, value: Any, judge_id: str | None):
        tags = {**self._tags(point), "tensorzero::evaluator_name": evaluator.name}
        if judge_id == HUMAN:
            tags[DERIVED_TAG] = "true"
        elif judge_id is not None:
            tags["tensorzero::evaluator_inference_id"] = judge_id
        await self._post(
            "/feedback",
            {
                "metric_name": evaluator.metric_name,
                "inference_id": inference_id,
                "value": value,
                "internal": True,
                "tags": tags,
            },
        )

    async def _post(self, path: str, body: dict) -> dict[str, Any]:
        try:
            response = await self.client.post(path, json=body)
        except httpx.HTTPError as exc:
            raise GatewayFailure(f"{path}: {type(exc).__name__}: {exc}") from None
        if response.status_code >= 400:
            try:
                message = response.json().get("error", response.text)
            except ValueError:
                message = response.text
            raise GatewayFailure(f"{path}: {response.status_code}: {message}")
        return response.json()


class GatewayFailure(Exception):
    """A call to the gateway failed; the datapoint or evaluator records it and the run goes on."""
