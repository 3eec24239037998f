"""Gemini's `generateContent` wire format, which Google AI Studio and GCP Vertex AI both speak;
they differ only in their URLs and how they authenticate."""

from __future__ import annotations

import abc
from collections.abc import AsyncIterator
from typing import Any

import orjson

from tensorzero_ray.ids import uuid7
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
    "STOP": FinishReason.STOP,
    "MAX_TOKENS": FinishReason.LENGTH,
    "SAFETY": FinishReason.CONTENT_FILTER,
    "RECITATION": FinishReason.CONTENT_FILTER,
    "BLOCKLIST": FinishReason.CONTENT_FILTER,
    "PROHIBITED_CONTENT": FinishReason.CONTENT_FILTER,
    "SPII": FinishReason.CONTENT_FILTER,
    "IMAGE_SAFETY": FinishReason.CONTENT_FILTER,
}


def gemini_usage(usage: dict | None) -> Usage | None:
    """Thinking tokens are billed as output, so they count as output here."""
    if not usage:
        return None
    output = usage.get("candidatesTokenCount")
    thoughts = usage.get("thoughtsTokenCount")
    if thoughts is not None:
        output = (output or 0) + thoughts
    return Usage(
        input_tokens=usage.get("promptTokenCount"),
        output_tokens=output,
        provider_cache_read_input_tokens=usage.get("cachedContentTokenCount"),
    )


def _finish(reason: str | None, has_tool_calls: bool) -> FinishReason | None:
    if reason is None:
        return None
    # Gemini says STOP after calling a function.
    if has_tool_calls and reason == "STOP":
        return FinishReason.TOOL_CALL
    return _FINISH.get(reason, FinishReason.UNKNOWN)


