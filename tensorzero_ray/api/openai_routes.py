"""`/openai/v1/*`: OpenAI's chat completions and embeddings, served by the same routers, with
OpenAI's error shape `{"error": {"message": ...}}` (spec §1.4, §1.5)."""

from __future__ import annotations

import base64
import logging
import struct
from collections.abc import AsyncIterator

import orjson
from fastapi import FastAPI, Request
from fastapi.responses import Response

from tensorzero_ray.api.http_io import (
    ErrorResponses,
    json_response,
    parse_inference_request,
    read_json,
    sse_response,
    stream_error_message,
)
from tensorzero_ray.compat.openai_request import (
    check_content_type,
    custom_tools,
    parse_openai_request,
    target,
    to_native,
    unknown_fields,
)
from tensorzero_ray.compat.openai_response import ChunkTranslator, completion
from tensorzero_ray.config import Config
from tensorzero_ray.errors import InvalidRequest, UnknownFunction, UnknownModel
from tensorzero_ray.functions.routers import Routers
from tensorzero_ray.inference.embeddings import EmbeddingRegistry

logger = logging.getLogger(__name__)

EMBEDDING_PREFIX = "tensorzero::embedding_model_name::"


def add_openai_routes(app: FastAPI, config: Config, routers: Routers, workflows, local_models=None):
    """`local_models`: Serve handles of the self-hosted (embedding) models, by deployment name.
    Returns the chat completions handler (a hot path)."""
    errors = ErrorResponses(structured=config.gateway.unstable_error_json)
    embeddings = EmbeddingRegistry(
        config.embedding_models,
        outbound_timeout_s=config.gateway.global_outbound_http_timeout_ms / 1000,
        local_models=local_models,
    )

    @app.post("/openai/v1/chat/completions")
    async def chat_completions(http_request: Request) -> Response:
        try:
            check_content_type(http_request.headers.get("content-type"))
            request = parse_openai_request(await read_json(http_request))
            ignored = unknown_fields(request)
            if ignored:
                logger.warning("ignoring unknown fields in OpenAI-compatible request: %s", ignored)
            function, model = target(request.model)
            function_name, native = parse_inference_request(to_native(request))
            if not routers.knows(function_name):
                raise UnknownFunction(function_name)
            await workflows.apply(function_name, native)
        except Exception as exc:  # noqa: BLE001 - every failure gets OpenAI's error shape
            return errors.openai(exc)
        if not native.stream:
            try:
                response = await routers.infer(function_name, native)
            except Exception as exc:  # noqa: BLE001
                return errors.openai(exc)
            return json_response(completion(response.model_dump(mode="json"), function, model, custom_tools(request)))
        events = routers.stream(function_name, native).__aiter__()
        try:
            first = await events.__anext__()
        except Exception as exc:  # noqa: BLE001
            return errors.openai(exc)
        include_usage = bool(request.stream_options and request.stream_options.include_usage)
        translator = ChunkTranslator(function, model, include_usage, custom_tools(request))
        return sse_response(_translate(first, events, translator))

    @app.post("/openai/v1/embeddings")
    async def create_embeddings(http_request: Request) -> Response:
        try:
            check_content_type(http_request.headers.get("content-type"))
            data = await read_json(http_request)
            if not isinstance(data, dict) or "input" not in data or not isinstance(data.get("model"), str):
                raise InvalidRequest("Invalid request to OpenAI-compatible endpoint: `model` and `input` are required")
            name = data["model"].removeprefix(EMBEDDING_PREFIX)
            model = embeddings.get(name)
            if model is None:
                raise UnknownModel(name)
            inputs = data["input"] if isinstance(data["input"], list) else [data["input"]]
            if not inputs:
                raise InvalidRequest("Invalid request to OpenAI-compatible endpoint: `input` is empty")
            encoding = data.get("encoding_format") or "float"
            if encoding not in ("float", "base64"):
                raise InvalidRequest(
                    f"Invalid request to OpenAI-compatible endpoint: unknown encoding_format `{encoding}`"
                )
            result = await model.embed(inputs, data.get("dimensions"), data.get("tensorzero::credentials") or {})
        except Exception as exc:  # noqa: BLE001
            return errors.openai(exc)
        tokens = result.input_tokens or 0
        return json_response(
            {
                "object": "list",
                "data": [
                    {"object": "embedding", "embedding": _encode(v, encoding), "index": i}
                    for i, v in enumerate(result.embeddings)
                ],
                "model": f"{EMBEDDING_PREFIX}{name}",
                "usage": {"prompt_tokens": tokens, "total_tokens": tokens, "tensorzero_cost": result.cost},
            }
        )

    return chat_completions


def _encode(vector: list[float], encoding: str) -> list[float] | str:
    """OpenAI's `base64` encoding: little-endian float32 bytes."""
    if encoding == "float":
        return vector
    return base64.b64encode(struct.pack(f"<{len(vector)}f", *vector)).decode()


async def _translate(first: bytes, rest: AsyncIterator[bytes], translator: ChunkTranslator) -> AsyncIterator[bytes]:
    async def native_events():
        yield first
        async for event in rest:
            yield event

    try:
        async for event in native_events():
            payload = event.removeprefix(b"data: ").strip()
            if payload == b"[DONE]":
                yield event
                continue
            chunk = translator.translate(orjson.loads(payload))
            if chunk is not None:
                yield b"data: " + orjson.dumps(chunk) + b"\n\n"
    except Exception as exc:  # noqa: BLE001 - a broken stream still ends with an error event
        yield b"data: " + orjson.dumps({"error": {"message": stream_error_message(exc)}}) + b"\n\n"
        yield b"data: [DONE]\n\n"
