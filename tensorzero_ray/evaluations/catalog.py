"""Which evaluators a run uses, the metric each one's scores are stored under, and LLM judges
as the JSON functions the gateway serves (spec §3.13, §7.3)."""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any

import orjson

from tensorzero_ray.config.functions import (
    EvaluatorConfig,
    JsonFunctionConfig,
    LlmJudgeEvaluator,
    MetricConfig,
    RegexEvaluator,
    TypescriptEvaluator,
)

JUDGE_PREFIX = "tensorzero::llm_judge::"
JUDGE_TEMPLATE_PATH = "tensorzero::llm_judge::user_template"
# The judge's one user message in the `serialized` input format.
SERIALIZED_TEMPLATE = (
    "# Input\n\n{{ input }}\n\n# Generated Output\n\n{{ generated_output }}"
    "{% if reference_output is not none %}\n\n# Reference Output\n\n{{ reference_output }}{% endif %}"
)
JUDGE_INPUT_SCHEMA = {
    "type": "object",
    "properties": {
        "input": {"type": "string"},
        "generated_output": {"type": "string"},
        "reference_output": {"type": ["string", "null"]},
    },
    "required": ["input", "generated_output"],
}


class EvaluationSetupError(Exception):
    """The run cannot start: an unknown name or a bad combination of options (exit status 2)."""


@dataclass(frozen=True)
class Evaluator:
    name: str
    config: EvaluatorConfig
    function_name: str
    evaluation_name: str | None

    @property
    def metric_name(self) -> str:
        owner = (
            f"evaluation_name::{self.evaluation_name}"
            if self.evaluation_name
            else f"function_name::{self.function_name}"
        )
        return f"tensorzero::{owner}::evaluator_name::{self.name}"

    @property
    def judge_function(self) -> str | None:
        if not isinstance(self.config, LlmJudgeEvaluator):
            return None
        owner = self.evaluation_name if self.evaluation_name else f"function_name::{self.function_name}"
        return f"{JUDGE_PREFIX}{owner}::{self.name}"

    @property
    def boolean(self) -> bool:
        return getattr(self.config, "output_type", "boolean") == "boolean"

    @property
    def optimize(self) -> str:
        return getattr(self.config, "optimize", "max")


def all_evaluators(config) -> list[Evaluator]:
    """Every evaluator in the config: on functions, and in the older `[evaluations]` tables."""
    found = [
        Evaluator(name, evaluator, function_name, None)
        for function_name, function in config.functions.items()
        for name, evaluator in function.evaluators.items()
    ]
    found += [
        Evaluator(name, evaluator, evaluation.function_name, evaluation_name)
        for evaluation_name, evaluation in config.evaluations.items()
        for name, evaluator in evaluation.evaluators.items()
    ]
    return found


def select(
    config,
    *,
    function_name: str | None = None,
    evaluator_names: list[str] | None = None,
    evaluation_name: str | None = None,
) -> tuple[str, list[Evaluator]]:
    """(function name, evaluators) for `--function-name` + `--evaluator-names`, or for the
    deprecated `--evaluation-name`."""
    if evaluation_name is not None:
        if function_name is not None or evaluator_names:
            raise EvaluationSetupError("use either --evaluation-name or --function-name with --evaluator-names")
        evaluation = config.evaluations.get(evaluation_name)
        if evaluation is None:
            known = ", ".join(sorted(config.evaluations)) or "none"
            raise EvaluationSetupError(f"Unknown evaluation `{evaluation_name}` (the config has: {known})")
        chosen = [e for e in all_evaluators(config) if e.evaluation_name == evaluation_name]
        return evaluation.function_name, chosen
    if function_name is None:
        raise EvaluationSetupError("--function-name (with --evaluator-names) or --evaluation-name is required")
    function = config.functions.get(function_name)
    if function is None:
        raise EvaluationSetupError(f"Unknown function `{function_name}`")
    names = evaluator_names or sorted(function.evaluators)
    unknown = [n for n in names if n not in function.evaluators]
    if unknown:
        known = ", ".join(sorted(function.evaluators)) or "none"
        raise EvaluationSetupError(f"Unknown evaluator `{unknown[0]}` for function `{function_name}` (it has: {known})")
    if not names:
        raise EvaluationSetupError(
            f"Function `{function_name}` has no evaluators; add [functions.{function_name}.evaluators.NAME]"
        )
    return function_name, [Evaluator(n, function.evaluators[n], function_name, None) for n in names]


def evaluator_problems(config) -> list[tuple[tuple[str, ...], str]]:
    found = []
    for evaluator in all_evaluators(config):
        where = (
            ("evaluations", evaluator.evaluation_name, "evaluators", evaluator.name)
            if evaluator.evaluation_name
            else ("functions", evaluator.function_name, "evaluators", evaluator.name)
        )
        if isinstance(evaluator.config, TypescriptEvaluator):
            found.append(
                ((*where, "type"), "`typescript` evaluators are not supported by tensorzero-ray; use `llm_judge`, "
                 "`exact_match`, `regex` or `tool_use`")
            )  # fmt: skip
        if isinstance(evaluator.config, LlmJudgeEvaluator):
            found += [((*where, *loc), message) for loc, message in _judge_problems(config, evaluator.config)]
        if isinstance(evaluator.config, RegexEvaluator):
            found += [((*where, *loc), message) for loc, message in _regex_problems(evaluator.config)]
    return found


def _regex_problems(evaluator: RegexEvaluator) -> list[tuple[tuple[str, ...], str]]:
    if evaluator.must_match is None and evaluator.must_not_match is None:
        return [((), "a `regex` evaluator needs `must_match`, `must_not_match` or both")]
    found = []
    for key in ("must_match", "must_not_match"):
        pattern = getattr(evaluator, key)
        try:
            re.compile(pattern or "")
        except re.error as exc:
            found.append(((key,), f"not a valid regular expression: {exc}"))
    return found


