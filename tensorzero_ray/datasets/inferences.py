"""Stored inferences, read back: list with filters and ordering, get by id, count (spec §1.7)."""

from __future__ import annotations

import asyncio
import time
import uuid

from tensorzero_ray.config import Config
from tensorzero_ray.datasets.store_access import StoreAccess, read
from tensorzero_ray.errors import NotFound
from tensorzero_ray.ids import uuid7_timestamp_ms
from tensorzero_ray.store.inference_queries import list_inferences_sql, stored_inference
from tensorzero_ray.types.stored import GetInferencesRequest, ListInferencesRequest, StoredInference

# An inference another Gateway replica acknowledged a moment ago may still be on its way to
# the writer (milliseconds; with a ClickHouse server, up to that replica's flush interval).
# A read by id waits this long after the id was minted before calling it missing.
ARRIVAL_WINDOW_S = 2.0
POLL_INTERVAL_S = 0.02


def _arrival_deadline(ids: list[str], found: list[StoredInference]) -> float:
    """Until when to wait for the ids not found: the window after the newest of them was
    minted, and never longer than the window from now (an id dated ahead waits no longer)."""
    seen = {i.inference_id for i in found}
    newest_s = max((_minted_ms(i) for i in ids if i not in seen), default=0) / 1000
    return min(newest_s, time.time()) + ARRIVAL_WINDOW_S


def _minted_ms(inference_id: str) -> int:
    try:
        parsed = uuid.UUID(inference_id)
    except ValueError:
        return 0
    return uuid7_timestamp_ms(parsed) if parsed.version == 7 else 0


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
        deadline = _arrival_deadline(request.ids, found)
        while request.output_source == "inference" and time.time() < deadline:
            await asyncio.sleep(POLL_INTERVAL_S)
            found = [stored_inference(row, request.output_source) for row in await read(self.store, sql, params)]
            deadline = min(deadline, _arrival_deadline(request.ids, found))
        if require_all:
            missing = sorted(set(request.ids) - {i.inference_id for i in found})
            if missing:
                without = " (or without a demonstration)" if request.output_source == "demonstration" else ""
                raise NotFound(f"Inferences not found{without}: {', '.join(missing)}")
        return found
