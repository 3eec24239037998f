"""In-cluster clients: the same methods as the HTTP clients, through the Gateway deployment's
Serve handle instead of HTTP, for Ray jobs, tasks and actors."""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable, Iterator
from typing import Any

import orjson
from ray import serve

from tensorzero_ray.client.common import GatewayError, body, parse_chunk, parse_feedback, parse_response
from tensorzero_ray.client.data_methods import DataMethods
from tensorzero_ray.errors import TensorZeroError, unwrap
from tensorzero_ray.serve.app import APP_NAME
from tensorzero_ray.types import InferenceChunk
from tensorzero_ray.types.feedback import FeedbackResponse


def _gateway_error(exc: BaseException) -> BaseException:
    error = unwrap(exc)
    if isinstance(error, TensorZeroError):
        return GatewayError(error.status_code, error.message)
    return exc


def _chunks(event: bytes) -> InferenceChunk | None:
    payload = event.removeprefix(b"data: ").strip()
    return None if payload == b"[DONE]" else parse_chunk(orjson.loads(payload))


def _checked(status: int, data: Any, parse: Callable[[Any], Any]) -> Any:
    if status != 200:
        message = data.get("error") if isinstance(data, dict) else data
        raise GatewayError(status, message if isinstance(message, str) else str(message))
    return parse(data)


class AsyncClusterClient(DataMethods):
    def __init__(self, app_name: str = APP_NAME):
        self._handle = serve.get_app_handle(app_name)

    async def _request(self, method: str, path: str, payload: dict | None, parse: Callable[[Any], Any]) -> Any:
        try:
            status, data = await self._handle.request.remote(method, path, payload)
        except Exception as exc:  # noqa: BLE001
            raise _gateway_error(exc) from None
        return _checked(status, data, parse)

    async def inference(self, *, input: dict[str, Any], stream: bool | None = None, **fields: Any):
        payload = body(input=input, stream=stream, **fields)
        if stream:
            return self._stream(payload)
        try:
            return parse_response(await self._handle.inference.remote(payload))
        except Exception as exc:  # noqa: BLE001
            raise _gateway_error(exc) from None

    async def _stream(self, payload: dict) -> AsyncIterator[InferenceChunk]:
        try:
            async for event in self._handle.options(stream=True).inference_stream.remote(payload):
                chunk = _chunks(event)
                if chunk is not None:
                    yield chunk
        except GatewayError:
            raise
        except Exception as exc:  # noqa: BLE001
            raise _gateway_error(exc) from None

    async def feedback(self, *, metric_name: str, value: Any, **fields: Any) -> FeedbackResponse:
        try:
            data = await self._handle.feedback.remote(body(metric_name=metric_name, value=value, **fields))
        except Exception as exc:  # noqa: BLE001
            raise _gateway_error(exc) from None
        return parse_feedback(data)


class ClusterClient(DataMethods):
    """Blocking calls, for code without an event loop (a plain Ray task, a driver script)."""

    def __init__(self, app_name: str = APP_NAME):
        self._handle = serve.get_app_handle(app_name)
        # Blocking calls need the handle's router on its own loop; clusters started with
        # RAY_SERVE_THROUGHPUT_OPTIMIZED=1 (as `tzray up` does) default to the caller's loop.
        self._handle._init(_run_router_in_separate_loop=True)

    def _request(self, method: str, path: str, payload: dict | None, parse: Callable[[Any], Any]) -> Any:
        try:
            status, data = self._handle.request.remote(method, path, payload).result()
        except Exception as exc:  # noqa: BLE001
            raise _gateway_error(exc) from None
        return _checked(status, data, parse)

    def inference(self, *, input: dict[str, Any], stream: bool | None = None, **fields: Any):
        payload = body(input=input, stream=stream, **fields)
        if stream:
            return self._stream(payload)
        try:
            return parse_response(self._handle.inference.remote(payload).result())
        except Exception as exc:  # noqa: BLE001
            raise _gateway_error(exc) from None

    def _stream(self, payload: dict) -> Iterator[InferenceChunk]:
        try:
            for event in self._handle.options(stream=True).inference_stream.remote(payload):
                chunk = _chunks(event)
                if chunk is not None:
                    yield chunk
        except GatewayError:
            raise
        except Exception as exc:  # noqa: BLE001
            raise _gateway_error(exc) from None

    def feedback(self, *, metric_name: str, value: Any, **fields: Any) -> FeedbackResponse:
        try:
            data = self._handle.feedback.remote(body(metric_name=metric_name, value=value, **fields)).result()
        except Exception as exc:  # noqa: BLE001
            raise _gateway_error(exc) from None
        return parse_feedback(data)
