"""Batch inference for one function over its provider's batch API (spec §1.2): one variant
for the whole batch (pinned or sampled once), no fallbacks, retries or cache reads. Starting
stores the batch and each element as sent; a poll asks the provider, and when the batch has
completed writes each element's inference as `/inference` would have, once."""

from __future__ import annotations

import asyncio
import uuid
from collections import defaultdict
from typing import TYPE_CHECKING

import orjson
from pydantic import TypeAdapter

from tensorzero_ray.errors import (
    BatchInputValidation,
    BatchNotFound,
    InvalidRequest,
    ProviderError,
    TensorZeroError,
    UnknownModel,
    UnsupportedVariantForBatchInference,
)
from tensorzero_ray.ids import uuid7
from tensorzero_ray.inference.model import RequestExtras
from tensorzero_ray.inference.output import function_output
from tensorzero_ray.inference.schemas import SchemaValidator
from tensorzero_ray.inference.tools import ToolCallValidator
from tensorzero_ray.providers import CallContext
from tensorzero_ray.store.batch_queries import batch_elements, batch_inferences, latest_batch_request
from tensorzero_ray.store.inference_rows import head_row, model_inference_row, request_columns, stored_input
from tensorzero_ray.store.rows import BatchModelInferenceRow, BatchRequestRow, Row
from tensorzero_ray.types import (
    ChatCompletionParams,
    ChatInferenceResponse,
    InferenceRequest,
    JsonInferenceResponse,
    JsonOutput,
    Usage,
)
from tensorzero_ray.types.batch import BatchStarted, BatchStatus
from tensorzero_ray.types.model import ModelInferenceRequest, ModelInferenceResult, RequestMessage, ToolSettings
from tensorzero_ray.variants.chat_completion import ChatCompletionVariant

if TYPE_CHECKING:
    from tensorzero_ray.functions.function_router import FunctionRouter

MESSAGES: TypeAdapter = TypeAdapter(list[RequestMessage])


def _json(value) -> str:
    return orjson.dumps(value).decode()


