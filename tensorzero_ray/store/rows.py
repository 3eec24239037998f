"""Stored rows, one pydantic model per table (spec §4.2, §4.3). JSON payload columns hold JSON
strings, as TensorZero stores them."""

from __future__ import annotations

import uuid
from datetime import datetime, timezone
from typing import Literal

from pydantic import BaseModel, Field

from tensorzero_ray.types import FinishReason


def clickhouse_time(seconds: float) -> str:
    """A DateTime64(3) value as JSONEachRow takes it."""
    return datetime.fromtimestamp(seconds, timezone.utc).strftime("%Y-%m-%d %H:%M:%S.%f")[:-3]


class Row(BaseModel):
    table: str = Field(default="", exclude=True)

    def record(self) -> dict:
        return self.model_dump(mode="json")


class ChatInferenceRow(Row):
    table: str = Field(default="ChatInference", exclude=True)
    id: uuid.UUID
    function_name: str
    variant_name: str
    episode_id: uuid.UUID
    input: str
    output: str
    inference_params: str
    processing_time_ms: int | None = None
    tags: dict[str, str] = Field(default_factory=dict)
    extra_body: str | None = None
    ttft_ms: int | None = None
    dynamic_tools: list[str] = Field(default_factory=list)
    dynamic_provider_tools: list[str] = Field(default_factory=list)
    allowed_tools: str | None = None
    tool_choice: str | None = None
    parallel_tool_calls: bool | None = None


class JsonInferenceRow(Row):
    table: str = Field(default="JsonInference", exclude=True)
    id: uuid.UUID
    function_name: str
    variant_name: str
    episode_id: uuid.UUID
    input: str
    output: str
    output_schema: str
    inference_params: str
    processing_time_ms: int | None = None
    tags: dict[str, str] = Field(default_factory=dict)
    extra_body: str | None = None
    auxiliary_content: str = ""
    ttft_ms: int | None = None


class ModelInferenceRow(Row):
    table: str = Field(default="ModelInference", exclude=True)
    id: uuid.UUID
    inference_id: uuid.UUID
    raw_request: str
    raw_response: str
    model_name: str
    model_provider_name: str
    input_tokens: int | None = None
    output_tokens: int | None = None
    response_time_ms: int | None = None
    ttft_ms: int | None = None
    system: str | None = None
    input_messages: str
    output: str
    cached: bool = False
    finish_reason: FinishReason | None = None
    cost: float | None = None
    provider_cache_read_input_tokens: int | None = None
    provider_cache_write_input_tokens: int | None = None
    function_name: str = ""
    variant_name: str = ""


class BooleanMetricFeedbackRow(Row):
    table: str = Field(default="BooleanMetricFeedback", exclude=True)
    id: uuid.UUID
    target_id: uuid.UUID
    metric_name: str
    value: bool
    tags: dict[str, str] = Field(default_factory=dict)


class FloatMetricFeedbackRow(Row):
    table: str = Field(default="FloatMetricFeedback", exclude=True)
    id: uuid.UUID
    target_id: uuid.UUID
    metric_name: str
    value: float
    tags: dict[str, str] = Field(default_factory=dict)


class CommentFeedbackRow(Row):
    table: str = Field(default="CommentFeedback", exclude=True)
    id: uuid.UUID
    target_id: uuid.UUID
    target_type: Literal["inference", "episode"]
    value: str
    tags: dict[str, str] = Field(default_factory=dict)


class DemonstrationFeedbackRow(Row):
    table: str = Field(default="DemonstrationFeedback", exclude=True)
    id: uuid.UUID
    inference_id: uuid.UUID
    value: str
    tags: dict[str, str] = Field(default_factory=dict)


class _DatapointRow(Row):
    dataset_name: str
    function_name: str
    id: uuid.UUID
    episode_id: uuid.UUID | None = None
    input: str
    output: str | None = None
    tags: dict[str, str] = Field(default_factory=dict)
    auxiliary: str = ""
    is_deleted: bool = False
    updated_at: str
    staled_at: str | None = None
    source_inference_id: uuid.UUID | None = None
    is_custom: bool = False
    name: str | None = None


class ChatInferenceDatapointRow(_DatapointRow):
    table: str = Field(default="ChatInferenceDatapoint", exclude=True)
    dynamic_tools: list[str] = Field(default_factory=list)
    dynamic_provider_tools: list[str] = Field(default_factory=list)
    allowed_tools: str | None = None
    tool_choice: str | None = None
    parallel_tool_calls: bool | None = None


class JsonInferenceDatapointRow(_DatapointRow):
    table: str = Field(default="JsonInferenceDatapoint", exclude=True)
    output_schema: str


