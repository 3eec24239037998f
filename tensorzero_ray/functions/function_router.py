"""The FunctionRouter: for one function, validate the input, choose a variant, run it with
fallback to the others, and shape the response or the SSE stream (spec §1.1, §3.8).

It is a plain class so it can run as its own Serve deployment (one per function, autoscaled)
or inside the Gateway replica; both call the same methods."""

from __future__ import annotations

import asyncio
import logging
import time
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable
from functools import partial
from typing import Any, TypeVar

import orjson
from jsonschema import Draft202012Validator
from jsonschema.exceptions import SchemaError
from opentelemetry import trace
from pydantic import TypeAdapter, ValidationError

from tensorzero_ray import ray_metrics, telemetry
from tensorzero_ray.config import Config
from tensorzero_ray.config.functions import DEFAULT_FUNCTION, JsonFunctionConfig
from tensorzero_ray.config.variants import (
    BestOfNVariantConfig,
    ChainOfThoughtVariantConfig,
    ChatCompletionVariantConfig,
    DiclVariantConfig,
    MixtureOfNVariantConfig,
    VariantConfig,
    variant_models,
)
from tensorzero_ray.errors import (
    InvalidRequest,
    StreamError,
    TensorZeroError,
    UnknownModel,
)
from tensorzero_ray.experimentation.follower import StateFollower
from tensorzero_ray.experimentation.sampling import AdaptiveSampler, VariantSampler, build_sampler
from tensorzero_ray.functions.batch_inference import BatchInference
from tensorzero_ray.functions.plan import VariantPlan
from tensorzero_ray.ids import uuid7
from tensorzero_ray.inference.cache import InferenceCache, RecentAnswers
from tensorzero_ray.inference.embeddings import EmbeddingRegistry
from tensorzero_ray.inference.files import FileResolver
from tensorzero_ray.inference.input import InputValidator
from tensorzero_ray.inference.model import ModelRegistry, ModelStream, RequestExtras
from tensorzero_ray.inference.output import ChunkAggregator, function_output
from tensorzero_ray.inference.schemas import SchemaValidator
from tensorzero_ray.inference.templates import RenderLimits
from tensorzero_ray.inference.tools import ToolCallValidator, ToolCatalog, check_tool_history
from tensorzero_ray.inference.url_fetch import FetchPolicy
from tensorzero_ray.rate_limiting import RateLimited, RateLimiter, RateLimitMissingMaxTokens
from tensorzero_ray.store.dicl_examples import nearest_examples
from tensorzero_ray.store.inference_rows import has_files, inference_rows, stored_input
from tensorzero_ray.store.object_storage import FilesystemObjectStore, label_inline_files, pointer_blocks
from tensorzero_ray.store.observability import ObservabilityClient
from tensorzero_ray.types import (
    ChatChunk,
    ChatInferenceResponse,
    InferenceRequest,
    InferenceResponse,
    JsonChunk,
    JsonInferenceResponse,
    JsonOutput,
    RawResponseEntry,
    RawUsageEntry,
    TextChunk,
    ToolCallChunk,
    Usage,
)
from tensorzero_ray.types.batch import BatchStarted, BatchStatus
from tensorzero_ray.types.model import ModelInferenceResult
from tensorzero_ray.validation import describe_errors
from tensorzero_ray.variants.base import InferenceCall, NotServedVariant, Variant
from tensorzero_ray.variants.best_of_n import BestOfNVariant
from tensorzero_ray.variants.chain_of_thought import ChainOfThoughtVariant
from tensorzero_ray.variants.chat_completion import ChatCompletionVariant
from tensorzero_ray.variants.dicl import DiclVariant
from tensorzero_ray.variants.mixture_of_n import MixtureOfNVariant

logger = logging.getLogger(__name__)

T = TypeVar("T")

