"""Stored inferences and the filters that find them (spec §1.7): the query API's requests and
responses, also read by curation, replay and the datasets built from inferences."""

from __future__ import annotations

import uuid
from datetime import datetime
from typing import Annotated, Any, Literal, Union

from pydantic import AfterValidator, BaseModel, Field, model_validator

from tensorzero_ray.types.inference import NullMeansDefault, Strict


def _uuid(value: str) -> str:
    try:
        return str(uuid.UUID(value))
    except ValueError:
        raise ValueError(f"`{value}` is not a UUID") from None


def _rfc3339(value: str) -> str:
    try:
        datetime.fromisoformat(value.replace("Z", "+00:00"))
    except ValueError:
        raise ValueError(f"`{value}` is not an RFC 3339 time") from None
    return value


UuidStr = Annotated[str, AfterValidator(_uuid)]
TimeStr = Annotated[str, AfterValidator(_rfc3339)]
Comparison = Literal["<", "<=", "=", ">", ">=", "!="]
OutputSource = Literal["inference", "demonstration", "none"]


class TagFilter(Strict):
    type: Literal["tag"]
    key: str
    value: str
    comparison_operator: Literal["=", "!="] = "="


class TimeFilter(Strict):
    type: Literal["time"]
    time: TimeStr
    comparison_operator: Comparison


class FloatMetricFilter(Strict):
    type: Literal["float_metric"]
    metric_name: str
    value: float
    comparison_operator: Comparison


class BooleanMetricFilter(Strict):
    type: Literal["boolean_metric"]
    metric_name: str
    value: bool


class DemonstrationFilter(Strict):
    type: Literal["demonstration_feedback"]
    has_demonstration: bool


class AndFilter(Strict):
    type: Literal["and"]
    children: list[InferenceFilter]


class OrFilter(Strict):
    type: Literal["or"]
    children: list[InferenceFilter]


class NotFilter(Strict):
    type: Literal["not"]
    child: InferenceFilter


InferenceFilter = Annotated[
    Union[
        TagFilter,
        TimeFilter,
        FloatMetricFilter,
        BooleanMetricFilter,
        DemonstrationFilter,
        AndFilter,
        OrFilter,
        NotFilter,
    ],
    Field(discriminator="type"),
]
AndFilter.model_rebuild()
OrFilter.model_rebuild()
NotFilter.model_rebuild()


class OrderBy(Strict):
    by: Literal["timestamp", "metric", "search_relevance"]
    name: str | None = None
    direction: Literal["ascending", "descending"] = "descending"


class ListInferencesRequest(NullMeansDefault):
    function_name: str | None = None
    variant_name: str | None = None
    episode_id: UuidStr | None = None
    output_source: OutputSource = "inference"
    limit: int = Field(default=20, ge=0, le=100_000)
    offset: int | None = Field(default=None, ge=0)
    before: UuidStr | None = None
    after: UuidStr | None = None
    filters: InferenceFilter | None = None
    order_by: list[OrderBy] | None = None
    search_query_experimental: str | None = None

    @model_validator(mode="after")
    def _one_cursor(self) -> "ListInferencesRequest":
        if sum(x is not None for x in (self.before, self.after, self.offset)) > 1:
            raise ValueError("`before`, `after` and `offset` are mutually exclusive")
        return self


class GetInferencesRequest(NullMeansDefault):
    ids: list[UuidStr]
    function_name: str | None = None
    output_source: OutputSource = "inference"


class ToolAndSchemaFields(BaseModel):
    """What a stored chat row keeps of its tools, or a JSON row of its output schema."""

    additional_tools: list[dict[str, Any]] | None = None
    allowed_tools: list[str] | None = None
    tool_choice: Any = None
    parallel_tool_calls: bool | None = None
    provider_tools: list[Any] = Field(default_factory=list)
    output_schema: dict[str, Any] | None = None


class StoredInference(ToolAndSchemaFields):
    """One stored inference; `output` is chat content blocks or `{"raw", "parsed"}`."""

    type: Literal["chat", "json"]
    function_name: str
    variant_name: str
    input: dict[str, Any]
    output: Any = None
    dispreferred_outputs: list[Any] = Field(default_factory=list)
    timestamp: str
    episode_id: str
    inference_id: str
    tags: dict[str, str] = Field(default_factory=dict)
    extra_body: list[Any] | None = None
    inference_params: dict[str, Any] | None = None
    processing_time_ms: int | None = None
    ttft_ms: int | None = None


class StoredInferences(BaseModel):
    inferences: list[StoredInference]
