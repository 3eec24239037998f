"""The `dummy` provider: canned behaviours selected by `model_name` (spec §10.3), so configs,
tests and the offline quickstart exercise every path without a network."""

from __future__ import annotations

import asyncio
import itertools
import uuid
from collections import defaultdict
from collections.abc import AsyncIterator
from typing import Any

import orjson

from tensorzero_ray.errors import ProviderError
from tensorzero_ray.providers.base import CallContext, Provider
from tensorzero_ray.providers.batch import BatchStart
from tensorzero_ray.types import (
    File,
    FinishReason,
    Text,
    TextChunk,
    Thought,
    ThoughtChunk,
    ToolCallChunk,
    ToolCallOutput,
    Usage,
)
from tensorzero_ray.types.model import ModelInferenceRequest, ProviderChunk, ProviderResponse

MEGUMIN = (
    "Megumin gleefully chanted her spell, unleashing a thunderous explosion that lit up "
    "the sky and left a massive crater in its wake."
)
ALTERNATE = "Megumin chanted her spell, but instead of an explosion, a gentle rain began to fall."
STREAM_CHUNKS = [
    "Wally,",
    " the",
    " golden",
    " retriever,",
    " wagged",
    " his",
    " tail",
    " excitedly",
    " as",
    " he",
    " devoured",
    " a",
    " slice",
    " of",
    " cheese",
    " pizza.",
]
JSON_STREAM_CHUNKS = ['{"name"', ':"John"', ',"age"', ":30", "}"]
TOOL_ARGS = '{"location":"Brooklyn","units":"celsius"}'
TOOL_STREAM_ARGS = ['{"location"', ':"Brooklyn"', ',"units"', ':"celsius', '"}']

_TEXT_OUTPUTS = {
    "json": '{"answer":"Hello"}',
    "json_goodbye": '{"answer":"Goodbye"}',
    "json_diff_schema": '{"response":"Hello"}',
    "json_cot": '{"thinking":"hmmm", "response": {"answer":"tokyo!"}}',
    "json_beatles_1": '{"names":["John", "George"]}',
    "json_beatles_2": '{"names":["Paul", "Ringo"]}',
    "alternate": ALTERNATE,
    "empty": "",
    "best_of_n_0": '{"thinking": "hmmm", "answer_choice": 0}',
    "best_of_n_1": '{"thinking": "hmmm", "answer_choice": 1}',
    "best_of_n_big": '{"thinking": "hmmm", "answer_choice": 100}',
    "flaky_best_of_n_judge": '{"thinking": "hmmm", "answer_choice": 0}',
    "llm_judge::true": '{"score": true}',
    "llm_judge::false": '{"score": false}',
    "llm_judge::zero": '{"score": 0}',
    "llm_judge::one": '{"score": 1}',
}
_TOOL_OUTPUTS = {
    "tool": ("get_temperature", TOOL_ARGS),
    "tool_split_name": ("get_temperature", TOOL_ARGS),
    "good_tool": ("output_schema_tool", '{"sentiment":"positive","confidence":0.95}'),
    "bad_tool": ("get_temperature", '{"location":"Brooklyn","units":"Celsius"}'),
    "invalid_tool_arguments": ("get_temperature", "Not valid 'JSON'"),
}
_USAGE = {
    "input_tokens_zero": (0, None),
    "output_tokens_zero": (10, 0),
    "input_tokens_output_tokens_zero": (0, 0),
    "input_five_output_six": (5, 6),
}
_RAW_RESPONSE = orjson.dumps(
    {
        "id": "id",
        "object": "text.completion",
        "created": 1618870400,
        "model": "text-davinci-002",
        "choices": [{"text": "Megumin gleefully chanted her spell", "index": 0, "finish_reason": "stop"}],
        "usage": {"prompt_tokens": 10, "completion_tokens": 10, "total_tokens": 20},
    }
).decode()


