"""`ray_serve`: models tensorzero-ray hosts itself. The request becomes a chat in the shape
Hugging Face chat templates read and goes to the model's `LocalModel` deployment (transformers)
or Ray Serve LLM's `LLMServer` (vLLM) through a Serve handle; no HTTP hop."""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

import orjson

from tensorzero_ray.errors import ProviderError, TensorZeroError, UnservableInput, unwrap
from tensorzero_ray.local_models.protocol import GenerationDelta, GenerationRequest, GenerationResult
from tensorzero_ray.local_models.tool_calls import ParsedToolCall, ToolCallStream, split_tool_calls
from tensorzero_ray.providers.base import CallContext, Provider
from tensorzero_ray.types import (
    File,
    FinishReason,
    Text,
    TextChunk,
    Thought,
    ToolCall,
    ToolCallChunk,
    ToolCallOutput,
    ToolResult,
    Unknown,
    Usage,
)
from tensorzero_ray.types.model import ModelInferenceRequest, ProviderChunk, ProviderResponse

_FINISH = {"stop": FinishReason.STOP, "stop_sequence": FinishReason.STOP_SEQUENCE, "length": FinishReason.LENGTH}
JSON_INSTRUCTION = "Respond with one JSON object and nothing else."


class RayServeProvider(Provider):
    provider_type = "ray_serve"

    def __init__(self, name: str, config: Any, *, timeout_s: float = 900.0, handle: Any = None):
        super().__init__(name, config, timeout_s=timeout_s)
        self._handle = handle

    @property
    def handle(self) -> Any:
        if self._handle is None:
            raise self.error(
                f"Error from ray_serve client: no deployment is bound for provider `{self.name}`; "
                "ray_serve providers run inside a tensorzero-ray Serve application"
            )
        return self._handle

    def generation_request(self, request: ModelInferenceRequest) -> GenerationRequest:
        defaults = self.config.generation
        tools = _tools(request)
        return GenerationRequest(
            messages=_messages(request),
            tools=tools,
            max_tokens=request.max_tokens or defaults.max_tokens,
            temperature=request.temperature if request.temperature is not None else defaults.temperature,
            top_p=request.top_p if request.top_p is not None else defaults.top_p,
            repetition_penalty=defaults.repetition_penalty,
            seed=request.seed,
            stop=request.stop_sequences if request.stop_sequences is not None else defaults.stop_sequences,
        )

    async def infer(self, request: ModelInferenceRequest, ctx: CallContext) -> ProviderResponse:
        generation = self.generation_request(request)
        payload = generation.model_dump(exclude_none=True)
        raw_request = orjson.dumps(payload).decode()
        if self.config.engine == "vllm":
            text, usage, finish, raw_response = await self._vllm_complete(generation, raw_request)
        else:
            try:
                reply = await self.handle.generate.remote(payload)
            except Exception as exc:  # noqa: BLE001 - every failure of the deployment is this provider's
                raise self._failure(exc, raw_request) from None
            result = GenerationResult.model_validate(reply)
            text, finish = result.text, result.finish_reason
            usage = Usage(input_tokens=result.input_tokens, output_tokens=result.output_tokens)
            raw_response = orjson.dumps(reply).decode()
        content, finish_reason = _content(text, finish, generation.tools is not None)
        return ProviderResponse(
            content=content,
            usage=usage,
            finish_reason=finish_reason,
            raw_request=raw_request,
            raw_response=raw_response,
        )

    async def stream(self, request: ModelInferenceRequest, ctx: CallContext) -> AsyncIterator[ProviderChunk]:
        generation = self.generation_request(request)
        payload = generation.model_dump(exclude_none=True)
        raw_request = ctx.raw_request = orjson.dumps(payload).decode()
        if self.config.engine == "vllm":
            deltas = self._vllm_deltas(generation, raw_request)
        else:
            deltas = self._deltas(payload, raw_request)
        tools = ToolCallStream() if generation.tools is not None else None
        calls = 0
        async for delta in deltas:
            chunk = ProviderChunk(raw_chunk=orjson.dumps(delta.model_dump(exclude_none=True)).decode())
            text, found = tools.feed(delta.text) if tools is not None else (delta.text, [])
            if delta.finish_reason is not None and tools is not None:
                rest, more = tools.finish()
                text, found = text + rest, found + more
            if text:
                chunk.content.append(TextChunk(id="0", text=text))
            for call in found:
                chunk.content.append(
                    ToolCallChunk(id=_call_id(calls), raw_name=call.raw_name, raw_arguments=call.raw_arguments)
                )
                calls += 1
            if delta.finish_reason is not None:
                chunk.usage = Usage(input_tokens=delta.input_tokens, output_tokens=delta.output_tokens)
                chunk.finish_reason = FinishReason.TOOL_CALL if calls else _FINISH[delta.finish_reason]
            yield chunk

    async def _deltas(self, payload: dict[str, Any], raw_request: str) -> AsyncIterator[GenerationDelta]:
        try:
            async for item in self.handle.options(stream=True).generate_stream.remote(payload):
                yield GenerationDelta.model_validate(item)
        except Exception as exc:  # noqa: BLE001
            raise self._failure(exc, raw_request) from None

    async def _vllm_deltas(self, generation: GenerationRequest, raw_request: str) -> AsyncIterator[GenerationDelta]:
        """Ray Serve LLM's `chat` answers OpenAI stream chunks (objects or `data:` lines)."""
        from ray.serve.llm.openai_api_models import ChatCompletionRequest

        body = {
            "model": self.config.deployment_name or self.name,
            "messages": generation.messages,
            "max_tokens": generation.max_tokens,
            "temperature": generation.temperature,
            "top_p": generation.top_p,
            "seed": generation.seed,
            "stop": generation.stop or None,
            "tools": generation.tools,
            "stream": True,
            "stream_options": {"include_usage": True},
        }
        request = ChatCompletionRequest(**{k: v for k, v in body.items() if v is not None})
        finish = None
        try:
            async for item in self.handle.options(stream=True).chat.remote(request):
                for event in _openai_events(item):
                    if "error" in event or event.get("object") == "error":
                        raise self.error(f"Error from ray_serve server: {event}", raw_request=raw_request)
                    for choice in event.get("choices") or []:
                        text = (choice.get("delta") or {}).get("content") or ""
                        finish = choice.get("finish_reason") or finish
                        if text:
                            yield GenerationDelta(text=text)
                    usage = event.get("usage")
                    if usage:
                        yield GenerationDelta(
                            input_tokens=usage.get("prompt_tokens"),
                            output_tokens=usage.get("completion_tokens"),
                            finish_reason="length" if finish == "length" else "stop",
                        )
        except ProviderError:
            raise
        except Exception as exc:  # noqa: BLE001
            raise self._failure(exc, raw_request) from None

    async def _vllm_complete(self, generation: GenerationRequest, raw_request: str):
        text: list[str] = []
        usage, finish = Usage(), "stop"
        async for delta in self._vllm_deltas(generation, raw_request):
            text.append(delta.text)
            if delta.finish_reason is not None:
                usage = Usage(input_tokens=delta.input_tokens, output_tokens=delta.output_tokens)
                finish = delta.finish_reason
        joined = "".join(text)
        raw = {"text": joined, "finish_reason": finish, **usage.model_dump(exclude_none=True)}
        return joined, usage, finish, orjson.dumps(raw).decode()

    async def embed(
        self, inputs: list[Any], dimensions: int | None, ctx: CallContext
    ) -> tuple[list, int | None, str, Any]:
        """A self-hosted embedding model: its `LocalEmbeddingModel` deployment, through the handle."""
        raw_request = orjson.dumps({"input": inputs}).decode()
        if not all(isinstance(text, str) for text in inputs):
            raise UnservableInput("Self-hosted embedding models take text inputs only")
        try:
            reply = await self.handle.embed.remote(inputs)
        except Exception as exc:  # noqa: BLE001 - every failure of the deployment is this provider's
            raise self._failure(exc, raw_request) from None
        if dimensions is not None and dimensions != reply["dimensions"]:
            raise UnservableInput(
                f"Embedding model `{self.config.model_name}` makes {reply['dimensions']}-dimensional vectors; "
                f"`dimensions` = {dimensions} cannot be served"
            )
        usage = {"prompt_tokens": reply["input_tokens"], "total_tokens": reply["input_tokens"]}
        raw = {"model": self.config.model_name, "usage": usage}
        return reply["embeddings"], reply["input_tokens"], orjson.dumps(raw).decode(), raw

    def _failure(self, exc: BaseException, raw_request: str) -> TensorZeroError:
        error = unwrap(exc)
        if isinstance(error, (UnservableInput, ProviderError)):
            return error
        return self.error(f"Error from ray_serve server: {type(error).__name__}: {error}", raw_request=raw_request)


