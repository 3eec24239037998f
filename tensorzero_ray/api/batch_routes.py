"""Batch inference routes (spec §1.2): start a batch on the function's router, and poll it
through the router that serves the function the batch was started for."""

from __future__ import annotations

import uuid

from fastapi import FastAPI, Request
from fastapi.responses import Response

from tensorzero_ray.api.http_io import ErrorResponses, json_response, parse_body, parse_inference_request, read_json
from tensorzero_ray.errors import BatchInputValidation, BatchNotFound, InvalidRequest, TensorZeroError, UnknownFunction
from tensorzero_ray.functions.routers import Routers
from tensorzero_ray.store.batch_queries import latest_batch_request
from tensorzero_ray.types.batch import BatchInferenceRequest


def add_batch_routes(app: FastAPI, routers: Routers, observability, errors: ErrorResponses) -> None:
    @app.post("/batch_inference")
    async def start_batch(http_request: Request) -> Response:
        request = parse_body(BatchInferenceRequest, await read_json(http_request))
        if not routers.knows(request.function_name) or request.function_name.startswith("tensorzero::"):
            raise UnknownFunction(request.function_name)
        elements = []
        for i, body in enumerate(request.elements()):
            try:
                elements.append(parse_inference_request(body)[1])
            except TensorZeroError as exc:
                raise BatchInputValidation(f"inputs[{i}]: {exc.message}") from None
        try:
            started = await routers.start_batch(request.function_name, elements)
        except Exception as exc:  # noqa: BLE001 - every failure becomes an error body
            return errors.native(exc)
        return json_response(started.model_dump(mode="json"))

    @app.get("/batch_inference/{batch_id}")
    @app.get("/batch_inference/{batch_id}/inference/{inference_id}")
    async def poll_batch(batch_id: str, inference_id: str | None = None) -> Response:
        for name, value in (("batch_id", batch_id), ("inference_id", inference_id)):
            if value is not None:
                try:
                    uuid.UUID(value)
                except ValueError:
                    raise InvalidRequest(f"`{name}` is not a UUID: {value}") from None
        if observability is None:
            raise InvalidRequest("Batch inference needs observability: batches are kept in ClickHouse")
        latest = await latest_batch_request(observability.query, batch_id)
        if latest is None:
            raise BatchNotFound(batch_id)
        try:
            status = await routers.poll_batch(latest.function_name, batch_id, inference_id)
        except Exception as exc:  # noqa: BLE001
            return errors.native(exc)
        return json_response(status.body())
