"""Stored inferences, read back: list with filters and ordering, get by id, count (spec §1.7)."""

from __future__ import annotations

from tensorzero_ray.config import Config
from tensorzero_ray.datasets.store_access import StoreAccess, read
from tensorzero_ray.errors import NotFound
from tensorzero_ray.store.inference_queries import list_inferences_sql, stored_inference
from tensorzero_ray.types.stored import GetInferencesRequest, ListInferencesRequest, StoredInference


class StoredInferenceQueries:
    def __init__(self, config: Config, store: StoreAccess | None):
        self.config = config
        self.store = store

    async def list(self, request: ListInferencesRequest) -> list[StoredInference]:
        sql, params, reverse = list_inferences_sql(self.config, request)
        rows = await read(self.store, sql, params)
        if reverse:
            rows.reverse()
        return [stored_inference(row, request.output_source) for row in rows]

    async def count(self, request: ListInferencesRequest) -> int:
        sql, params, _ = list_inferences_sql(self.config, request, count=True)
        return int((await read(self.store, sql, params))[0]["n"])

    async def get(self, request: GetInferencesRequest, *, require_all: bool = False) -> list[StoredInference]:
        if not request.ids:
            return []
        query = ListInferencesRequest(
            function_name=request.function_name, output_source=request.output_source, limit=len(request.ids)
        )
        sql, params, _ = list_inferences_sql(self.config, query, ids=request.ids)
        found = [stored_inference(row, request.output_source) for row in await read(self.store, sql, params)]
        if require_all:
            missing = sorted(set(request.ids) - {i.inference_id for i in found})
            if missing:
                without = " (or without a demonstration)" if request.output_source == "demonstration" else ""
                raise NotFound(f"Inferences not found{without}: {', '.join(missing)}")
        return found
