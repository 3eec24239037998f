"""OpenAI chat completions (spec Appendix D.1), the base for every OpenAI-compatible service."""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

import orjson

from tensorzero_ray.providers.base import CallContext, Provider, apply_pointer, respond_tool_as_text
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
from tensorzero_ray.types.model import ModelInferenceRequest, ProviderChunk, ProviderResponse, ToolDefinition

_FINISH = {
    "stop": FinishReason.STOP,
    "length": FinishReason.LENGTH,
    "content_filter": FinishReason.CONTENT_FILTER,
    "tool_calls": FinishReason.TOOL_CALL,
    "function_call": FinishReason.TOOL_CALL,
}

RESPOND_TOOL_DESCRIPTION = "Respond to the user using the output schema provided."


def finish_reason(value: str | None) -> FinishReason | None:
    if value is None:
        return None
    return _FINISH.get(value, FinishReason.UNKNOWN)


def openai_usage(usage: dict | None) -> Usage | None:
    if not usage:
        return None
    cached = (usage.get("prompt_tokens_details") or {}).get("cached_tokens")
    return Usage(
        input_tokens=usage.get("prompt_tokens"),
        output_tokens=usage.get("completion_tokens"),
        provider_cache_read_input_tokens=cached,
    )


class OpenAIChatCompletions(Provider):
    """OpenAI's chat completions wire format, which every OpenAI-compatible service speaks."""

    provider_type = "openai"
    supports_custom_tools = True
    default_api_base = "https://api.openai.com/v1/"
    default_key_location = "env::OPENAI_API_KEY"

    def api_base(self) -> str:
        return (getattr(self.config, "api_base", None) or self.default_api_base).rstrip("/")

    def url(self, ctx: CallContext) -> str:
        return self.api_base() + "/chat/completions"

    def headers(self, ctx: CallContext) -> dict[str, str]:
        headers = {"content-type": "application/json"}
        key = self.api_key(self.default_key_location, ctx)
        if key:
            headers["authorization"] = f"Bearer {key}"
        return headers

    def model_field(self) -> dict[str, Any]:
        return {"model": self.config.model_name}

    def build_body(self, request: ModelInferenceRequest, ctx: CallContext) -> dict[str, Any]:
        body: dict[str, Any] = {**self.model_field(), "messages": self.messages(request)}
        params = {
            "temperature": request.temperature,
            "max_completion_tokens": request.max_tokens,
            "seed": request.seed,
            "top_p": request.top_p,
            "presence_penalty": request.presence_penalty,
            "frequency_penalty": request.frequency_penalty,
            "stop": request.stop_sequences,
            "reasoning_effort": request.reasoning_effort,
            "service_tier": request.service_tier,
            "verbosity": request.verbosity,
        }
        body.update({k: v for k, v in params.items() if v is not None})
        if request.stream:
            body["stream"] = True
            body["stream_options"] = {"include_usage": True}
        self.add_json_mode(body, request)
        self.add_tools(body, request)
        return self.patch_body(body, request, ctx)

    def messages(self, request: ModelInferenceRequest) -> list[dict[str, Any]]:
        out: list[dict[str, Any]] = []
        if request.system is not None:
            out.append({"role": "system", "content": request.system})
        settings = request.tool_settings
        custom = {t.name for t in settings.tools if t.type == "openai_custom"} if settings else set()
        for message in request.messages:
            parts: list[dict[str, Any]] = []
            tool_calls: list[dict[str, Any]] = []
            thoughts: list[str] = []
            for block in message.content:
                if isinstance(block, Text):
                    parts.append({"type": "text", "text": block.text})
                elif isinstance(block, ToolResult):
                    out.append({"role": "tool", "tool_call_id": block.id, "content": block.result})
                elif isinstance(block, ToolCall):
                    if block.name in custom:
                        call = {"type": "custom", "custom": {"name": block.name, "input": block.arguments}}
                    else:
                        call = {"type": "function", "function": {"name": block.name, "arguments": block.arguments}}
                    tool_calls.append({"id": block.id, **call})
                elif isinstance(block, Thought):
                    if block.text and block.provider_type in (None, self.provider_type):
                        thoughts.append(block.text)
                elif isinstance(block, File):
                    parts.append(_file_part(block))
                elif isinstance(block, Unknown):
                    parts.append(block.data)
            if not parts and not tool_calls:
                continue
            entry: dict[str, Any] = {"role": message.role}
            if message.role == "assistant":
                texts = [p["text"] for p in parts if p.get("type") == "text"]
                entry["content"] = "".join(texts) if len(texts) == len(parts) and texts else (parts or None)
                if tool_calls:
                    entry["tool_calls"] = tool_calls
                if thoughts:
                    entry["reasoning_content"] = "\n".join(thoughts)
            else:
                entry["content"] = parts
            out.append(entry)
        return out

    def add_json_mode(self, body: dict[str, Any], request: ModelInferenceRequest) -> None:
        mode = request.json_mode
        if mode == "on" or (mode == "strict" and (not request.output_schema or "3.5" in self.model_label())):
            body["response_format"] = {"type": "json_object"}
            _mention_json(body)
        elif mode == "strict":
            body["response_format"] = {
                "type": "json_schema",
                "json_schema": {"name": "response", "strict": True, "schema": request.output_schema},
            }
        elif request.json_tool:
            body["tools"] = [
                {
                    "type": "function",
                    "function": {
                        "name": "respond",
                        "description": RESPOND_TOOL_DESCRIPTION,
                        "parameters": request.output_schema or {},
                    },
                }
            ]
            body["tool_choice"] = {"type": "function", "function": {"name": "respond"}}

    def model_label(self) -> str:
        return getattr(self.config, "model_name", None) or ""

    def add_tools(self, body: dict[str, Any], request: ModelInferenceRequest) -> None:
        settings = request.tool_settings
        if settings is None or not settings.tools or "tools" in body:
            return
        body["tools"] = [_tool(t) for t in settings.tools]
        kinds = {t.name: t.type for t in settings.tools}
        choice = settings.tool_choice
        if isinstance(choice, str):
            body["tool_choice"] = choice
        else:
            body["tool_choice"] = _named_tool(choice.specific, kinds)
        if settings.allowed_tool_names is not None and choice != "none":
            mode = "required" if choice == "required" else "auto"
            body["tool_choice"] = {
                "type": "allowed_tools",
                "allowed_tools": {
                    "mode": mode,
                    "tools": [_named_tool(n, kinds) for n in settings.allowed_tool_names],
                },
            }
        if settings.parallel_tool_calls is not None:
            body["parallel_tool_calls"] = settings.parallel_tool_calls

    def embeddings_url(self, ctx: CallContext) -> str:
        return self.api_base() + "/embeddings"

    async def embed(
        self, inputs: list[Any], dimensions: int | None, ctx: CallContext
    ) -> tuple[list, int | None, str, Any]:
        body: dict[str, Any] = {**self.model_field(), "input": inputs, "encoding_format": "float"}
        if dimensions is not None:
            body["dimensions"] = dimensions
        for entry in self.config.extra_body:
            apply_pointer(body, entry.pointer, entry.value, delete=bool(entry.delete))
        _, raw_response, data = await self.post_json(self.embeddings_url(ctx), body, self.headers(ctx))
        try:
            vectors = [item["embedding"] for item in sorted(data["data"], key=lambda item: item["index"])]
        except (KeyError, TypeError):
            raise self.error(
                "Error from openai server: embeddings response has no `data`", raw_response=raw_response
            ) from None
        return vectors, (data.get("usage") or {}).get("prompt_tokens"), raw_response, data

    async def infer(self, request: ModelInferenceRequest, ctx: CallContext) -> ProviderResponse:
        body = self.build_body(request, ctx)
        headers = self.patch_headers(self.headers(ctx), request, ctx)
        raw_request, raw_response, data = await self.post_json(self.url(ctx), body, headers)
        return self.completion(data, request, raw_request, raw_response)

    def completion(self, data: Any, request: ModelInferenceRequest, raw_request: str, raw_response: str):
        """A chat completion's JSON as a `ProviderResponse` (also each answer of a batch)."""
        try:
            choice = data["choices"][0]
            message = choice["message"]
        except (KeyError, IndexError, TypeError):
            raise self.error(
                f"Error from {self.provider_type} server: response has no choices",
                raw_request=raw_request,
                raw_response=raw_response,
            ) from None
        content: list = []
        reasoning = message.get("reasoning_content") or message.get("reasoning")
        if isinstance(reasoning, str) and reasoning:
            content.append(Thought(text=reasoning, provider_type=self.provider_type))
        if message.get("content"):
            content.append(Text(text=message["content"]))
        for call in message.get("tool_calls") or []:
            name, arguments = _called(call)
            content.append(ToolCallOutput(id=call.get("id", ""), raw_name=name, raw_arguments=arguments))
        json_tool = request.json_tool
        if json_tool:
            content = respond_tool_as_text(content)
        return ProviderResponse(
            content=content,
            usage=openai_usage(data.get("usage")) or Usage(),
            finish_reason=FinishReason.STOP if json_tool else finish_reason(choice.get("finish_reason")),
            raw_request=raw_request,
            raw_response=raw_response,
            raw_usage=data.get("usage"),
        )

    async def stream(self, request: ModelInferenceRequest, ctx: CallContext) -> AsyncIterator[ProviderChunk]:
        body = self.build_body(request.model_copy(update={"stream": True}), ctx)
        headers = self.patch_headers(self.headers(ctx), request, ctx)
        async for chunk in self.chunks(self.sse_events(self.url(ctx), body, headers, ctx), request):
            yield chunk

    async def chunks(
        self, payloads: AsyncIterator[str], request: ModelInferenceRequest
    ) -> AsyncIterator[ProviderChunk]:
        """Chunks from the `data:` payloads of a chat completions stream, however they came."""
        json_tool = request.json_tool
        tool_ids: dict[int, str] = {}
        finished = False
        async for payload in payloads:
            if payload.strip() == "[DONE]":
                return
            try:
                data = orjson.loads(payload)
            except orjson.JSONDecodeError:
                yield ProviderChunk(
                    raw_chunk=payload, error=f"Error from {self.provider_type} server: chunk is not JSON"
                )
                continue
            if "error" in data and "choices" not in data:
                yield ProviderChunk(
                    raw_chunk=payload,
                    fatal=True,
                    error=f"Error from {self.provider_type} server: {orjson.dumps(data['error']).decode()}",
                )
                return
            chunk = ProviderChunk(raw_chunk=payload, usage=openai_usage(data.get("usage")), raw_usage=data.get("usage"))
            for choice in data.get("choices") or []:
                delta = choice.get("delta") or {}
                reasoning = delta.get("reasoning_content") or delta.get("reasoning")
                if isinstance(reasoning, str) and reasoning:
                    chunk.content.append(ThoughtChunk(id="0", text=reasoning, provider_type=self.provider_type))
                if delta.get("content"):
                    chunk.content.append(TextChunk(id="0", text=delta["content"]))
                for call in delta.get("tool_calls") or []:
                    index = call.get("index", 0)
                    if call.get("id"):
                        tool_ids[index] = call["id"]
                    name, arguments = _called(call)
                    if json_tool:
                        if arguments:
                            chunk.content.append(TextChunk(id="0", text=arguments))
                        continue
                    chunk.content.append(
                        ToolCallChunk(id=tool_ids.get(index, str(index)), raw_name=name, raw_arguments=arguments)
                    )
                if choice.get("finish_reason"):
                    finished = True
                    chunk.finish_reason = FinishReason.STOP if json_tool else finish_reason(choice["finish_reason"])
            yield chunk
        # Servers that omit `[DONE]` still send a finish reason; a stream with neither was cut.
        if not finished:
            yield ProviderChunk(
                fatal=True, error=f"Error from {self.provider_type} server: the stream ended without `[DONE]`"
            )


