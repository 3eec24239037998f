"""Which variants one request may try, in which order: the pinned one alone, or the sampler's
choice, then re-sampling with the same draw among those left (spec §8.1)."""

from __future__ import annotations

import time
import uuid
from typing import TYPE_CHECKING

from tensorzero_ray.config.functions import DEFAULT_FUNCTION
from tensorzero_ray.config.variants import ChatCompletionVariantConfig
from tensorzero_ray.errors import (
    AllModelProvidersFailed,
    AllVariantsFailed,
    InvalidRequest,
    TensorZeroError,
    UnknownModel,
    UnknownVariant,
)
from tensorzero_ray.experimentation.sampling import episode_draw
from tensorzero_ray.ids import uuid7, uuid7_timestamp_ms
from tensorzero_ray.inference.tools import ToolCallValidator
from tensorzero_ray.store.inference_rows import failure_row
from tensorzero_ray.store.rows import Row
from tensorzero_ray.types import InferenceRequest
from tensorzero_ray.variants.base import InferenceCall, Variant
from tensorzero_ray.variants.chat_completion import ChatCompletionVariant

if TYPE_CHECKING:
    from tensorzero_ray.functions.function_router import FunctionRouter


class VariantPlan:
    """One request's variant order, its ids and tags, and the provider failures to store."""

    def __init__(
        self,
        router: "FunctionRouter",
        request: InferenceRequest,
        call: InferenceCall,
        episode_id: uuid.UUID,
        output_validator,
        tool_validator: ToolCallValidator,
        dynamic: Variant | None = None,
    ):
        self.router = router
        self.call = call
        self.episode_id = episode_id
        self.inference_id = uuid7()
        self.started = time.monotonic()
        self.dryrun = request.dryrun
        self.failures: list[Row] = []
        self.tags = dict(request.tags)
        if request.variant_name is not None and router.function_name != DEFAULT_FUNCTION:
            self.tags["tensorzero::variant_pinned"] = request.variant_name
        if request.namespace is not None:
            self.tags["tensorzero::namespace"] = request.namespace
        if request.internal:
            self.tags["tensorzero::internal"] = "true"
        self.output_validator = output_validator
        self.tool_validator = tool_validator
        self.pinned = request.variant_name
        self.dynamic = dynamic
        if dynamic is not None:
            self.pinned = dynamic.name
        elif self.pinned is not None:
            self._ensure_variant(self.pinned)
        self.sampler = router.namespace_samplers.get(request.namespace or "", router.sampler)
        self.active = set(router.variants)
        self.u = episode_draw(router.function_name, episode_id)
        self.began_ms = uuid7_timestamp_ms(episode_id) if episode_id.version == 7 else None

    def _ensure_variant(self, name: str) -> None:
        if name in self.router.variants:
            return
        if self.router.function_name == DEFAULT_FUNCTION:
            model = self.router.models.get(name)
            if model is None:
                raise UnknownModel(name)
            config = ChatCompletionVariantConfig(type="chat_completion", model=name)
            self.router.variants[name] = ChatCompletionVariant(name, config, model, set())
            return
        raise UnknownVariant(name)

    def variants(self):
        if self.dynamic is not None:
            yield self.dynamic.name, self.dynamic
            return
        if self.pinned is not None:
            yield self.pinned, self.router.variants[self.pinned]
            return
        if not self.active:
            raise InvalidRequest(f"Function `{self.router.function_name}` has no variants")
        while True:
            name = self.sampler.choose(self.u, self.active, self.began_ms)
            if name is None:
                return
            yield name, self.router.variants[name]

    def failed(self, name: str, error: TensorZeroError) -> None:
        """Drop the variant from this request's choices; keep its providers' failures."""
        self.active.discard(name)
        if isinstance(error, AllModelProvidersFailed) and error.model_name is not None:
            self.failures += [
                failure_row(self.inference_id, self.router.function_name, name, error.model_name, provider, e.message)
                for provider, e in error.errors.items()
            ]

    def exhausted(self, errors: dict[str, TensorZeroError]) -> TensorZeroError:
        if self.pinned is not None and len(errors) == 1:
            return next(iter(errors.values()))
        return AllVariantsFailed(errors)