def _openai_events(item: Any) -> list[dict]:
    if isinstance(item, list):
        return [event for part in item for event in _openai_events(part)]
    if hasattr(item, "model_dump"):
        return [item.model_dump()]
    if isinstance(item, dict):
        return [item]
    events = []
    for line in str(item).splitlines():
        payload = line.removeprefix("data:").strip()
        if payload and payload != "[DONE]":
            events.append(orjson.loads(payload))
    return events


def _messages(request: ModelInferenceRequest) -> list[dict[str, Any]]:
    system = request.system or ""
    if request.function_type == "json" and request.json_mode != "off":
        schema = (
            f" It must match this JSON schema: {orjson.dumps(request.output_schema).decode()}"
            if request.output_schema
            else ""
        )
        system = f"{system}\n\n{JSON_INSTRUCTION}{schema}".strip()
    out: list[dict[str, Any]] = [{"role": "system", "content": system}] if system else []
    for message in request.messages:
        texts: list[str] = []
        calls: list[dict[str, Any]] = []
        for block in message.content:
            if isinstance(block, Text):
                texts.append(block.text or "")
            elif isinstance(block, ToolCall):
                calls.append(
                    {
                        "type": "function",
                        "id": block.id,
                        "function": {"name": block.name, "arguments": _arguments(block.arguments)},
                    }
                )
            elif isinstance(block, ToolResult):
                out.append({"role": "tool", "name": block.name, "tool_call_id": block.id, "content": block.result})
            elif isinstance(block, File):
                raise UnservableInput("ray_serve models take text only; this message has a file")
            elif isinstance(block, (Thought, Unknown)):
                continue
        if texts or calls:
            entry: dict[str, Any] = {"role": message.role, "content": "".join(texts)}
            if calls:
                entry["tool_calls"] = calls
            out.append(entry)
    return out


def _arguments(arguments: Any) -> Any:
    if isinstance(arguments, str):
        try:
            return orjson.loads(arguments)
        except orjson.JSONDecodeError:
            return arguments
    return arguments


def _tools(request: ModelInferenceRequest) -> list[dict[str, Any]] | None:
    settings = request.tool_settings
    if settings is None or not settings.tools or settings.tool_choice == "none":
        return None
    allowed = settings.allowed_tool_names
    return [
        {"type": "function", "function": {"name": t.name, "description": t.description, "parameters": t.parameters}}
        for t in settings.tools
        if allowed is None or t.name in allowed
    ] or None


def _call_id(index: int) -> str:
    return f"call_{index}"


def _content(text: str, finish: str, tools_offered: bool) -> tuple[list, FinishReason]:
    calls: list[ParsedToolCall] = []
    if tools_offered:
        text, calls = split_tool_calls(text)
    content: list = [Text(text=text)] if text else []
    content += [
        ToolCallOutput(id=_call_id(i), raw_name=c.raw_name, raw_arguments=c.raw_arguments) for i, c in enumerate(calls)
    ]
    return content, FinishReason.TOOL_CALL if calls else _FINISH.get(finish, FinishReason.UNKNOWN)
