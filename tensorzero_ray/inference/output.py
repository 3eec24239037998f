"""Turning model output into the function's output: JSON parsing against the output schema,
and folding streamed chunks back into blocks."""

from __future__ import annotations

from typing import Any

import orjson

from tensorzero_ray.inference.schemas import SchemaValidator
from tensorzero_ray.types import (
    JsonOutput,
    SummaryText,
    Text,
    TextChunk,
    Thought,
    ThoughtChunk,
    ToolCallChunk,
    ToolCallOutput,
    Unknown,
    UnknownChunk,
)


def json_output(blocks: list, validator: SchemaValidator | None) -> JsonOutput:
    """`raw` is the model's text; `parsed` only when it is JSON that fits the schema."""
    texts = [b.text for b in blocks if isinstance(b, Text) and b.text is not None]
    if not texts:
        texts = [b.raw_arguments for b in blocks if isinstance(b, ToolCallOutput)]
    if not texts:
        return JsonOutput(raw=None, parsed=None)
    raw = "".join(texts)
    try:
        parsed: Any = orjson.loads(raw)
    except orjson.JSONDecodeError:
        return JsonOutput(raw=raw, parsed=None)
    if validator is not None and not validator.is_valid(parsed):
        parsed = None
    return JsonOutput(raw=raw, parsed=parsed)


def function_output(blocks: list, is_json: bool, schema: SchemaValidator | None, tools) -> list | JsonOutput:
    """The function's output from the model's blocks: JSON checked against the schema, or
    chat content with each tool call checked by `tools` (a ToolCallValidator)."""
    if is_json:
        return json_output(blocks, schema)
    return [tools.validate(b) if isinstance(b, ToolCallOutput) else b for b in blocks]


class ChunkAggregator:
    """Accumulates streamed content chunks into whole blocks, in first-seen order."""

    def __init__(self) -> None:
        self._blocks: dict[tuple[str, str], dict[str, Any]] = {}

    def add(self, chunk) -> None:
        key = (chunk.type, chunk.id)
        block = self._blocks.get(key)
        if isinstance(chunk, TextChunk):
            if block is None:
                self._blocks[key] = {"text": chunk.text}
            else:
                block["text"] += chunk.text
        elif isinstance(chunk, ToolCallChunk):
            if block is None:
                self._blocks[key] = {"raw_name": chunk.raw_name, "raw_arguments": chunk.raw_arguments}
            else:
                block["raw_name"] += chunk.raw_name
                block["raw_arguments"] += chunk.raw_arguments
        elif isinstance(chunk, ThoughtChunk):
            if block is None:
                block = self._blocks[key] = {
                    "text": None,
                    "signature": None,
                    "provider_type": chunk.provider_type,
                    "summary": {},
                }
            if chunk.text is not None:
                block["text"] = (block["text"] or "") + chunk.text
            if chunk.signature is not None:
                block["signature"] = (block["signature"] or "") + chunk.signature
            if chunk.summary_text is not None:
                summary_id = chunk.summary_id or "0"
                block["summary"][summary_id] = block["summary"].get(summary_id, "") + chunk.summary_text
        elif isinstance(chunk, UnknownChunk):
            self._blocks[key] = {
                "data": chunk.data,
                "model_name": chunk.model_name,
                "provider_name": chunk.provider_name,
            }

    def blocks(self) -> list:
        out: list = []
        for (kind, chunk_id), value in self._blocks.items():
            if kind == "text":
                out.append(Text(text=value["text"]))
            elif kind == "tool_call":
                out.append(ToolCallOutput(id=chunk_id, **value))
            elif kind == "thought":
                summary = [SummaryText(text=text) for text in value["summary"].values()] or None
                out.append(
                    Thought(
                        text=value["text"],
                        signature=value["signature"],
                        summary=summary,
                        provider_type=value["provider_type"],
                    )
                )
            else:
                out.append(Unknown(**value))
        return out
