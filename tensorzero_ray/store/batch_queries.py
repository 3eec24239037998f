"""Reading batches back (spec §4.6): a batch's latest state, its elements, and the inferences
written when it completed."""

from __future__ import annotations

import uuid
from collections.abc import Awaitable, Callable
from typing import Any

from tensorzero_ray.store.rows import BatchModelInferenceRow, BatchRequestRow

Query = Callable[[str, dict], Awaitable[list[dict[str, Any]]]]

_REQUEST_COLUMNS = ", ".join(f for f in BatchRequestRow.model_fields if f != "table")
_ELEMENT_COLUMNS = ", ".join(f for f in BatchModelInferenceRow.model_fields if f != "table")


async def latest_batch_request(query: Query, batch_id: str) -> BatchRequestRow | None:
    """The newest state: the largest id, compared as UUIDv7s (ClickHouse orders UUIDs by
    their second half first, so it cannot be asked for it)."""
    rows = await query(
        f"SELECT {_REQUEST_COLUMNS} FROM BatchRequest WHERE batch_id = {{batch:UUID}}", {"batch": batch_id}
    )
    if not rows:
        return None
    return BatchRequestRow.model_validate(max(rows, key=lambda row: uuid.UUID(str(row["id"]))))


async def batch_elements(query: Query, batch_id: str) -> list[BatchModelInferenceRow]:
    rows = await query(
        f"SELECT {_ELEMENT_COLUMNS} FROM BatchModelInference WHERE batch_id = {{batch:UUID}}",
        {"batch": batch_id},
    )
    return [BatchModelInferenceRow.model_validate(row) for row in rows]


async def batch_inferences(query: Query, table: str, batch_id: str) -> list[dict[str, Any]]:
    """The stored inferences of a completed batch with their model call's usage, in the order
    the batch listed them (their ids are UUIDv7s; ClickHouse orders UUIDs otherwise)."""
    rows = await query(
        f"SELECT i.id AS inference_id, i.episode_id AS episode_id, i.variant_name AS variant_name, "
        f"i.output AS output, m.input_tokens AS input_tokens, m.output_tokens AS output_tokens, "
        f"m.finish_reason AS finish_reason FROM {table} AS i INNER JOIN ModelInference AS m ON m.inference_id = i.id "
        f"WHERE i.id IN (SELECT inference_id FROM BatchModelInference WHERE batch_id = {{batch:UUID}})",
        {"batch": batch_id},
    )
    return sorted(rows, key=lambda row: uuid.UUID(str(row["inference_id"])))