class DummyProvider(Provider):
    provider_type = "dummy"
    _flaky_calls: dict[str, itertools.count] = defaultdict(lambda: itertools.count(1))

    def _check(self, request: ModelInferenceRequest, ctx: CallContext) -> str:
        name = self.config.model_name
        key = self.api_key("none", ctx)
        if name == "test_key" and key is not None and key != "good_key":
            raise self._fail("Invalid API key for Dummy provider")
        if name.startswith("error"):
            if name == "error_with_raw_response":
                raise self._fail(
                    "Dummy error with raw response",
                    status_code=500,
                    raw_request="dummy error raw request",
                    raw_response="dummy error raw response",
                )
            raise self._fail(f"Error sending request to Dummy provider for model '{name}'.")
        if name.startswith("flaky_"):
            call = next(self._flaky_calls[name])
            if call % 2 == 0:
                raise self._fail(
                    f"Flaky model '{name}' failed on call number {call}",
                    rate_limited="rate_limit" in name,
                    status_code=429 if "rate_limit" in name else None,
                    raw_response="dummy flaky raw response" if "raw_response" in name else None,
                )
        if name == "llm_judge::error":
            raise self._fail("Dummy error in inference")
        if name == "require_pdf" and not any(f.mime_type == "application/pdf" for f in _files(request)):
            raise self._fail("PDF must be provided for require_pdf model")
        if name == "multiple-text-blocks":
            first = request.messages[0].content if request.messages else []
            if sum(isinstance(b, Text) for b in first) != 2:
                raise self._fail("Expected exactly 2 text blocks in the first message")
        return name

    def _fail(self, message: str, **kwargs) -> ProviderError:
        kwargs.setdefault("raw_request", "raw request")
        return ProviderError(message, provider_type="dummy", **kwargs)

    async def infer(self, request: ModelInferenceRequest, ctx: CallContext) -> ProviderResponse:
        name = self._check(request, ctx)
        await asyncio.sleep(0.005 if "slow" not in name else 5)
        content = self._content(name, request, ctx)
        input_tokens, output_tokens = _USAGE.get(name, (10, None))
        if output_tokens is None:
            output_tokens = len(content)
        finish = FinishReason.TOOL_CALL if "tool" in name else FinishReason.STOP
        return ProviderResponse(
            content=content,
            usage=Usage(input_tokens=input_tokens, output_tokens=output_tokens),
            finish_reason=finish,
            raw_request="raw request",
            raw_response=_RAW_RESPONSE,
        )

    async def start_batch(self, requests: list[tuple[str, ModelInferenceRequest]], ctx: CallContext) -> BatchStart:
        """TensorZero's dummy starts a batch that never finishes: fake ids, and no polling."""
        for _, request in requests:
            self._check(request, ctx)
        return BatchStart(
            params={"file_id": f"dummy-file-{uuid.uuid4()}", "batch_id": f"dummy-batch-{uuid.uuid4()}"},
            raw_requests=["raw request"] * len(requests),
            raw_request="raw request",
            raw_response="raw response",
        )

    async def embed(
        self, inputs: list[Any], dimensions: int | None, ctx: CallContext
    ) -> tuple[list, int | None, str, Any]:
        name = self.config.model_name
        self.api_key("none", ctx)
        if name.startswith("error"):
            raise self._fail(f"Error sending request to Dummy provider for model '{name}'.")
        await asyncio.sleep(30 if "slow" in name else 0.001)
        raw = {"usage": {"prompt_tokens": 10, "total_tokens": 10}}
        return [[0.0] * (dimensions or 1536) for _ in inputs], 10, orjson.dumps(raw).decode(), raw

    def _content(self, name: str, request: ModelInferenceRequest, ctx: CallContext) -> list:
        if name in _TOOL_OUTPUTS:
            tool_name, arguments = _TOOL_OUTPUTS[name]
            return [ToolCallOutput(id="0", raw_name=tool_name, raw_arguments=arguments)]
        if name == "null":
            return []
        if name == "reasoner":
            return [Thought(text="hmmm"), Text(text=MEGUMIN)]
        if name == "reasoner_with_signature":
            return [Thought(text="hmmm", signature="my_signature"), Text(text=MEGUMIN)]
        if name == "json_reasoner":
            return [Thought(text="hmmm"), Text(text='{"answer":"Hello"}')]
        if name == "random_answer":
            return [Text(text=orjson.dumps({"answer": str(uuid.uuid4())}).decode())]
        if name == "echo":
            return [Text(text=_last_user_text(request))]
        if name == "echo_request_messages":
            messages = [m.model_dump(mode="json", exclude_none=True) for m in request.messages]
            return [Text(text=orjson.dumps({"system": request.system, "messages": messages}).decode())]
        if name == "echo_extra_info":
            return [Text(text=orjson.dumps(self._extra_info(request, ctx)).decode())]
        if name in ("extract_images", "require_pdf"):
            files = [f.model_dump(mode="json", exclude_none=True) for f in _files(request)]
            return [Text(text=orjson.dumps(files).decode())]
        if name == "echo_injected_data":
            body = self.patch_body({}, request, ctx)
            headers = self.patch_headers({}, request, ctx)
            return [
                Text(text=orjson.dumps({"injected_body": body, "injected_headers": sorted(headers.items())}).decode())
            ]
        return [Text(text=_TEXT_OUTPUTS.get(name, MEGUMIN))]

    def _extra_info(self, request: ModelInferenceRequest, ctx: CallContext) -> dict[str, Any]:
        """What reached the provider, split as TensorZero reports it: entries from the config
        (variant, then provider) and entries from the request."""

        def entries(items: list) -> list[dict]:
            return [e.model_dump(exclude_none=True) for e in items]

        configured_body = [*request.extra_body, *self.config.extra_body]
        configured_headers = [*request.extra_headers, *self.config.extra_headers]
        return {
            "extra_body": {
                "extra_body": entries(configured_body) or None,
                "inference_extra_body": entries(ctx.extra_body),
            },
            "extra_headers": {
                "extra_headers": entries(configured_headers) or None,
                "inference_extra_headers": entries(ctx.extra_headers),
            },
        }

    async def stream(self, request: ModelInferenceRequest, ctx: CallContext) -> AsyncIterator[ProviderChunk]:
        name = self._check(request, ctx)
        ctx.raw_request = "raw request"
        await asyncio.sleep(0.001 if "slow" not in name or name == "slow_second_chunk" else 5)
        chunks = self._stream_chunks(name)
        for index, chunk in enumerate(chunks):
            if index > 0:
                await asyncio.sleep(2 if name == "slow_second_chunk" and index == 1 else 0.01)
            if name.startswith("err_in_stream") and index == 3:
                yield ProviderChunk(error="Dummy error in stream", raw_chunk=_raw_error(name))
                continue
            if name.startswith("fatal_stream_error") and index == 2:
                yield ProviderChunk(error="Dummy fatal error in stream", fatal=True, raw_chunk=_raw_error(name))
                return
            yield ProviderChunk(content=[chunk], raw_chunk=_raw_text(chunk))
        input_tokens, output_tokens = _USAGE.get(name, (10, None))
        finish = FinishReason.TOOL_CALL if "tool" in name else FinishReason.STOP
        final_raw = orjson.dumps(
            {"usage": {"prompt_tokens": 10, "completion_tokens": len(chunks), "total_tokens": 10 + len(chunks)}}
        ).decode()
        yield ProviderChunk(
            usage=Usage(
                input_tokens=input_tokens, output_tokens=len(chunks) if output_tokens is None else output_tokens
            ),
            finish_reason=finish,
            raw_chunk=final_raw,
        )

    def _stream_chunks(self, name: str) -> list:
        if name in ("tool", "good_tool", "tool_split_name"):
            tool_name = "output_schema_tool" if name == "good_tool" else "get_temperature"
            names = {0: tool_name} if name != "tool_split_name" else {0: "get_temp", 1: "erature"}
            return [
                ToolCallChunk(id="0", raw_name=names.get(i, ""), raw_arguments=piece)
                for i, piece in enumerate(TOOL_STREAM_ARGS)
            ]
        texts = STREAM_CHUNKS
        if name in ("json", "json_reasoner"):
            texts = JSON_STREAM_CHUNKS
        chunks: list[Any] = [TextChunk(id="0", text=t) for t in texts]
        if name in ("reasoner", "json_reasoner"):
            chunks = [ThoughtChunk(id="0", text="hmmm"), ThoughtChunk(id="0", text="hmmm"), *chunks]
        return chunks


def _raw_text(chunk: Any) -> str:
    """The dummy's raw chunk is the piece of text it streams, as TensorZero's is."""
    if isinstance(chunk, ToolCallChunk):
        return chunk.raw_arguments
    return chunk.text or ""


def _files(request: ModelInferenceRequest) -> list[File]:
    return [block for message in request.messages for block in message.content if isinstance(block, File)]


def _last_user_text(request: ModelInferenceRequest) -> str:
    for message in reversed(request.messages):
        if message.role == "user":
            for block in message.content:
                if isinstance(block, Text):
                    return block.text or ""
    return ""


def _raw_error(name: str) -> str:
    return '{"error": "dummy client raw response"}' if "raw_response" in name else ""
