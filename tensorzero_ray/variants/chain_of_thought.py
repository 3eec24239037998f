"""`experimental_chain_of_thought` (spec §3.7; deprecated in TensorZero, still accepted): a
JSON function's chat completion asked for `{"thinking", "response"}`; `response` becomes the
output and the thinking is kept as a thought (stored in the inference's auxiliary content)."""

from __future__ import annotations

import orjson

from tensorzero_ray.errors import NotImplementedYet
from tensorzero_ray.inference.model import ModelStream
from tensorzero_ray.types import Text, Thought
from tensorzero_ray.types.model import ModelInferenceRequest, ModelInferenceResult
from tensorzero_ray.variants.base import InferenceCall
from tensorzero_ray.variants.chat_completion import ChatCompletionVariant


def thinking_schema(output_schema: dict | None) -> dict:
    return {
        "type": "object",
        "properties": {"thinking": {"type": "string"}, "response": output_schema or {}},
        "required": ["thinking", "response"],
        "additionalProperties": False,
    }


class ChainOfThoughtVariant(ChatCompletionVariant):
    def prepare(self, call: InferenceCall) -> ModelInferenceRequest:
        request = super().prepare(call)
        return request.model_copy(update={"output_schema": thinking_schema(call.output_schema)})

    async def infer(self, call: InferenceCall) -> list[ModelInferenceResult]:
        results = await super().infer(call)
        return [*results[:-1], _unwrapped(results[-1])]

    async def stream(self, call: InferenceCall) -> ModelStream:
        raise NotImplementedYet(f"Variant `{self.name}`: chain of thought does not stream; send stream: false")


def _unwrapped(result: ModelInferenceResult) -> ModelInferenceResult:
    """The answer's `response` as the output and its `thinking` as a thought; an answer
    outside that shape stays as it is (and fails the function's schema like any other)."""
    text = "".join(b.text for b in result.output if isinstance(b, Text) and b.text is not None)
    try:
        answer = orjson.loads(text)
    except orjson.JSONDecodeError:
        return result
    if not isinstance(answer, dict) or "response" not in answer:
        return result
    blocks = [Thought(text=str(answer.get("thinking", ""))), Text(text=orjson.dumps(answer["response"]).decode())]
    return result.model_copy(update={"output": blocks})
