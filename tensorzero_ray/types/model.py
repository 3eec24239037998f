"""What a variant asks of a model and what a model answers: provider-neutral shapes."""

from __future__ import annotations

import uuid
from typing import Any, Literal, Union

from pydantic import BaseModel, Field

from tensorzero_ray.types.content import (
    ContentChunk,
    File,
    Text,
    Thought,
    ToolCall,
    ToolCallOutput,
    ToolResult,
    Unknown,
)
from tensorzero_ray.types.inference import (
    ExtraBodyEntry,
    ExtraHeaderEntry,
    FinishReason,
    JsonMode,
    SamplingParams,
    SpecificToolChoice,
    Usage,
)

RequestBlock = Union[Text, ToolCall, ToolResult, Thought, File, Unknown]
ResponseBlock = Union[Text, ToolCallOutput, Thought, Unknown]


class RequestMessage(BaseModel):
    role: Literal["user", "assistant"]
    content: list[RequestBlock]


class ToolDefinition(BaseModel):
    type: Literal["function", "openai_custom"] = "function"
    name: str
    description: str = ""
    parameters: dict[str, Any] = Field(default_factory=dict)
    strict: bool = False
    format: dict[str, Any] | None = None


def has_custom_tools(request: "ModelInferenceRequest") -> bool:
    settings = request.tool_settings
    return settings is not None and any(t.type == "openai_custom" for t in settings.tools)


class ToolSettings(BaseModel):
    tools: list[ToolDefinition] = Field(default_factory=list)
    tool_choice: Literal["none", "auto", "required"] | SpecificToolChoice = "auto"
    parallel_tool_calls: bool | None = None
    allowed_tool_names: list[str] | None = None


class ModelInferenceRequest(SamplingParams):
    """A fully rendered request: templates applied, parameters merged."""

    function_type: Literal["chat", "json"] = "chat"
    system: str | None = None
    messages: list[RequestMessage] = Field(default_factory=list)
    json_mode: JsonMode = "off"
    output_schema: dict[str, Any] | None = None
    tool_settings: ToolSettings | None = None
    stream: bool = False
    extra_body: list[ExtraBodyEntry] = Field(default_factory=list)
    extra_headers: list[ExtraHeaderEntry] = Field(default_factory=list)

    @property
    def json_tool(self) -> bool:
        """Whether the model answers through the forced `respond` tool: JSON functions, and chat
        functions given an output schema, with `json_mode = "tool"`."""
        return self.json_mode == "tool" and (self.function_type == "json" or self.output_schema is not None)


class ProviderResponse(BaseModel):
    content: list[ResponseBlock]
    usage: Usage = Field(default_factory=Usage)
    finish_reason: FinishReason | None = None
    raw_request: str
    raw_response: str
    raw_usage: Any = None


class ProviderChunk(BaseModel):
    content: list[ContentChunk] = Field(default_factory=list)
    usage: Usage | None = None
    finish_reason: FinishReason | None = None
    raw_chunk: str = ""
    raw_usage: Any = None
    error: str | None = None
    fatal: bool = False


class ModelInferenceResult(BaseModel):
    """One model call as it will be stored (a ModelInference row)."""

    id: uuid.UUID
    model_name: str
    model_provider_name: str
    provider_type: str
    output: list[ResponseBlock]
    usage: Usage
    finish_reason: FinishReason | None = None
    raw_request: str
    raw_response: str
    raw_usage: Any = None
    system: str | None = None
    input_messages: list[RequestMessage] = Field(default_factory=list)
    # None for a batch element: it has no latency of its own.
    response_time_ms: int | None
    ttft_ms: int | None = None
    # Answered from the inference cache: no provider call, no usage.
    cached: bool = False
    # Providers tried before this one, with their errors: the failures the models page counts.
    failed_providers: dict[str, str] = Field(default_factory=dict)
