"""The Gateway: TensorZero's HTTP API as an ASGI app. It parses and checks requests, hands
them to the FunctionRouters, and shapes errors as TensorZero does (spec §1.0)."""

from __future__ import annotations

import asyncio
import hashlib
import logging
from collections.abc import AsyncIterator
from typing import Any, TypeVar

import orjson
from fastapi import FastAPI, Request
from fastapi.responses import Response, StreamingResponse
from pydantic import ValidationError
from starlette.exceptions import HTTPException as StarletteHTTPException

from tensorzero_ray import __version__, validation
from tensorzero_ray.config import Config
from tensorzero_ray.errors import (
    InvalidRequest,
    PayloadTooLarge,
    RouteNotFound,
    TensorZeroError,
    UnknownFunction,
    unwrap,
)
from tensorzero_ray.feedback import FeedbackService
from tensorzero_ray.ids import validate_episode_id
from tensorzero_ray.serve.observability import ObservabilityClient
from tensorzero_ray.serve.function_router import DEFAULT_FUNCTION
from tensorzero_ray.serve.routers import Routers
from tensorzero_ray.types import InferenceRequest
from tensorzero_ray.types.feedback import FeedbackRequest

T = TypeVar("T")

logger = logging.getLogger(__name__)

MAX_BODY_BYTES = 100 * 1024 * 1024
VERSION_HEADER = "x-tensorzero-gateway-version"


def config_hash(config: Config) -> str:
    return hashlib.sha256(orjson.dumps(config.model_dump(mode="json"), option=orjson.OPT_SORT_KEYS)).hexdigest()


def json_response(body: Any, status: int = 200) -> Response:
    return Response(
        orjson.dumps(body), status_code=status, media_type="application/json", headers={VERSION_HEADER: __version__}
    )


def error_response(exc: BaseException) -> Response:
    exc = unwrap(exc)
    if isinstance(exc, TensorZeroError):
        return json_response(exc.body(), exc.status_code)
    logger.exception("unexpected error", exc_info=exc)
    return json_response({"error": f"Internal error: {type(exc).__name__}"}, 500)


def describe_validation_error(exc: ValidationError, data: Any) -> str:
    parts = []
    for path, message in validation.problems(exc, data):
        parts.append(f"`{'.'.join(path)}`: {message}" if path else message)
    return "; ".join(dict.fromkeys(parts))


async def read_json(request: Request) -> Any:
    length = request.headers.get("content-length")
    if length is not None and length.isdigit() and int(length) > MAX_BODY_BYTES:
        raise PayloadTooLarge(f"Request body is larger than {MAX_BODY_BYTES} bytes")
    body = bytearray()
    async for piece in request.stream():
        body += piece
        if len(body) > MAX_BODY_BYTES:
            raise PayloadTooLarge(f"Request body is larger than {MAX_BODY_BYTES} bytes")
    try:
        return orjson.loads(body)
    except orjson.JSONDecodeError as exc:
        raise InvalidRequest(f"Failed to parse the request body as JSON: {exc}") from None


def parse_body(model: type[T], data: Any) -> T:
    if not isinstance(data, dict):
        raise InvalidRequest("The request body must be a JSON object")
    try:
        return model.model_validate(data, strict=True)
    except ValidationError as exc:
        raise InvalidRequest(f"Invalid request: {describe_validation_error(exc, data)}") from None


def parse_inference_request(data: Any) -> tuple[str, InferenceRequest]:
    """The validated request and the function that serves it."""
    request = parse_body(InferenceRequest, data)
    if (request.function_name is None) == (request.model_name is None):
        raise InvalidRequest("Invalid inference target: exactly one of `function_name` or `model_name` is required")
    if request.model_name is not None and request.variant_name is not None:
        raise InvalidRequest("Invalid inference target: `variant_name` cannot be set together with `model_name`")
    if request.function_name is not None and request.function_name.startswith("tensorzero::"):
        raise InvalidRequest(f"Invalid inference target: `{request.function_name}` is reserved")
    validation.check_tags(request.tags, request.internal)
    if request.episode_id is not None:
        request.episode_id = str(validate_episode_id(request.episode_id))
    if request.model_name is not None:
        request.variant_name = request.model_name
        return DEFAULT_FUNCTION, request
    return request.function_name, request


def create_app(config: Config, routers: Routers, observability: ObservabilityClient | None = None) -> FastAPI:
    app = FastAPI(title="tensorzero-ray gateway", version=__version__, docs_url=None, redoc_url=None, openapi_url=None)
    hashed = config_hash(config)
    feedback = FeedbackService(config, observability)

    @app.exception_handler(StarletteHTTPException)
    async def _http_error(request: Request, exc: StarletteHTTPException) -> Response:
        if exc.status_code == 404:
            return error_response(RouteNotFound(request.method, request.url.path))
        return json_response({"error": str(exc.detail)}, exc.status_code)

    @app.exception_handler(TensorZeroError)
    async def _tensorzero_error(request: Request, exc: TensorZeroError) -> Response:
        return error_response(exc)

    @app.get("/status")
    async def status() -> Response:
        return json_response({"status": "ok", "version": __version__, "config_hash": hashed})

    @app.get("/health")
    async def health() -> Response:
        clickhouse = "ok"
        if observability is not None:
            try:
                clickhouse = (await observability.status())["clickhouse"]
            except Exception:  # noqa: BLE001 - an unreachable writer is an unhealthy backend
                clickhouse = "error"
        body = {"gateway": "ok", "clickhouse": clickhouse, "postgres": "ok", "valkey": "ok", "valkey_cache": "ok"}
        return json_response(body, 200 if clickhouse == "ok" else 503)

    @app.post("/feedback")
    async def post_feedback(http_request: Request) -> Response:
        request = parse_body(FeedbackRequest, await read_json(http_request))
        try:
            feedback_id = await asyncio.shield(feedback.submit(request))
        except Exception as exc:  # noqa: BLE001
            return error_response(exc)
        return json_response({"feedback_id": str(feedback_id)})

    @app.post("/inference")
    async def inference(http_request: Request) -> Response:
        function_name, request = parse_inference_request(await read_json(http_request))
        if not routers.knows(function_name):
            return error_response(UnknownFunction(function_name))
        if not request.stream:
            try:
                # Shielded: a client that hangs up does not cancel the inference or its write.
                response = await asyncio.shield(routers.infer(function_name, request))
            except Exception as exc:  # noqa: BLE001 - every failure becomes an error body
                return error_response(exc)
            return json_response(response.model_dump(mode="json"))
        events = routers.stream(function_name, request).__aiter__()
        try:
            first = await events.__anext__()
        except Exception as exc:  # noqa: BLE001
            return error_response(exc)
        return StreamingResponse(
            _prepend(first, events),
            media_type="text/event-stream",
            headers={VERSION_HEADER: __version__, "cache-control": "no-cache"},
        )

    return app


async def _prepend(first: bytes, rest: AsyncIterator[bytes]) -> AsyncIterator[bytes]:
    yield first
    try:
        async for event in rest:
            yield event
    except Exception as exc:  # noqa: BLE001 - a broken stream still ends with an error event
        error = unwrap(exc)
        message = error.message if isinstance(error, TensorZeroError) else f"Internal error: {type(error).__name__}"
        yield b"data: " + orjson.dumps({"error": message}) + b"\n\n"
        yield b"data: [DONE]\n\n"
