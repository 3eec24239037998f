"""The /inference request and response shapes (spec §1.1), shared by the gateway and clients."""

from __future__ import annotations

import uuid
from enum import Enum
from typing import Any, Literal, Union

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

from tensorzero_ray.types.content import (
    ContentChunk,
    InputContentBlock,
    OutputContentBlock,
    Template,
    Text,
)


class Strict(BaseModel):
    model_config = ConfigDict(extra="forbid")


class NullMeansDefault(Strict):
    """Clients (TensorZero's own among them) send `null` for fields they leave unset."""

    @model_validator(mode="before")
    @classmethod
    def _drop_nulls(cls, data: Any) -> Any:
        if isinstance(data, dict):
            return {key: value for key, value in data.items() if value is not None}
        return data


class InputMessage(Strict):
    role: Literal["user", "assistant"]
    content: list[InputContentBlock]

    @field_validator("content", mode="before")
    @classmethod
    def _content_shorthands(cls, value: Any, info) -> Any:
        if isinstance(value, str):
            return [{"type": "text", "text": value}]
        if isinstance(value, dict):
            # Legacy: a bare object is the arguments of the role's template.
            role = info.data.get("role", "user")
            return [{"type": "template", "name": role, "arguments": value}]
        return value

    def normalized_blocks(self) -> list:
        """Legacy `text`+`arguments` blocks become templates named after the role."""
        out = []
        for block in self.content:
            if isinstance(block, Text) and block.arguments is not None:
                out.append(Template(name=self.role, arguments=block.arguments))
            else:
                out.append(block)
        return out


class Input(Strict):
    system: str | dict[str, Any] | None = None
    messages: list[InputMessage] = Field(default_factory=list)


JsonMode = Literal["off", "on", "strict", "tool"]
ServiceTier = Literal["auto", "default", "priority", "flex"]


class SamplingParams(Strict):
    """Generation parameters: set on a variant, overridden per request, sent to the model."""

    temperature: float | None = None
    max_tokens: int | None = Field(default=None, gt=0)
    seed: int | None = None
    top_p: float | None = None
    presence_penalty: float | None = None
    frequency_penalty: float | None = None
    stop_sequences: list[str] | None = None
    reasoning_effort: str | None = None
    service_tier: ServiceTier | None = None
    thinking_budget_tokens: int | None = Field(default=None, gt=0)
    verbosity: str | None = None


class ChatCompletionParams(SamplingParams):
    json_mode: JsonMode | None = None


class InferenceParams(Strict):
    chat_completion: ChatCompletionParams = Field(default_factory=ChatCompletionParams)


class FunctionTool(Strict):
    type: Literal["function"] = "function"
    name: str
    description: str = ""
    parameters: dict[str, Any]
    strict: bool = False


class OpenAICustomTool(Strict):
    """OpenAI's free-form tool: the model answers with raw text (optionally held to a grammar)
    instead of JSON arguments. OpenAI providers only."""

    type: Literal["openai_custom"]
    name: str
    description: str = ""
    format: dict[str, Any] | None = None


DynamicTool = Union[FunctionTool, OpenAICustomTool]


def stored_tool(tool: DynamicTool) -> dict[str, Any]:
    """A dynamic tool as stored: function tools untagged (as TensorZero stores them)."""
    return tool.model_dump(exclude={"type"}) if tool.type == "function" else tool.model_dump()


class SpecificToolChoice(Strict):
    specific: str


ToolChoice = Union[Literal["none", "auto", "required"], SpecificToolChoice]


class CacheOptions(Strict):
    enabled: Literal["on", "off", "read_only", "write_only"] = "off"
    max_age_s: int | None = None


class ExtraBodyEntry(Strict):
    pointer: str
    value: Any = None
    delete: bool | None = None
    variant_name: str | None = None
    model_name: str | None = None
    provider_name: str | None = None


class ExtraHeaderEntry(Strict):
    name: str
    value: str | None = None
    delete: bool | None = None
    variant_name: str | None = None
    model_name: str | None = None
    provider_name: str | None = None