def _tool(tool: ToolDefinition) -> dict[str, Any]:
    if tool.type == "openai_custom":
        custom: dict[str, Any] = {"name": tool.name, "description": tool.description}
        if tool.format is not None:
            custom["format"] = tool.format
        return {"type": "custom", "custom": custom}
    function = {"name": tool.name, "description": tool.description, "parameters": tool.parameters}
    if tool.strict:
        function["strict"] = True
    return {"type": "function", "function": function}


def _named_tool(name: str, kinds: dict[str, str]) -> dict[str, Any]:
    if kinds.get(name) == "openai_custom":
        return {"type": "custom", "custom": {"name": name}}
    return {"type": "function", "function": {"name": name}}


def _called(call: dict[str, Any]) -> tuple[str, str]:
    """(name, raw arguments) of a tool call or its delta; a custom tool's input is its arguments."""
    if call.get("type") == "custom" or "custom" in call:
        custom = call.get("custom") or {}
        return custom.get("name") or "", custom.get("input") or ""
    function = call.get("function") or {}
    return function.get("name") or "", function.get("arguments") or ""


def _mention_json(body: dict[str, Any]) -> None:
    """OpenAI's JSON mode needs the word "json" somewhere in the messages."""
    messages = body["messages"]
    if "json" in orjson.dumps(messages).decode().lower():
        return
    if messages and messages[0]["role"] == "system":
        messages[0]["content"] = "Respond using JSON.\n\n" + messages[0]["content"]
    else:
        messages.insert(0, {"role": "system", "content": "Respond using JSON."})


def _file_part(block: File) -> dict[str, Any]:
    mime = block.mime_type or ""
    if block.file_type == "url":
        if mime.startswith("image/") or not mime:
            part: dict[str, Any] = {"type": "image_url", "image_url": {"url": block.url}}
            if block.detail:
                part["image_url"]["detail"] = block.detail
            return part
        return {"type": "file", "file": {"file_url": block.url, "filename": block.filename or "input"}}
    data_uri = f"data:{mime};base64,{block.data}"
    if mime.startswith("image/"):
        part = {"type": "image_url", "image_url": {"url": data_uri}}
        if block.detail:
            part["image_url"]["detail"] = block.detail
        return part
    if mime.startswith("audio/"):
        return {"type": "input_audio", "input_audio": {"data": block.data, "format": mime.split("/", 1)[1]}}
    extension = mime.split("/", 1)[1] if "/" in mime else "bin"
    return {"type": "file", "file": {"file_data": data_uri, "filename": block.filename or f"input.{extension}"}}
