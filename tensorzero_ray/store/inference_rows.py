"""The rows one inference writes: a ChatInference or JsonInference row and a ModelInference
row per model call (spec §4.2, §4.9)."""

from __future__ import annotations

import uuid
from typing import Any

import orjson

from tensorzero_ray.ids import uuid7
from tensorzero_ray.store.rows import (
    ChatInferenceRow,
    JsonInferenceRow,
    ModelInferenceRow,
    ModelProviderFailureRow,
    Row,
)
from tensorzero_ray.types import InferenceRequest, Input, JsonOutput, Thought
from tensorzero_ray.types.inference import stored_tool
from tensorzero_ray.types.model import ModelInferenceResult, ToolSettings


def _json(value: Any) -> str:
    return orjson.dumps(value).decode()


def stored_input(request: InferenceRequest) -> dict[str, Any]:
    return store_input(request.input)


def store_input(value: Input) -> dict[str, Any]:
    """The input as TensorZero stores it: legacy shorthands resolved to explicit blocks."""
    messages = [
        {"role": m.role, "content": [b.model_dump(mode="json", exclude_none=True) for b in m.normalized_blocks()]}
        for m in value.messages
    ]
    stored: dict[str, Any] = {"messages": messages}
    if value.system is not None:
        stored["system"] = value.system
    return stored


def request_columns(request: InferenceRequest, tool_settings: ToolSettings | None) -> dict[str, Any]:
    """What an inference row keeps of its request: parameters and tools (shared by the batch
    rows, which hold them until the provider answers)."""
    return dict(
        inference_params=_json({"chat_completion": request.params.chat_completion.model_dump(exclude_none=True)}),
        dynamic_tools=[_json(stored_tool(t)) for t in request.additional_tools or []],
        allowed_tools=_json(request.allowed_tools) if request.allowed_tools is not None else None,
        tool_choice=_json(
            tool_settings.tool_choice
            if isinstance(tool_settings.tool_choice, str)
            else tool_settings.tool_choice.model_dump()
        )
        if tool_settings
        else None,
        parallel_tool_calls=tool_settings.parallel_tool_calls if tool_settings else None,
    )


def head_row(
    common: dict[str, Any],
    columns: dict[str, Any],
    output: list | JsonOutput,
    output_schema,
    final: ModelInferenceResult,
) -> Row:
    """The ChatInference or JsonInference row."""
    if isinstance(output, JsonOutput):
        # What the answer carried besides its JSON (a chain of thought's thinking, reasoning).
        beside = [b.model_dump(mode="json", exclude_none=True) for b in final.output if isinstance(b, Thought)]
        return JsonInferenceRow(
            output=_json(output.model_dump(mode="json")),
            output_schema=_json(output_schema or {}),
            auxiliary_content=_json(beside) if beside else "",
            inference_params=columns["inference_params"],
            **common,
        )
    return ChatInferenceRow(
        output=_json([b.model_dump(mode="json", exclude_none=True) for b in output]), **columns, **common
    )


def model_inference_row(
    r: ModelInferenceResult, inference_id: uuid.UUID, function_name: str, variant_name: str
) -> ModelInferenceRow:
    return ModelInferenceRow(
        id=r.id,
        inference_id=inference_id,
        raw_request=r.raw_request,
        raw_response=r.raw_response,
        model_name=r.model_name,
        model_provider_name=r.model_provider_name,
        input_tokens=r.usage.input_tokens,
        output_tokens=r.usage.output_tokens,
        response_time_ms=r.response_time_ms,
        ttft_ms=r.ttft_ms,
        system=r.system,
        input_messages=_json([m.model_dump(mode="json", exclude_none=True) for m in r.input_messages]),
        output=_json([b.model_dump(mode="json", exclude_none=True) for b in r.output]),
        finish_reason=r.finish_reason,
        cached=r.cached,
        cost=r.usage.cost,
        provider_cache_read_input_tokens=r.usage.provider_cache_read_input_tokens,
        provider_cache_write_input_tokens=r.usage.provider_cache_write_input_tokens,
        function_name=function_name,
        variant_name=variant_name,
    )


def has_files(stored: dict[str, Any]) -> bool:
    return any(block.get("type") == "file" for m in stored["messages"] for block in m["content"])


def inference_rows(
    *,
    function_name: str,
    variant_name: str,
    inference_id: uuid.UUID,
    episode_id: uuid.UUID,
    request: InferenceRequest,
    stored_input: str,
    tags: dict[str, str],
    output: list | JsonOutput,
    output_schema: dict | None,
    tool_settings: ToolSettings | None,
    results: list[ModelInferenceResult],
    processing_time_ms: int,
    ttft_ms: int | None = None,
) -> list[Row]:
    common = dict(
        id=inference_id,
        function_name=function_name,
        variant_name=variant_name,
        episode_id=episode_id,
        input=stored_input,
        processing_time_ms=processing_time_ms,
        tags=tags,
        extra_body=_json([e.model_dump(exclude_none=True) for e in request.extra_body]) if request.extra_body else None,
        ttft_ms=ttft_ms,
    )
    columns = request_columns(request, tool_settings)
    head = head_row(common, columns, output, output_schema, results[-1])
    model_rows = [model_inference_row(r, inference_id, function_name, variant_name) for r in results]
    failures = [
        failure_row(inference_id, function_name, variant_name, r.model_name, provider, error)
        for r in results
        for provider, error in r.failed_providers.items()
    ]
    return [head, *model_rows, *failures]


MAX_ERROR_CHARS = 2000


def failure_row(
    inference_id: uuid.UUID, function_name: str, variant_name: str, model_name: str, provider: str, error: str
) -> ModelProviderFailureRow:
    return ModelProviderFailureRow(
        id=uuid7(),
        inference_id=inference_id,
        function_name=function_name,
        variant_name=variant_name,
        model_name=model_name,
        model_provider_name=provider,
        error=error[:MAX_ERROR_CHARS],
    )
