"""SQL for datapoints (spec §4.5). Both tables are ReplacingMergeTree on (dataset, function,
id) with `updated_at` as the version: reads use FINAL, and a stale or deleted datapoint is a
newer row of the same id with `staled_at` set."""

from __future__ import annotations

import uuid
from datetime import datetime, timezone
from typing import Any

from tensorzero_ray.config import Config
from tensorzero_ray.errors import InvalidRequest
from tensorzero_ray.store.inference_queries import FilterBuilder, json_or_none, tool_and_schema_fields
from tensorzero_ray.types.datasets import Datapoint, ListDatapointsRequest

_COMMON = (
    "dataset_name, function_name, id, episode_id, input, output, tags, auxiliary, is_deleted, is_custom, "
    "source_inference_id, staled_at, updated_at, name"
)
CHAT_COLUMNS = (
    *_COMMON.split(", "),
    "dynamic_tools",
    "dynamic_provider_tools",
    "allowed_tools",
    "tool_choice",
    "parallel_tool_calls",
)
JSON_COLUMNS = (*_COMMON.split(", "), "output_schema")
_CHAT = (
    f"SELECT 'chat' AS type, {_COMMON}, dynamic_tools, dynamic_provider_tools, allowed_tools, tool_choice, "
    "parallel_tool_calls, '' AS output_schema FROM ChatInferenceDatapoint FINAL"
)
_JSON = (
    f"SELECT 'json' AS type, {_COMMON}, CAST([] AS Array(String)) AS dynamic_tools, "
    "CAST([] AS Array(String)) AS dynamic_provider_tools, CAST(NULL AS Nullable(String)) AS allowed_tools, "
    "CAST(NULL AS Nullable(String)) AS tool_choice, CAST(NULL AS Nullable(Bool)) AS parallel_tool_calls, "
    "output_schema FROM JsonInferenceDatapoint FINAL"
)


def now_string() -> str:
    return datetime.now(timezone.utc).strftime("%Y-%m-%d %H:%M:%S.%f")


def _rfc3339(value: str | None) -> str | None:
    if value is None:
        return None
    moment = datetime.fromisoformat(value).replace(tzinfo=timezone.utc)
    return moment.isoformat(timespec="microseconds").replace("+00:00", "Z")


def _union(where: str) -> str:
    return f"SELECT * FROM ({_CHAT} UNION ALL {_JSON}) AS d WHERE {where}"


def list_datapoints_sql(config: Config, dataset: str, request: ListDatapointsRequest) -> tuple[str, dict[str, Any]]:
    b = FilterBuilder(config, alias="d", time_ms="toUnixTimestamp64Milli(d.updated_at)", metrics_allowed=False)
    conditions = [f"d.dataset_name = {b.bind(dataset, 'String')}", "d.staled_at IS NULL"]
    if request.function_name is not None:
        conditions.append(f"d.function_name = {b.bind(request.function_name, 'String')}")
    if request.filter is not None:
        conditions.append(b.condition(request.filter))
    terms = []
    for item in request.order_by or []:
        if item.by != "timestamp":
            raise InvalidRequest("Datapoints can only be ordered by `timestamp`")
        terms.append(f"toUInt128(d.id) {'ASC' if item.direction == 'ascending' else 'DESC'}")
    order = ", ".join(terms or ["toUInt128(d.id) DESC"])
    sql = f"{_union(' AND '.join(conditions))} ORDER BY {order} LIMIT {int(request.limit)} OFFSET {int(request.offset)}"
    return sql, b.params


def datapoints_by_id_sql(ids: list[str], dataset: str | None) -> tuple[str, dict[str, Any]]:
    params: dict[str, Any] = {"ids": [uuid.UUID(i) for i in ids]}
    where = "d.id IN {ids:Array(UUID)}"
    if dataset is not None:
        where += " AND d.dataset_name = {dataset:String}"
        params["dataset"] = dataset
    return _union(where), params


def live_datapoints_sql(dataset: str) -> tuple[str, dict[str, Any]]:
    return _union("d.dataset_name = {dataset:String} AND d.staled_at IS NULL"), {"dataset": dataset}


DATASET_EXISTS_SQL = (
    "SELECT count() AS n FROM (SELECT id FROM ChatInferenceDatapoint WHERE dataset_name = {dataset:String} "
    "UNION ALL SELECT id FROM JsonInferenceDatapoint WHERE dataset_name = {dataset:String})"
)

DATASETS_SQL = (
    "SELECT dataset_name, countIf(staled_at IS NULL) AS datapoint_count, max(updated_at) AS last_updated "
    f"FROM ({_CHAT} UNION ALL {_JSON}) GROUP BY dataset_name HAVING datapoint_count > 0 ORDER BY dataset_name"
)


def datapoint(row: dict[str, Any]) -> Datapoint:
    return Datapoint(
        type=row["type"],
        dataset_name=row["dataset_name"],
        function_name=row["function_name"],
        id=row["id"],
        episode_id=row["episode_id"],
        input=json_or_none(row["input"]) or {},
        output=json_or_none(row["output"]),
        tags=row["tags"],
        auxiliary=row["auxiliary"],
        is_deleted=row["is_deleted"],
        is_custom=row["is_custom"],
        source_inference_id=row["source_inference_id"],
        staled_at=_rfc3339(row["staled_at"]),
        updated_at=_rfc3339(row["updated_at"]),
        name=row["name"],
        **tool_and_schema_fields(row),
    )
