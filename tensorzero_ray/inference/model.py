"""A model: its providers tried in `routing` order, each bounded by its timeouts (spec §3.8
steps 1-2), with cost read off the raw provider response (spec §3.17)."""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass, field
from typing import Any

import orjson

from tensorzero_ray import telemetry
from tensorzero_ray.config.models import (
    CostEntry,
    ModelConfig,
    RayServeProviderConfig,
    Timeouts,
    local_deployment_name,
    shorthand_model,
)
from tensorzero_ray.errors import (
    AllModelProvidersFailed,
    ProviderError,
    StreamError,
    TensorZeroError,
    Timeout,
    UnservableInput,
)
from tensorzero_ray.ids import uuid7
from tensorzero_ray.inference.provider_health import ProviderHealth
from tensorzero_ray.providers import CallContext, Provider, build_provider
from tensorzero_ray.providers.base import lookup_pointer
from tensorzero_ray.types import ExtraBodyEntry, ExtraHeaderEntry, Usage
from tensorzero_ray.types.content import Text, TextChunk, Thought, ThoughtChunk, ToolCallChunk, ToolCallOutput
from tensorzero_ray.types.model import ModelInferenceRequest, ModelInferenceResult, ProviderChunk, has_custom_tools

logger = logging.getLogger(__name__)


@dataclass
class RequestExtras:
    """Per-request credentials and extra_body/extra_headers, before scoping."""

    credentials: dict[str, str] = field(default_factory=dict, repr=False)
    extra_body: list[ExtraBodyEntry] = field(default_factory=list)
    extra_headers: list[ExtraHeaderEntry] = field(default_factory=list)
    # The request's view of the inference cache (inference/cache.py), when it uses one.
    cache: Any = None
    # Rate limits (rate_limiting/): this replica's limiter and the tags that scope the request.
    rate_limiter: Any = None
    tags: dict[str, str] = field(default_factory=dict)

    async def reserve(self, request: ModelInferenceRequest):
        """A reservation of the request's share of every rate limit it falls under (429 when
        one has nothing left), or None without limits."""
        if self.rate_limiter is None or not self.rate_limiter.active:
            return None
        chars = len(request.system or "") + len(orjson.dumps([m.model_dump(mode="json") for m in request.messages]))
        return await self.rate_limiter.reserve(self.tags, chars, request.max_tokens)

    def context(self, variant: str | None, model: str, provider: str) -> CallContext:
        def applies(entry) -> bool:
            return (
                (entry.variant_name is None or entry.variant_name == variant)
                and (entry.model_name is None or entry.model_name == model)
                and (entry.provider_name is None or entry.provider_name == provider)
            )

        return CallContext(
            credentials=self.credentials,
            extra_body=[e for e in self.extra_body if applies(e)],
            extra_headers=[e for e in self.extra_headers if applies(e)],
        )


def _seconds(ms: int | None) -> float | None:
    return None if ms is None else ms / 1000


def compute_cost(entries: list[CostEntry], raw: list[Any], streaming: bool) -> float | None:
    """Sum of pointer values times rates; a missing required value makes the cost unknown."""
    if not entries:
        return None
    total = 0.0
    for entry in entries:
        pointer = entry.pointer or (entry.pointer_streaming if streaming else entry.pointer_nonstreaming)
        value = None
        for document in raw:
            found = lookup_pointer(document, pointer)
            if isinstance(found, (int, float)) and not isinstance(found, bool):
                value = found
        if value is None:
            if entry.required:
                return None
            continue
        total += value * entry.rate()
    return round(total, 9)


