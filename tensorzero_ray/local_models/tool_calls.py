"""Tool calls in generated text. Chat templates that support tools (Hermes, Qwen and most
tool-tuned models) ask the model to answer `<tool_call>{"name": ..., "arguments": ...}</tool_call>`;
this finds those blocks, whole or while they stream."""

from __future__ import annotations

from dataclasses import dataclass

import orjson

OPEN = "<tool_call>"
CLOSE = "</tool_call>"


@dataclass
class ParsedToolCall:
    raw_name: str
    raw_arguments: str


def parse_call(body: str) -> ParsedToolCall:
    """The name and arguments of one block; what does not parse stays raw for the caller's
    validator to reject."""
    try:
        data = orjson.loads(body)
    except orjson.JSONDecodeError:
        return ParsedToolCall(raw_name="", raw_arguments=body.strip())
    if not isinstance(data, dict):
        return ParsedToolCall(raw_name="", raw_arguments=body.strip())
    arguments = data.get("arguments", data.get("parameters", {}))
    raw_arguments = arguments if isinstance(arguments, str) else orjson.dumps(arguments).decode()
    return ParsedToolCall(raw_name=str(data.get("name", "")), raw_arguments=raw_arguments)


def split_tool_calls(text: str) -> tuple[str, list[ParsedToolCall]]:
    """(text outside the blocks, the calls in order)."""
    parts: list[str] = []
    calls: list[ParsedToolCall] = []
    rest = text
    while OPEN in rest:
        before, _, after = rest.partition(OPEN)
        parts.append(before)
        body, closed, rest = after.partition(CLOSE)
        calls.append(parse_call(body))
        if not closed:
            rest = ""
    parts.append(rest)
    return "".join(parts).strip() if calls else text, calls


class ToolCallStream:
    """Feeds streamed text; returns text that is safe to show and the calls that completed.
    Text that might start a `<tool_call>` tag is held back until it is clear."""

    def __init__(self) -> None:
        self._pending = ""
        self._in_call = False

    def feed(self, text: str) -> tuple[str, list[ParsedToolCall]]:
        self._pending += text
        shown: list[str] = []
        calls: list[ParsedToolCall] = []
        while True:
            if self._in_call:
                body, closed, rest = self._pending.partition(CLOSE)
                if not closed:
                    break
                calls.append(parse_call(body))
                self._pending, self._in_call = rest, False
                continue
            before, opened, rest = self._pending.partition(OPEN)
            if opened:
                shown.append(before)
                self._pending, self._in_call = rest, True
                continue
            keep = _partial_tag_length(self._pending)
            shown.append(self._pending[: len(self._pending) - keep])
            self._pending = self._pending[len(self._pending) - keep :]
            break
        return "".join(shown), calls

    def finish(self) -> tuple[str, list[ParsedToolCall]]:
        """What is left when the stream ends: an unclosed block still counts as a call."""
        pending, self._pending = self._pending, ""
        if self._in_call:
            self._in_call = False
            return "", [parse_call(pending)]
        return pending, []


def _partial_tag_length(text: str) -> int:
    for length in range(min(len(OPEN) - 1, len(text)), 0, -1):
        if OPEN.startswith(text[-length:]):
            return length
    return 0
