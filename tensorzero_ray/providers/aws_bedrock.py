"""AWS Bedrock's Converse and ConverseStream APIs, signed with SigV4 (or a Bedrock API key).
The stream is AWS's binary event-stream encoding, decoded with botocore."""

from __future__ import annotations

import urllib.parse
from collections.abc import AsyncIterator
from typing import Any

import orjson

from tensorzero_ray.errors import InvalidRequest
from tensorzero_ray.providers.aws_auth import AWSAuth
from tensorzero_ray.providers.aws_event_stream import event_stream
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

_FINISH = {
    "end_turn": FinishReason.STOP,
    "stop_sequence": FinishReason.STOP_SEQUENCE,
    "max_tokens": FinishReason.LENGTH,
    "tool_use": FinishReason.TOOL_CALL,
    "content_filtered": FinishReason.CONTENT_FILTER,
    "guardrail_intervened": FinishReason.CONTENT_FILTER,
}
_IMAGE_FORMATS = {"image/png": "png", "image/jpeg": "jpeg", "image/gif": "gif", "image/webp": "webp"}
_DOCUMENT_FORMATS = {
    "application/pdf": "pdf",
    "text/csv": "csv",
    "text/plain": "txt",
    "text/html": "html",
    "text/markdown": "md",
    "application/msword": "doc",
    "application/vnd.openxmlformats-officedocument.wordprocessingml.document": "docx",
    "application/vnd.ms-excel": "xls",
    "application/vnd.openxmlformats-officedocument.spreadsheetml.sheet": "xlsx",
}


def bedrock_usage(usage: dict | None) -> Usage | None:
    if not usage:
        return None
    return Usage(
        input_tokens=usage.get("inputTokens"),
        output_tokens=usage.get("outputTokens"),
        provider_cache_read_input_tokens=usage.get("cacheReadInputTokens", usage.get("cacheReadInputTokenCount")),
        provider_cache_write_input_tokens=usage.get("cacheWriteInputTokens", usage.get("cacheWriteInputTokenCount")),
    )


