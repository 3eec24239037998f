"""What every variant receives and must do."""

from __future__ import annotations

import abc
from dataclasses import dataclass
from typing import Any, Literal

from tensorzero_ray.errors import NotImplementedYet
from tensorzero_ray.inference.model import ModelStream, RequestExtras
from tensorzero_ray.types import ChatCompletionParams, InputMessage
from tensorzero_ray.types.model import ModelInferenceResult, ToolSettings


@dataclass
class InferenceCall:
    """One inference as the function router hands it to a variant: validated input, merged
    request-level overrides, and the tools in play."""

    function_type: Literal["chat", "json"]
    system: str | dict[str, Any] | None
    messages: list[InputMessage]
    params: ChatCompletionParams
    output_schema: dict[str, Any] | None
    tool_settings: ToolSettings | None
    extras: RequestExtras


class Variant(abc.ABC):
    def __init__(self, name: str):
        self.name = name

    @abc.abstractmethod
    async def infer(self, call: InferenceCall) -> list[ModelInferenceResult]:
        """The model inferences this variant made; the last one carries the output."""

    @abc.abstractmethod
    async def stream(self, call: InferenceCall) -> ModelStream: ...


class NotServedVariant(Variant):
    """A variant type that parses but that this release does not run; choosing it fails the
    variant, so sampling moves on to the next one."""

    def __init__(self, name: str, variant_type: str):
        super().__init__(name)
        self.variant_type = variant_type

    def _error(self) -> NotImplementedYet:
        return NotImplementedYet(f"Variant type `{self.variant_type}` is not served yet (variant `{self.name}`)")

    async def infer(self, call: InferenceCall) -> list[ModelInferenceResult]:
        raise self._error()

    async def stream(self, call: InferenceCall) -> ModelStream:
        raise self._error()
