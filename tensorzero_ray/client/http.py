"""HTTP clients for the gateway, sync and async, returning the same pydantic types the
gateway serves."""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable, Iterator
from typing import Any

import httpx

from tensorzero_ray.client.common import body, error_from, parse_chunk, parse_feedback, parse_response, sse_payload
from tensorzero_ray.client.data_methods import DataMethods
from tensorzero_ray.types import InferenceChunk
from tensorzero_ray.types.feedback import FeedbackResponse


class TensorZeroRayClient(DataMethods):
    """`with TensorZeroRayClient("http://localhost:8000") as client: client.inference(...)`"""

    def __init__(
        self,
        gateway_url: str,
        *,
        timeout: float | None = 300.0,
        api_key: str | None = None,
        transport: httpx.BaseTransport | None = None,
    ):
        headers = {"authorization": f"Bearer {api_key}"} if api_key else {}
        self._http = httpx.Client(
            base_url=gateway_url.rstrip("/"), timeout=timeout, headers=headers, transport=transport
        )

    def _request(self, method: str, path: str, payload: dict | None, parse: Callable[[Any], Any]) -> Any:
        response = self._http.request(method, path, json=payload)
        if response.status_code != 200:
            raise error_from(response.status_code, response.text)
        return parse(response.json())

    def __enter__(self) -> "TensorZeroRayClient":
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    def close(self) -> None:
        self._http.close()

    def inference(self, *, input: dict[str, Any], stream: bool | None = None, **fields: Any):
        """A ChatInferenceResponse or JsonInferenceResponse; with `stream=True`, an iterator of
        ChatChunk or JsonChunk. Fields are those of POST /inference."""
        payload = body(input=input, stream=stream, **fields)
        if stream:
            return self._stream(payload)
        response = self._http.post("/inference", json=payload)
        if response.status_code != 200:
            raise error_from(response.status_code, response.text)
        return parse_response(response.json())

    def _stream(self, payload: dict) -> Iterator[InferenceChunk]:
        for data in self._events("/inference", payload):
            yield parse_chunk(data)

    def _events(self, path: str, payload: dict) -> Iterator[dict]:
        with self._http.stream("POST", path, json=payload) as response:
            if response.status_code != 200:
                raise error_from(response.status_code, response.read().decode())
            for line in response.iter_lines():
                data = sse_payload(line)
                if data is not None:
                    yield data

    def experimental_run_evaluation(self, **fields: Any) -> Iterator[dict]:
        """Run an evaluation in the gateway (fields of POST /internal/evaluations/run); its
        events as they come: start, success or error per datapoint, complete."""
        return self._events("/internal/evaluations/run", body(**fields))

    def feedback(self, *, metric_name: str, value: Any, **fields: Any) -> FeedbackResponse:
        response = self._http.post("/feedback", json=body(metric_name=metric_name, value=value, **fields))
        if response.status_code != 200:
            raise error_from(response.status_code, response.text)
        return parse_feedback(response.json())


class AsyncTensorZeroRayClient(DataMethods):
    """`async with AsyncTensorZeroRayClient(url) as client: await client.inference(...)`"""

    def __init__(
        self,
        gateway_url: str,
        *,
        timeout: float | None = 300.0,
        api_key: str | None = None,
        transport: httpx.AsyncBaseTransport | None = None,
    ):
        headers = {"authorization": f"Bearer {api_key}"} if api_key else {}
        self._http = httpx.AsyncClient(
            base_url=gateway_url.rstrip("/"), timeout=timeout, headers=headers, transport=transport
        )

    async def _request(self, method: str, path: str, payload: dict | None, parse: Callable[[Any], Any]) -> Any:
        response = await self._http.request(method, path, json=payload)
        if response.status_code != 200:
            raise error_from(response.status_code, response.text)
        return parse(response.json())

    async def __aenter__(self) -> "AsyncTensorZeroRayClient":
        return self

    async def __aexit__(self, *exc) -> None:
        await self.close()

    async def close(self) -> None:
        await self._http.aclose()

    async def inference(self, *, input: dict[str, Any], stream: bool | None = None, **fields: Any):
        payload = body(input=input, stream=stream, **fields)
        if stream:
            return self._stream(payload)
        response = await self._http.post("/inference", json=payload)
        if response.status_code != 200:
            raise error_from(response.status_code, response.text)
        return parse_response(response.json())

    async def _stream(self, payload: dict) -> AsyncIterator[InferenceChunk]:
        async for data in self._events("/inference", payload):
            yield parse_chunk(data)

    async def _events(self, path: str, payload: dict) -> AsyncIterator[dict]:
        async with self._http.stream("POST", path, json=payload) as response:
            if response.status_code != 200:
                raise error_from(response.status_code, (await response.aread()).decode())
            async for line in response.aiter_lines():
                data = sse_payload(line)
                if data is not None:
                    yield data

    def experimental_run_evaluation(self, **fields: Any) -> AsyncIterator[dict]:
        """Run an evaluation in the gateway; `async for event in ...` as they come."""
        return self._events("/internal/evaluations/run", body(**fields))

    async def feedback(self, *, metric_name: str, value: Any, **fields: Any) -> FeedbackResponse:
        response = await self._http.post("/feedback", json=body(metric_name=metric_name, value=value, **fields))
        if response.status_code != 200:
            raise error_from(response.status_code, response.text)
        return parse_feedback(response.json())
