"""Native responses and SSE chunks, reshaped as OpenAI chat completions (spec §1.4)."""

from __future__ import annotations

import time
from typing import Any

_FINISH = {"length": "length", "content_filter": "content_filter", "tool_call": "tool_calls"}


def finish_reason(native: str | None) -> str:
    return _FINISH.get(native or "", "stop")


def model_echo(function_name: str | None, model_name: str | None, variant_name: str) -> str:
    if model_name is not None:
        return f"tensorzero::model_name::{model_name}"
    return f"tensorzero::function_name::{function_name}::variant_name::{variant_name}"


def usage(native: dict | None) -> dict[str, Any] | None:
    if native is None:
        return None
    prompt = native.get("input_tokens") or 0
    completion = native.get("output_tokens") or 0
    return {
        "prompt_tokens": prompt,
        "completion_tokens": completion,
        "total_tokens": prompt + completion,
        "prompt_tokens_details": {"cached_tokens": native.get("provider_cache_read_input_tokens") or 0},
        "tensorzero_provider_cache_write_input_tokens": native.get("provider_cache_write_input_tokens") or 0,
        "tensorzero_cost": native.get("cost"),
    }


def tool_call(call_id: str, name: str, arguments: str, custom: bool) -> dict[str, Any]:
    """A tool call as OpenAI writes it: a custom tool's free-form text is its `input`."""
    if custom:
        return {"id": call_id, "type": "custom", "custom": {"name": name, "input": arguments}}
    return {"id": call_id, "type": "function", "function": {"name": name, "arguments": arguments}}


def completion(
    native: dict, function_name: str | None, model_name: str | None, custom_tools: frozenset[str] = frozenset()
) -> dict[str, Any]:
    message: dict[str, Any] = {"role": "assistant", "content": None}
    if "output" in native:
        message["content"] = native["output"]["raw"]
    else:
        texts, calls, extra = [], [], []
        for block in native["content"]:
            kind = block["type"]
            if kind == "text":
                texts.append(block["text"])
            elif kind == "tool_call":
                name = block["raw_name"]
                calls.append(tool_call(block["id"], name, block["raw_arguments"], name in custom_tools))
            else:
                extra.append({**block, "insert_index": len(texts) + len(calls) + len(extra)})
        message["content"] = "".join(texts) if texts else None
        if calls:
            message["tool_calls"] = calls
        if extra:
            message["tensorzero_extra_content"] = extra
    body = {
        "id": native["inference_id"],
        "episode_id": native["episode_id"],
        "object": "chat.completion",
        "created": int(time.time()),
        "model": model_echo(function_name, model_name, native["variant_name"]),
        "system_fingerprint": "",
        "service_tier": None,
        "choices": [
            {
                "index": 0,
                "finish_reason": finish_reason(native.get("finish_reason")),
                "message": message,
                "logprobs": None,
            }
        ],
        "usage": usage(native["usage"]),
    }
    for key in ("raw_response", "raw_usage", "original_response"):
        if key in native:
            body[f"tensorzero_{key}"] = native[key]
    return body


class ChunkTranslator:
    """Turns native stream events into OpenAI chunk objects, one at a time."""

    def __init__(
        self,
        function_name: str | None,
        model_name: str | None,
        include_usage: bool,
        custom_tools: frozenset[str] = frozenset(),
    ):
        self.custom_tools = custom_tools
        self._custom_calls: set[str] = set()
        self.function_name = function_name
        self.model_name = model_name
        self.include_usage = include_usage
        self.created = int(time.time())
        self._tool_index: dict[str, int] = {}
        self._first = True

    def translate(self, event: dict) -> dict | None:
        if "error" in event:
            return {"error": {"message": event["error"]}}
        delta: dict[str, Any] = {}
        if self._first:
            delta["role"] = "assistant"
            self._first = False
        if "raw" in event:
            if event["raw"]:
                delta["content"] = event["raw"]
        for piece in event.get("content", []):
            kind = piece["type"]
            if kind == "text":
                delta["content"] = delta.get("content", "") + piece["text"]
            elif kind == "tool_call":
                index = self._tool_index.setdefault(piece["id"], len(self._tool_index))
                if piece["raw_name"] in self.custom_tools:
                    self._custom_calls.add(piece["id"])
                call = tool_call(
                    piece["id"], piece["raw_name"], piece["raw_arguments"], piece["id"] in self._custom_calls
                )
                delta.setdefault("tool_calls", []).append({"index": index, **call})
            else:
                delta.setdefault("tensorzero_extra_content", []).append(piece)
        final = "usage" in event
        chunk: dict[str, Any] = {
            "id": event["inference_id"],
            "episode_id": event["episode_id"],
            "object": "chat.completion.chunk",
            "created": self.created,
            "model": model_echo(self.function_name, self.model_name, event["variant_name"]),
            "system_fingerprint": "",
            "service_tier": None,
            "choices": [
                {
                    "index": 0,
                    "delta": delta,
                    "logprobs": None,
                    "finish_reason": finish_reason(event.get("finish_reason")) if final else None,
                }
            ],
            "usage": usage(event["usage"]) if final and self.include_usage else None,
        }
        if "raw_chunk" in event:
            chunk["tensorzero_raw_chunk"] = event["raw_chunk"]
        return chunk
