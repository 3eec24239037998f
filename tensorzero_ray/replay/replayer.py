"""Replays stored inferences through the normal inference path, with bounded concurrency, and
pairs each old output with the new one. Transport-free: the gateway passes its routers, the
Ray job passes an HTTP client. A failed call is reported on its row; the others go on."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from typing import Any

from pydantic import ValidationError

from tensorzero_ray.config import Config
from tensorzero_ray.config.variants import ChatCompletionVariantConfig
from tensorzero_ray.errors import InvalidRequest, TensorZeroError, unwrap
from tensorzero_ray.types import InferenceRequest, InferenceResponse, JsonInferenceResponse
from tensorzero_ray.types.replay import ReplayComparison, ReplayedOutput, ReplayRequest, ReplayResult
from tensorzero_ray.types.stored import StoredInference
from tensorzero_ray.validation import describe_errors

Infer = Callable[[str, InferenceRequest], Awaitable[InferenceResponse]]
REPLAY_TAG = "tensorzero::replay_of"


class Replayer:
    def __init__(self, config: Config, infer: Infer):
        self.config = config
        self.infer = infer

    @staticmethod
    def check(request: ReplayRequest) -> None:
        if request.model_name is not None and not request.dryrun:
            raise InvalidRequest("Replaying on another `model_name` is a dry run only; use a configured variant")

    def inference_request(self, stored: StoredInference, request: ReplayRequest) -> InferenceRequest:
        body: dict[str, Any] = {
            "function_name": stored.function_name,
            "input": stored.input,
            "dryrun": request.dryrun,
            "params": stored.inference_params or {},
            "tags": {k: v for k, v in stored.tags.items() if not k.startswith("tensorzero::")},
        }
        if not request.dryrun:
            body["tags"][REPLAY_TAG] = stored.inference_id
            body["internal"] = True
        if request.variant_name is not None:
            body["variant_name"] = request.variant_name
        else:
            body["variant_name"] = f"{stored.variant_name}@{request.model_name}"
            body["internal_dynamic_variant_config"] = self._with_model(stored, request.model_name)
        if stored.type == "chat":
            for key in ("allowed_tools", "additional_tools", "parallel_tool_calls", "tool_choice"):
                value = getattr(stored, key)
                if value is not None:
                    body[key] = value
        elif stored.output_schema:
            body["output_schema"] = stored.output_schema
        try:
            return InferenceRequest.model_validate(body)
        except ValidationError as exc:
            raise InvalidRequest(f"The stored inference cannot be replayed: {describe_errors(exc, body)}") from None

    def _with_model(self, stored: StoredInference, model_name: str) -> dict[str, Any]:
        function = self.config.functions.get(stored.function_name)
        variant = function.variants.get(stored.variant_name) if function is not None else None
        if not isinstance(variant, ChatCompletionVariantConfig):
            raise InvalidRequest(
                f"Variant `{stored.variant_name}` of `{stored.function_name}` is not a configured chat_completion "
                "variant, so its model cannot be swapped; replay on a `variant_name` instead"
            )
        return variant.model_copy(update={"model": model_name, "weight": None}).model_dump(
            mode="json", exclude_none=True
        )

    async def run(
        self,
        stored: list[StoredInference],
        request: ReplayRequest,
        on_done: Callable[[ReplayComparison], None] | None = None,
    ) -> ReplayResult:
        self.check(request)
        gate = asyncio.Semaphore(request.concurrency)

        async def one(item: StoredInference) -> ReplayComparison:
            async with gate:
                comparison = await self._replay(item, request)
            if on_done is not None:
                on_done(comparison)
            return comparison

        comparisons = list(await asyncio.gather(*(one(item) for item in stored)))
        failed = sum(c.error is not None for c in comparisons)
        return ReplayResult(
            comparisons=comparisons,
            total=len(comparisons),
            succeeded=len(comparisons) - failed,
            failed=failed,
            dryrun=request.dryrun,
        )

    async def _replay(self, stored: StoredInference, request: ReplayRequest) -> ReplayComparison:
        comparison = ReplayComparison(
            inference_id=stored.inference_id,
            function_name=stored.function_name,
            input=stored.input,
            original=ReplayedOutput(
                variant_name=stored.variant_name, output=stored.output, inference_id=stored.inference_id
            ),
        )
        try:
            response = await self.infer(stored.function_name, self.inference_request(stored, request))
        except Exception as exc:  # noqa: BLE001 - one failed row must not stop the replay
            cause = unwrap(exc)
            comparison.error = cause.message if isinstance(cause, TensorZeroError) else str(cause)
            return comparison
        output = (
            response.output.model_dump(mode="json")
            if isinstance(response, JsonInferenceResponse)
            else [block.model_dump(mode="json", exclude_none=True) for block in response.content]
        )
        comparison.replayed = ReplayedOutput(
            variant_name=response.variant_name,
            output=output,
            inference_id=None if request.dryrun else str(response.inference_id),
            usage=response.usage,
        )
        return comparison
