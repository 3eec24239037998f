"""OpenAI's Responses API (`api_type = "responses"`, or `openai::responses::<model>`): input
items instead of messages, reasoning items that go back on the next turn (their summaries and,
with `include_encrypted_reasoning`, their encrypted content), and OpenAI's built-in tools
(`provider_tools`) passed through, their calls kept as `unknown` blocks."""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

import orjson

from tensorzero_ray.providers.base import CallContext, respond_tool_as_text
from tensorzero_ray.providers.openai import RESPOND_TOOL_DESCRIPTION, OpenAIChatCompletions
from tensorzero_ray.types import (
    File,
    FinishReason,
    SummaryText,
    Text,
    TextChunk,
    Thought,
    ThoughtChunk,
    ToolCall,
    ToolCallChunk,
    ToolCallOutput,
    ToolResult,
    Unknown,
    UnknownChunk,
    Usage,
)
from tensorzero_ray.types.model import ModelInferenceRequest, ProviderChunk, ProviderResponse

_INCOMPLETE = {"max_output_tokens": FinishReason.LENGTH, "content_filter": FinishReason.CONTENT_FILTER}


def responses_usage(usage: dict | None) -> Usage | None:
    if not usage:
        return None
    return Usage(
        input_tokens=usage.get("input_tokens"),
        output_tokens=usage.get("output_tokens"),
        provider_cache_read_input_tokens=(usage.get("input_tokens_details") or {}).get("cached_tokens"),
    )


