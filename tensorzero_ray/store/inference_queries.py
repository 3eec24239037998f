"""SQL for the stored-inference query API (spec §1.7): a list request becomes one statement with
bound parameters, filtered, ordered and paginated in ClickHouse. Metric filters and ordering
read the latest feedback value per target; filters are checked against the config first, so
an unknown metric or a filter of the wrong type is the caller's error, not the database's."""

from __future__ import annotations

import uuid
from dataclasses import dataclass, field
from datetime import datetime, timezone
from typing import Any

import orjson

from tensorzero_ray.config import Config
from tensorzero_ray.config.functions import JsonFunctionConfig
from tensorzero_ray.errors import InvalidRequest
from tensorzero_ray.ids import uuid7_timestamp_ms
from tensorzero_ray.types.stored import (
    AndFilter,
    BooleanMetricFilter,
    DemonstrationFilter,
    FloatMetricFilter,
    ListInferencesRequest,
    NotFilter,
    OrFilter,
    StoredInference,
    TagFilter,
    TimeFilter,
)

_COMMON = (
    "id, function_name, variant_name, episode_id, input, output, tags, extra_body, inference_params, "
    "processing_time_ms, ttft_ms"
)
_CHAT = (
    f"SELECT 'chat' AS type, {_COMMON}, dynamic_tools, allowed_tools, tool_choice, parallel_tool_calls, "
    "'' AS output_schema FROM ChatInference"
)
_JSON = (
    f"SELECT 'json' AS type, {_COMMON}, CAST([] AS Array(String)) AS dynamic_tools, "
    "CAST(NULL AS Nullable(String)) AS allowed_tools, CAST(NULL AS Nullable(String)) AS tool_choice, "
    "CAST(NULL AS Nullable(Bool)) AS parallel_tool_calls, output_schema FROM JsonInference"
)


class UnknownMetricFilter(InvalidRequest):
    def __init__(self, name: str):
        super().__init__(f"Unknown metric in filter: `{name}` is not in the config's [metrics]")


@dataclass
class FilterBuilder:
    """Turns a filter tree into a WHERE condition over the rows aliased `alias`, with bound
    parameters; `time_ms` is the SQL for a row's time in milliseconds."""

    config: Config
    alias: str = "i"
    time_ms: str = "toUnixTimestamp64Milli(UUIDv7ToDateTime(i.id))"
    metrics_allowed: bool = True
    params: dict[str, Any] = field(default_factory=dict)
    joins: dict[str, str] = field(default_factory=dict)  # metric name -> join alias

    def bind(self, value: Any, kind: str) -> str:
        name = f"p{len(self.params)}"
        self.params[name] = value
        return f"{{{name}:{kind}}}"

    def metric(self, name: str, expected: str | None) -> str:
        """The alias of the latest-value join for this metric, added once."""
        if not self.metrics_allowed:
            raise InvalidRequest("Metric filters and ordering are not available here")
        metric = self.config.metrics.get(name)
        if metric is None:
            raise UnknownMetricFilter(name)
        if expected is not None and metric.type != expected:
            raise InvalidRequest(
                f"Filter of type `{expected}_metric` used on metric `{name}`, which is a {metric.type} metric"
            )
        if name not in self.joins:
            self.joins[name] = f"m{len(self.joins)}"
        return self.joins[name]

    def join_sql(self) -> str:
        parts = []
        for name, alias in self.joins.items():
            metric = self.config.metrics[name]
            table = "BooleanMetricFeedback" if metric.type == "boolean" else "FloatMetricFeedback"
            target = "i.id" if metric.level == "inference" else "i.episode_id"
            parts.append(
                f" LEFT JOIN (SELECT target_id, argMax(value, toUInt128(id)) AS value FROM {table} "
                f"WHERE metric_name = {self.bind(name, 'String')} GROUP BY target_id) AS {alias} "
                f"ON {alias}.target_id = {target}"
            )
        return "".join(parts)

    def condition(self, node) -> str:
        if isinstance(node, TagFilter):
            op = "=" if node.comparison_operator == "=" else "!="
            return f"{self.alias}.tags[{self.bind(node.key, 'String')}] {op} {self.bind(node.value, 'String')}"
        if isinstance(node, TimeFilter):
            moment = datetime.fromisoformat(node.time.replace("Z", "+00:00"))
            if moment.tzinfo is None:
                moment = moment.replace(tzinfo=timezone.utc)
            ms = int(moment.timestamp() * 1000)
            return f"{self.time_ms} {node.comparison_operator} {self.bind(ms, 'Int64')}"
        if isinstance(node, FloatMetricFilter):
            alias = self.metric(node.metric_name, "float")
            return f"{alias}.value {node.comparison_operator} {self.bind(node.value, 'Float32')}"
        if isinstance(node, BooleanMetricFilter):
            alias = self.metric(node.metric_name, "boolean")
            return f"{alias}.value = {self.bind(node.value, 'Bool')}"
        if isinstance(node, DemonstrationFilter):
            if not self.metrics_allowed:
                raise InvalidRequest("Demonstration filters are not available here")
            negate = "" if node.has_demonstration else "NOT "
            return f"{self.alias}.id {negate}IN (SELECT inference_id FROM DemonstrationFeedback)"
        if isinstance(node, (AndFilter, OrFilter)):
            if not node.children:
                return "1" if isinstance(node, AndFilter) else "0"
            joiner = " AND " if isinstance(node, AndFilter) else " OR "
            return "(" + joiner.join(self.condition(child) for child in node.children) + ")"
        if isinstance(node, NotFilter):
            return f"NOT ({self.condition(node.child)})"
        raise InvalidRequest(f"Unsupported filter: {node!r}")