class Model:
    def __init__(
        self,
        name: str,
        config: ModelConfig,
        *,
        outbound_timeout_s: float = 900.0,
        local_models: dict[str, Any] | None = None,
        provider_types: dict[str, Any] | None = None,
    ):
        """`provider_types`: `[provider_types]`, whose `defaults` fill in credential locations."""
        self.name = name
        self.config = config
        self.providers: list[tuple[str, Provider]] = []
        for provider_name in config.routing:
            provider_config = config.providers[provider_name]
            handle = None
            if isinstance(provider_config, RayServeProviderConfig):
                handle = (local_models or {}).get(local_deployment_name(name, provider_name, provider_config))
            type_config = (provider_types or {}).get(provider_config.type)
            provider = build_provider(
                provider_name,
                provider_config,
                timeout_s=outbound_timeout_s,
                local_handle=handle,
                type_defaults=type_config.defaults if type_config is not None else None,
            )
            self.providers.append((provider_name, provider))
        self.health = ProviderHealth(name, config) if config.tracks_health else None

    async def aclose(self) -> None:
        for _, provider in self.providers:
            await provider.aclose()
        if self.health is not None:
            self.health.close()
            self.health = None

    def _attempts(self, errors: dict[str, TensorZeroError]) -> Iterator[tuple[int, str, Provider]]:
        """The providers to try for one request, in order, less those with an open circuit."""
        health = self.health
        for index in health.order() if health is not None else range(len(self.providers)):
            name, provider = self.providers[index]
            if health is not None and not health.allows(index):
                errors[name] = ProviderError(
                    f"Model provider {name} is left out after repeated failures "
                    f"(circuit open; next probe in {health.retry_in_s(index):.1f} s)",
                    provider_type=provider.provider_type,
                    status_code=503,
                )
                continue
            yield index, name, provider

    def _outcome(self, index: int, started: float, error: TensorZeroError | None = None) -> None:
        if self.health is None:
            return
        if error is None:
            self.health.succeeded(index, (time.monotonic() - started) * 1000)
        elif _provider_fault(error):
            self.health.failed(index)

    async def infer(
        self, request: ModelInferenceRequest, extras: RequestExtras, variant: str | None = None
    ) -> ModelInferenceResult:
        attributes = {"model_name": self.name, "stream": False}
        with telemetry.tracer().start_as_current_span("model_inference", attributes=attributes):
            try:
                async with asyncio.timeout(_seconds(self.config.timeouts.non_streaming.total_ms)):
                    return await self._infer_in_order(request, extras, variant)
            except TimeoutError:
                raise Timeout(f"Model {self.name} timed out") from None

    async def _infer_in_order(self, request, extras, variant) -> ModelInferenceResult:
        reservation = await extras.reserve(request)
        try:
            result = await self._infer_providers(request, extras, variant)
        except BaseException:
            if reservation is not None:
                reservation.release()
            raise
        if reservation is not None:
            usage = result.usage
            tokens = None if usage.input_tokens is None else usage.input_tokens + (usage.output_tokens or 0)
            reservation.settle(tokens, usage.cost)
        return result

    async def _infer_providers(self, request, extras, variant) -> ModelInferenceResult:
        errors: dict[str, TensorZeroError] = {}
        for index, provider_name, provider in self._attempts(errors):
            ctx = extras.context(variant, self.name, provider_name)
            started = time.monotonic()
            hit = await extras.cache.lookup(self.name, provider_name, request) if extras.cache is not None else None
            if hit is not None:
                return self._cached(provider_name, provider, request, hit, started)
            try:
                with _provider_span(provider_name, provider, self.name, request, stream=False) as span:
                    async with asyncio.timeout(_seconds(provider.config.timeouts.non_streaming.total_ms)):
                        response = await provider.infer(for_provider(request, provider), ctx)
                    _genai_response(span, response)
            except TimeoutError:
                errors[provider_name] = ProviderError(
                    f"Model provider {provider_name} timed out", provider_type=provider.provider_type, status_code=408
                )
                self._outcome(index, started, errors[provider_name])
                continue
            except TensorZeroError as exc:
                errors[provider_name] = exc
                self._outcome(index, started, exc)
                continue
            self._outcome(index, started)
            elapsed = int((time.monotonic() - started) * 1000)
            usage = response.usage.model_copy()
            usage.cost = compute_cost(provider.config.cost, [_json_or_none(response.raw_response)], False)
            result = ModelInferenceResult(
                id=uuid7(),
                model_name=self.name,
                model_provider_name=provider_name,
                provider_type=provider.provider_type,
                output=response.content,
                usage=usage,
                finish_reason=response.finish_reason,
                raw_request=response.raw_request,
                raw_response=response.raw_response,
                raw_usage=response.raw_usage,
                system=request.system,
                input_messages=request.messages,
                response_time_ms=elapsed,
                failed_providers={name: error.message for name, error in errors.items()},
            )
            if extras.cache is not None:
                await extras.cache.remember(request, result)
            return result
        raise AllModelProvidersFailed(errors, model_name=self.name)

    def _cached(self, provider_name: str, provider, request, hit, started: float) -> ModelInferenceResult:
        return ModelInferenceResult(
            id=uuid7(),
            model_name=self.name,
            model_provider_name=provider_name,
            provider_type=provider.provider_type,
            output=hit.output,
            usage=Usage(input_tokens=0, output_tokens=0),
            finish_reason=hit.finish_reason,
            raw_request=hit.raw_request,
            raw_response=hit.raw_response,
            system=request.system,
            input_messages=request.messages,
            response_time_ms=int((time.monotonic() - started) * 1000),
            cached=True,
        )

    async def stream(
        self, request: ModelInferenceRequest, extras: RequestExtras, variant: str | None = None
    ) -> "ModelStream":
        """Start a stream on the first provider that yields a first chunk in time."""
        attributes = {"model_name": self.name, "stream": True}
        with telemetry.tracer().start_as_current_span("model_inference", attributes=attributes):
            try:
                async with asyncio.timeout(_seconds(self.config.timeouts.streaming.ttft_ms)):
                    return await self._stream_in_order(request, extras, variant)
            except TimeoutError:
                raise Timeout(f"Model {self.name} timed out before its first token") from None

    async def _stream_in_order(self, request, extras, variant) -> "ModelStream":
        # A stream keeps its estimate: its usage is known only when it ends.
        reservation = await extras.reserve(request)
        try:
            return await self._stream_providers(request, extras, variant)
        except BaseException:
            if reservation is not None:
                reservation.release()
            raise

    async def _stream_providers(self, request, extras, variant) -> "ModelStream":
        errors: dict[str, TensorZeroError] = {}
        for index, provider_name, provider in self._attempts(errors):
            ctx = extras.context(variant, self.name, provider_name)
            started = time.monotonic()
            hit = await extras.cache.lookup(self.name, provider_name, request) if extras.cache is not None else None
            if hit is not None:
                return ModelStream.replay(self, provider_name, provider, request, ctx, hit, started)
            try:
                sent = for_provider(request, provider)
            except TensorZeroError as exc:
                errors[provider_name] = exc
                continue
            iterator = provider.stream(sent, ctx).__aiter__()
            try:
                # The provider span ends at the first chunk: its length is the time to first token.
                with _provider_span(provider_name, provider, self.name, request, stream=True) as span:
                    async with asyncio.timeout(_seconds(provider.config.timeouts.streaming.ttft_ms)):
                        first = await iterator.__anext__()
                    span.set_attribute("time_to_first_token", (time.monotonic() - started) * 1000)
            except TimeoutError:
                await _close(iterator)
                errors[provider_name] = ProviderError(
                    f"Model provider {provider_name} timed out before its first chunk",
                    provider_type=provider.provider_type,
                    status_code=408,
                )
                self._outcome(index, started, errors[provider_name])
                continue
            except StopAsyncIteration:
                errors[provider_name] = ProviderError(
                    f"Model provider {provider_name} ended the stream without a chunk",
                    provider_type=provider.provider_type,
                )
                self._outcome(index, started, errors[provider_name])
                continue
            except TensorZeroError as exc:
                await _close(iterator)
                errors[provider_name] = exc
                self._outcome(index, started, exc)
                continue
            if first.error is not None:
                await _close(iterator)
                errors[provider_name] = ProviderError(first.error, provider_type=provider.provider_type)
                self._outcome(index, started, errors[provider_name])
                continue
            # Time to the first chunk is the latency a stream is balanced by.
            self._outcome(index, started)
            deadline = _min_deadline(started, self.config.timeouts, provider.config.timeouts)
            stream = ModelStream(self, provider_name, provider, request, ctx, first, iterator, started, deadline)
            stream.failed_providers = {name: error.message for name, error in errors.items()}
            stream.cache = extras.cache
            return stream
        raise AllModelProvidersFailed(errors, model_name=self.name)


