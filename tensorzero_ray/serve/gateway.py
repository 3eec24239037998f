"""The Gateway deployment: Serve's ingress over the HTTP API app, plus handle methods for the
in-cluster clients. Its FunctionRouters run in this replica or as deployments behind handles."""

from __future__ import annotations

from collections.abc import AsyncIterator
from datetime import datetime
from typing import Any

import httpx

from tensorzero_ray import ray_metrics
from tensorzero_ray.api.authentication import INTERNAL_HEADER
from tensorzero_ray.api.gateway import create_app
from tensorzero_ray.api.http_io import parse_body, parse_inference_request
from tensorzero_ray.config import Config
from tensorzero_ray.errors import InvalidRequest, UnknownFunction
from tensorzero_ray.functions.routers import LocalRouters
from tensorzero_ray.store.observability import StorageSettings, observability_client
from tensorzero_ray.types import InferenceRequest, InferenceResponse
from tensorzero_ray.types.batch import BatchStarted, BatchStatus
from tensorzero_ray.types.feedback import FeedbackRequest


class Gateway:
    """Serve ingress; routers are handles to FunctionRouter deployments, or None to run the
    routers inside this replica."""

    def __init__(
        self,
        config: Config,
        router_handles: dict[str, Any] | None = None,
        storage: StorageSettings | None = None,
        writer: Any = None,
        local_models: dict[str, Any] | None = None,
        ui: Any = None,
        experiments: Any = None,
    ):
        ray_metrics.enable()
        observability = self._observability = observability_client(storage, writer)
        if router_handles:
            self._routers = DeploymentRouters(router_handles)
        else:
            self._routers = LocalRouters(config, observability, local_models, experiments)
        self._app = create_app(
            config, self._routers, observability, ui, experiments=experiments, local_models=local_models
        )
        # Callers of the handle methods passed Ray's authentication; API keys are for HTTP.
        self._in_process = httpx.AsyncClient(
            transport=httpx.ASGITransport(app=self._app),
            base_url="http://gateway",
            headers={INTERNAL_HEADER: self._app.state.internal_token},
        )

    def __serve_build_asgi_app__(self):
        return self._app

    async def __del__(self):
        # Serve calls this on graceful shutdown: rows still held here go to the writer.
        if self._observability is not None:
            await self._observability.close()

    # Handle methods for the in-cluster clients: the same checks as HTTP, without HTTP.

    async def inference(self, payload: dict) -> dict:
        function_name, request = self._target(payload)
        if request.stream:
            raise InvalidRequest("Use `inference_stream` for streaming requests")
        return (await self._routers.infer(function_name, request)).model_dump(mode="json")

    async def inference_stream(self, payload: dict) -> AsyncIterator[bytes]:
        function_name, request = self._target(payload)
        async for event in self._routers.stream(function_name, request):
            yield event

    async def feedback(self, payload: dict) -> dict:
        feedback_id = await self._app.state.feedback.submit(parse_body(FeedbackRequest, payload))
        return {"feedback_id": str(feedback_id)}

    async def request(self, method: str, path: str, payload: dict | None) -> tuple[int, Any]:
        """Any JSON endpoint of the HTTP API (stored inferences, datasets, curation, replay)
        through the handle: (status, body)."""
        response = await self._in_process.request(method, path, json=payload)
        return response.status_code, response.json()

    # `tzray keys`: trusted callers reach these through Ray (its token), never over HTTP.

    async def create_api_key(self, description: str = "", expires_at: str | None = None) -> dict:
        """The new key (shown once) and its record."""
        expiry = datetime.fromisoformat(expires_at.replace("Z", "+00:00")) if expires_at else None
        key, record = await self._keys().create(description, expiry)
        return {"api_key": key, **record.model_dump(mode="json")}

    async def list_api_keys(self) -> list[dict]:
        return [{**k.model_dump(mode="json"), "state": k.state} for k in await self._keys().list()]

    async def disable_api_key(self, public_id: str) -> dict:
        return (await self._keys().disable(public_id)).model_dump(mode="json")

    def _keys(self):
        keys = self._app.state.api_keys
        if keys is None:
            raise InvalidRequest("API keys are stored in ClickHouse: turn observability on to use them")
        return keys

    async def storage_status(self) -> dict | None:
        """This replica's view of storage (`tzray status`); None when nothing is stored."""
        return None if self._observability is None else await self._observability.status()

    def _target(self, payload: dict):
        function_name, request = parse_inference_request(payload)
        if not self._routers.knows(function_name):
            raise UnknownFunction(function_name)
        return function_name, request


class DeploymentRouters:
    """FunctionRouters as Serve deployments, reached through their handles."""

    def __init__(self, handles: dict[str, Any]):
        self._handles = handles
        self._streaming = {name: handle.options(stream=True) for name, handle in handles.items()}

    def knows(self, function_name: str) -> bool:
        return function_name in self._handles

    async def infer(self, function_name: str, request: InferenceRequest) -> InferenceResponse:
        return await self._handle(function_name).infer.remote(request)

    def stream(self, function_name: str, request: InferenceRequest) -> AsyncIterator[bytes]:
        handle = self._streaming.get(function_name)
        if handle is None:
            raise UnknownFunction(function_name)
        return handle.stream.remote(request)

    async def sampling_probabilities(self, function_name: str, namespace: str | None) -> dict[str, float]:
        return await self._handle(function_name).sampling_probabilities.remote(namespace)

    async def start_batch(self, function_name: str, requests: list[InferenceRequest]) -> BatchStarted:
        return await self._handle(function_name).start_batch.remote(requests)

    async def poll_batch(self, function_name: str, batch_id: str, inference_id: str | None) -> BatchStatus:
        return await self._handle(function_name).poll_batch.remote(batch_id, inference_id)

    def _handle(self, function_name: str):
        handle = self._handles.get(function_name)
        if handle is None:
            raise UnknownFunction(function_name)
        return handle

    async def aclose(self) -> None:
        return None
