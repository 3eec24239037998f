"""What the prompt search tries: instructions that a proposal model writes from the current
system template and a few training examples, few-shot example sets drawn from the training
split, and the variant config that puts one of each together (MIPRO's two axes)."""

from __future__ import annotations

import random
from typing import Any

import httpx
import orjson

from tensorzero_ray.config.variants import ChatCompletionVariantConfig
from tensorzero_ray.evaluations.scoring import output_text

PROPOSER_SYSTEM = (
    "You write the instructions (the system prompt) of an LLM application. You are shown the current "
    "instructions and examples of inputs with the answers the application should give. Write improved "
    "instructions that would lead a model to give those answers. Keep every {{ placeholder }} of the current "
    "instructions as it is. Reply with the new instructions only, nothing before or after them."
)
EXAMPLES_HEADING = "\n\nExamples of inputs and the answers expected:\n"


class ProposalError(Exception):
    """No instruction could be proposed: the proposal model failed every time."""


def input_text(point_input: dict[str, Any]) -> str:
    """A datapoint's input as a reader sees it: its messages' text, templates as their arguments."""
    lines = []
    for message in point_input.get("messages", []):
        content = message.get("content")
        blocks = [{"type": "text", "text": content}] if isinstance(content, str) else content or []
        for block in blocks:
            if block.get("type") == "text":
                lines.append(f"{message['role']}: {block.get('text', '')}")
            elif block.get("type") == "template":
                lines.append(f"{message['role']}: {orjson.dumps(block.get('arguments')).decode()}")
    return "\n".join(lines)


def answer_text(output: Any) -> str:
    text = output_text(output)
    return text if text or output is None else orjson.dumps(output).decode()


def current_instruction(variant: ChatCompletionVariantConfig) -> str:
    if "system" in variant.templates:
        return variant.templates["system"].path.contents
    return variant.system_template.contents if variant.system_template is not None else ""


def with_examples(instruction: str, examples: list[dict[str, Any]]) -> str:
    """The instruction, then the examples verbatim (raw: their text is never a template)."""
    if not examples:
        return instruction
    shown = "\n\n".join(f"Input:\n{input_text(p['input'])}\nAnswer:\n{answer_text(p.get('output'))}" for p in examples)
    return instruction + EXAMPLES_HEADING + "{% raw %}" + shown + "{% endraw %}"


def candidate_config(baseline: ChatCompletionVariantConfig, system_text: str) -> dict[str, Any]:
    """The baseline variant with another system template, inline (a dynamic variant's form)."""
    config = baseline.model_dump(mode="json", exclude_none=True, exclude={"weight"})
    template = {"path": "prompt_search/system", "contents": system_text}
    if "system" in baseline.templates:
        config["templates"]["system"] = {"path": template}
    else:
        config["system_template"] = template
    return config


def example_sets(train: list[dict[str, Any]], count: int, size: int, seed: int) -> list[list[dict[str, Any]]]:
    """`count` sets: the first without examples, then random draws of `size` from `train`."""
    rng = random.Random(seed)
    size = min(size, len(train))
    return [[]] + [rng.sample(train, size) for _ in range(max(0, count - 1)) if size]


async def propose_instructions(
    http: httpx.AsyncClient,
    *,
    model: str,
    current: str,
    train: list[dict[str, Any]],
    count: int,
    seed: int,
    tags: dict[str, str],
) -> tuple[list[str], list[str]]:
    """(instructions, errors): the current one first, then distinct proposals, each made
    from a different handful of training examples and seed."""
    rng = random.Random(seed)
    found = [current]
    errors: list[str] = []
    for attempt in range(count):
        shown = rng.sample(train, min(4, len(train)))
        prompt = f"Current instructions:\n-----\n{current}\n-----\n\n" + "\n\n".join(
            f"Input:\n{input_text(p['input'])}\nAnswer:\n{answer_text(p.get('output'))}" for p in shown
        )
        body = {
            "model_name": model,
            "input": {"system": PROPOSER_SYSTEM, "messages": [{"role": "user", "content": prompt}]},
            "params": {"chat_completion": {"seed": seed + attempt, "temperature": 1.0}},
            "internal": True,
            "tags": tags,
        }
        try:
            response = await http.post("/inference", json=body)
        except httpx.HTTPError as exc:
            errors.append(f"proposal {attempt}: could not reach the gateway: {exc}")
            continue
        if response.status_code != 200:
            errors.append(f"proposal {attempt}: {response.status_code} {response.text[:300]}")
            continue
        text = answer_text(response.json().get("content")).strip()
        if text and text not in found:
            found.append(text)
    if len(found) == 1 and errors:
        raise ProposalError(f"the proposal model `{model}` failed every time; first error: {errors[0]}")
    return found, errors