class OpenAIResponsesProvider(OpenAIChatCompletions):
    def url(self, ctx: CallContext) -> str:
        return self.api_base() + "/responses"

    def build_body(self, request: ModelInferenceRequest, ctx: CallContext) -> dict[str, Any]:
        body: dict[str, Any] = {"model": self.config.model_name, "input": self.input_items(request), "store": False}
        if request.system is not None:
            body["instructions"] = request.system
        params = {
            "temperature": request.temperature,
            "max_output_tokens": request.max_tokens,
            "top_p": request.top_p,
            "service_tier": request.service_tier,
        }
        body.update({k: v for k, v in params.items() if v is not None})
        if request.reasoning_effort is not None:
            body["reasoning"] = {"effort": request.reasoning_effort, "summary": "auto"}
        if self.config.include_encrypted_reasoning:
            body["include"] = ["reasoning.encrypted_content"]
        text: dict[str, Any] = {}
        if request.verbosity is not None:
            text["verbosity"] = request.verbosity
        if request.json_mode == "strict" and request.output_schema:
            text["format"] = {
                "type": "json_schema",
                "name": "response",
                "strict": True,
                "schema": request.output_schema,
            }
        elif request.json_mode in ("on", "strict"):
            text["format"] = {"type": "json_object"}
        if text:
            body["text"] = text
        if request.stream:
            body["stream"] = True
        self.add_response_tools(body, request)
        return self.patch_body(body, request, ctx)

    def add_response_tools(self, body: dict[str, Any], request: ModelInferenceRequest) -> None:
        tools: list[dict[str, Any]] = list(self.config.provider_tools)
        if request.json_tool:
            tools.append(
                {
                    "type": "function",
                    "name": "respond",
                    "description": RESPOND_TOOL_DESCRIPTION,
                    "parameters": request.output_schema or {},
                }
            )
            body["tool_choice"] = {"type": "function", "name": "respond"}
        settings = request.tool_settings
        if settings is not None and settings.tools and not request.json_tool:
            for tool in settings.tools:
                if tool.type == "openai_custom":
                    custom: dict[str, Any] = {"type": "custom", "name": tool.name, "description": tool.description}
                    if tool.format is not None:
                        custom["format"] = tool.format
                    tools.append(custom)
                else:
                    function = {
                        "type": "function",
                        "name": tool.name,
                        "description": tool.description,
                        "parameters": tool.parameters,
                    }
                    if tool.strict:
                        function["strict"] = True
                    tools.append(function)
            choice = settings.tool_choice
            body["tool_choice"] = choice if isinstance(choice, str) else {"type": "function", "name": choice.specific}
            if settings.allowed_tool_names is not None and choice != "none":
                body["tool_choice"] = {
                    "type": "allowed_tools",
                    "mode": "required" if choice == "required" else "auto",
                    "tools": [{"type": "function", "name": n} for n in settings.allowed_tool_names],
                }
            if settings.parallel_tool_calls is not None:
                body["parallel_tool_calls"] = settings.parallel_tool_calls
        if tools:
            body["tools"] = tools

    def input_items(self, request: ModelInferenceRequest) -> list[dict[str, Any]]:
        items: list[dict[str, Any]] = []
        for message in request.messages:
            content: list[dict[str, Any]] = []
            text_type = "output_text" if message.role == "assistant" else "input_text"

            def flush() -> None:
                if content:
                    items.append({"role": message.role, "content": list(content)})
                    content.clear()

            for block in message.content:
                if isinstance(block, Text):
                    content.append({"type": text_type, "text": block.text})
                elif isinstance(block, File):
                    content.append(_file_item(block))
                elif isinstance(block, Unknown):
                    content.append(block.data)
                else:
                    # Calls, results and reasoning are items of their own, in conversation order.
                    flush()
                    item = _item(block)
                    if item is not None:
                        items.append(item)
            flush()
        return items

    async def infer(self, request: ModelInferenceRequest, ctx: CallContext) -> ProviderResponse:
        body = self.build_body(request, ctx)
        headers = self.patch_headers(self.headers(ctx), request, ctx)
        raw_request, raw_response, data = await self.post_json(self.url(ctx), body, headers)
        if not isinstance(data, dict) or not isinstance(data.get("output"), list):
            raise self.error(
                "Error from openai server: response has no `output`", raw_request=raw_request, raw_response=raw_response
            )
        content: list = []
        for item in data["output"]:
            content += _blocks(item)
        finish = _finish(data, any(isinstance(b, ToolCallOutput) for b in content))
        if request.json_tool:
            content = respond_tool_as_text(content)
            finish = FinishReason.STOP
        return ProviderResponse(
            content=content,
            usage=responses_usage(data.get("usage")) or Usage(),
            finish_reason=finish,
            raw_request=raw_request,
            raw_response=raw_response,
            raw_usage=data.get("usage"),
        )

    async def stream(self, request: ModelInferenceRequest, ctx: CallContext) -> AsyncIterator[ProviderChunk]:
        body = self.build_body(request.model_copy(update={"stream": True}), ctx)
        headers = self.patch_headers(self.headers(ctx), request, ctx)
        json_tool = request.json_tool
        calls: dict[str, str] = {}
        async for payload in self.sse_events(self.url(ctx), body, headers, ctx):
            try:
                event = orjson.loads(payload)
            except orjson.JSONDecodeError:
                yield ProviderChunk(raw_chunk=payload, error="Error from openai server: event is not JSON")
                continue
            kind = event.get("type", "")
            chunk = ProviderChunk(raw_chunk=payload)
            if kind in ("error", "response.failed"):
                error = event.get("error") or (event.get("response") or {}).get("error") or event
                yield ProviderChunk(
                    raw_chunk=payload, fatal=True, error=f"Error from openai server: {orjson.dumps(error).decode()}"
                )
                return
            if kind == "response.output_item.added":
                item = event.get("item") or {}
                if item.get("type") == "function_call":
                    calls[item.get("id", "")] = item.get("call_id", "")
                    if not json_tool:
                        chunk.content.append(
                            ToolCallChunk(id=item.get("call_id", ""), raw_name=item.get("name", ""), raw_arguments="")
                        )
                elif item.get("type") not in ("message", "reasoning"):
                    chunk.content.append(_unknown_chunk(item))
            elif kind == "response.output_text.delta":
                chunk.content.append(TextChunk(id=str(event.get("output_index", 0)), text=event.get("delta", "")))
            elif kind == "response.function_call_arguments.delta":
                delta = event.get("delta", "")
                if json_tool:
                    chunk.content.append(TextChunk(id="0", text=delta))
                else:
                    call_id = calls.get(event.get("item_id", ""), event.get("item_id", ""))
                    chunk.content.append(ToolCallChunk(id=call_id, raw_name="", raw_arguments=delta))
            elif kind == "response.reasoning_summary_text.delta":
                chunk.content.append(
                    ThoughtChunk(
                        id=str(event.get("output_index", 0)),
                        summary_id=str(event.get("summary_index", 0)),
                        summary_text=event.get("delta", ""),
                        provider_type=self.provider_type,
                    )
                )
            elif kind == "response.output_item.done" and (event.get("item") or {}).get("encrypted_content"):
                chunk.content.append(
                    ThoughtChunk(
                        id=str(event.get("output_index", 0)),
                        signature=event["item"]["encrypted_content"],
                        provider_type=self.provider_type,
                    )
                )
            elif kind in ("response.completed", "response.incomplete"):
                response = event.get("response") or {}
                chunk.usage = responses_usage(response.get("usage"))
                chunk.raw_usage = response.get("usage")
                chunk.finish_reason = FinishReason.STOP if json_tool else _finish(response, bool(calls))
                yield chunk
                return
            else:
                continue
            yield chunk
        yield ProviderChunk(fatal=True, error="Error from openai server: the stream ended without `response.completed`")


