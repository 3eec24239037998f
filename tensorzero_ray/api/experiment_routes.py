"""Experimentation routes: TensorZero's display probabilities, and the experiment controller's
state for each adaptive experiment (how old it is, and why when an update failed)."""

from __future__ import annotations

from typing import Any

from fastapi import FastAPI
from fastapi.responses import Response

from tensorzero_ray.api.http_io import json_response
from tensorzero_ray.config import Config
from tensorzero_ray.errors import UnknownFunction
from tensorzero_ray.experimentation.follower import ask
from tensorzero_ray.functions.routers import Routers


def add_experiment_routes(app: FastAPI, config: Config, routers: Routers, experiments: Any) -> None:
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