class ModelStream:
    """A started stream: forwards chunks, enforces the total deadline, and keeps what is needed
    to describe the call afterwards."""

    def __init__(
        self,
        model: Model,
        provider_name: str,
        provider: Provider,
        request: ModelInferenceRequest,
        ctx: CallContext,
        first: ProviderChunk,
        iterator: AsyncIterator[ProviderChunk],
        started: float,
        deadline: float | None,
    ):
        self.model = model
        self.provider_name = provider_name
        self.provider = provider
        self.request = request
        self.ctx = ctx
        self._first: ProviderChunk | None = first
        self._iterator = iterator
        self._started = started
        self._deadline = deadline
        self.ttft_ms = int((time.monotonic() - started) * 1000)
        self.raw_chunks: list[str] = []
        self.usage = Usage()
        # The provider's own usage objects as streamed (`include_raw_usage`), merged: some
        # providers send input tokens first and output tokens at the end.
        self.raw_usage: Any = None
        self.finish_reason = None
        self.failed_providers: dict[str, str] = {}
        # Model inferences the variant made before this stream (a mixture's candidates): stored
        # with it under the same inference.
        self.earlier: list[ModelInferenceResult] = []
        self.cache: Any = None
        self.cached = False

    @classmethod
    def replay(cls, model: "Model", provider_name: str, provider, request, ctx, hit, started: float) -> "ModelStream":
        """A cached answer as a stream: one chunk with every block, no usage."""
        first = ProviderChunk(
            content=as_chunks(hit.output), usage=Usage(input_tokens=0, output_tokens=0), finish_reason=hit.finish_reason
        )
        ctx.raw_request = hit.raw_request
        stream = cls(model, provider_name, provider, request, ctx, first, _nothing(), started, None)
        stream.raw_chunks = [hit.raw_response]
        stream.cached = True
        return stream

    async def remember(self, result: ModelInferenceResult) -> None:
        """A finished stream's answer into the cache, when the request writes to it."""
        if self.cache is not None:
            await self.cache.remember(self.request, result)

    async def __aiter__(self) -> AsyncIterator[ProviderChunk]:
        try:
            if self._first is not None:
                first, self._first = self._first, None
                yield self._observe(first)
            while True:
                remaining = None if self._deadline is None else self._deadline - time.monotonic()
                try:
                    async with asyncio.timeout(remaining):
                        chunk = await self._iterator.__anext__()
                except StopAsyncIteration:
                    return
                except TimeoutError:
                    raise StreamError(f"Model provider {self.provider_name} timed out mid-stream") from None
                except TensorZeroError as exc:
                    raise StreamError(exc.message) from None
                yield self._observe(chunk)
                if chunk.fatal:
                    return
        finally:
            await _close(self._iterator)

    def _observe(self, chunk: ProviderChunk) -> ProviderChunk:
        if chunk.raw_chunk:
            self.raw_chunks.append(chunk.raw_chunk)
        if chunk.usage is not None:
            self.usage = Usage(
                input_tokens=chunk.usage.input_tokens
                if chunk.usage.input_tokens is not None
                else self.usage.input_tokens,
                output_tokens=chunk.usage.output_tokens
                if chunk.usage.output_tokens is not None
                else self.usage.output_tokens,
                provider_cache_read_input_tokens=chunk.usage.provider_cache_read_input_tokens,
                provider_cache_write_input_tokens=chunk.usage.provider_cache_write_input_tokens,
            )
        if chunk.raw_usage is not None:
            if isinstance(self.raw_usage, dict) and isinstance(chunk.raw_usage, dict):
                self.raw_usage = {**self.raw_usage, **chunk.raw_usage}
            else:
                self.raw_usage = chunk.raw_usage
        if chunk.finish_reason is not None:
            self.finish_reason = chunk.finish_reason
        return chunk

    def final_usage(self) -> Usage:
        usage = self.usage.model_copy()
        usage.cost = compute_cost(self.provider.config.cost, [_json_or_none(r) for r in self.raw_chunks], True)
        return usage

    def result(self, output: list) -> ModelInferenceResult:
        return ModelInferenceResult(
            id=uuid7(),
            model_name=self.model.name,
            model_provider_name=self.provider_name,
            provider_type=self.provider.provider_type,
            output=output,
            usage=self.final_usage(),
            finish_reason=self.finish_reason,
            raw_request=self.ctx.raw_request,
            raw_response="\n".join(self.raw_chunks),
            raw_usage=self.raw_usage,
            system=self.request.system,
            input_messages=self.request.messages,
            response_time_ms=int((time.monotonic() - self._started) * 1000),
            ttft_ms=self.ttft_ms,
            failed_providers=self.failed_providers,
            cached=self.cached,
        )


