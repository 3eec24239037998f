"""What every client shares: request bodies from keyword arguments, typed responses and
chunks from the gateway's JSON, and one error type."""

from __future__ import annotations

from typing import Any

import orjson
from pydantic import TypeAdapter

from tensorzero_ray.types import (
    ChatChunk,
    ChatInferenceResponse,
    InferenceChunk,
    InferenceResponse,
    JsonChunk,
    JsonInferenceResponse,
)
from tensorzero_ray.types.feedback import FeedbackResponse

_RESPONSE = TypeAdapter(InferenceResponse)


class GatewayError(Exception):
    """The gateway answered with an error: its HTTP status and message."""

    def __init__(self, status_code: int, message: str):
        super().__init__(f"GatewayError (status code {status_code}): {message}")
        self.status_code = status_code
        self.message = message


def body(**fields: Any) -> dict[str, Any]:
    """Keyword arguments as a request body; unset (None) fields are left out."""
    return {key: value for key, value in fields.items() if value is not None}


def parse_response(data: dict) -> ChatInferenceResponse | JsonInferenceResponse:
    return _RESPONSE.validate_python(data)


def parse_chunk(data: dict) -> InferenceChunk:
    if "error" in data:
        raise GatewayError(500, data["error"])
    return JsonChunk.model_validate(data) if "raw" in data else ChatChunk.model_validate(data)


def parse_feedback(data: dict) -> FeedbackResponse:
    return FeedbackResponse.model_validate(data)


def error_from(status: int, text: str) -> GatewayError:
    try:
        message = orjson.loads(text)["error"]
    except (orjson.JSONDecodeError, KeyError, TypeError):
        message = text
    return GatewayError(status, message if isinstance(message, str) else orjson.dumps(message).decode())


def sse_payload(line: str) -> dict | None:
    """The JSON of one `data:` line; None for keep-alives, blank lines and `[DONE]`."""
    if not line.startswith("data:"):
        return None
    payload = line[5:].strip()
    if payload == "[DONE]":
        return None
    return orjson.loads(payload)