class ModelProviderFailureRow(Row):
    table: str = Field(default="ModelProviderFailure", exclude=True)
    id: uuid.UUID
    inference_id: uuid.UUID
    function_name: str
    variant_name: str
    model_name: str
    model_provider_name: str
    error: str


# UInt128 columns travel as decimal strings: JSON (and our journals) stop at 64-bit integers,
# and ClickHouse reads quoted integers.


class WorkflowEvaluationRunRow(Row):
    """A workflow-evaluation run (TensorZero keeps them under their older name)."""

    table: str = Field(default="DynamicEvaluationRun", exclude=True)
    run_id_uint: str
    variant_pins: dict[str, str] = Field(default_factory=dict)
    tags: dict[str, str] = Field(default_factory=dict)
    project_name: str | None = None
    run_display_name: str | None = None


class WorkflowEvaluationEpisodeRow(Row):
    table: str = Field(default="DynamicEvaluationRunEpisode", exclude=True)
    run_id: uuid.UUID
    episode_id_uint: str
    variant_pins: dict[str, str] = Field(default_factory=dict)
    datapoint_name: str | None = None
    tags: dict[str, str] = Field(default_factory=dict)


class InferenceEvaluationRunRow(Row):
    table: str = Field(default="InferenceEvaluationRuns", exclude=True)
    run_id_uint: str
    evaluation_name: str
    function_name: str
    function_type: str
    dataset_name: str
    variant_names: list[str]
    metrics: str
    source: str
    num_datapoints: int
    status: Literal["running", "complete", "stopped_early"]
    # Set here, not by the column default: the finishing row must replace the starting one.
    created_at: str
    updated_at: str


class EvaluationHumanFeedbackRow(Row):
    """A person's score of one output on one datapoint, reused instead of asking the judge
    again about the same output."""

    table: str = Field(default="StaticEvaluationHumanFeedback", exclude=True)
    metric_name: str
    datapoint_id: uuid.UUID
    output: str
    value: str
    feedback_id: uuid.UUID
    evaluator_inference_id: uuid.UUID


class AdaptiveExperimentStateRow(Row):
    """One track-and-stop update: what the controller saw and decided."""

    table: str = Field(default="AdaptiveExperimentState", exclude=True)
    function_name: str
    namespace: str
    metric_name: str
    computed_at: str
    effective_from: str
    state: str
    probabilities: dict[str, float]
    arms: str
    leader: str | None = None
    stopping_statistic: float | None = None
    threshold: float | None = None
    winner: str | None = None


class ModelInferenceCacheRow(Row):
    """A provider's answer kept for the inference cache, under its request's hash."""

    table: str = Field(default="ModelInferenceCache", exclude=True)
    short_cache_key: int
    long_cache_key: str
    output: str
    raw_request: str
    raw_response: str
    input_tokens: int | None = None
    output_tokens: int | None = None
    finish_reason: FinishReason | None = None


class DiclExampleRow(Row):
    """One example a DICL variant can show the model: a stored input, its output, its embedding."""

    table: str = Field(default="DynamicInContextLearningExample", exclude=True)
    id: uuid.UUID
    function_name: str
    variant_name: str
    namespace: str = ""
    input: str
    output: str
    embedding: list[float]


class BatchRequestRow(Row):
    """One state of a provider batch: written when it starts and at every poll."""

    table: str = Field(default="BatchRequest", exclude=True)
    batch_id: uuid.UUID
    id: uuid.UUID
    batch_params: str
    model_name: str
    model_provider_name: str
    status: Literal["pending", "completed", "failed"]
    errors: list[str] = Field(default_factory=list)
    raw_request: str = ""
    raw_response: str = ""
    function_name: str
    variant_name: str


class BatchModelInferenceRow(Row):
    """One element of a batch as it was sent: what its ChatInference or JsonInference row and
    its ModelInference row are made from once the provider answers."""

    table: str = Field(default="BatchModelInference", exclude=True)
    inference_id: uuid.UUID
    batch_id: uuid.UUID
    function_name: str
    variant_name: str
    episode_id: uuid.UUID
    input: str
    input_messages: str
    system: str | None = None
    tool_params: str | None = None
    inference_params: str
    raw_request: str
    model_name: str
    model_provider_name: str
    output_schema: str | None = None
    tags: dict[str, str] = Field(default_factory=dict)
    dynamic_tools: list[str] = Field(default_factory=list)
    dynamic_provider_tools: list[str] = Field(default_factory=list)
    allowed_tools: str | None = None
    tool_choice: str | None = None
    parallel_tool_calls: bool | None = None