class AnsweredStream(ModelStream):
    """An answer that is already whole (best-of-n's choice) as a one-chunk stream: it streams
    the answer and describes the model call that made it."""

    def __init__(self, answer: ModelInferenceResult, earlier: list[ModelInferenceResult], ttft_ms: int):
        """`ttft_ms`: from the variant's start to now, when the whole answer is ready."""
        first = ProviderChunk(content=as_chunks(answer.output), usage=answer.usage, finish_reason=answer.finish_reason)
        super().__init__(None, answer.model_provider_name, None, None, CallContext(), first, _nothing(), 0.0, None)
        self.answer = answer
        self.ttft_ms = ttft_ms
        self.earlier = earlier

    def final_usage(self) -> Usage:
        return self.answer.usage

    def result(self, output: list) -> ModelInferenceResult:
        return self.answer


def as_chunks(blocks: list) -> list:
    """Whole blocks as one chunk's content."""
    content = []
    for index, block in enumerate(blocks):
        if isinstance(block, Text):
            content.append(TextChunk(id=str(index), text=block.text or ""))
        elif isinstance(block, ToolCallOutput):
            content.append(ToolCallChunk(id=block.id, raw_name=block.raw_name, raw_arguments=block.raw_arguments))
        elif isinstance(block, Thought):
            content.append(ThoughtChunk(id=str(index), text=block.text, signature=block.signature))
    return content


