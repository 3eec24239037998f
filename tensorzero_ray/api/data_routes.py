"""The stored-data API on the gateway: stored inferences (spec §1.7), datasets and datapoints
(§1.6), and our own curation and replay endpoints."""

from __future__ import annotations

from typing import Any

from fastapi import FastAPI, Request
from fastapi.responses import Response

from tensorzero_ray.api.http_io import json_response, parse_body, read_json
from tensorzero_ray.config import Config
from tensorzero_ray.datasets import Curator, DatasetService, StoredInferenceQueries
from tensorzero_ray.datasets.store_access import StoreAccess
from tensorzero_ray.errors import InvalidRequest
from tensorzero_ray.functions.routers import Routers
from tensorzero_ray.replay import Replayer
from tensorzero_ray.types.curation import CurationRequest
from tensorzero_ray.types.datasets import (
    CreateDatapointsRequest,
    DatapointIds,
    FromInferenceIds,
    FromInferenceQuery,
    ListDatapointsRequest,
    UpdateDatapointsRequest,
    UpdateMetadataRequest,
)
from tensorzero_ray.types.replay import ReplayRequest
from tensorzero_ray.types.stored import GetInferencesRequest, ListInferencesRequest


def _dump(items: list) -> list[dict[str, Any]]:
    return [item.model_dump(mode="json") for item in items]


def _from_inferences(data: Any) -> FromInferenceIds | FromInferenceQuery:
    kind = data.get("type") if isinstance(data, dict) else None
    if kind == "inference_ids":
        return parse_body(FromInferenceIds, data)
    if kind == "inference_query":
        return parse_body(FromInferenceQuery, data)
    raise InvalidRequest('`type` must be "inference_ids" or "inference_query"')


def add_data_routes(app: FastAPI, config: Config, routers: Routers, store: StoreAccess | None) -> None:
    inferences = StoredInferenceQueries(config, store)
    datasets = DatasetService(config, store, inferences)
    curator = Curator(config, inferences, datasets)
    replayer = Replayer(config, routers.infer)

    @app.post("/v1/inferences/list_inferences")
    async def list_inferences(http: Request) -> Response:
        request = parse_body(ListInferencesRequest, await read_json(http))
        return json_response({"inferences": _dump(await inferences.list(request))})

    @app.post("/v1/inferences/get_inferences")
    async def get_inferences(http: Request) -> Response:
        request = parse_body(GetInferencesRequest, await read_json(http))
        return json_response({"inferences": _dump(await inferences.get(request))})

    @app.post("/internal/inferences/count")
    async def count_inferences(http: Request) -> Response:
        request = parse_body(ListInferencesRequest, await read_json(http))
        return json_response({"count": await inferences.count(request)})

    @app.post("/v1/datasets/{dataset}/datapoints")
    async def create_datapoints(dataset: str, http: Request) -> Response:
        request = parse_body(CreateDatapointsRequest, await read_json(http))
        return json_response({"ids": await datasets.create(dataset, request.datapoints)})

    @app.patch("/v1/datasets/{dataset}/datapoints")
    async def update_datapoints(dataset: str, http: Request) -> Response:
        request = parse_body(UpdateDatapointsRequest, await read_json(http))
        return json_response({"ids": await datasets.update(dataset, request.datapoints)})

    @app.patch("/v1/datasets/{dataset}/datapoints/metadata")
    async def update_metadata(dataset: str, http: Request) -> Response:
        request = parse_body(UpdateMetadataRequest, await read_json(http))
        return json_response({"ids": await datasets.update_metadata(dataset, request)})

    @app.delete("/v1/datasets/{dataset}/datapoints")
    async def delete_datapoints(dataset: str, http: Request) -> Response:
        request = parse_body(DatapointIds, await read_json(http))
        return json_response({"num_deleted_datapoints": await datasets.delete(dataset, request.ids)})

    @app.delete("/v1/datasets/{dataset}")
    async def delete_dataset(dataset: str) -> Response:
        return json_response({"num_deleted_datapoints": await datasets.delete_dataset(dataset)})

    @app.post("/v1/datasets/{dataset}/list_datapoints")
    async def list_datapoints(dataset: str, http: Request) -> Response:
        request = parse_body(ListDatapointsRequest, await read_json(http))
        return json_response({"datapoints": _dump(await datasets.list(dataset, request))})

    @app.post("/v1/datasets/{dataset}/get_datapoints")
    async def get_dataset_datapoints(dataset: str, http: Request) -> Response:
        request = parse_body(DatapointIds, await read_json(http))
        return json_response({"datapoints": _dump(await datasets.get(request.ids, dataset))})

    @app.post("/v1/datasets/get_datapoints")
    async def get_datapoints(http: Request) -> Response:
        request = parse_body(DatapointIds, await read_json(http))
        return json_response({"datapoints": _dump(await datasets.get(request.ids))})

    @app.post("/v1/datasets/{dataset}/from_inferences")
    async def from_inferences(dataset: str, http: Request) -> Response:
        request = _from_inferences(await read_json(http))
        return json_response({"ids": await datasets.from_inferences(dataset, request)})

    @app.get("/internal/datasets")
    async def list_datasets() -> Response:
        return json_response((await datasets.datasets()).model_dump(mode="json"))

    @app.post("/v1/curation/examples")
    async def curate(http: Request) -> Response:
        request = parse_body(CurationRequest, await read_json(http))
        return json_response((await curator.curate(request)).model_dump(mode="json"))

    @app.post("/v1/replay")
    async def replay(http: Request) -> Response:
        request = parse_body(ReplayRequest, await read_json(http))
        replayer.check(request)
        if request.inference_ids is not None:
            stored = await inferences.get(GetInferencesRequest(ids=request.inference_ids), require_all=True)
        else:
            stored = await inferences.list(request.query)
        result = await replayer.run(stored, request)
        return json_response(result.model_dump(mode="json"))
