"""Evaluation routes TensorZero's UI and clients call: `POST /internal/evaluations/run` streams a
run as server-sent events (the same runner as `jobs/evaluate.py`, talking to this gateway in
process), and `POST /internal/evaluations/runs` records a run's row."""

from __future__ import annotations

import time
import uuid
from collections.abc import AsyncIterator
from typing import Any, Literal

import httpx
import orjson
from fastapi import FastAPI, Request
from fastapi.responses import Response
from pydantic import Field

from tensorzero_ray.api.http_io import json_response, parse_body, read_json, sse_response
from tensorzero_ray.config import Config
from tensorzero_ray.errors import InvalidRequest
from tensorzero_ray.evaluations.calibration import PAIRS_SQL
from tensorzero_ray.evaluations.catalog import EvaluationSetupError, select
from tensorzero_ray.evaluations.human_feedback import canonical_output
from tensorzero_ray.evaluations.runner import EvaluationRunner, EvaluationSpec
from tensorzero_ray.ids import uuid7_timestamp_ms
from tensorzero_ray.store.rows import InferenceEvaluationRunRow, clickhouse_time
from tensorzero_ray.types.inference import NullMeansDefault


class RunEvaluationRequest(NullMeansDefault):
    function_name: str | None = None
    evaluator_names: list[str] | None = None
    evaluation_name: str | None = None
    dataset_name: str | None = None
    datapoint_ids: list[str] | None = None
    variant_name: str
    concurrency: int = Field(default=1, ge=1, le=1000)
    inference_cache: Literal["on", "off", "read_only", "write_only"] = "on"
    max_datapoints: int | None = Field(default=None, ge=1)
    precision_targets: dict[str, float] = Field(default_factory=dict)


class HumanFeedbackQuery(NullMeansDefault):
    metric_name: str
    output: Any


RUNS_SQL = (
    "SELECT toString(uint_to_uuid(run_id_uint)) AS evaluation_run_id, evaluation_name, dataset_name, function_name, "
    "variant_names, source, toString(created_at) AS created_at, num_datapoints, status "
    "FROM InferenceEvaluationRuns FINAL "
    "ORDER BY run_id_uint DESC LIMIT {limit:UInt32} OFFSET {offset:UInt32}"
)


class AgreementQuery(NullMeansDefault):
    metric_name: str


class EvaluationRunRecord(NullMeansDefault):
    evaluation_run_id: str
    evaluation_name: str = ""
    function_name: str
    function_type: str
    dataset_name: str = ""
    variant_names: list[str]
    metrics: list[dict[str, Any]]
    source: str = "cli"
    num_datapoints: int = Field(default=0, ge=0)
    status: Literal["running", "complete", "stopped_early"] = "running"


