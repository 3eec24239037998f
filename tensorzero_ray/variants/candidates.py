"""What best-of-n and mixture-of-n share: their candidates run concurrently within the
variant's timeout, failures are dropped, and the survivors are shown to one more model call
(an evaluator or a fuser) after the original conversation."""

from __future__ import annotations

import asyncio
import logging

import orjson

from tensorzero_ray.errors import AllCandidatesFailed, TensorZeroError, Timeout
from tensorzero_ray.types import Text, ToolCallOutput
from tensorzero_ray.types.model import ModelInferenceRequest, ModelInferenceResult, RequestMessage
from tensorzero_ray.variants.base import InferenceCall, Variant

logger = logging.getLogger(__name__)


def candidate_timeout_ms(config) -> int | None:
    """How long each candidate may take: the variant's `timeouts`, else the older `timeout_s`."""
    if config.timeouts.non_streaming.total_ms is not None:
        return config.timeouts.non_streaming.total_ms
    return None if config.timeout_s is None else int(config.timeout_s * 1000)


async def run_candidates(
    owner: str, candidates: list[Variant], call: InferenceCall, timeout_ms: int | None
) -> list[list[ModelInferenceResult]]:
    """Each surviving candidate's model inferences, in candidate order."""

    async def one(candidate: Variant) -> list[ModelInferenceResult]:
        async with asyncio.timeout(None if timeout_ms is None else timeout_ms / 1000):
            return await candidate.infer(call)

    outcomes = await asyncio.gather(*(one(c) for c in candidates), return_exceptions=True)
    survivors, errors = [], []
    for candidate, outcome in zip(candidates, outcomes):
        if isinstance(outcome, TimeoutError):
            outcome = Timeout(f"Candidate {candidate.name} timed out")
        if isinstance(outcome, TensorZeroError):
            logger.warning("variant %s: candidate %s failed: %s", owner, candidate.name, outcome.message)
            errors.append(outcome)
        elif isinstance(outcome, BaseException):
            raise outcome
        else:
            survivors.append(outcome)
    if not survivors:
        raise AllCandidatesFailed(errors)
    return survivors


def answer_text(result: ModelInferenceResult) -> str:
    """A candidate's answer as the evaluator or fuser reads it: its text, and its tool calls
    as JSON; reasoning stays out."""
    parts = []
    for block in result.output:
        if isinstance(block, Text) and block.text is not None:
            parts.append(block.text)
        elif isinstance(block, ToolCallOutput):
            call = {"tool_call": block.name or block.raw_name, "arguments": block.arguments or block.raw_arguments}
            parts.append(orjson.dumps(call).decode())
    return "\n".join(parts)


def listing(survivors: list[list[ModelInferenceResult]]) -> str:
    return "\n\n".join(f"## Candidate {index}\n\n{answer_text(results[-1])}" for index, results in enumerate(survivors))


def with_candidates(
    request: ModelInferenceRequest, system: str, survivors: list[list[ModelInferenceResult]], ask: str
) -> ModelInferenceRequest:
    """The original conversation as the evaluator's or fuser's templates render it, under its
    own system instructions, followed by the candidates and what to do with them."""
    original = request.system or "(no system instructions)"
    message = RequestMessage(role="user", content=[Text(text=f"{listing(survivors)}\n\n{ask}")])
    return request.model_copy(
        update={
            "system": system.replace("{original_system}", original),
            "messages": [*request.messages, message],
        }
    )