DONE_EVENT = b"data: [DONE]\n\n"
# Stores for streams whose client left: kept referenced until they finish.
_BACKGROUND: set[asyncio.Task] = set()
DYNAMIC_VARIANT = "tensorzero::dynamic_variant"
DYNAMIC_VARIANT_ADAPTER: TypeAdapter = TypeAdapter(VariantConfig)


def without_nulls(value: Any) -> Any:
    """TensorZero's clients send `null` for every unset key of a variant config."""
    if isinstance(value, dict):
        return {k: without_nulls(v) for k, v in value.items() if v is not None}
    if isinstance(value, list):
        return [without_nulls(v) for v in value]
    return value


def sse_event(payload: dict) -> bytes:
    return b"data: " + orjson.dumps(payload) + b"\n\n"


class FunctionRouter:
    def __init__(
        self,
        config: Config,
        function_name: str,
        models: ModelRegistry | None = None,
        observability: ObservabilityClient | None = None,
        experiments: Any = None,
        rate_limiter: RateLimiter | None = None,
    ):
        """`experiments`: the experiment controller (object or Serve handle) that publishes
        adaptive experiments' states; without it they sample their candidates uniformly.
        `rate_limiter`: this replica's, shared by its routers."""
        self.function_name = function_name
        self.observability = observability
        self.rate_limiter = rate_limiter
        storage = config.object_storage
        self.object_store = (
            FilesystemObjectStore(storage.path) if storage is not None and storage.type == "filesystem" else None
        )
        fetch = self.object_store is not None or config.gateway.fetch_and_encode_input_files_before_inference
        self.files = FileResolver(fetch_urls=fetch, policy=FetchPolicy(config.gateway.security.fetch_allowed_hosts))
        self.models = models or ModelRegistry(
            config.models,
            outbound_timeout_s=config.gateway.global_outbound_http_timeout_ms / 1000,
            provider_types=config.provider_types,
        )
        self._fs_base = config.gateway.template_filesystem_access.root()
        self.embedding_models = EmbeddingRegistry(
            config.embedding_models,
            outbound_timeout_s=config.gateway.global_outbound_http_timeout_ms / 1000,
            local_models=self.models.local_models,
        )
        self.tools = ToolCatalog(config.tools)
        self.function = config.function(function_name)
        self.is_json = isinstance(self.function, JsonFunctionConfig)
        self.input_validator = InputValidator(self.function.schema_files())
        self._schema_names = set(self.function.schema_files())
        self.variants: dict[str, Variant] = {}
        # Variants made of other variants come second: their candidates exist by then.
        composite = (BestOfNVariantConfig, MixtureOfNVariantConfig)
        for name, variant in sorted(self.function.variants.items(), key=lambda item: isinstance(item[1], composite)):
            self.variants[name] = self._build_variant(name, variant)
        self.variants = {name: self.variants[name] for name in self.function.variants}
        experimentation = self.function.experimentation
        self.sampler = build_sampler(function_name, self.function.variants, experimentation)
        self.namespace_samplers: dict[str, VariantSampler | AdaptiveSampler] = {
            ns: build_sampler(function_name, self.function.variants, sub)
            for ns, sub in (experimentation.namespaces.items() if experimentation else [])
        }
        adaptive = {
            (function_name, ns): sampler
            for ns, sampler in [("", self.sampler), *self.namespace_samplers.items()]
            if isinstance(sampler, AdaptiveSampler)
        }
        self.follower = StateFollower(experiments, adaptive) if adaptive and experiments is not None else None
        self.recent_answers = RecentAnswers()
        self.batches = BatchInference(self)
        if adaptive and experiments is None:
            logger.warning(
                "function %s: no experiment controller (observability is off?); its adaptive experiment "
                "samples the candidates uniformly",
                function_name,
            )
        self._output_validator = (
            SchemaValidator(self.function.output_schema_dict())
            if isinstance(self.function, JsonFunctionConfig)
            else None
        )

    def _build_variant(self, name: str, config) -> Variant:
        if isinstance(config, BestOfNVariantConfig):
            candidates = [self.variants[c] for c in config.candidates]
            return BestOfNVariant(name, config, candidates, self._chat(f"{name}::evaluator", config.evaluator))
        if isinstance(config, MixtureOfNVariantConfig):
            candidates = [self.variants[c] for c in config.candidates]
            return MixtureOfNVariant(name, config, candidates, self._chat(f"{name}::fuser", config.fuser))
        if isinstance(config, DiclVariantConfig):
            embedder = self.embedding_models.get(config.embedding_model)
            if embedder is None:
                raise UnknownModel(config.embedding_model)
            model = self._chat(name, ChatCompletionVariantConfig(type="chat_completion", model=config.model)).model
            return DiclVariant(name, self.function_name, config, model, embedder, self._search_examples)
        if isinstance(config, ChainOfThoughtVariantConfig):
            model = self._chat(name, config).model
            return ChainOfThoughtVariant(name, config, model, self._schema_names, self._fs_base)
        if not isinstance(config, ChatCompletionVariantConfig):
            return NotServedVariant(name, config.type)
        return self._chat(name, config)

    async def _search_examples(self, *args) -> list[tuple[str, str]]:
        if self.observability is None:
            raise InvalidRequest("DICL variants need stored examples, and observability is disabled")
        return await nearest_examples(self.observability.query, *args)

    def _chat(self, name: str, config) -> ChatCompletionVariant:
        model = self.models.get(config.model)
        if model is None:
            raise UnknownModel(config.model)
        return ChatCompletionVariant(name, config, model, self._schema_names, self._fs_base)

    async def aclose(self) -> None:
        if self.follower is not None:
            await self.follower.aclose()
        await self.embedding_models.aclose()
        await self.models.aclose()
        await self.files.aclose()

    async def sampling_probabilities(self, namespace: str | None = None) -> dict[str, float]:
        """What a new episode would get now (spec §8.1's display probabilities)."""
        if self.follower is not None:
            await self.follower.ready()
        return self.namespace_samplers.get(namespace or "", self.sampler).probabilities()

    async def start_batch(self, requests: list[InferenceRequest]) -> BatchStarted:
        return await self.batches.start(requests)

    async def poll_batch(self, batch_id: str, inference_id: str | None = None) -> BatchStatus:
        return await self.batches.poll(batch_id, inference_id)

    # --- the two entry points -------------------------------------------------------------

    async def infer(self, request: InferenceRequest) -> InferenceResponse:
        with telemetry.tracer().start_as_current_span(
            "function_inference", attributes=telemetry.function_attributes()
        ) as span:
            request = await self._with_files(request)
            if self.follower is not None and not self.follower.synced:
                await self.follower.ready()
            plan = self.plan(request)
            name, results = await self._first_success(plan, lambda variant: variant.infer(plan.call), stream=False)
            response = self._response(request, plan, name, results)
            _describe(span, self.function_name, request, name, response.inference_id, response.episode_id)
            output = response.output if isinstance(response, JsonInferenceResponse) else response.content
            await self._record(request, plan, name, output, results)
            return response

    async def stream(self, request: InferenceRequest) -> AsyncIterator[bytes]:
        """SSE events as bytes. Errors before the first chunk are raised from the first
        `anext`, so the gateway can answer with a plain error response; later ones become
        error events."""
        # The span covers choosing a variant and starting its stream: a generator may resume in
        # another context, so it is not left current across yields.
        span = telemetry.tracer().start_span("function_inference", attributes=telemetry.function_attributes())
        try:
            with trace.use_span(span, end_on_exit=False):
                request = await self._with_files(request)
                if self.follower is not None and not self.follower.synced:
                    await self.follower.ready()
                plan = self.plan(request)
                name, model_stream = await self._first_success(
                    plan, lambda variant: variant.stream(plan.call), stream=True
                )
                _describe(span, self.function_name, request, name, plan.inference_id, plan.episode_id)
            async for event in self._events(request, plan, name, model_stream):
                yield event
        finally:
            span.end()

    async def _first_success(
        self, plan: VariantPlan, attempt: Callable[[Variant], Awaitable[T]], stream: bool
    ) -> tuple[str, T]:
        """Try variants in the plan's order until one succeeds (spec §3.8 step 4)."""
        errors: dict[str, TensorZeroError] = {}
        for name, variant in plan.variants():
            attributes = {"function_name": self.function_name, "variant_name": name, "stream": stream}
            try:
                with telemetry.tracer().start_as_current_span("variant_inference", attributes=attributes):
                    return name, await attempt(variant)
            except (RateLimited, RateLimitMissingMaxTokens):
                raise
            except TensorZeroError as exc:
                errors[name] = exc
                plan.failed(name, exc)
                logger.warning("variant %s of %s failed: %s", name, self.function_name, exc.message)
        if self.observability is not None and not plan.dryrun and plan.failures:
            await self.observability.record(plan.failures)
        raise plan.exhausted(errors)

    # --- planning ---------------------------------------------------------------------------

    def plan(self, request: InferenceRequest) -> VariantPlan:
        """The request checked and planned: its ids and the variants to try (each element of a
        batch is planned this way too)."""
        dynamic = None
        if request.internal_dynamic_variant_config is not None:
            if not (request.dryrun or request.internal):
                # Internal requests are our own optimizers': stored, tagged as internal.
                raise InvalidRequest("`internal_dynamic_variant_config` requires `dryrun: true` (or `internal: true`)")
            dynamic = self._dynamic_variant(
                request.internal_dynamic_variant_config, request.variant_name or DYNAMIC_VARIANT
            )
        if request.include_aggregated_response and not request.stream:
            raise InvalidRequest("`include_aggregated_response` requires `stream: true`")
        is_json = self.is_json
        if is_json and (request.allowed_tools or request.additional_tools):
            raise InvalidRequest("Tools are not allowed for JSON functions")
        self.input_validator.validate(request.input)
        output_schema = None
        output_validator = self._output_validator
        if is_json:
            output_schema = (
                request.output_schema if request.output_schema is not None else self.function.output_schema_dict()
            )
            if request.output_schema is not None:
                output_validator = _dynamic_validator(request.output_schema)
        elif request.output_schema is not None:
            # A chat function's answer stays text; the schema shapes it through `json_mode`.
            _dynamic_validator(request.output_schema)
            output_schema = request.output_schema
        tool_settings = (
            None
            if is_json
            else self.tools.settings(self.function if self.function_name != DEFAULT_FUNCTION else None, request)
        )
        check_tool_history(request.input, tool_settings)
        call = InferenceCall(
            function_type="json" if is_json else "chat",
            system=request.input.system,
            messages=request.input.messages,
            params=request.params.chat_completion,
            output_schema=output_schema,
            tool_settings=tool_settings,
            extras=RequestExtras(
                credentials=request.credentials,
                extra_body=request.extra_body,
                extra_headers=request.extra_headers,
                cache=self._cache(request),
                rate_limiter=self.rate_limiter,
                tags=request.tags,
            ),
        )
        episode_id = uuid.UUID(request.episode_id) if request.episode_id else uuid7()
        return VariantPlan(self, request, call, episode_id, output_validator, ToolCallValidator(tool_settings), dynamic)

    def _cache(self, request: InferenceRequest) -> InferenceCache | None:
        if request.cache_options.enabled == "off" or self.observability is None:
            return None
        return InferenceCache(self.observability, request.cache_options, request.dryrun, self.recent_answers)

    def _dynamic_variant(self, raw: dict, name: str) -> Variant:
        """An ad-hoc variant from the request (dry runs only: replays, evaluations, the UI's
        "try with another variant"); its templates are inline, never files."""
        raw = without_nulls(raw)
        try:
            config = DYNAMIC_VARIANT_ADAPTER.validate_python(raw, context={"inline_only": True})
        except ValidationError as exc:
            raise InvalidRequest(f"Invalid `internal_dynamic_variant_config`: {describe_errors(exc, raw)}") from None
        for _, model_name in variant_models(config):
            if self.models.get(model_name) is None:
                raise UnknownModel(model_name)
        if not isinstance(config, ChatCompletionVariantConfig):
            return NotServedVariant(name, config.type)
        model = self.models.get(config.model)
        return ChatCompletionVariant(name, config, model, self._schema_names, limits=RenderLimits())

    # --- shaping ----------------------------------------------------------------------------

    def _response(
        self, request: InferenceRequest, plan: VariantPlan, variant_name: str, results: list[ModelInferenceResult]
    ) -> InferenceResponse:
        final = results[-1]
        usage = Usage(input_tokens=0, output_tokens=0)
        for result in results:
            usage = usage + result.usage
        common = dict(
            inference_id=plan.inference_id,
            episode_id=plan.episode_id,
            variant_name=variant_name,
            usage=usage,
            finish_reason=final.finish_reason,
        )
        if request.include_raw_response:
            common["raw_response"] = [
                RawResponseEntry(model_inference_id=r.id, provider_type=r.provider_type, data=r.raw_response)
                for r in results
            ]
        if request.include_original_response:
            common["original_response"] = final.raw_response
        if request.include_raw_usage:
            common["raw_usage"] = [
                RawUsageEntry(model_inference_id=r.id, provider_type=r.provider_type, data=r.raw_usage) for r in results
            ]
        output = self._shape_output(plan, final.output)
        if isinstance(output, JsonOutput):
            return JsonInferenceResponse(output=output, **common)
        return ChatInferenceResponse(content=output, **common)

    async def _events(
        self, request: InferenceRequest, plan: VariantPlan, variant_name: str, model_stream: ModelStream
    ) -> AsyncIterator[bytes]:
        base = {
            "inference_id": str(plan.inference_id),
            "episode_id": str(plan.episode_id),
            "variant_name": variant_name,
        }
        is_json = plan.call.function_type == "json"
        aggregator = ChunkAggregator()
        result: ModelInferenceResult | None = None
        recorded = False
        try:
            try:
                async for chunk in model_stream:
                    event = self._chunk_event(request, base, is_json, chunk, aggregator)
                    if event is not None:
                        yield sse_event(event)
                    if chunk.fatal:
                        break
            except StreamError as exc:
                yield sse_event({"error": exc.message})
            else:
                result = model_stream.result(aggregator.blocks())
                yield sse_event(self._final_event(request, plan, base, model_stream, result, aggregator))
            # `[DONE]` is the acknowledgement: it leaves once the rows are durable.
            recorded = True
            await self._record_stream(request, plan, variant_name, model_stream, aggregator, result)
            yield DONE_EVENT
        finally:
            if not recorded:
                # A client that left: what was generated is still stored, without waiting.
                task = asyncio.get_running_loop().create_task(
                    self._record_stream(request, plan, variant_name, model_stream, aggregator, result)
                )
                _BACKGROUND.add(task)
                task.add_done_callback(_BACKGROUND.discard)

    async def _record_stream(
        self, request, plan: VariantPlan, variant_name: str, model_stream, aggregator, result=None
    ) -> None:
        if result is not None:
            await model_stream.remember(result)  # only a stream that finished
        result = result or model_stream.result(aggregator.blocks())
        output = self._shape_output(plan, aggregator.blocks())
        results = [*model_stream.earlier, result]
        await self._record(request, plan, variant_name, output, results, ttft_ms=model_stream.ttft_ms)

    @staticmethod
    def _chunk_event(request, base: dict, is_json: bool, chunk, aggregator: ChunkAggregator) -> dict | None:
        if chunk.error is not None:
            event = {"error": chunk.error}
            if request.include_raw_response and chunk.raw_chunk:
                event["raw_chunk"] = chunk.raw_chunk
            return event
        for piece in chunk.content:
            aggregator.add(piece)
        if not chunk.content:
            return None
        event = dict(base)
        if is_json:
            text = "".join(
                p.text if isinstance(p, TextChunk) else p.raw_arguments
                for p in chunk.content
                if isinstance(p, (TextChunk, ToolCallChunk))
            )
            if not text:
                return None
            event["raw"] = text
        else:
            event["content"] = [p.model_dump(exclude_none=True) for p in chunk.content]
        if request.include_raw_response:
            event["raw_chunk"] = chunk.raw_chunk
        if request.include_original_response:
            event["original_chunk"] = chunk.raw_chunk
        return event

    @staticmethod
    def _shape_output(plan: VariantPlan, blocks: list) -> list | JsonOutput:
        return function_output(blocks, plan.call.function_type == "json", plan.output_validator, plan.tool_validator)

    async def _with_files(self, request: InferenceRequest) -> InferenceRequest:
        resolved = await self.files.resolve(request.input)
        return request if resolved is request.input else request.model_copy(update={"input": resolved})

    async def _record(
        self, request, plan: VariantPlan, variant_name: str, output, results, ttft_ms: int | None = None
    ) -> None:
        if request.dryrun:
            return
        ray_metrics.record_inference(self.function_name, variant_name, results, time.monotonic() - plan.started)
        if self.observability is None:
            return
        rows = partial(
            inference_rows,
            function_name=self.function_name,
            variant_name=variant_name,
            inference_id=plan.inference_id,
            episode_id=plan.episode_id,
            request=request,
            tags=plan.tags,
            output=output,
            output_schema=plan.call.output_schema,
            tool_settings=plan.call.tool_settings,
            results=results,
            processing_time_ms=int((time.monotonic() - plan.started) * 1000),
            ttft_ms=ttft_ms,
        )
        stored = stored_input(request)
        if self.object_store is not None and has_files(stored):
            # Files go to object storage first; the row then points at them.
            try:
                stored = await pointer_blocks(self.object_store, stored)
            except OSError as exc:
                logger.error("could not write input files to object storage (%s); storing them inline", exc)
        if has_files(stored):
            label_inline_files(stored)
        await self.observability.record(plan.failures + rows(stored_input=orjson.dumps(stored).decode()))

    def _final_event(
        self, request, plan, base, model_stream: ModelStream, result: ModelInferenceResult, aggregator: ChunkAggregator
    ) -> dict:
        usage = model_stream.final_usage()
        final_model = JsonChunk if plan.call.function_type == "json" else ChatChunk
        fields = {**base, "usage": usage, "finish_reason": model_stream.finish_reason}
        fields.update({"raw": ""} if final_model is JsonChunk else {"content": []})
        if request.include_raw_usage:
            fields["raw_usage"] = [
                RawUsageEntry(model_inference_id=result.id, provider_type=result.provider_type, data=result.raw_usage)
            ]
        if request.include_aggregated_response:
            output = self._shape_output(plan, aggregator.blocks())
            if isinstance(output, JsonOutput):
                fields["aggregated_response"] = {"output": output.model_dump()}
            else:
                fields["aggregated_response"] = {
                    "content": [b.model_dump(mode="json", exclude_none=True) for b in output]
                }
        return final_model(**fields).model_dump(mode="json")


def _describe(span, function_name: str, request: InferenceRequest, variant: str, inference_id, episode_id) -> None:
    if not span.is_recording():
        return
    span.set_attribute("function_name", function_name)
    span.set_attribute("variant_name", variant)
    span.set_attribute("inference_id", str(inference_id))
    span.set_attribute("episode_id", str(episode_id))
    if request.model_name is not None:
        span.set_attribute("model_name", request.model_name)
    for key, value in request.tags.items():
        span.set_attribute(f"tags.{key}", value)


def _dynamic_validator(schema: dict) -> SchemaValidator:
    try:
        Draft202012Validator.check_schema(schema)
    except SchemaError as exc:
        raise InvalidRequest(f"Invalid `output_schema`: {exc.message}") from None
    return SchemaValidator(schema)