def _finish(response: dict[str, Any], called: bool) -> FinishReason:
    if response.get("status") == "incomplete":
        reason = (response.get("incomplete_details") or {}).get("reason")
        return _INCOMPLETE.get(reason, FinishReason.UNKNOWN)
    return FinishReason.TOOL_CALL if called else FinishReason.STOP


def _blocks(item: dict[str, Any]) -> list:
    kind = item.get("type")
    if kind == "message":
        return [
            Text(text=part.get("text", "")) if part.get("type") == "output_text" else Unknown(data=part)
            for part in item.get("content") or []
        ]
    if kind == "function_call":
        return [
            ToolCallOutput(
                id=item.get("call_id", ""), raw_name=item.get("name", ""), raw_arguments=item.get("arguments", "")
            )
        ]
    if kind == "custom_tool_call":
        return [
            ToolCallOutput(
                id=item.get("call_id", ""), raw_name=item.get("name", ""), raw_arguments=item.get("input", "")
            )
        ]
    if kind == "reasoning":
        summary = [SummaryText(text=s.get("text", "")) for s in item.get("summary") or []]
        return [
            Thought(
                summary=summary or None,
                signature=item.get("encrypted_content"),
                provider_type="openai",
                extra_data={"id": item["id"]} if item.get("id") else None,
            )
        ]
    # Built-in tools (web search, file search, code interpreter...) and anything newer.
    return [Unknown(data=item)]


def _unknown_chunk(item: dict[str, Any]) -> UnknownChunk:
    return UnknownChunk(id=item.get("id", ""), data=item)


def _item(block: Any) -> dict[str, Any] | None:
    if isinstance(block, ToolCall):
        arguments = block.arguments if isinstance(block.arguments, str) else orjson.dumps(block.arguments).decode()
        return {"type": "function_call", "call_id": block.id, "name": block.name, "arguments": arguments or "{}"}
    if isinstance(block, ToolResult):
        return {"type": "function_call_output", "call_id": block.id, "output": block.result}
    if isinstance(block, Thought):
        if not block.signature and not block.summary and not block.text:
            return None
        summary = [{"type": "summary_text", "text": s.text} for s in block.summary or []]
        if not summary and block.text:
            summary = [{"type": "summary_text", "text": block.text}]
        item: dict[str, Any] = {"type": "reasoning", "summary": summary}
        if isinstance(block.extra_data, dict) and block.extra_data.get("id"):
            item["id"] = block.extra_data["id"]
        if block.signature:
            item["encrypted_content"] = block.signature
        return item
    return None


def _file_item(block: File) -> dict[str, Any]:
    mime = block.mime_type or ""
    url = block.url if block.file_type == "url" else f"data:{mime};base64,{block.data}"
    if mime.startswith("image/") or (block.file_type == "url" and not mime):
        item: dict[str, Any] = {"type": "input_image", "image_url": url}
        if block.detail:
            item["detail"] = block.detail
        return item
    if block.file_type == "url":
        return {"type": "input_file", "file_url": url}
    extension = mime.split("/", 1)[1] if "/" in mime else "bin"
    return {"type": "input_file", "file_data": url, "filename": block.filename or f"input.{extension}"}
