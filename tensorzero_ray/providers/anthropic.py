"""Anthropic Messages API (spec Appendix D.2)."""

from __future__ import annotations

import re
from collections.abc import AsyncIterator
from typing import Any

import orjson

from tensorzero_ray.errors import InvalidRequest
from tensorzero_ray.providers.base import CallContext, Provider, respond_tool_as_text
from tensorzero_ray.providers.openai import RESPOND_TOOL_DESCRIPTION
from tensorzero_ray.types import (
    File,
    FinishReason,
    Text,
    TextChunk,
    Thought,
    ThoughtChunk,
    ToolCall,
    ToolCallChunk,
    ToolCallOutput,
    ToolResult,
    Unknown,
    Usage,
)
from tensorzero_ray.types.model import ModelInferenceRequest, ProviderChunk, ProviderResponse

JSON_PREFILL = "Here is the JSON requested:\n{"

_FINISH = {
    "end_turn": FinishReason.STOP,
    "max_tokens": FinishReason.LENGTH,
    "stop_sequence": FinishReason.STOP_SEQUENCE,
    "tool_use": FinishReason.TOOL_CALL,
}

# Anthropic requires max_tokens; these are the per-model defaults when a request has none.
_MAX_TOKENS = [
    (r"claude-opus-4-6", 128_000),
    (r"claude-opus-4-5|claude-haiku-4-5|claude-(3-7-)?sonnet-(4|3-7)|claude-sonnet-4|claude-3-7-sonnet", 64_000),
    (r"claude-opus-4(-1)?", 32_000),
    (r"claude-3-5", 8_192),
    (r"claude-3-(haiku|opus)", 4_096),
]


def default_max_tokens(model: str) -> int | None:
    for pattern, tokens in _MAX_TOKENS:
        if re.search(pattern, model):
            return tokens
    return None


def anthropic_usage(usage: dict | None) -> Usage | None:
    if not usage:
        return None
    read = usage.get("cache_read_input_tokens")
    write = usage.get("cache_creation_input_tokens")
    input_tokens = usage.get("input_tokens")
    if input_tokens is not None:
        input_tokens += (read or 0) + (write or 0)
    return Usage(
        input_tokens=input_tokens,
        output_tokens=usage.get("output_tokens"),
        provider_cache_read_input_tokens=read,
        provider_cache_write_input_tokens=write,
    )