async def _nothing() -> AsyncIterator[ProviderChunk]:
    return
    yield


def _min_deadline(started: float, model: Timeouts, provider: Timeouts) -> float | None:
    totals = [t for t in (model.streaming.total_ms, provider.streaming.total_ms) if t is not None]
    return started + min(totals) / 1000 if totals else None


def _json_or_none(text: str) -> Any:
    try:
        return orjson.loads(text)
    except (orjson.JSONDecodeError, TypeError):
        return None


def _provider_span(provider_name: str, provider: Provider, model_name: str, request, stream: bool):
    model = getattr(provider.config, "model_name", None) or model_name
    attributes = telemetry.provider_attributes(provider_name, provider.provider_type, model, request, stream)
    return telemetry.tracer().start_as_current_span("model_provider_inference", attributes=attributes)


def _genai_response(span, response) -> None:
    span.set_attributes(telemetry.provider_result_attributes(response))


def _provider_fault(error: TensorZeroError) -> bool:
    """Whether a failure speaks of the provider (down, overloaded, refusing our credentials)
    rather than of the request: only these count towards opening its circuit."""
    if not isinstance(error, ProviderError):
        return False
    return error.status_code >= 500 or error.status_code in (401, 403, 408, 429)


def for_provider(request: ModelInferenceRequest, provider: Provider) -> ModelInferenceRequest:
    """The request without thoughts another provider made: their signatures and encrypted
    reasoning mean nothing here and providers refuse them (spec §2)."""
    provider_type = provider.provider_type
    if has_custom_tools(request) and not provider.supports_custom_tools:
        raise UnservableInput(f"Provider type `{provider_type}` does not support OpenAI custom tools")
    foreign = [
        block
        for message in request.messages
        for block in message.content
        if isinstance(block, Thought) and block.provider_type not in (None, provider_type)
    ]
    if not foreign:
        return request
    logger.warning(
        "dropping %d thought block(s) from other providers before calling a `%s` provider", len(foreign), provider_type
    )
    messages = [
        message.model_copy(update={"content": [b for b in message.content if not any(b is f for f in foreign)]})
        for message in request.messages
    ]
    return request.model_copy(update={"messages": [m for m in messages if m.content]})


async def _close(iterator: Any) -> None:
    close = getattr(iterator, "aclose", None)
    if close is not None:
        try:
            await close()
        except Exception:  # noqa: BLE001 - closing a broken upstream must not mask the real error
            pass


class ModelRegistry:
    """Configured models plus `provider::model` shorthands, built once per process so each
    provider keeps one connection pool."""

    def __init__(
        self,
        models: dict[str, ModelConfig],
        *,
        outbound_timeout_s: float = 900.0,
        local_models: dict[str, Any] | None = None,
        provider_types: dict[str, Any] | None = None,
    ):
        self._configs = models
        self._timeout_s = outbound_timeout_s
        self.local_models = local_models or {}
        self._provider_types = provider_types or {}
        self._models: dict[str, Model] = {}

    def get(self, name: str) -> Model | None:
        model = self._models.get(name)
        if model is None:
            config = self._configs.get(name) or shorthand_model(name)
            if config is None:
                return None
            model = self._models[name] = Model(
                name,
                config,
                outbound_timeout_s=self._timeout_s,
                local_models=self.local_models,
                provider_types=self._provider_types,
            )
        return model

    async def aclose(self) -> None:
        for model in self._models.values():
            await model.aclose()