def inference_table(config: Config, function_name: str) -> str:
    """Where a function's inferences are stored."""
    return "JsonInference" if isinstance(config.function(function_name), JsonFunctionConfig) else "ChatInference"


def _source_tables(config: Config, function_name: str | None) -> list[str]:
    if function_name is None:
        return [_CHAT, _JSON]
    return [_JSON if inference_table(config, function_name) == "JsonInference" else _CHAT]


def list_inferences_sql(
    config: Config, request: ListInferencesRequest, *, ids: list[str] | None = None, count: bool = False
) -> tuple[str, dict[str, Any], bool]:
    """(SQL, parameters, whether the rows come back oldest-first and need reversing)."""
    b = FilterBuilder(config)
    inner: list[str] = []
    if request.function_name is not None:
        inner.append(f"function_name = {b.bind(request.function_name, 'String')}")
    if request.variant_name is not None:
        inner.append(f"variant_name = {b.bind(request.variant_name, 'String')}")
    if request.episode_id is not None:
        inner.append(f"episode_id = {b.bind(uuid.UUID(request.episode_id), 'UUID')}")
    if ids is not None:
        inner.append(f"id IN {b.bind([uuid.UUID(i) for i in ids], 'Array(UUID)')}")
    where_inner = f" WHERE {' AND '.join(inner)}" if inner else ""
    union = " UNION ALL ".join(f"{table}{where_inner}" for table in _source_tables(config, request.function_name))

    outer: list[str] = []
    if request.filters is not None:
        outer.append(b.condition(request.filters))
    order, reverse = _order(b, request)
    if request.before is not None:
        outer.append(f"toUInt128(i.id) < toUInt128({b.bind(uuid.UUID(request.before), 'UUID')})")
    if request.after is not None:
        outer.append(f"toUInt128(i.id) > toUInt128({b.bind(uuid.UUID(request.after), 'UUID')})")

    demonstration = request.output_source == "demonstration"
    select = "i.*, d.demonstration AS demonstration" if demonstration else "i.*"
    demo_join = (
        " INNER JOIN (SELECT inference_id, argMax(value, toUInt128(id)) AS demonstration "
        "FROM DemonstrationFeedback GROUP BY inference_id) AS d ON d.inference_id = i.id"
        if demonstration
        else ""
    )
    where_outer = f" WHERE {' AND '.join(outer)}" if outer else ""
    body = f"FROM ({union}) AS i{b.join_sql()}{demo_join}{where_outer}"
    settings = " SETTINGS join_use_nulls = 1"
    if count:
        return f"SELECT count() AS n {body}{settings}", b.params, False
    page = f" LIMIT {int(request.limit)}"
    if request.offset:
        page += f" OFFSET {int(request.offset)}"
    return f"SELECT {select} {body} ORDER BY {order}{page}{settings}", b.params, reverse