class AnthropicProvider(Provider):
    provider_type = "anthropic"

    def url(self, stream: bool) -> str:
        return self.config.api_base or "https://api.anthropic.com/v1/messages"

    @property
    def model_name(self) -> str:
        return self.config.model_name

    def model_fields(self) -> dict[str, Any]:
        return {"model": self.model_name}

    async def request_headers(self, ctx: CallContext) -> dict[str, str]:
        return self.headers(ctx)

    def headers(self, ctx: CallContext) -> dict[str, str]:
        headers = {"content-type": "application/json", "anthropic-version": "2023-06-01"}
        key = self.api_key("env::ANTHROPIC_API_KEY", ctx)
        if key:
            headers["x-api-key"] = key
        return headers

    def build_body(self, request: ModelInferenceRequest, ctx: CallContext) -> dict[str, Any]:
        max_tokens = request.max_tokens or default_max_tokens(self.model_name)
        if max_tokens is None:
            raise InvalidRequest(
                f"Anthropic requires `max_tokens`; set it on the variant for model `{self.model_name}`"
            )
        if request.reasoning_effort is not None and request.thinking_budget_tokens is not None:
            raise InvalidRequest("Anthropic: `reasoning_effort` and `thinking_budget_tokens` cannot both be set")
        messages = self.messages(request)
        if not messages:
            raise InvalidRequest("Anthropic requires at least one message")
        body: dict[str, Any] = {**self.model_fields(), "messages": messages, "max_tokens": max_tokens}
        if request.system is not None:
            body["system"] = [{"type": "text", "text": request.system}]
        for key in ("temperature", "top_p", "stop_sequences"):
            value = getattr(request, key)
            if value is not None:
                body[key] = value
        if request.thinking_budget_tokens is not None:
            body["thinking"] = {"type": "enabled", "budget_tokens": request.thinking_budget_tokens}
        if request.reasoning_effort is not None:
            body["thinking"] = {"type": "adaptive"}
            body.setdefault("output_config", {})["effort"] = request.reasoning_effort
        if request.stream:
            body["stream"] = True
        self.add_json_mode(body, request)
        self.add_tools(body, request)
        return self.patch_body(body, request, ctx)

    def messages(self, request: ModelInferenceRequest) -> list[dict[str, Any]]:
        out: list[dict[str, Any]] = []
        for message in request.messages:
            blocks: list[dict[str, Any]] = []
            for block in message.content:
                if isinstance(block, Text):
                    blocks.append({"type": "text", "text": block.text})
                elif isinstance(block, ToolCall):
                    try:
                        arguments = orjson.loads(block.arguments)
                    except orjson.JSONDecodeError:
                        arguments = {}
                    blocks.append({"type": "tool_use", "id": block.id, "name": block.name, "input": arguments})
                elif isinstance(block, ToolResult):
                    blocks.append({"type": "tool_result", "tool_use_id": block.id, "content": block.result})
                elif isinstance(block, Thought):
                    if block.provider_type not in (None, self.provider_type):
                        continue
                    if block.signature and block.text is not None:
                        blocks.append({"type": "thinking", "thinking": block.text, "signature": block.signature})
                    elif block.signature:
                        blocks.append({"type": "redacted_thinking", "data": block.signature})
                elif isinstance(block, File):
                    blocks.append(_file_block(block))
                elif isinstance(block, Unknown):
                    blocks.append(block.data)
            if blocks:
                out.append({"role": message.role, "content": blocks})
        return out

    def prefills_json(self, request: ModelInferenceRequest) -> bool:
        return request.json_mode == "on" and request.function_type == "json"

    def add_json_mode(self, body: dict[str, Any], request: ModelInferenceRequest) -> None:
        if self.prefills_json(request):
            body["messages"].append({"role": "assistant", "content": [{"type": "text", "text": JSON_PREFILL}]})
        elif request.json_mode == "strict" and request.output_schema:
            body.setdefault("output_config", {})["format"] = {"type": "json_schema", "schema": request.output_schema}
        elif request.json_tool:
            body["tools"] = [
                {
                    "name": "respond",
                    "description": RESPOND_TOOL_DESCRIPTION,
                    "input_schema": request.output_schema or {"type": "object"},
                }
            ]
            body["tool_choice"] = {"type": "tool", "name": "respond"}

    def add_tools(self, body: dict[str, Any], request: ModelInferenceRequest) -> None:
        settings = request.tool_settings
        if settings is None or not settings.tools or settings.tool_choice == "none" or "tools" in body:
            return
        allowed = settings.allowed_tool_names
        body["tools"] = [
            {"name": t.name, "description": t.description, "input_schema": t.parameters}
            for t in settings.tools
            if allowed is None or t.name in allowed
        ]
        choice = settings.tool_choice
        if choice == "auto":
            body["tool_choice"] = {"type": "auto"}
        elif choice == "required":
            body["tool_choice"] = {"type": "any"}
        else:
            body["tool_choice"] = {"type": "tool", "name": choice.specific}
        if settings.parallel_tool_calls is False:
            body["tool_choice"]["disable_parallel_tool_use"] = True

    async def infer(self, request: ModelInferenceRequest, ctx: CallContext) -> ProviderResponse:
        body = self.build_body(request, ctx)
        headers = self.patch_headers(await self.request_headers(ctx), request, ctx)
        raw_request, raw_response, data = await self.post_json(self.url(stream=False), body, headers)
        if not isinstance(data, dict) or "content" not in data:
            raise self.error(
                "Error from anthropic server: response has no content",
                raw_request=raw_request,
                raw_response=raw_response,
            )
        content: list = []
        for block in data["content"]:
            kind = block.get("type")
            if kind == "text":
                content.append(Text(text=block["text"]))
            elif kind == "tool_use":
                content.append(
                    ToolCallOutput(
                        id=block["id"],
                        raw_name=block["name"],
                        raw_arguments=orjson.dumps(block.get("input", {})).decode(),
                    )
                )
            elif kind == "thinking":
                content.append(
                    Thought(
                        text=block.get("thinking"), signature=block.get("signature"), provider_type=self.provider_type
                    )
                )
            elif kind == "redacted_thinking":
                content.append(Thought(signature=block.get("data"), provider_type=self.provider_type))
            else:
                content.append(Unknown(data=block))
        finish = _FINISH.get(data.get("stop_reason"), FinishReason.UNKNOWN) if data.get("stop_reason") else None
        if self.prefills_json(request):
            content = _prepend_brace(content)
        elif request.json_tool:
            content = respond_tool_as_text(content)
            finish = FinishReason.STOP
        return ProviderResponse(
            content=content,
            usage=anthropic_usage(data.get("usage")) or Usage(),
            finish_reason=finish,
            raw_request=raw_request,
            raw_response=raw_response,
            raw_usage=data.get("usage"),
        )

    async def stream(self, request: ModelInferenceRequest, ctx: CallContext) -> AsyncIterator[ProviderChunk]:
        body = self.build_body(request.model_copy(update={"stream": True}), ctx)
        headers = self.patch_headers(await self.request_headers(ctx), request, ctx)
        json_tool = request.json_tool
        needs_brace = self.prefills_json(request)
        blocks: dict[int, dict] = {}
        input_tokens: int | None = None
        start_usage: dict = {}
        async for payload in self.sse_events(self.url(stream=True), body, headers, ctx):
            try:
                event = orjson.loads(payload)
            except orjson.JSONDecodeError:
                yield ProviderChunk(raw_chunk=payload, error="Error from anthropic server: chunk is not JSON")
                continue
            kind = event.get("type")
            chunk = ProviderChunk(raw_chunk=payload)
            if kind == "message_start":
                start_usage = (event.get("message") or {}).get("usage") or {}
                usage = anthropic_usage(start_usage)
                input_tokens = usage.input_tokens if usage else None
                continue
            if kind == "error":
                yield ProviderChunk(
                    raw_chunk=payload,
                    fatal=True,
                    error=f"Error from anthropic server: {orjson.dumps(event.get('error')).decode()}",
                )
                return
            if kind == "content_block_start":
                index = event.get("index", 0)
                block = event.get("content_block") or {}
                blocks[index] = block
                if block.get("type") == "tool_use" and not json_tool:
                    chunk.content.append(
                        ToolCallChunk(id=block.get("id", str(index)), raw_name=block.get("name", ""), raw_arguments="")
                    )
            elif kind == "content_block_delta":
                index = event.get("index", 0)
                delta = event.get("delta") or {}
                dtype = delta.get("type")
                if dtype == "text_delta":
                    text = delta.get("text", "")
                    if needs_brace:
                        text, needs_brace = "{" + text, False
                    chunk.content.append(TextChunk(id=str(index), text=text))
                elif dtype == "input_json_delta":
                    partial = delta.get("partial_json", "")
                    if json_tool:
                        chunk.content.append(TextChunk(id="0", text=partial))
                    else:
                        tool_id = (blocks.get(index) or {}).get("id", str(index))
                        chunk.content.append(ToolCallChunk(id=tool_id, raw_name="", raw_arguments=partial))
                elif dtype == "thinking_delta":
                    chunk.content.append(
                        ThoughtChunk(id=str(index), text=delta.get("thinking", ""), provider_type=self.provider_type)
                    )
                elif dtype == "signature_delta":
                    chunk.content.append(
                        ThoughtChunk(
                            id=str(index), signature=delta.get("signature", ""), provider_type=self.provider_type
                        )
                    )
            elif kind == "message_delta":
                usage = event.get("usage") or {}
                chunk.usage = Usage(input_tokens=input_tokens, output_tokens=usage.get("output_tokens"))
                chunk.raw_usage = {**start_usage, **usage}
                reason = (event.get("delta") or {}).get("stop_reason")
                if reason:
                    chunk.finish_reason = FinishReason.STOP if json_tool else _FINISH.get(reason, FinishReason.UNKNOWN)
            elif kind == "message_stop":
                return
            else:
                continue
            yield chunk
        yield ProviderChunk(
            fatal=True, error=f"Error from {self.provider_type} server: the stream ended without `message_stop`"
        )


def _prepend_brace(content: list) -> list:
    for index, block in enumerate(content):
        if isinstance(block, Text):
            content[index] = Text(text="{" + block.text)
            break
    return content


def _file_block(block: File) -> dict[str, Any]:
    kind = "image" if (block.mime_type or "image/").startswith("image/") else "document"
    if block.file_type == "url":
        return {"type": kind, "source": {"type": "url", "url": block.url}}
    return {"type": kind, "source": {"type": "base64", "media_type": block.mime_type, "data": block.data}}
