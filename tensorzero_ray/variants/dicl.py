"""`experimental_dynamic_in_context_learning` (spec §3.7): the input, serialised as TensorZero
stores it, is embedded; the `k` nearest stored examples of this variant (within `max_distance`)
become user/assistant turns before the input itself, under instructions to learn from them.
An embedding model that fails fails the variant, so the function falls back."""

from __future__ import annotations

from collections.abc import Awaitable, Callable

import orjson

from tensorzero_ray.config.variants import DiclVariantConfig
from tensorzero_ray.inference.embeddings import EmbeddingModel
from tensorzero_ray.inference.model import Model, ModelStream
from tensorzero_ray.store.inference_rows import store_input
from tensorzero_ray.types import Input, SamplingParams, Text
from tensorzero_ray.types.model import ModelInferenceRequest, ModelInferenceResult, RequestMessage
from tensorzero_ray.variants.base import InferenceCall, Variant
from tensorzero_ray.variants.chat_completion import bounded

# (function, variant, embedding, k, max_distance) -> [(input JSON, output JSON)], nearest first.
ExampleSearch = Callable[[str, str, list[float], int, float | None], Awaitable[list[tuple[str, str]]]]

DEFAULT_INSTRUCTIONS = (
    "You are given examples of inputs, each followed by the output it should get. Work out by induction "
    "what makes those outputs right, then answer the last input the same way and in the same format."
)
_PARAMS = tuple(SamplingParams.model_fields)


class DiclVariant(Variant):
    def __init__(
        self,
        name: str,
        function_name: str,
        config: DiclVariantConfig,
        model: Model,
        embedder: EmbeddingModel,
        search: ExampleSearch,
    ):
        super().__init__(name)
        self.function_name = function_name
        self.config = config
        self.model = model
        self.embedder = embedder
        self.search = search
        self.instructions = config.system_instructions.contents if config.system_instructions else DEFAULT_INSTRUCTIONS

    async def request(self, call: InferenceCall) -> ModelInferenceRequest:
        current = orjson.dumps(store_input(Input(system=call.system, messages=call.messages))).decode()
        embedded = await self.embedder.embed([current], None, call.extras.credentials)
        examples = await self.search(
            self.function_name, self.name, embedded.embeddings[0], self.config.k, self.config.max_distance
        )
        messages = []
        for example_input, example_output in examples:
            messages.append(RequestMessage(role="user", content=[Text(text=example_input)]))
            messages.append(RequestMessage(role="assistant", content=[Text(text=answer_of(example_output))]))
        messages.append(RequestMessage(role="user", content=[Text(text=current)]))
        params = {key: getattr(self.config, key) for key in _PARAMS}
        params.update(call.params.model_dump(exclude_none=True, exclude={"json_mode"}))
        json_mode = (
            call.params.json_mode or self.config.json_mode or ("strict" if call.function_type == "json" else "off")
        )
        return ModelInferenceRequest(
            function_type=call.function_type,
            system=self.instructions,
            messages=messages,
            json_mode=json_mode,
            output_schema=call.output_schema,
            extra_body=self.config.extra_body,
            extra_headers=self.config.extra_headers,
            **params,
        )

    async def infer(self, call: InferenceCall) -> list[ModelInferenceResult]:
        async def attempt() -> ModelInferenceResult:
            return await self.model.infer(await self.request(call), call.extras, self.name)

        return [await bounded(self.name, attempt, self.config.timeouts.non_streaming.total_ms, self.config.retries)]

    async def stream(self, call: InferenceCall) -> ModelStream:
        async def attempt() -> ModelStream:
            request = (await self.request(call)).model_copy(update={"stream": True})
            return await self.model.stream(request, call.extras, self.name)

        return await bounded(self.name, attempt, self.config.timeouts.streaming.ttft_ms, self.config.retries)


def answer_of(stored_output: str) -> str:
    """An example's output as the assistant turn: a chat answer's text, a JSON answer's raw JSON."""
    value = orjson.loads(stored_output)
    if isinstance(value, dict) and "raw" in value:
        return value["raw"] or ""
    if isinstance(value, list):
        return "".join(block.get("text", "") for block in value if block.get("type") == "text")
    return stored_output