class BatchInference:
    def __init__(self, router: "FunctionRouter"):
        self.router = router
        # Polls of one batch in this replica take turns, so a completed batch is written once.
        self._locks: defaultdict[str, asyncio.Lock] = defaultdict(asyncio.Lock)

    @property
    def _observability(self):
        if self.router.observability is None:
            raise InvalidRequest("Batch inference needs observability: batches are kept in ClickHouse")
        return self.router.observability

    async def start(self, requests: list[InferenceRequest]) -> BatchStarted:
        observability = self._observability
        plans = []
        for i, request in enumerate(requests):
            try:
                plans.append(self.router.plan(request))
            except TensorZeroError as exc:
                raise BatchInputValidation(f"inputs[{i}]: {exc.message}") from None
        chosen = next(plans[0].variants(), None)
        if chosen is None:
            raise InvalidRequest(f"Function `{self.router.function_name}` has no variant to run the batch on")
        variant_name, variant = chosen
        if not isinstance(variant, ChatCompletionVariant):
            raise UnsupportedVariantForBatchInference(
                f"Variant `{variant_name}` is not a `chat_completion` variant; batch inference runs only those"
            )
        model_requests = []
        for i, plan in enumerate(plans):
            try:
                model_requests.append(variant.prepare(plan.call))
            except TensorZeroError as exc:
                raise BatchInputValidation(f"inputs[{i}]: {exc.message}") from None
        model = variant.model
        provider_name, provider = model.providers[0]
        ctx = plans[0].call.extras.context(variant_name, model.name, provider_name)
        started = await provider.start_batch(
            [(str(plan.inference_id), r) for plan, r in zip(plans, model_requests)], ctx
        )
        batch_id = uuid7()
        rows: list[Row] = [
            BatchRequestRow(
                batch_id=batch_id,
                id=uuid7(),
                batch_params=_json(started.params),
                model_name=model.name,
                model_provider_name=provider_name,
                status="pending",
                raw_request=started.raw_request,
                raw_response=started.raw_response,
                function_name=self.router.function_name,
                variant_name=variant_name,
            )
        ]
        for request, plan, model_request, raw_request in zip(requests, plans, model_requests, started.raw_requests):
            rows.append(
                BatchModelInferenceRow(
                    inference_id=plan.inference_id,
                    batch_id=batch_id,
                    function_name=self.router.function_name,
                    variant_name=variant_name,
                    episode_id=plan.episode_id,
                    input=_json(stored_input(request)),
                    input_messages=_json(
                        [m.model_dump(mode="json", exclude_none=True) for m in model_request.messages]
                    ),
                    system=model_request.system,
                    tool_params=model_request.tool_settings.model_dump_json() if model_request.tool_settings else None,
                    raw_request=raw_request,
                    model_name=model.name,
                    model_provider_name=provider_name,
                    output_schema=_json(plan.call.output_schema) if plan.call.output_schema is not None else None,
                    tags=plan.tags,
                    **request_columns(request, plan.call.tool_settings),
                )
            )
        # Acknowledged only once the writer has the batch: a poll may come to another replica.
        await observability.record(rows)
        await observability.drain()
        return BatchStarted(
            batch_id=batch_id,
            inference_ids=[plan.inference_id for plan in plans],
            episode_ids=[plan.episode_id for plan in plans],
        )

    async def poll(self, batch_id: str, inference_id: str | None = None) -> BatchStatus:
        query = self._observability.query
        async with self._locks[batch_id]:
            latest = await latest_batch_request(query, batch_id)
            if latest is None:
                raise BatchNotFound(batch_id)
            if latest.status == "pending":
                latest = await self._ask_provider(latest)
        if latest.status == "pending":
            return BatchStatus(status="pending")
        if latest.status == "failed":
            return BatchStatus(status="failed", errors=latest.errors)
        table = "JsonInference" if self.router.is_json else "ChatInference"
        inferences = [self._response(row) for row in await batch_inferences(query, table, batch_id)]
        if inference_id is not None:
            inferences = [i for i in inferences if str(i.inference_id) == inference_id]
            if not inferences:
                raise BatchNotFound(batch_id, inference_id)
        return BatchStatus(status="completed", batch_id=uuid.UUID(batch_id), inferences=inferences)

    async def _ask_provider(self, latest: BatchRequestRow) -> BatchRequestRow:
        model = self.router.models.get(latest.model_name)
        providers = dict(model.providers) if model is not None else {}
        provider = providers.get(latest.model_provider_name)
        if provider is None:
            raise UnknownModel(f"{latest.model_name} (provider {latest.model_provider_name}, which started the batch)")
        elements = await batch_elements(self._observability.query, str(latest.batch_id))
        requests = {str(e.inference_id): self._model_request(e) for e in elements}
        poll = await provider.poll_batch(orjson.loads(latest.batch_params), requests, _context(latest))
        rows: list[Row] = []
        errors = list(poll.errors)
        if poll.state == "completed":
            for element in elements:
                answer = poll.responses.get(str(element.inference_id))
                if isinstance(answer, ProviderError) or answer is None:
                    detail = answer.message if answer is not None else "the provider returned no answer"
                    errors.append(f"inference {element.inference_id}: {detail}")
                    continue
                rows += self._inference_rows(element, requests[str(element.inference_id)], answer, provider)
        state = latest.model_copy(
            update={
                "id": uuid7(),
                "status": poll.state,
                "errors": errors,
                "raw_request": poll.raw_request,
                "raw_response": poll.raw_response,
            }
        )
        await self._observability.record([*rows, state])
        await self._observability.drain()
        return state

    def _model_request(self, element: BatchModelInferenceRow) -> ModelInferenceRequest:
        """The element's request as the provider got it: what reading its answer depends on."""
        params = ChatCompletionParams.model_validate(orjson.loads(element.inference_params).get("chat_completion", {}))
        variant = self.router.variants.get(element.variant_name)
        function_type = "json" if self.router.is_json else "chat"
        return ModelInferenceRequest(
            function_type=function_type,
            system=element.system,
            messages=MESSAGES.validate_json(element.input_messages),
            json_mode=variant.json_mode(params, function_type) if isinstance(variant, ChatCompletionVariant) else "off",
            output_schema=orjson.loads(element.output_schema) if element.output_schema else None,
            tool_settings=ToolSettings.model_validate_json(element.tool_params) if element.tool_params else None,
        )

    def _inference_rows(self, element, request: ModelInferenceRequest, answer, provider) -> list[Row]:
        result = ModelInferenceResult(
            id=uuid7(),
            model_name=element.model_name,
            model_provider_name=element.model_provider_name,
            provider_type=provider.provider_type,
            output=answer.content,
            usage=answer.usage,
            finish_reason=answer.finish_reason,
            raw_request=element.raw_request,
            raw_response=answer.raw_response,
            raw_usage=answer.raw_usage,
            system=request.system,
            input_messages=request.messages,
            response_time_ms=None,
        )
        schema = SchemaValidator(request.output_schema) if request.output_schema is not None else None
        is_json = request.function_type == "json"
        output = function_output(result.output, is_json, schema, ToolCallValidator(request.tool_settings))
        common = dict(
            id=element.inference_id,
            function_name=element.function_name,
            variant_name=element.variant_name,
            episode_id=element.episode_id,
            input=element.input,
            # A batch element has no processing time of its own.
            processing_time_ms=None,
            tags=element.tags,
        )
        columns = dict(
            inference_params=element.inference_params,
            dynamic_tools=element.dynamic_tools,
            allowed_tools=element.allowed_tools,
            tool_choice=element.tool_choice,
            parallel_tool_calls=element.parallel_tool_calls,
        )
        head = head_row(common, columns, output, request.output_schema, result)
        return [head, model_inference_row(result, element.inference_id, element.function_name, element.variant_name)]

    def _response(self, row: dict) -> ChatInferenceResponse | JsonInferenceResponse:
        common = dict(
            inference_id=row["inference_id"],
            episode_id=row["episode_id"],
            variant_name=row["variant_name"],
            usage=Usage(input_tokens=row["input_tokens"], output_tokens=row["output_tokens"]),
            finish_reason=row["finish_reason"],
        )
        output = orjson.loads(row["output"])
        if self.router.is_json:
            return JsonInferenceResponse(output=JsonOutput.model_validate(output), **common)
        return ChatInferenceResponse(content=output, **common)


def _context(latest: BatchRequestRow) -> CallContext:
    """A poll carries no credentials: the provider's configured (static) ones are used."""
    return RequestExtras().context(latest.variant_name, latest.model_name, latest.model_provider_name)
