"""Datasets and datapoints (spec §1.6): request and response shapes shared by the gateway, the
clients and the store."""

from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel, Field

from tensorzero_ray.types.inference import DynamicTool, Input, NullMeansDefault, Strict, ToolChoice
from tensorzero_ray.types.stored import (
    InferenceFilter,
    ListInferencesRequest,
    OrderBy,
    OutputSource,
    ToolAndSchemaFields,
    UuidStr,
)


class CreateDatapoint(NullMeansDefault):
    """A datapoint as a caller writes it; chat outputs are content blocks (or a string), JSON
    outputs are `{"raw": "<json>"}` and must match the output schema."""

    type: Literal["chat", "json"]
    function_name: str
    input: Input
    output: Any = None
    episode_id: UuidStr | None = None
    tags: dict[str, str] = Field(default_factory=dict)
    name: str | None = None
    allowed_tools: list[str] | None = None
    additional_tools: list[DynamicTool] | None = None
    tool_choice: ToolChoice | None = None
    parallel_tool_calls: bool | None = None
    provider_tools: list[Any] | None = None
    output_schema: dict[str, Any] | None = None


class CreateDatapointsRequest(Strict):
    datapoints: list[CreateDatapoint] = Field(min_length=1)


class UpdateDatapointsRequest(Strict):
    """Each entry: `id`, `type` and the fields to replace (null clears)."""

    datapoints: list[dict[str, Any]] = Field(min_length=1)


class DatapointMetadata(Strict):
    id: UuidStr
    name: str | None = None


class UpdateMetadataRequest(Strict):
    datapoints: list[DatapointMetadata] = Field(min_length=1)


class DatapointIds(Strict):
    ids: list[UuidStr]


class ListDatapointsRequest(NullMeansDefault):
    function_name: str | None = None
    limit: int = Field(default=20, ge=0, le=100_000)
    offset: int = Field(default=0, ge=0)
    filter: InferenceFilter | None = None
    order_by: list[OrderBy] | None = None
    search_query_experimental: str | None = None


class FromInferenceIds(Strict):
    type: Literal["inference_ids"]
    inference_ids: list[UuidStr] = Field(min_length=1)
    output_source: OutputSource = "inference"


class FromInferenceQuery(ListInferencesRequest):
    type: Literal["inference_query"]


class Datapoint(ToolAndSchemaFields):
    type: Literal["chat", "json"]
    dataset_name: str
    function_name: str
    id: str
    episode_id: str | None = None
    input: dict[str, Any]
    output: Any = None
    tags: dict[str, str] = Field(default_factory=dict)
    auxiliary: str = ""
    is_deleted: bool = False
    is_custom: bool = False
    source_inference_id: str | None = None
    staled_at: str | None = None
    updated_at: str
    name: str | None = None


class Datapoints(BaseModel):
    datapoints: list[Datapoint]


class DatapointIdsResponse(BaseModel):
    ids: list[str]


class DatasetSummary(BaseModel):
    dataset_name: str
    datapoint_count: int
    last_updated: str


class DatasetList(BaseModel):
    datasets: list[DatasetSummary]
