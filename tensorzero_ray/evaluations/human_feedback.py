"""Human scores of evaluated outputs (spec §7.3): stored keyed by (metric, datapoint, output),
so a later run asks a person's verdict back instead of the LLM judge for the same output."""

from __future__ import annotations

from typing import Any

import orjson

DATAPOINT_TAG = "tensorzero::datapoint_id"
HUMAN_FEEDBACK_TAG = "tensorzero::human_feedback"
EVALUATOR_INFERENCE_TAG = "tensorzero::evaluator_inference_id"
DERIVED_TAG = "tensorzero::derived_from_human_feedback"
NO_INFERENCE = "00000000-0000-0000-0000-000000000000"


def canonical_output(output: Any) -> str:
    """One spelling of an output however it arrived (a stored JSON string, a response's
    blocks), so the same answer finds the same human score."""
    if isinstance(output, str):
        output = orjson.loads(output)
    return orjson.dumps(output, option=orjson.OPT_SORT_KEYS).decode()


def is_human_feedback(tags: dict[str, str]) -> bool:
    return DATAPOINT_TAG in tags and HUMAN_FEEDBACK_TAG in tags
