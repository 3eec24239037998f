"""A local server that speaks Anthropic's Messages wire format, including its SSE events."""

from __future__ import annotations

import asyncio
import json
from typing import Any

from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response, StreamingResponse
from starlette.routing import Route

TEXT = "Hello from Claude mock"


class AnthropicMock:
    def __init__(self, api_key: str = "sk-ant-test"):
        self.api_key = api_key
        self.requests: list[dict[str, Any]] = []
        self.app = Starlette(routes=[Route("/v1/messages", self.messages, methods=["POST"])])

    def last(self) -> dict[str, Any]:
        return self.requests[-1]

    async def messages(self, request: Request) -> Response:
        body = await request.json()
        self.requests.append({"headers": dict(request.headers), "body": body})
        if request.headers.get("x-api-key") != self.api_key:
            return JSONResponse(
                {"type": "error", "error": {"type": "authentication_error", "message": "invalid x-api-key"}},
                status_code=401,
            )
        if request.headers.get("anthropic-version") != "2023-06-01":
            return JSONResponse(
                {
                    "type": "error",
                    "error": {"type": "invalid_request_error", "message": "anthropic-version header is required"},
                },
                status_code=400,
            )
        if "max_tokens" not in body:
            return JSONResponse(
                {"type": "error", "error": {"type": "invalid_request_error", "message": "max_tokens: Field required"}},
                status_code=400,
            )
        model = body["model"]
        if model.endswith("-500"):
            return JSONResponse(
                {"type": "error", "error": {"type": "api_error", "message": "Internal"}}, status_code=500
            )
        if body.get("stream"):
            return StreamingResponse(self._stream(model), media_type="text/event-stream")
        return JSONResponse(self._message(model, body))

    def _content(self, model: str, body: dict) -> tuple[list[dict], str]:
        if "tool" in model:
            return [
                {"type": "text", "text": "Let me check."},
                {"type": "tool_use", "id": "toolu_1", "name": "get_weather", "input": {"city": "Tokyo"}},
            ], "tool_use"
        if "json" in model:
            # Continues the assistant prefill `{`, as the real API does.
            return [{"type": "text", "text": '"answer":"42"}'}], "end_turn"
        if "thinking" in model:
            return [
                {"type": "thinking", "thinking": "Let me think", "signature": "sig123"},
                {"type": "text", "text": TEXT},
            ], "end_turn"
        return [{"type": "text", "text": TEXT}], "end_turn"

    def _message(self, model: str, body: dict) -> dict:
        content, stop = self._content(model, body)
        return {
            "id": "msg_1",
            "type": "message",
            "role": "assistant",
            "model": model,
            "content": content,
            "stop_reason": stop,
            "stop_sequence": None,
            "usage": {
                "input_tokens": 20,
                "output_tokens": 9,
                "cache_read_input_tokens": 5,
                "cache_creation_input_tokens": 2,
            },
        }

    async def _stream(self, model: str):
        def event(name: str, data: dict) -> str:
            return f"event: {name}\ndata: {json.dumps({'type': name, **data})}\n\n"

        yield event(
            "message_start",
            {
                "message": {
                    "id": "msg_1",
                    "type": "message",
                    "role": "assistant",
                    "content": [],
                    "model": model,
                    "usage": {"input_tokens": 20, "output_tokens": 1},
                }
            },
        )
        yield event("ping", {})
        if "tool" in model:
            yield event(
                "content_block_start",
                {
                    "index": 0,
                    "content_block": {"type": "tool_use", "id": "toolu_1", "name": "get_weather", "input": {}},
                },
            )
            for piece in ['{"city":', ' "Tokyo"}']:
                yield event(
                    "content_block_delta", {"index": 0, "delta": {"type": "input_json_delta", "partial_json": piece}}
                )
            stop = "tool_use"
        else:
            yield event("content_block_start", {"index": 0, "content_block": {"type": "text", "text": ""}})
            for index, piece in enumerate(["Hello", " from", " Claude", " mock"]):
                if "break" in model and index == 2:
                    raise ConnectionResetError("mock upstream dropped the connection")
                yield event("content_block_delta", {"index": 0, "delta": {"type": "text_delta", "text": piece}})
                await asyncio.sleep(0)
            stop = "end_turn"
        yield event("content_block_stop", {"index": 0})
        yield event(
            "message_delta", {"delta": {"stop_reason": stop, "stop_sequence": None}, "usage": {"output_tokens": 4}}
        )
        yield event("message_stop", {})