class GeminiProvider(Provider):
    """The request and response translation; subclasses give the URL and the credentials."""

    @abc.abstractmethod
    def url(self, stream: bool) -> str: ...

    @abc.abstractmethod
    async def auth_headers(self, ctx: CallContext) -> dict[str, str]: ...

    def build_body(self, request: ModelInferenceRequest, ctx: CallContext) -> dict[str, Any]:
        body: dict[str, Any] = {"contents": self.contents(request)}
        if request.system is not None:
            body["systemInstruction"] = {"role": "system", "parts": [{"text": request.system}]}
        generation = {
            "temperature": request.temperature,
            "topP": request.top_p,
            "maxOutputTokens": request.max_tokens,
            "seed": request.seed,
            "presencePenalty": request.presence_penalty,
            "frequencyPenalty": request.frequency_penalty,
            "stopSequences": request.stop_sequences,
        }
        config = {k: v for k, v in generation.items() if v is not None}
        if request.thinking_budget_tokens is not None:
            config["thinkingConfig"] = {"thinkingBudget": request.thinking_budget_tokens, "includeThoughts": True}
        elif request.reasoning_effort is not None:
            config["thinkingConfig"] = {"thinkingLevel": request.reasoning_effort, "includeThoughts": True}
        if request.json_tool:
            body["tools"] = [
                {
                    "functionDeclarations": [
                        {
                            "name": "respond",
                            "description": RESPOND_TOOL_DESCRIPTION,
                            "parameters": request.output_schema or {"type": "object"},
                        }
                    ]
                }
            ]
            body["toolConfig"] = {"functionCallingConfig": {"mode": "ANY", "allowedFunctionNames": ["respond"]}}
        elif request.json_mode in ("on", "strict"):
            config["responseMimeType"] = "application/json"
            if request.json_mode == "strict" and request.output_schema:
                config["responseJsonSchema"] = request.output_schema
        if config:
            body["generationConfig"] = config
        self.add_tools(body, request)
        return self.patch_body(body, request, ctx)

    def add_tools(self, body: dict[str, Any], request: ModelInferenceRequest) -> None:
        settings = request.tool_settings
        if settings is None or not settings.tools or "tools" in body:
            return
        body["tools"] = [
            {
                "functionDeclarations": [
                    {"name": t.name, "description": t.description, "parameters": t.parameters} for t in settings.tools
                ]
            }
        ]
        choice = settings.tool_choice
        calling: dict[str, Any]
        if choice == "none":
            calling = {"mode": "NONE"}
        elif choice == "auto":
            calling = {"mode": "AUTO"}
        elif choice == "required":
            calling = {"mode": "ANY"}
        else:
            calling = {"mode": "ANY", "allowedFunctionNames": [choice.specific]}
        if settings.allowed_tool_names is not None and calling["mode"] != "NONE":
            calling["allowedFunctionNames"] = list(settings.allowed_tool_names)
            if calling["mode"] == "AUTO":
                calling["mode"] = "VALIDATED"
        body["toolConfig"] = {"functionCallingConfig": calling}

    def contents(self, request: ModelInferenceRequest) -> list[dict[str, Any]]:
        out: list[dict[str, Any]] = []
        for message in request.messages:
            parts: list[dict[str, Any]] = []
            # A signature with no thought text belongs on the part that followed it.
            signature: str | None = None
            for block in message.content:
                part: dict[str, Any] | None = None
                if isinstance(block, Thought):
                    if block.text:
                        part = {"text": block.text, "thought": True}
                        if block.signature:
                            part["thoughtSignature"] = block.signature
                    elif block.signature:
                        signature = block.signature
                elif isinstance(block, Text):
                    part = {"text": block.text}
                elif isinstance(block, ToolCall):
                    arguments = block.arguments
                    if isinstance(arguments, str):
                        try:
                            arguments = orjson.loads(arguments)
                        except orjson.JSONDecodeError:
                            arguments = {}
                    part = {"functionCall": {"name": block.name, "args": arguments or {}}}
                elif isinstance(block, ToolResult):
                    part = {"functionResponse": {"name": block.name, "response": _tool_response(block.result)}}
                elif isinstance(block, File):
                    part = _file_part(block)
                elif isinstance(block, Unknown):
                    part = block.data
                if part is not None:
                    if signature is not None:
                        part["thoughtSignature"], signature = signature, None
                    parts.append(part)
            if signature is not None:
                parts.append({"text": "", "thoughtSignature": signature})
            if parts:
                out.append({"role": "model" if message.role == "assistant" else "user", "parts": parts})
        return out

    async def infer(self, request: ModelInferenceRequest, ctx: CallContext) -> ProviderResponse:
        body = self.build_body(request, ctx)
        headers = self.patch_headers(await self.auth_headers(ctx), request, ctx)
        raw_request, raw_response, data = await self.post_json(self.url(stream=False), body, headers)
        candidates = data.get("candidates") if isinstance(data, dict) else None
        if not candidates:
            blocked = (data.get("promptFeedback") or {}).get("blockReason") if isinstance(data, dict) else None
            if blocked:
                return ProviderResponse(
                    content=[],
                    usage=gemini_usage(data.get("usageMetadata")) or Usage(),
                    finish_reason=FinishReason.CONTENT_FILTER,
                    raw_request=raw_request,
                    raw_response=raw_response,
                    raw_usage=data.get("usageMetadata"),
                )
            raise self.error(
                f"Error from {self.provider_type} server: response has no candidates",
                raw_request=raw_request,
                raw_response=raw_response,
            )
        candidate = candidates[0]
        content: list = []
        for part in (candidate.get("content") or {}).get("parts") or []:
            content += self._blocks(part)
        calls = any(isinstance(b, ToolCallOutput) for b in content)
        finish = _finish(candidate.get("finishReason"), calls)
        if request.json_tool:
            content = respond_tool_as_text(content)
            finish = FinishReason.STOP
        return ProviderResponse(
            content=content,
            usage=gemini_usage(data.get("usageMetadata")) or Usage(),
            finish_reason=finish,
            raw_request=raw_request,
            raw_response=raw_response,
            raw_usage=data.get("usageMetadata"),
        )

    def _blocks(self, part: dict[str, Any]) -> list:
        signature = part.get("thoughtSignature")
        if part.get("thought") and "text" in part:
            return [Thought(text=part["text"], signature=signature, provider_type=self.provider_type)]
        blocks: list = []
        if signature:
            blocks.append(Thought(signature=signature, provider_type=self.provider_type))
        if "functionCall" in part:
            call = part["functionCall"]
            blocks.append(
                ToolCallOutput(
                    id=call.get("id") or str(uuid7()),
                    raw_name=call.get("name", ""),
                    raw_arguments=orjson.dumps(call.get("args") or {}).decode(),
                )
            )
        elif part.get("text"):
            blocks.append(Text(text=part["text"]))
        elif "text" not in part:
            blocks.append(Unknown(data=part))
        return blocks

    async def stream(self, request: ModelInferenceRequest, ctx: CallContext) -> AsyncIterator[ProviderChunk]:
        body = self.build_body(request, ctx)
        headers = self.patch_headers(await self.auth_headers(ctx), request, ctx)
        json_tool = request.json_tool
        finished = False
        calls = 0
        async for payload in self.sse_events(self.url(stream=True), body, headers, ctx):
            try:
                data = orjson.loads(payload)
            except orjson.JSONDecodeError:
                yield ProviderChunk(
                    raw_chunk=payload, error=f"Error from {self.provider_type} server: chunk is not JSON"
                )
                continue
            if "error" in data:
                yield ProviderChunk(
                    raw_chunk=payload,
                    fatal=True,
                    error=f"Error from {self.provider_type} server: {orjson.dumps(data['error']).decode()}",
                )
                return
            chunk = ProviderChunk(raw_chunk=payload)
            if data.get("usageMetadata"):
                chunk.usage = gemini_usage(data["usageMetadata"])
                chunk.raw_usage = data["usageMetadata"]
            for candidate in data.get("candidates") or []:
                for part in (candidate.get("content") or {}).get("parts") or []:
                    for block in self._blocks(part):
                        if isinstance(block, Thought):
                            chunk.content.append(
                                ThoughtChunk(
                                    id="0", text=block.text, signature=block.signature, provider_type=self.provider_type
                                )
                            )
                        elif isinstance(block, ToolCallOutput):
                            if json_tool:
                                chunk.content.append(TextChunk(id="0", text=block.raw_arguments))
                            else:
                                calls += 1
                                chunk.content.append(
                                    ToolCallChunk(
                                        id=block.id, raw_name=block.raw_name, raw_arguments=block.raw_arguments
                                    )
                                )
                        elif isinstance(block, Text):
                            chunk.content.append(TextChunk(id="0", text=block.text))
                reason = candidate.get("finishReason")
                if reason:
                    finished = True
                    chunk.finish_reason = FinishReason.STOP if json_tool else _finish(reason, calls > 0)
            if (data.get("promptFeedback") or {}).get("blockReason"):
                finished = True
                chunk.finish_reason = FinishReason.CONTENT_FILTER
            yield chunk
        if not finished:
            yield ProviderChunk(
                fatal=True, error=f"Error from {self.provider_type} server: the stream ended without a finish reason"
            )


def _tool_response(result: str) -> dict[str, Any]:
    """Gemini wants an object; a result that is not a JSON object is wrapped."""
    try:
        parsed = orjson.loads(result)
    except orjson.JSONDecodeError:
        return {"result": result}
    return parsed if isinstance(parsed, dict) else {"result": parsed}


def _file_part(block: File) -> dict[str, Any]:
    mime = block.mime_type or "application/octet-stream"
    if block.file_type == "url":
        return {"fileData": {"mimeType": mime, "fileUri": block.url}}
    return {"inlineData": {"mimeType": mime, "data": block.data}}
