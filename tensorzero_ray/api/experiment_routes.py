"""Experimentation routes: TensorZero's display probabilities, the experiment controller's
state for each adaptive experiment (how old it is, and why when an update failed), and the
experiment report."""

from __future__ import annotations

from typing import Any

from fastapi import FastAPI, Request
from fastapi.responses import Response

from tensorzero_ray.api.http_io import json_response, parse_query
from tensorzero_ray.config import Config
from tensorzero_ray.errors import InvalidRequest, UnknownFunction
from tensorzero_ray.experimentation.follower import ask
from tensorzero_ray.experimentation.report import experiment_report
from tensorzero_ray.functions.routers import Routers
from tensorzero_ray.types.experiments import ExperimentReportRequest


def add_experiment_routes(app: FastAPI, config: Config, routers: Routers, observability, experiments: Any) -> None:
    @app.get("/internal/functions/{function_name}/variant_sampling_probabilities")
    async def sampling_probabilities(function_name: str, namespace: str | None = None) -> Response:
        if function_name not in config.functions:
            raise UnknownFunction(function_name)
        probabilities = await routers.sampling_probabilities(function_name, namespace)
        return json_response({"probabilities": probabilities})

    @app.get("/internal/experiments")
    async def experiment_states() -> Response:
        states = await ask(experiments, "status") if experiments is not None else {}
        return json_response({"experiments": states})

    @app.get("/internal/experiments/{function_name}/report")
    async def report(function_name: str, http: Request) -> Response:
        request = parse_query(ExperimentReportRequest, dict(http.query_params))
        if observability is None:
            raise InvalidRequest("Observability is disabled: there is no stored feedback to report on")
        found = await experiment_report(config, observability.query, function_name, request)
        return json_response(found.model_dump(mode="json"))
