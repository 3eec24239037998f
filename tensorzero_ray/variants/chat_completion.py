"""`chat_completion`: render templates, merge parameters, call one model; retried with
exponential backoff and jitter, bounded by the variant's timeouts (spec §3.7, §3.8 step 3)."""

from __future__ import annotations

import asyncio
import random
from collections.abc import Awaitable, Callable
from typing import TypeVar

from tensorzero_ray.config.variants import ROLE_TEMPLATES, ChatCompletionSettings
from tensorzero_ray.errors import InvalidRequest, TensorZeroError, Timeout
from tensorzero_ray.inference.model import Model, ModelStream
from tensorzero_ray.inference.templates import RenderLimits, TemplateRenderer
from tensorzero_ray.types import ChatCompletionParams, InputMessage, RawText, SamplingParams, Template, Text
from tensorzero_ray.types.model import ModelInferenceRequest, ModelInferenceResult, RequestMessage
from tensorzero_ray.variants.base import InferenceCall, Variant

T = TypeVar("T")

_PARAMS = tuple(SamplingParams.model_fields)


class ChatCompletionVariant(Variant):
    def __init__(
        self,
        name: str,
        config: ChatCompletionSettings,
        model: Model,
        schema_names: set[str],
        filesystem_base: str | None = None,
        limits: RenderLimits | None = None,
    ):
        """`limits` for templates a request brought: they render within them, off the loop."""
        super().__init__(name)
        self.config = config
        self.model = model
        self.renderer = TemplateRenderer(config.template_texts(), filesystem_base, limits)
        # Legacy role templates wrap plain text of their role when the role has no schema.
        legacy = {
            role
            for role in ROLE_TEMPLATES
            if getattr(config, f"{role}_template") is not None
            or (config.input_wrappers is not None and getattr(config.input_wrappers, role) is not None)
        }
        self._wrapping_roles = legacy - schema_names

    def prepare(self, call: InferenceCall) -> ModelInferenceRequest:
        params = {key: getattr(self.config, key) for key in _PARAMS}
        params.update(call.params.model_dump(exclude_none=True, exclude={"json_mode"}))
        return ModelInferenceRequest(
            function_type=call.function_type,
            system=self._system(call.system),
            messages=[self._message(m) for m in call.messages],
            json_mode=self.json_mode(call.params, call.function_type),
            output_schema=call.output_schema,
            tool_settings=call.tool_settings,
            extra_body=self.config.extra_body,
            extra_headers=self.config.extra_headers,
            **params,
        )

    def json_mode(self, params: ChatCompletionParams, function_type: str) -> str:
        return params.json_mode or self.config.json_mode or ("strict" if function_type == "json" else "off")

    def _system(self, system) -> str | None:
        if system is None:
            # A system template that needs no input still renders (TensorZero does so).
            return self.renderer.render("system", {}) if self.renderer.has("system") else None
        if isinstance(system, dict):
            if not self.renderer.has("system"):
                raise InvalidRequest(f"Variant `{self.name}` has no `system` template for the object in `input.system`")
            return self.renderer.render("system", system)
        if "system" in self._wrapping_roles:
            return self.renderer.render("system", {"system_text": system})
        return system

    def _message(self, message: InputMessage) -> RequestMessage:
        blocks = []
        for block in message.normalized_blocks():
            if isinstance(block, Template):
                if not self.renderer.has(block.name):
                    raise InvalidRequest(f"Variant `{self.name}` has no template named `{block.name}`")
                blocks.append(Text(text=self.renderer.render(block.name, block.arguments)))
            elif isinstance(block, Text) and message.role in self._wrapping_roles:
                blocks.append(Text(text=self.renderer.render(message.role, {f"{message.role}_text": block.text})))
            elif isinstance(block, RawText):
                blocks.append(Text(text=block.value))
            else:
                blocks.append(block)
        return RequestMessage(role=message.role, content=blocks)

    async def _prepared(self, call: InferenceCall) -> ModelInferenceRequest:
        if self.renderer.limits is None:
            return self.prepare(call)
        return await asyncio.to_thread(self.prepare, call)

    async def infer(self, call: InferenceCall) -> list[ModelInferenceResult]:
        request = await self._prepared(call)
        timeout = self.config.timeouts.non_streaming.total_ms
        result = await self._bounded(lambda: self.model.infer(request, call.extras, self.name), timeout)
        return [result]

    async def call_model(self, request: ModelInferenceRequest, call: InferenceCall) -> ModelInferenceResult:
        """A request built from `prepare`'s and changed (an evaluator's or a fuser's), with this
        variant's retries and timeout."""
        timeout = self.config.timeouts.non_streaming.total_ms
        return await self._bounded(lambda: self.model.infer(request, call.extras, self.name), timeout)

    async def stream_model(self, request: ModelInferenceRequest, call: InferenceCall) -> ModelStream:
        """`call_model`, streamed."""
        timeout = self.config.timeouts.streaming.ttft_ms
        streamed = request.model_copy(update={"stream": True})
        return await self._bounded(lambda: self.model.stream(streamed, call.extras, self.name), timeout)

    async def stream(self, call: InferenceCall) -> ModelStream:
        request = (await self._prepared(call)).model_copy(update={"stream": True})
        timeout = self.config.timeouts.streaming.ttft_ms
        return await self._bounded(lambda: self.model.stream(request, call.extras, self.name), timeout)

    async def _bounded(self, attempt: Callable[[], Awaitable[T]], timeout_ms: int | None) -> T:
        return await bounded(self.name, attempt, timeout_ms, self.config.retries)


async def bounded(variant: str, attempt: Callable[[], Awaitable[T]], timeout_ms: int | None, retries) -> T:
    """The variant's retries, all within its timeout."""
    try:
        async with asyncio.timeout(None if timeout_ms is None else timeout_ms / 1000):
            return await retry(attempt, retries.num_retries, retries.max_delay_s)
    except TimeoutError:
        raise Timeout(f"Variant {variant} timed out") from None


async def retry(attempt: Callable[[], Awaitable[T]], num_retries: int, max_delay_s: float) -> T:
    """Exponential backoff (0.1 s, doubling) with full jitter, capped at `max_delay_s`."""
    tries = 0
    while True:
        try:
            return await attempt()
        except TensorZeroError as exc:
            if tries >= num_retries or not exc.retryable:
                raise
            await asyncio.sleep(random.uniform(0, min(max_delay_s, 0.1 * 2**tries)))
            tries += 1
