"""The heuristic evaluators: a score from a datapoint's reference output and a response, with
no model call (spec §3.13). `None` means the evaluator does not apply (no reference)."""

from __future__ import annotations

import re
from typing import Any

import orjson

from tensorzero_ray.config.functions import ExactMatchEvaluator, RegexEvaluator, ToolUseEvaluator


def _arguments(value: Any) -> Any:
    if isinstance(value, str):
        try:
            return orjson.loads(value)
        except orjson.JSONDecodeError:
            return value
    return value


def _comparable(blocks: list[dict]) -> list[tuple]:
    """Content blocks as what they say: text, or a tool call's name and arguments (ids and raw
    spellings differ between a reference and a fresh answer without the answer differing)."""
    out = []
    for block in blocks or []:
        kind = block.get("type")
        if kind == "text":
            out.append(("text", block.get("text")))
        elif kind == "tool_call":
            name = block.get("name") or block.get("raw_name")
            arguments = block.get("arguments")
            arguments = _arguments(block.get("raw_arguments")) if arguments is None else _arguments(arguments)
            out.append(("tool_call", name, orjson.dumps(arguments, option=orjson.OPT_SORT_KEYS)))
    return out


def output_text(output: Any) -> str:
    """What a regex reads: a chat answer's text blocks joined, a JSON answer's raw string."""
    if isinstance(output, dict):
        return output.get("raw") or ""
    return "".join(block.get("text") or "" for block in output or [] if block.get("type") == "text")


def exact_match(reference: Any, output: Any) -> bool | None:
    if reference is None:
        return None
    if isinstance(output, dict):
        parsed = reference.get("parsed") if isinstance(reference, dict) else None
        if parsed is None and isinstance(reference, dict) and reference.get("raw") is not None:
            parsed = _arguments(reference["raw"])
        return parsed is not None and parsed == output.get("parsed")
    return _comparable(reference) == _comparable(output)


def regex(evaluator: RegexEvaluator, output: Any) -> bool:
    text = output_text(output)
    if evaluator.must_match is not None and re.search(evaluator.must_match, text) is None:
        return False
    return evaluator.must_not_match is None or re.search(evaluator.must_not_match, text) is None


def tool_use(evaluator: ToolUseEvaluator, output: Any) -> bool | None:
    if isinstance(output, dict):
        return None  # JSON functions make no tool calls
    called = {block.get("name") or block.get("raw_name") for block in output or [] if block.get("type") == "tool_call"}
    wanted = set(evaluator.tools)
    if evaluator.behavior == "none":
        return not called
    if evaluator.behavior == "any":
        return bool(called)
    if evaluator.behavior == "none_of":
        return not (called & wanted)
    if evaluator.behavior == "any_of":
        return bool(called & wanted)
    return wanted <= called


def heuristic_score(config: Any, reference: Any, output: Any) -> bool | None:
    if isinstance(config, ExactMatchEvaluator):
        return exact_match(reference, output)
    if isinstance(config, RegexEvaluator):
        return regex(config, output)
    if isinstance(config, ToolUseEvaluator):
        return tool_use(config, output)
    raise TypeError(f"not a heuristic evaluator: {type(config).__name__}")
