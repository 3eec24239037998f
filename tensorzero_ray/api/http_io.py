"""Reading requests and writing responses, shared by the native and OpenAI-compatible routes."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator
from typing import Any, TypeVar
from urllib.parse import urlsplit

import orjson
from fastapi import Request
from fastapi.responses import Response, StreamingResponse
from pydantic import ValidationError

from tensorzero_ray import __version__, validation
from tensorzero_ray.auth.request_key import stamp
from tensorzero_ray.errors import Forbidden, InvalidRequest, PayloadTooLarge, TensorZeroError, unwrap
from tensorzero_ray.evaluations.catalog import JUDGE_PREFIX
from tensorzero_ray.functions.function_router import DEFAULT_FUNCTION
from tensorzero_ray.ids import validate_episode_id
from tensorzero_ray.types import InferenceRequest

T = TypeVar("T")

logger = logging.getLogger(__name__)

MAX_BODY_BYTES = 100 * 1024 * 1024
VERSION_HEADER = "x-tensorzero-gateway-version"


def json_response(body: Any, status: int = 200) -> Response:
    return Response(
        orjson.dumps(body), status_code=status, media_type="application/json", headers={VERSION_HEADER: __version__}
    )


class ErrorResponses:
    """Errors as TensorZero shapes them: `{"error": message}` natively, `{"error": {"message"}}`
    on the OpenAI-compatible routes, plus the structured form when the config asks for it
    (`gateway.unstable_error_json`)."""

    def __init__(self, structured: bool = False):
        self.structured = structured

    def native(self, exc: BaseException) -> Response:
        message, status, details = _error_parts(exc)
        body: dict[str, Any] = {"error": message}
        if self.structured:
            body["error_json"] = details
        return json_response(body, status)

    def openai(self, exc: BaseException) -> Response:
        message, status, details = _error_parts(exc)
        error: dict[str, Any] = {"message": message}
        if self.structured:
            error["tensorzero_error_json"] = details
            error["error_json"] = details  # the older name, still read by some clients
        return json_response({"error": error}, status)


def _error_parts(exc: BaseException) -> tuple[str, int, dict]:
    exc = unwrap(exc)
    if isinstance(exc, TensorZeroError):
        return exc.message, exc.status_code, exc.details()
    logger.exception("unexpected error", exc_info=exc)
    message = f"Internal error: {type(exc).__name__}"
    return message, 500, {"InternalError": {"message": message}}


async def read_body(request: Request, limit: int = MAX_BODY_BYTES) -> bytes:
    """The body, refused with 413 as soon as it passes `limit` (never read in full first)."""
    length = request.headers.get("content-length")
    if length is not None and length.isdigit() and int(length) > limit:
        raise PayloadTooLarge(f"Request body is larger than {limit} bytes")
    body = bytearray()
    async for piece in request.stream():
        body += piece
        if len(body) > limit:
            raise PayloadTooLarge(f"Request body is larger than {limit} bytes")
    return bytes(body)


# What a page on another site can send without asking first (no CORS preflight).
SIMPLE_CONTENT_TYPES = frozenset({"", "text/plain", "application/x-www-form-urlencoded", "multipart/form-data"})


def refuse_cross_site(request: Request) -> None:
    """A browser on another site may post a simple body to us unasked; JSON routes refuse it.
    Clients that are not browsers send no Origin and are not affected."""
    origin = request.headers.get("origin")
    if origin is None:
        return
    content_type = request.headers.get("content-type", "").split(";", 1)[0].strip().lower()
    if (
        content_type in SIMPLE_CONTENT_TYPES
        and urlsplit(origin).netloc.lower() != request.headers.get("host", "").lower()
    ):
        raise Forbidden(f"Cross-site request from {origin} refused: send `content-type: application/json`")


async def read_json(request: Request) -> Any:
    refuse_cross_site(request)
    body = await read_body(request)
    try:
        data = orjson.loads(body)
    except orjson.JSONDecodeError as exc:
        raise InvalidRequest(f"Failed to parse the request body as JSON: {exc}") from None
    validation.check_json_depth(data)
    return data


def parse_body(model: type[T], data: Any) -> T:
    if not isinstance(data, dict):
        raise InvalidRequest("The request body must be a JSON object")
    validation.check_json_depth(data)
    try:
        return model.model_validate(data, strict=True)
    except ValidationError as exc:
        raise InvalidRequest(f"Invalid request: {validation.describe_errors(exc, data)}") from None


def parse_query(model: type[T], params: dict[str, str]) -> T:
    """Query-string parameters: text, so numbers are read from it (lax validation)."""
    try:
        return model.model_validate(params)
    except ValidationError as exc:
        raise InvalidRequest(f"Invalid query: {validation.describe_errors(exc, params)}") from None


def parse_inference_request(data: Any) -> tuple[str, InferenceRequest]:
    """The validated request and the function that serves it."""
    request = parse_body(InferenceRequest, data)
    if (request.function_name is None) == (request.model_name is None):
        raise InvalidRequest("Invalid inference target: exactly one of `function_name` or `model_name` is required")
    if request.model_name is not None and request.variant_name is not None:
        raise InvalidRequest("Invalid inference target: `variant_name` cannot be set together with `model_name`")
    judge = request.function_name is not None and request.function_name.startswith(JUDGE_PREFIX)
    if request.function_name is not None and request.function_name.startswith("tensorzero::") and not judge:
        raise InvalidRequest(f"Invalid inference target: `{request.function_name}` is reserved")
    validation.check_tags(request.tags, request.internal)
    stamp(request.tags)
    if request.episode_id is not None:
        request.episode_id = str(validate_episode_id(request.episode_id))
    if request.model_name is not None:
        request.variant_name = request.model_name
        return DEFAULT_FUNCTION, request
    return request.function_name, request


def stream_error_message(exc: BaseException) -> str:
    error = unwrap(exc)
    return error.message if isinstance(error, TensorZeroError) else f"Internal error: {type(error).__name__}"


def sse_response(events: AsyncIterator[bytes]) -> StreamingResponse:
    return StreamingResponse(
        coalesce(events),
        media_type="text/event-stream",
        headers={VERSION_HEADER: __version__, "cache-control": "no-cache"},
    )


_END = object()


async def coalesce(events: AsyncIterator[bytes]) -> AsyncIterator[bytes]:
    """Write whatever events are ready as one piece: chunks that arrive together from the
    provider leave together, one ASGI message instead of dozens (bench/README.md)."""
    queue: asyncio.Queue = asyncio.Queue()

    async def pump() -> None:
        try:
            async for event in events:
                queue.put_nowait(event)
        except Exception as exc:  # noqa: BLE001 - handed to the consumer, which re-raises it
            queue.put_nowait(exc)
        finally:
            queue.put_nowait(_END)

    task = asyncio.get_running_loop().create_task(pump())
    try:
        while True:
            batch = [await queue.get()]
            while not queue.empty() and not isinstance(batch[-1], Exception) and batch[-1] is not _END:
                batch.append(queue.get_nowait())
            tail = batch[-1]
            ready = [item for item in batch if isinstance(item, bytes)]
            if ready:
                yield b"".join(ready)
            if isinstance(tail, Exception):
                raise tail
            if tail is _END:
                return
    finally:
        task.cancel()