class AWSBedrockProvider(Provider):
    provider_type = "aws_bedrock"

    def __init__(self, name: str, config: Any, *, timeout_s: float = 900.0):
        super().__init__(name, config, timeout_s=timeout_s)
        self.auth = AWSAuth(config, "bedrock", self.provider_type)

    def url(self, region: str, stream: bool) -> str:
        base = (self.config.endpoint_url or f"https://bedrock-runtime.{region}.amazonaws.com").rstrip("/")
        # Model ids and ARNs hold `:` and `/`: one path segment, percent-encoded.
        model = urllib.parse.quote(self.config.model_id, safe="")
        return f"{base}/model/{model}/{'converse-stream' if stream else 'converse'}"

    def build_body(self, request: ModelInferenceRequest, ctx: CallContext) -> dict[str, Any]:
        messages = self.messages(request)
        if not messages:
            raise InvalidRequest("AWS Bedrock requires at least one message")
        body: dict[str, Any] = {"messages": messages}
        if request.system is not None:
            body["system"] = [{"text": request.system}]
        inference = {
            "maxTokens": request.max_tokens,
            "temperature": request.temperature,
            "topP": request.top_p,
            "stopSequences": request.stop_sequences,
        }
        inference = {k: v for k, v in inference.items() if v is not None}
        if inference:
            body["inferenceConfig"] = inference
        if request.thinking_budget_tokens is not None:
            body["additionalModelRequestFields"] = {
                "thinking": {"type": "enabled", "budget_tokens": request.thinking_budget_tokens}
            }
        if self.answers_through_respond(request):
            # Converse has no JSON mode: JSON functions answer through a forced `respond` tool.
            spec = {
                "name": "respond",
                "description": RESPOND_TOOL_DESCRIPTION,
                "inputSchema": {"json": request.output_schema or {"type": "object"}},
            }
            body["toolConfig"] = {"tools": [{"toolSpec": spec}], "toolChoice": {"tool": {"name": "respond"}}}
        else:
            self.add_tools(body, request)
        return self.patch_body(body, request, ctx)

    def answers_through_respond(self, request: ModelInferenceRequest) -> bool:
        return (request.json_mode != "off" and request.function_type == "json") or request.json_tool

    def add_tools(self, body: dict[str, Any], request: ModelInferenceRequest) -> None:
        settings = request.tool_settings
        if settings is None or not settings.tools or settings.tool_choice == "none":
            return
        allowed = settings.allowed_tool_names
        tools = [
            {
                "toolSpec": {
                    "name": t.name,
                    "description": t.description or t.name,
                    "inputSchema": {"json": t.parameters},
                }
            }
            for t in settings.tools
            if allowed is None or t.name in allowed
        ]
        choice = settings.tool_choice
        if choice == "auto":
            tool_choice: dict[str, Any] = {"auto": {}}
        elif choice == "required":
            tool_choice = {"any": {}}
        else:
            tool_choice = {"tool": {"name": choice.specific}}
        body["toolConfig"] = {"tools": tools, "toolChoice": tool_choice}

    def messages(self, request: ModelInferenceRequest) -> list[dict[str, Any]]:
        out: list[dict[str, Any]] = []
        for message in request.messages:
            blocks: list[dict[str, Any]] = []
            for block in message.content:
                if isinstance(block, Text):
                    blocks.append({"text": block.text})
                elif isinstance(block, ToolCall):
                    arguments = block.arguments
                    if isinstance(arguments, str):
                        try:
                            arguments = orjson.loads(arguments)
                        except orjson.JSONDecodeError:
                            arguments = {}
                    blocks.append({"toolUse": {"toolUseId": block.id, "name": block.name, "input": arguments or {}}})
                elif isinstance(block, ToolResult):
                    blocks.append({"toolResult": {"toolUseId": block.id, "content": [{"text": block.result}]}})
                elif isinstance(block, Thought):
                    if block.text is not None:
                        reasoning: dict[str, Any] = {"text": block.text}
                        if block.signature:
                            reasoning["signature"] = block.signature
                        blocks.append({"reasoningContent": {"reasoningText": reasoning}})
                    elif block.signature:
                        blocks.append({"reasoningContent": {"redactedContent": block.signature}})
                elif isinstance(block, File):
                    blocks.append(_file_block(block))
                elif isinstance(block, Unknown):
                    blocks.append(block.data)
            if blocks:
                out.append({"role": message.role, "content": blocks})
        return out

    async def _signed(self, body: dict, request: ModelInferenceRequest, ctx: CallContext, stream: bool):
        accept = "application/vnd.amazon.eventstream" if stream else "application/json"
        # Extra headers go in before signing, so they are signed too.
        headers = self.patch_headers({"content-type": "application/json", "accept": accept}, request, ctx)
        return await self.auth.signed_post(lambda region: self.url(region, stream), body, headers, ctx.credentials)

    async def infer(self, request: ModelInferenceRequest, ctx: CallContext) -> ProviderResponse:
        body = self.build_body(request, ctx)
        url, raw_request, headers = await self._signed(body, request, ctx, stream=False)
        raw_response = await self.send("POST", url, headers, raw_request, content=raw_request.encode())
        data = self.parse_json(raw_request, raw_response)
        try:
            blocks = data["output"]["message"]["content"]
        except (KeyError, TypeError):
            raise self.error(
                "Error from aws_bedrock server: response has no `output.message`",
                raw_request=raw_request,
                raw_response=raw_response,
            ) from None
        content: list = []
        for block in blocks:
            if "text" in block:
                content.append(Text(text=block["text"]))
            elif "toolUse" in block:
                use = block["toolUse"]
                content.append(
                    ToolCallOutput(
                        id=use.get("toolUseId", ""),
                        raw_name=use.get("name", ""),
                        raw_arguments=orjson.dumps(use.get("input", {})).decode(),
                    )
                )
            elif "reasoningContent" in block:
                reasoning = block["reasoningContent"]
                if "reasoningText" in reasoning:
                    text = reasoning["reasoningText"]
                    content.append(
                        Thought(
                            text=text.get("text"), signature=text.get("signature"), provider_type=self.provider_type
                        )
                    )
                else:
                    content.append(
                        Thought(signature=reasoning.get("redactedContent"), provider_type=self.provider_type)
                    )
            else:
                content.append(Unknown(data=block))
        finish = _FINISH.get(data.get("stopReason"), FinishReason.UNKNOWN) if data.get("stopReason") else None
        if self.answers_through_respond(request):
            content = respond_tool_as_text(content)
            finish = FinishReason.STOP
        return ProviderResponse(
            content=content,
            usage=bedrock_usage(data.get("usage")) or Usage(),
            finish_reason=finish,
            raw_request=raw_request,
            raw_response=raw_response,
            raw_usage=data.get("usage"),
        )

    async def stream(self, request: ModelInferenceRequest, ctx: CallContext) -> AsyncIterator[ProviderChunk]:
        body = self.build_body(request, ctx)
        url, raw_request, headers = await self._signed(body, request, ctx, stream=True)
        ctx.raw_request = raw_request
        respond = self.answers_through_respond(request)
        tool_ids: dict[int, str] = {}
        stopped = False
        async for kind, data in event_stream(self, url, headers, raw_request):
            raw = data.decode(errors="replace")
            if kind == "exception":
                yield ProviderChunk(raw_chunk=raw, fatal=True, error=f"Error from aws_bedrock server: {raw}")
                return
            try:
                payload = orjson.loads(data) if data else {}
            except orjson.JSONDecodeError:
                yield ProviderChunk(raw_chunk=raw, error="Error from aws_bedrock server: event is not JSON")
                continue
            chunk = ProviderChunk(raw_chunk=raw)
            index = payload.get("contentBlockIndex", 0)
            if kind == "contentBlockStart":
                use = (payload.get("start") or {}).get("toolUse")
                if use is None:
                    continue
                tool_ids[index] = use.get("toolUseId", str(index))
                if respond:
                    continue
                chunk.content.append(ToolCallChunk(id=tool_ids[index], raw_name=use.get("name", ""), raw_arguments=""))
            elif kind == "contentBlockDelta":
                delta = payload.get("delta") or {}
                if "text" in delta:
                    chunk.content.append(TextChunk(id=str(index), text=delta["text"]))
                elif "toolUse" in delta:
                    partial = delta["toolUse"].get("input", "")
                    if respond:
                        chunk.content.append(TextChunk(id="0", text=partial))
                    else:
                        chunk.content.append(
                            ToolCallChunk(id=tool_ids.get(index, str(index)), raw_name="", raw_arguments=partial)
                        )
                elif "reasoningContent" in delta:
                    reasoning = delta["reasoningContent"]
                    chunk.content.append(
                        ThoughtChunk(
                            id=str(index),
                            text=reasoning.get("text"),
                            signature=reasoning.get("signature") or reasoning.get("redactedContent"),
                            provider_type=self.provider_type,
                        )
                    )
            elif kind == "messageStop":
                stopped = True
                reason = payload.get("stopReason")
                chunk.finish_reason = FinishReason.STOP if respond else _FINISH.get(reason, FinishReason.UNKNOWN)
            elif kind == "metadata":
                chunk.usage = bedrock_usage(payload.get("usage"))
                chunk.raw_usage = payload.get("usage")
                yield chunk
                if stopped:
                    return
                continue
            else:
                continue
            yield chunk
        yield ProviderChunk(
            fatal=True, error="Error from aws_bedrock server: the stream ended without `messageStop` and `metadata`"
        )


def _file_block(block: File) -> dict[str, Any]:
    mime = block.mime_type or ""
    if block.file_type == "url":
        raise InvalidRequest("AWS Bedrock takes files inline: enable fetching of file URLs or send base64 data")
    data = block.data
    if mime in _IMAGE_FORMATS:
        return {"image": {"format": _IMAGE_FORMATS[mime], "source": {"bytes": data}}}
    if mime in _DOCUMENT_FORMATS:
        name = (block.filename or "document").rsplit(".", 1)[0] or "document"
        return {"document": {"format": _DOCUMENT_FORMATS[mime], "name": name, "source": {"bytes": data}}}
    raise InvalidRequest(f"AWS Bedrock does not take files of type `{mime}`")
