"""Examples for DICL variants: the `dicl` job writes them here (the gateway owns the stored
data) and counts them afterwards."""

from __future__ import annotations

from typing import Any

import orjson
from fastapi import FastAPI, Request
from fastapi.responses import Response
from pydantic import Field

from tensorzero_ray.api.http_io import json_response, parse_body, parse_query, read_json
from tensorzero_ray.config import Config
from tensorzero_ray.errors import InvalidRequest, UnknownFunction
from tensorzero_ray.ids import uuid7
from tensorzero_ray.store.rows import DiclExampleRow
from tensorzero_ray.types.inference import NullMeansDefault


class DiclExample(NullMeansDefault):
    input: dict[str, Any]
    # Chat: content blocks; JSON: {"raw", "parsed"}.
    output: list[dict[str, Any]] | dict[str, Any]
    embedding: list[float] = Field(min_length=1)


class DiclExamples(NullMeansDefault):
    function_name: str
    variant_name: str
    examples: list[DiclExample] = Field(max_length=10_000)


class DiclExampleQuery(NullMeansDefault):
    function_name: str
    variant_name: str


def add_dicl_routes(app: FastAPI, config: Config, observability) -> None:
    def _stored_data():
        if observability is None:
            raise InvalidRequest("Observability is disabled: DICL examples live in ClickHouse")
        return observability

    @app.post("/internal/dicl/examples")
    async def write_examples(http: Request) -> Response:
        request = parse_body(DiclExamples, await read_json(http))
        if request.function_name not in config.functions:
            raise UnknownFunction(request.function_name)
        sizes = {len(e.embedding) for e in request.examples}
        if len(sizes) > 1:
            raise InvalidRequest(f"Every embedding must have the same length (got {sorted(sizes)})")
        rows = [
            DiclExampleRow(
                id=uuid7(),
                function_name=request.function_name,
                variant_name=request.variant_name,
                input=orjson.dumps(e.input).decode(),
                output=orjson.dumps(e.output).decode(),
                embedding=e.embedding,
            )
            for e in request.examples
        ]
        await _stored_data().record(rows)
        return json_response({"written": len(rows)})

    @app.get("/internal/dicl/examples")
    async def count_examples(http: Request) -> Response:
        query = parse_query(DiclExampleQuery, dict(http.query_params))
        rows = await _stored_data().query(
            "SELECT count() AS n FROM DynamicInContextLearningExample "
            "WHERE function_name = {f:String} AND variant_name = {v:String}",
            {"f": query.function_name, "v": query.variant_name},
        )
        return json_response({"count": int(rows[0]["n"]) if rows else 0})
