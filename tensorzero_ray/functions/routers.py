"""How the Gateway reaches the FunctionRouters: through Serve deployment handles (one
deployment per function), or in the Gateway's own process. One switch picks; the benchmark
prices the hop."""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any, Protocol

from tensorzero_ray.config import Config
from tensorzero_ray.errors import UnknownFunction
from tensorzero_ray.functions.function_router import DEFAULT_FUNCTION, FunctionRouter
from tensorzero_ray.inference.model import ModelRegistry
from tensorzero_ray.rate_limiting import RateLimiter, shared_ledger
from tensorzero_ray.store.observability import ObservabilityClient
from tensorzero_ray.types import InferenceRequest, InferenceResponse
from tensorzero_ray.types.batch import BatchStarted, BatchStatus


def model_registry(config: Config, local_models: dict[str, Any] | None = None) -> ModelRegistry:
    """One registry per process; `local_models` are the handles of the LocalModel deployments."""
    timeout_s = config.gateway.global_outbound_http_timeout_ms / 1000
    return ModelRegistry(
        config.models, outbound_timeout_s=timeout_s, local_models=local_models, provider_types=config.provider_types
    )


class Routers(Protocol):
    async def infer(self, function_name: str, request: InferenceRequest) -> InferenceResponse: ...

    def stream(self, function_name: str, request: InferenceRequest) -> AsyncIterator[bytes]: ...

    def knows(self, function_name: str) -> bool: ...

    async def sampling_probabilities(self, function_name: str, namespace: str | None) -> dict[str, float]: ...

    async def start_batch(self, function_name: str, requests: list[InferenceRequest]) -> BatchStarted: ...

    async def poll_batch(self, function_name: str, batch_id: str, inference_id: str | None) -> BatchStatus: ...


class LocalRouters:
    """Every FunctionRouter in this process, sharing one model registry (one pool per provider)."""

    def __init__(
        self,
        config: Config,
        observability: ObservabilityClient | None = None,
        local_models: dict[str, Any] | None = None,
        experiments: Any = None,
        rate_limiter: RateLimiter | None = None,
    ):
        """`rate_limiter`: by default one on the shared ledger (rate_limiting/ledger.py)."""
        models = model_registry(config, local_models)
        if rate_limiter is None and config.rate_limiting.enabled and config.rate_limiting.rules:
            rate_limiter = RateLimiter(config.rate_limiting, shared_ledger())
        self._routers = {
            name: FunctionRouter(config, name, models, observability, experiments, rate_limiter)
            for name in [*config.functions, DEFAULT_FUNCTION]
        }

    def knows(self, function_name: str) -> bool:
        return function_name in self._routers

    def _router(self, function_name: str) -> FunctionRouter:
        try:
            return self._routers[function_name]
        except KeyError:
            raise UnknownFunction(function_name) from None

    async def infer(self, function_name: str, request: InferenceRequest) -> InferenceResponse:
        return await self._router(function_name).infer(request)

    def stream(self, function_name: str, request: InferenceRequest) -> AsyncIterator[bytes]:
        return self._router(function_name).stream(request)

    async def sampling_probabilities(self, function_name: str, namespace: str | None) -> dict[str, float]:
        return await self._router(function_name).sampling_probabilities(namespace)

    async def start_batch(self, function_name: str, requests: list[InferenceRequest]) -> BatchStarted:
        return await self._router(function_name).start_batch(requests)

    async def poll_batch(self, function_name: str, batch_id: str, inference_id: str | None) -> BatchStatus:
        return await self._router(function_name).poll_batch(batch_id, inference_id)

    async def aclose(self) -> None:
        for router in self._routers.values():
            await router.aclose()
