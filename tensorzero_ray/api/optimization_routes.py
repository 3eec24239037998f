"""GEPA (spec §6.4): `POST /v1/optimization/gepa` checks the request against the config,
records the task and starts the GEPA job on the Ray cluster; `GET .../{task_id}` answers the
task's state. The job reads its task and reports back through the internal routes."""

from __future__ import annotations

import asyncio
import logging
import os
import sys
import uuid

import orjson
from fastapi import FastAPI, Request
from fastapi.responses import Response

from tensorzero_ray.api.http_io import json_response, parse_body, read_json
from tensorzero_ray.config import Config
from tensorzero_ray.config.functions import JsonFunctionConfig
from tensorzero_ray.config.variants import ChatCompletionVariantConfig
from tensorzero_ray.errors import InvalidRequest, NotFound, TensorZeroError, UnknownFunction, UnknownModel
from tensorzero_ray.ids import uuid7
from tensorzero_ray.store.optimization_tasks import latest_task_state, write_task_state
from tensorzero_ray.types.optimization import GepaRequest, GepaTask, TaskReport

logger = logging.getLogger(__name__)

GEPA = "gepa"
# Where the gateway submits the job: Ray's dashboard on this node unless told otherwise.
DASHBOARD_ENV = "TENSORZERO_RAY_DASHBOARD_URL"


class JobStartFailed(TensorZeroError):
    status_code = 503


def gepa_task(config: Config, request: GepaRequest) -> GepaTask:
    """The request checked against the config, with what the job needs from it."""
    function = config.functions.get(request.function_name)
    if function is None:
        raise UnknownFunction(request.function_name)
    for model in (request.analysis_model, request.mutation_model):
        if not config.has_model(model):
            raise UnknownModel(model)
    if request.evaluation_name is not None:
        evaluation = config.evaluations.get(request.evaluation_name)
        if evaluation is None or evaluation.function_name != request.function_name:
            raise InvalidRequest(f"Unknown evaluation `{request.evaluation_name}` for `{request.function_name}`")
        evaluators = evaluation.evaluators
    else:
        unknown = [name for name in request.evaluators or [] if name not in function.evaluators]
        if unknown:
            raise InvalidRequest(f"Unknown evaluator `{unknown[0]}` for function `{request.function_name}`")
        evaluators = {name: function.evaluators[name] for name in request.evaluators or []}
    names = request.initial_variants or list(function.variants)
    variants = {}
    for name in names:
        variant = function.variants.get(name)
        if not isinstance(variant, ChatCompletionVariantConfig):
            raise InvalidRequest(
                f"Initial variant `{name}` is not a chat_completion variant of `{request.function_name}`"
                if variant is not None
                else f"Unknown variant `{name}` of function `{request.function_name}`"
            )
        variants[name] = variant.model_dump(mode="json", exclude_none=True, exclude={"weight"})
    if not variants:
        raise InvalidRequest(f"Function `{request.function_name}` has no chat_completion variants to start from")
    return GepaTask(
        request=request,
        variants=variants,
        evaluators={name: e.model_dump(mode="json") for name, e in evaluators.items()},
        evaluation_name=request.evaluation_name,
        function_type="json" if isinstance(function, JsonFunctionConfig) else "chat",
    )


def _submit(entrypoint: str, task_id: str) -> str:
    from ray.job_submission import JobSubmissionClient

    client = JobSubmissionClient(os.environ.get(DASHBOARD_ENV, "http://127.0.0.1:8265"))
    return client.submit_job(entrypoint=entrypoint, submission_id=f"gepa-{task_id}")


def add_optimization_routes(app: FastAPI, config: Config, observability) -> None:
    def _stored():
        if observability is None:
            raise InvalidRequest("GEPA keeps its tasks in ClickHouse, and observability is disabled")
        return observability

    @app.post("/v1/optimization/gepa")
    async def start_gepa(http_request: Request) -> Response:
        request = parse_body(GepaRequest, await read_json(http_request))
        task = gepa_task(config, request)
        store = _stored()
        task_id = str(uuid7())
        serialized = task.model_dump_json()
        await write_task_state(store, task_id, GEPA, "pending", serialized, {"status": "pending", "progress": {}})
        gateway_url = str(http_request.base_url).rstrip("/")
        entrypoint = (
            f"{sys.executable} -m tensorzero_ray.optimization.gepa_job --gateway-url {gateway_url} --task-id {task_id}"
        )
        try:
            await asyncio.to_thread(_submit, entrypoint, task_id)
        except Exception as exc:  # noqa: BLE001 - any failure to reach Ray's job server is this error
            message = f"could not start the GEPA job on the Ray cluster: {type(exc).__name__}: {exc}"
            await write_task_state(store, task_id, GEPA, "error", serialized, {"status": "error", "error": message})
            raise JobStartFailed(message) from None
        return json_response({"task_id": task_id})

    @app.get("/v1/optimization/gepa/{task_id}")
    async def poll_gepa(task_id: str) -> Response:
        state = await _state(task_id)
        return json_response(state["report"])

    @app.get("/internal/optimization/tasks/{task_id}")
    async def read_task(task_id: str) -> Response:
        state = await _state(task_id)
        return json_response({"task": orjson.loads(state["task"]), "report": state["report"]})

    @app.post("/internal/optimization/tasks/{task_id}")
    async def report_task(task_id: str, http_request: Request) -> Response:
        report = parse_body(TaskReport, await read_json(http_request))
        state = await _state(task_id)
        body = report.model_dump(mode="json", exclude_none=True)
        await write_task_state(_stored(), task_id, GEPA, report.status, state["task"], body)
        return json_response({"ok": True})

    async def _state(task_id: str) -> dict:
        try:
            uuid.UUID(task_id)
        except ValueError:
            raise InvalidRequest(f"`task_id` is not a UUID: {task_id}") from None
        state = await latest_task_state(_stored(), task_id, GEPA)
        if state is None:
            raise NotFound(f"Optimization task {task_id} not found")
        return state
