"""`experimental_mixture_of_n` (spec §3.7): the candidates answer concurrently, then a fuser
model reads them after the conversation and writes one answer that takes the best of each,
in the function's own output format (its schema, its tools). One surviving candidate is
returned as it is; a fuser that fails leaves a survivor chosen at random. Streaming streams
the fuser once the candidates have answered."""

from __future__ import annotations

import logging
import random

from tensorzero_ray.config.variants import MixtureOfNVariantConfig
from tensorzero_ray.errors import TensorZeroError
from tensorzero_ray.inference.model import ModelStream
from tensorzero_ray.types.model import ModelInferenceRequest, ModelInferenceResult
from tensorzero_ray.variants.base import InferenceCall, Variant
from tensorzero_ray.variants.candidates import candidate_timeout_ms, run_candidates, with_candidates
from tensorzero_ray.variants.chat_completion import ChatCompletionVariant

logger = logging.getLogger(__name__)

FUSER_SYSTEM = (
    "You combine several candidate answers to a task into the single best answer. The task's own "
    "instructions follow between the lines, and your answer must follow them too.\n"
    "------\n{original_system}\n------\n"
    "Next comes the conversation so far, then the candidates. Keep what each gets right, drop what is "
    "wrong, and answer the last message as the task's assistant would, in the same format."
)
ASK = "Write the one answer that combines the best of these candidates. Do not mention the candidates."


class MixtureOfNVariant(Variant):
    def __init__(
        self, name: str, config: MixtureOfNVariantConfig, candidates: list[Variant], fuser: ChatCompletionVariant
    ):
        super().__init__(name)
        self.config = config
        self.candidates = candidates
        self.fuser = fuser

    def _fusing(self, call: InferenceCall, survivors: list[list[ModelInferenceResult]]) -> ModelInferenceRequest:
        return with_candidates(self.fuser.prepare(call), FUSER_SYSTEM, survivors, ASK)

    async def infer(self, call: InferenceCall) -> list[ModelInferenceResult]:
        survivors = await run_candidates(self.name, self.candidates, call, candidate_timeout_ms(self.config))
        if len(survivors) == 1:
            return survivors[0]
        everything = [r for results in survivors for r in results]
        try:
            fused = await self.fuser.call_model(self._fusing(call, survivors), call)
        except TensorZeroError as exc:
            logger.warning("variant %s: the fuser failed (%s); returning a candidate at random", self.name, exc.message)
            chosen = random.randrange(len(survivors))
            others = [r for index, results in enumerate(survivors) if index != chosen for r in results]
            return [*others, *survivors[chosen]]
        return [*everything, fused]

    async def stream(self, call: InferenceCall) -> ModelStream:
        survivors = await run_candidates(self.name, self.candidates, call, candidate_timeout_ms(self.config))
        stream = await self.fuser.stream_model(self._fusing(call, survivors), call)
        stream.earlier = [r for results in survivors for r in results]
        return stream
