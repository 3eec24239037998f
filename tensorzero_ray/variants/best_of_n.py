"""`experimental_best_of_n_sampling` (spec §3.7): the candidates answer concurrently, an
evaluator model reads them after the conversation and names the best. One surviving candidate
is returned as it is; a stream streams the chosen answer whole; an evaluator that fails or names no valid candidate leaves the choice to
chance among the survivors."""

from __future__ import annotations

import logging
import random
import time

import orjson

from tensorzero_ray.config.variants import BestOfNVariantConfig
from tensorzero_ray.errors import TensorZeroError
from tensorzero_ray.inference.model import AnsweredStream, ModelStream
from tensorzero_ray.types.model import ModelInferenceResult
from tensorzero_ray.variants.base import InferenceCall, Variant
from tensorzero_ray.variants.candidates import answer_text, candidate_timeout_ms, run_candidates, with_candidates
from tensorzero_ray.variants.chat_completion import ChatCompletionVariant

logger = logging.getLogger(__name__)

EVALUATOR_SYSTEM = (
    "You judge candidate answers to a task. The task's own instructions follow between the lines.\n"
    "------\n{original_system}\n------\n"
    "Next comes the conversation so far, then the candidates. Think about which candidate answers the last "
    "message best (correct, complete, following the instructions), then reply with JSON only: "
    '{"thinking": "<your reasoning>", "answer_choice": <the number of the best candidate>}.'
)
EVALUATOR_SCHEMA = {
    "type": "object",
    "properties": {"thinking": {"type": "string"}, "answer_choice": {"type": "integer"}},
    "required": ["thinking", "answer_choice"],
    "additionalProperties": False,
}
ASK = "Which candidate is best? Answer with the JSON object only."


class BestOfNVariant(Variant):
    def __init__(
        self, name: str, config: BestOfNVariantConfig, candidates: list[Variant], evaluator: ChatCompletionVariant
    ):
        super().__init__(name)
        self.config = config
        self.candidates = candidates
        self.evaluator = evaluator

    async def infer(self, call: InferenceCall) -> list[ModelInferenceResult]:
        survivors = await run_candidates(self.name, self.candidates, call, candidate_timeout_ms(self.config))
        if len(survivors) == 1:
            return survivors[0]
        judged, choice = await self._judge(call, survivors)
        chosen = survivors[choice]
        others = [r for index, results in enumerate(survivors) if index != choice for r in results]
        # Every model inference is stored; the chosen answer's comes last, as it carries the output.
        return [*others, *judged, *chosen]

    async def _judge(
        self, call: InferenceCall, survivors: list[list[ModelInferenceResult]]
    ) -> tuple[list[ModelInferenceResult], int]:
        try:
            request = with_candidates(self.evaluator.prepare(call), EVALUATOR_SYSTEM, survivors, ASK)
            request = request.model_copy(
                update={
                    "function_type": "json",
                    "json_mode": self.evaluator.config.json_mode or "strict",
                    "output_schema": EVALUATOR_SCHEMA,
                    "tool_settings": None,
                }
            )
            result = await self.evaluator.call_model(request, call)
        except TensorZeroError as exc:
            logger.warning(
                "variant %s: the evaluator failed (%s); choosing a candidate at random", self.name, exc.message
            )
            return [], random.randrange(len(survivors))
        try:
            choice = orjson.loads(answer_text(result))["answer_choice"]
        except (orjson.JSONDecodeError, KeyError, TypeError):
            choice = None
        if not isinstance(choice, int) or isinstance(choice, bool) or not 0 <= choice < len(survivors):
            logger.warning("variant %s: the evaluator named no valid candidate; choosing one at random", self.name)
            return [result], random.randrange(len(survivors))
        return [result], choice

    async def stream(self, call: InferenceCall) -> ModelStream:
        """The chosen answer, streamed whole once the evaluator has chosen (as TensorZero does)."""
        started = time.monotonic()
        results = await self.infer(call)
        return AnsweredStream(results[-1], results[:-1], ttft_ms=int((time.monotonic() - started) * 1000))
