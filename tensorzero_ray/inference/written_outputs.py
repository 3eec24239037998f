"""Outputs that people write rather than models: demonstrations and datapoint outputs. They
are checked as strictly as a model's output would be, and refused with a message that says
what is wrong."""

from __future__ import annotations

from typing import Any

import orjson

from tensorzero_ray.errors import InvalidRequest
from tensorzero_ray.inference.schemas import SchemaValidator
from tensorzero_ray.inference.tools import ToolCallValidator
from tensorzero_ray.types import ToolCallOutput
from tensorzero_ray.types.model import ToolSettings


def chat_output_blocks(value: Any, tools: ToolSettings | None, what: str) -> list[dict[str, Any]]:
    """A string or a list of text / tool_call blocks, as stored chat output blocks."""
    if isinstance(value, str):
        return [{"type": "text", "text": value}]
    if not isinstance(value, list):
        raise InvalidRequest(f"{what} must be a string or a list of content blocks")
    validator = ToolCallValidator(tools)
    blocks = []
    for index, block in enumerate(value):
        kind = block.get("type") if isinstance(block, dict) else None
        if kind == "text" and isinstance(block.get("text"), str):
            blocks.append({"type": "text", "text": block["text"]})
        elif kind == "tool_call" and isinstance(block.get("name"), str) and "arguments" in block:
            arguments = block["arguments"]
            raw_arguments = arguments if isinstance(arguments, str) else orjson.dumps(arguments).decode()
            call = validator.validate(
                ToolCallOutput(id=str(block.get("id", "")), raw_name=block["name"], raw_arguments=raw_arguments)
            )
            if call.name is None or call.arguments is None:
                raise InvalidRequest(
                    f"{what} block {index}: tool call `{block['name']}` does not match a tool available here"
                )
            blocks.append(call.model_dump())
        else:
            raise InvalidRequest(f"{what} block {index} must be a text or tool_call block")
    return blocks


def json_output_value(parsed: Any, schema: dict[str, Any], what: str) -> dict[str, Any]:
    """`{"raw", "parsed"}` for a value that must match the output schema."""
    errors = SchemaValidator(schema).errors(parsed, what)
    if errors:
        raise InvalidRequest(f"{what} does not match the output schema: {errors}")
    return {"raw": orjson.dumps(parsed).decode(), "parsed": parsed}


def json_output_from_raw(raw: Any, schema: dict[str, Any], what: str) -> dict[str, Any]:
    """A JSON datapoint output `{"raw": "<json>"}`: parsed, then checked against the schema."""
    if not isinstance(raw, str):
        raise InvalidRequest(f'{what} must be {{"raw": "<JSON string>"}}')
    try:
        parsed = orjson.loads(raw)
    except orjson.JSONDecodeError as exc:
        raise InvalidRequest(f"{what}.raw is not valid JSON: {exc}") from None
    return {**json_output_value(parsed, schema, what), "raw": raw}