def _order(b: FilterBuilder, request: ListInferencesRequest) -> tuple[str, bool]:
    newest_first = "toUInt128(i.id) DESC"
    if request.after is not None or request.before is not None:
        if any(o.by != "timestamp" for o in request.order_by or []):
            raise InvalidRequest("`before`/`after` pagination only works with ordering by timestamp")
        # `after` walks forward from the cursor; the page is then shown newest first.
        return ("toUInt128(i.id) ASC", True) if request.after is not None else (newest_first, False)
    if not request.order_by:
        return newest_first, False
    terms = []
    for item in request.order_by:
        direction = "ASC" if item.direction == "ascending" else "DESC"
        if item.by == "timestamp":
            terms.append(f"toUInt128(i.id) {direction}")
        elif item.by == "metric":
            if not item.name:
                raise InvalidRequest("`order_by` by metric needs the metric's `name`")
            terms.append(f"{b.metric(item.name, None)}.value {direction} NULLS LAST")
        else:
            if request.search_query_experimental is None:
                raise InvalidRequest("Ordering by `search_relevance` needs `search_query_experimental`")
            raise InvalidRequest("Ordering by `search_relevance` is not supported by this gateway")
    return ", ".join([*terms, newest_first]), False


def json_or_none(text: str | None) -> Any:
    """A JSON payload column (empty or NULL: None)."""
    return orjson.loads(text) if text else None


def tool_and_schema_fields(row: dict[str, Any]) -> dict[str, Any]:
    """The tool columns of a chat row, or the output schema of a JSON row, as API fields."""
    if row["type"] != "chat":
        return {"output_schema": json_or_none(row["output_schema"])}
    return {
        "additional_tools": [orjson.loads(t) for t in row["dynamic_tools"]],
        "allowed_tools": json_or_none(row["allowed_tools"]),
        "tool_choice": json_or_none(row["tool_choice"]),
        "parallel_tool_calls": row["parallel_tool_calls"],
        "provider_tools": [orjson.loads(t) for t in row.get("dynamic_provider_tools", [])],
    }


def rfc3339_from_id(inference_id: str) -> str:
    ms = uuid7_timestamp_ms(uuid.UUID(inference_id))
    moment = datetime.fromtimestamp(ms / 1000, tz=timezone.utc)
    return moment.isoformat(timespec="milliseconds").replace("+00:00", "Z")


def stored_inference(row: dict[str, Any], output_source: str) -> StoredInference:
    """A row of `list_inferences_sql` as the API's StoredInference."""
    output = json_or_none(row["output"])
    dispreferred: list[Any] = []
    if output_source == "demonstration":
        dispreferred = [output]
        output = json_or_none(row["demonstration"])
    elif output_source == "none":
        output = None
    return StoredInference(
        type=row["type"],
        function_name=row["function_name"],
        variant_name=row["variant_name"],
        input=json_or_none(row["input"]) or {},
        output=output,
        dispreferred_outputs=dispreferred,
        timestamp=rfc3339_from_id(row["id"]),
        episode_id=row["episode_id"],
        inference_id=row["id"],
        tags=row["tags"],
        extra_body=json_or_none(row["extra_body"]),
        inference_params=json_or_none(row["inference_params"]),
        processing_time_ms=row["processing_time_ms"],
        ttft_ms=row["ttft_ms"],
        **tool_and_schema_fields(row),
    )