def _judge_problems(config, judge: LlmJudgeEvaluator) -> list[tuple[tuple[str, ...], str]]:
    found = []
    if not judge.variants:
        found.append((("variants",), "an `llm_judge` evaluator needs at least one variant"))
    active = [name for name, variant in judge.variants.items() if variant.active]
    if len(judge.variants) > 1 and len(active) != 1:
        found.append((("variants",), "with several judge variants, exactly one must have `active = true`"))
    for name, variant in judge.variants.items():
        if not config.has_model(variant.model):
            found.append((("variants", name, "model"), f"unknown model `{variant.model}`"))
        if variant.system_instructions is None:
            found.append((("variants", name, "system_instructions"), "a judge variant needs `system_instructions`"))
    return found


def evaluator_metrics(config) -> dict[str, MetricConfig]:
    """The metric each evaluator's scores are stored under, so feedback accepts them."""
    return {
        e.metric_name: MetricConfig(type="boolean" if e.boolean else "float", optimize=e.optimize, level="inference")
        for e in all_evaluators(config)
        if not isinstance(e.config, TypescriptEvaluator)
    }


def judge_functions(config) -> dict[str, JsonFunctionConfig]:
    """Each LLM judge as a JSON function whose variants are the judge's variants: served,
    stored and fallen back on like any other function."""
    functions = {}
    for evaluator in all_evaluators(config):
        if evaluator.judge_function is None:
            continue
        judge: LlmJudgeEvaluator = evaluator.config
        score_type = "boolean" if judge.output_type == "boolean" else "number"
        output_schema = {
            "type": "object",
            "properties": {"score": {"type": score_type}},
            "required": ["score"],
            "additionalProperties": False,
        }
        variants = {}
        for name, variant in judge.variants.items():
            settings = variant.model_dump(
                exclude={"type", "system_instructions", "active", "weight"}, exclude_none=True, by_alias=True
            )
            settings.pop("templates", None)
            settings.pop("input_wrappers", None)
            variants[name] = {
                **settings,
                "type": "chat_completion",
                "system_template": variant.system_instructions.model_dump() if variant.system_instructions else None,
                "json_mode": variant.json_mode or "strict",
                "weight": 1.0 if variant.active or len(judge.variants) == 1 else 0.0,
            }
            if judge.input_format == "serialized":
                variants[name]["user_template"] = {"path": JUDGE_TEMPLATE_PATH, "contents": SERIALIZED_TEMPLATE}
        function = {
            "type": "json",
            "description": f"LLM judge `{evaluator.name}` for `{evaluator.function_name}`",
            "output_schema": {"path": "tensorzero::llm_judge::output_schema", "schema_": output_schema},
            "variants": variants,
        }
        if judge.input_format == "serialized":
            function["user_schema"] = {"path": "tensorzero::llm_judge::user_schema", "schema_": JUDGE_INPUT_SCHEMA}
        functions[evaluator.judge_function] = JsonFunctionConfig.model_validate(function)
    return functions


def judge_input(judge: LlmJudgeEvaluator, datapoint_input: dict, output: Any, reference: Any) -> dict:
    """What the judge reads. `serialized`: one templated message holding everything as text.
    `messages`: the conversation replayed as it was (images included), then the output to
    judge in a final user message."""
    shown_reference = reference if judge.include.reference_output else None
    if judge.input_format == "serialized":
        arguments = {
            "input": serialize(datapoint_input),
            "generated_output": serialize(output),
            "reference_output": None if shown_reference is None else serialize(shown_reference),
        }
        return {
            "messages": [{"role": "user", "content": [{"type": "template", "name": "user", "arguments": arguments}]}]
        }
    verdict = f"# Generated Output\n\n{serialize(output)}"
    if shown_reference is not None:
        verdict += f"\n\n# Reference Output\n\n{serialize(shown_reference)}"
    replayed = [
        {"role": m["role"], "content": _replayed_content(m["content"])} for m in datapoint_input.get("messages", [])
    ]
    system = datapoint_input.get("system")
    if system is not None:
        replayed.insert(0, {"role": "user", "content": [{"type": "text", "text": f"# System\n\n{serialize(system)}"}]})
    return {"messages": [*replayed, {"role": "user", "content": [{"type": "text", "text": verdict}]}]}


def _replayed_content(content: Any) -> list[dict]:
    """A message's blocks as the judge can take them: text and files as they are; templates,
    tool calls and tool results as their serialized form (the judge has none of the evaluated
    function's templates or tools); thoughts and opaque provider blocks dropped."""
    if isinstance(content, str):
        return [{"type": "text", "text": content}]
    if isinstance(content, dict):  # the older `{"content": {...template arguments}}` form
        return [{"type": "text", "text": serialize(content)}]
    blocks = []
    for block in content:
        kind = block.get("type")
        if kind == "text":
            text = block["text"] if block.get("text") is not None else serialize(block.get("arguments"))
            blocks.append({"type": "text", "text": text})
        elif kind == "raw_text":
            blocks.append({"type": "text", "text": block["value"]})
        elif kind in ("file", "image"):
            blocks.append(block)
        elif kind in ("template", "tool_call", "tool_result"):
            blocks.append({"type": "text", "text": serialize({k: v for k, v in block.items() if k != "type"})})
    return blocks


def serialize(value: Any) -> str:
    """Inputs and outputs as the judge reads them in the `serialized` format."""
    return value if isinstance(value, str) else orjson.dumps(value, option=orjson.OPT_INDENT_2).decode()