class InferenceRequest(NullMeansDefault):
    """POST /inference. Unknown keys are rejected, as TensorZero does."""

    function_name: str | None = None
    model_name: str | None = None
    input: Input
    episode_id: str | None = None
    stream: bool = False
    variant_name: str | None = None
    namespace: str | None = Field(default=None, min_length=1)
    params: InferenceParams = Field(default_factory=InferenceParams)
    tags: dict[str, str] = Field(default_factory=dict)
    dryrun: bool = False
    internal: bool = False
    allowed_tools: list[str] | None = None
    additional_tools: list[DynamicTool] | None = None
    tool_choice: ToolChoice | None = None
    parallel_tool_calls: bool | None = None
    provider_tools: list[dict[str, Any]] = Field(default_factory=list)
    output_schema: dict[str, Any] | None = None
    cache_options: CacheOptions = Field(default_factory=CacheOptions)
    credentials: dict[str, str] = Field(default_factory=dict, repr=False)
    extra_body: list[ExtraBodyEntry] = Field(default_factory=list)
    extra_headers: list[ExtraHeaderEntry] = Field(default_factory=list)
    include_raw_response: bool = False
    include_original_response: bool = False
    include_raw_usage: bool = False
    include_aggregated_response: bool = False
    internal_dynamic_variant_config: dict[str, Any] | None = None


class FinishReason(str, Enum):
    STOP = "stop"
    STOP_SEQUENCE = "stop_sequence"
    LENGTH = "length"
    TOOL_CALL = "tool_call"
    CONTENT_FILTER = "content_filter"
    UNKNOWN = "unknown"


class Usage(BaseModel):
    input_tokens: int | None = None
    output_tokens: int | None = None
    provider_cache_read_input_tokens: int | None = Field(default=None, exclude_if=lambda v: v is None)
    provider_cache_write_input_tokens: int | None = Field(default=None, exclude_if=lambda v: v is None)
    cost: float | None = Field(default=None, exclude_if=lambda v: v is None)

    def __add__(self, other: "Usage") -> "Usage":
        def add(a, b):
            if a is None:
                return b
            if b is None:
                return a
            return a + b

        return Usage(
            input_tokens=add(self.input_tokens, other.input_tokens),
            output_tokens=add(self.output_tokens, other.output_tokens),
            provider_cache_read_input_tokens=add(
                self.provider_cache_read_input_tokens, other.provider_cache_read_input_tokens
            ),
            provider_cache_write_input_tokens=add(
                self.provider_cache_write_input_tokens, other.provider_cache_write_input_tokens
            ),
            cost=add(self.cost, other.cost),
        )


class RawResponseEntry(BaseModel):
    model_inference_id: uuid.UUID | None = None
    provider_type: str
    api_type: str = "chat_completions"
    data: str


class RawUsageEntry(BaseModel):
    model_inference_id: uuid.UUID
    provider_type: str
    api_type: str = "chat_completions"
    data: Any = None


class JsonOutput(BaseModel):
    raw: str | None
    parsed: dict[str, Any] | list[Any] | str | int | float | bool | None = None


class _ResponseBase(BaseModel):
    inference_id: uuid.UUID
    episode_id: uuid.UUID
    variant_name: str
    usage: Usage
    finish_reason: FinishReason | None = None
    raw_usage: list[RawUsageEntry] | None = Field(default=None, exclude_if=lambda v: v is None)
    raw_response: list[RawResponseEntry] | None = Field(default=None, exclude_if=lambda v: v is None)
    original_response: str | None = Field(default=None, exclude_if=lambda v: v is None)


class ChatInferenceResponse(_ResponseBase):
    content: list[OutputContentBlock]


class JsonInferenceResponse(_ResponseBase):
    output: JsonOutput


InferenceResponse = Union[ChatInferenceResponse, JsonInferenceResponse]


class _ChunkBase(BaseModel):
    inference_id: uuid.UUID
    episode_id: uuid.UUID
    variant_name: str
    usage: Usage | None = Field(default=None, exclude_if=lambda v: v is None)
    finish_reason: FinishReason | None = Field(default=None, exclude_if=lambda v: v is None)
    raw_usage: list[RawUsageEntry] | None = Field(default=None, exclude_if=lambda v: v is None)
    raw_chunk: str | None = Field(default=None, exclude_if=lambda v: v is None)
    original_chunk: str | None = Field(default=None, exclude_if=lambda v: v is None)
    aggregated_response: dict[str, Any] | None = Field(default=None, exclude_if=lambda v: v is None)


class ChatChunk(_ChunkBase):
    content: list[ContentChunk]


class JsonChunk(_ChunkBase):
    raw: str


InferenceChunk = Union[ChatChunk, JsonChunk]