def add_evaluation_routes(app: FastAPI, config: Config, observability) -> None:
    @app.post("/internal/evaluations/runs")
    async def record_run(http: Request) -> Response:
        record = parse_body(EvaluationRunRecord, await read_json(http))
        try:
            run_id = uuid.UUID(record.evaluation_run_id)
        except ValueError:
            raise InvalidRequest(f"Invalid evaluation run id: `{record.evaluation_run_id}`") from None
        if observability is not None:
            await observability.record(
                [
                    InferenceEvaluationRunRow(
                        run_id_uint=str(run_id.int),
                        evaluation_name=record.evaluation_name,
                        function_name=record.function_name,
                        function_type=record.function_type,
                        dataset_name=record.dataset_name,
                        variant_names=record.variant_names,
                        metrics=orjson.dumps(record.metrics).decode(),
                        source=record.source,
                        num_datapoints=record.num_datapoints,
                        status=record.status,
                        created_at=clickhouse_time(uuid7_timestamp_ms(run_id) / 1000),
                        updated_at=clickhouse_time(time.time()),
                    )
                ]
            )
        return json_response({"evaluation_run_id": record.evaluation_run_id})

    @app.get("/internal/evaluations/runs")
    async def list_runs(limit: int = 100, offset: int = 0) -> Response:
        rows = []
        if observability is not None:
            rows = await observability.query(RUNS_SQL, {"limit": max(0, min(limit, 10_000)), "offset": max(0, offset)})
        return json_response({"runs": [{**row, "variant_name": (row.pop("variant_names") or [""])[0]} for row in rows]})

    @app.post("/internal/evaluations/datapoints/{datapoint_id}/get_human_feedback")
    async def get_human_feedback(datapoint_id: str, http: Request) -> Response:
        request = parse_body(HumanFeedbackQuery, await read_json(http))
        try:
            datapoint = uuid.UUID(datapoint_id)
        except ValueError:
            raise InvalidRequest(f"Invalid datapoint id: `{datapoint_id}`") from None
        rows = []
        if observability is not None:
            rows = await observability.query(
                "SELECT value, toString(feedback_id) AS feedback, toString(evaluator_inference_id) AS judge "
                "FROM StaticEvaluationHumanFeedback "
                "WHERE metric_name = {m:String} AND datapoint_id = {d:UUID} AND output = {o:String} "
                "ORDER BY toUInt128(feedback_id) DESC LIMIT 1",
                {"m": request.metric_name, "d": datapoint, "o": canonical_output(request.output)},
            )
        found = None
        if rows:
            row = rows[0]
            found = {
                "value": orjson.loads(row["value"]),
                "feedback_id": row["feedback"],
                "evaluator_inference_id": row["judge"],
            }
        return json_response({"feedback": found})

    @app.post("/internal/evaluations/judge_agreement")
    async def judge_agreement(http: Request) -> Response:
        """A judge's scores paired with people's scores of the same inferences."""
        request = parse_body(AgreementQuery, await read_json(http))
        metric = config.metrics.get(request.metric_name)
        if metric is None:
            raise InvalidRequest(f"Unknown metric: {request.metric_name}")
        table = "BooleanMetricFeedback" if metric.type == "boolean" else "FloatMetricFeedback"
        rows = []
        if observability is not None:
            rows = await observability.query(PAIRS_SQL.format(table=table), {"m": request.metric_name})
        return json_response({"value_type": metric.type, "pairs": rows})

    @app.post("/internal/evaluations/run")
    async def run_evaluation(http: Request) -> Response:
        request = parse_body(RunEvaluationRequest, await read_json(http))
        spec = _spec(config, request)
        return sse_response(_events(app, spec, request))


def _spec(config: Config, request: RunEvaluationRequest) -> EvaluationSpec:
    try:
        function_name, evaluators = select(
            config,
            function_name=request.function_name,
            evaluator_names=request.evaluator_names,
            evaluation_name=request.evaluation_name,
        )
    except EvaluationSetupError as exc:
        raise InvalidRequest(str(exc)) from None
    if request.variant_name not in config.functions[function_name].variants:
        raise InvalidRequest(f"Unknown variant `{request.variant_name}` of `{function_name}`")
    return EvaluationSpec(
        function_name=function_name,
        evaluators=evaluators,
        variant_name=request.variant_name,
        dataset_name=request.dataset_name,
        datapoint_ids=request.datapoint_ids,
        evaluation_name=request.evaluation_name,
        concurrency=request.concurrency,
        max_datapoints=request.max_datapoints,
        inference_cache=request.inference_cache,
        precision_targets=request.precision_targets,
        source="ui",
        function_type=config.functions[function_name].type,
    )


async def _events(app: FastAPI, spec: EvaluationSpec, request: RunEvaluationRequest) -> AsyncIterator[bytes]:
    def event(body: dict) -> bytes:
        return b"data: " + orjson.dumps(body, default=str) + b"\n\n"

    transport = httpx.ASGITransport(app=app)
    async with httpx.AsyncClient(transport=transport, base_url="http://gateway", timeout=300) as client:
        runner = EvaluationRunner(client, spec)
        started = time.monotonic()
        try:
            async for record in runner.run():
                if "num_datapoints" in record:
                    yield event(
                        {
                            "type": "start",
                            "evaluation_run_id": runner.run_id,
                            "num_datapoints": record["num_datapoints"],
                            "evaluation_name": spec.evaluation_name or spec.function_name,
                            "dataset_name": spec.dataset_name,
                            "variant_name": spec.variant_name,
                        }
                    )
                elif record["type"] == "success":
                    elapsed = int((time.monotonic() - started) * 1000)
                    yield event({**record, "evaluation_run_id": runner.run_id, "processing_time_ms": elapsed})
                else:
                    yield event({**record, "evaluation_run_id": runner.run_id})
        except EvaluationSetupError as exc:
            yield event({"type": "fatal_error", "evaluation_run_id": runner.run_id, "message": str(exc)})
            return
        yield event({"type": "complete", "evaluation_run_id": runner.run_id})
