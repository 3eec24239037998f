"""Embedding models: providers in routing order, as for chat models (spec §1.5, §3.4)."""

from __future__ import annotations

import asyncio
from typing import Any

from pydantic import BaseModel

from tensorzero_ray.config.models import (
    EmbeddingModelConfig,
    EmbeddingProviderConfig,
    RayServeEmbeddingProviderConfig,
    local_embedding_deployment_name,
    parse_shorthand,
)
from tensorzero_ray.errors import AllModelProvidersFailed, ProviderError, TensorZeroError
from tensorzero_ray.inference.model import compute_cost
from tensorzero_ray.providers import CallContext, Provider, build_provider


class EmbeddingResult(BaseModel):
    embeddings: list[list[float]]
    input_tokens: int | None = None
    raw_response: str = ""
    cost: float | None = None
    provider_name: str


class EmbeddingModel:
    def __init__(
        self,
        name: str,
        config: EmbeddingModelConfig,
        *,
        outbound_timeout_s: float = 900.0,
        local_models: dict[str, Any] | None = None,
    ):
        """`local_models`: Serve handles by deployment name, for `ray_serve` providers."""
        self.name = name
        self.config = config
        self.providers: list[tuple[str, Provider]] = []
        for p in config.routing:
            provider = config.providers[p]
            handle = None
            if isinstance(provider, RayServeEmbeddingProviderConfig):
                handle = (local_models or {}).get(local_embedding_deployment_name(name, p, provider))
            self.providers.append((p, build_provider(p, provider, timeout_s=outbound_timeout_s, local_handle=handle)))

    async def embed(self, inputs: list[Any], dimensions: int | None, credentials: dict[str, str]) -> EmbeddingResult:
        errors: dict[str, TensorZeroError] = {}
        ctx = CallContext(credentials=credentials)
        for name, provider in self.providers:
            timeout_ms = provider.config.timeout_ms or self.config.timeout_ms
            try:
                async with asyncio.timeout(None if timeout_ms is None else timeout_ms / 1000):
                    vectors, tokens, raw, raw_json = await provider.embed(inputs, dimensions, ctx)
            except TimeoutError:
                errors[name] = ProviderError(
                    f"Model provider {name} timed out", provider_type=provider.provider_type, status_code=408
                )
                continue
            except TensorZeroError as exc:
                errors[name] = exc
                continue
            return EmbeddingResult(
                embeddings=vectors,
                input_tokens=tokens,
                raw_response=raw,
                provider_name=name,
                cost=compute_cost(provider.config.cost, [raw_json], False),
            )
        raise AllModelProvidersFailed(errors)

    async def aclose(self) -> None:
        for _, provider in self.providers:
            await provider.aclose()


class EmbeddingRegistry:
    def __init__(
        self,
        models: dict[str, EmbeddingModelConfig],
        *,
        outbound_timeout_s: float = 900.0,
        local_models: dict[str, Any] | None = None,
    ):
        self._configs = models
        self._timeout_s = outbound_timeout_s
        self._local_models = local_models
        self._models: dict[str, EmbeddingModel] = {}

    def get(self, name: str) -> EmbeddingModel | None:
        if name not in self._models:
            config = self._configs.get(name)
            if config is None:
                parsed = parse_shorthand(name)
                if parsed is None:
                    return None
                provider = EmbeddingProviderConfig(type=parsed[0], model_name=parsed[1])
                config = EmbeddingModelConfig(routing=[parsed[0]], providers={parsed[0]: provider})
            self._models[name] = EmbeddingModel(
                name, config, outbound_timeout_s=self._timeout_s, local_models=self._local_models
            )
        return self._models[name]

    async def aclose(self) -> None:
        for model in self._models.values():
            await model.aclose()
