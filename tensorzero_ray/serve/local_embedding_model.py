"""`LocalEmbeddingModel`: one Serve deployment per self-hosted embedding model (a `ray_serve`
embedding provider). Requests that arrive together are embedded as one batch (Serve's
`@serve.batch`), up to the provider's `max_batch_size` texts."""

from __future__ import annotations

import asyncio
from typing import Any

from ray import serve

from tensorzero_ray.config.models import EmbeddingModelConfig, RayServeEmbeddingProviderConfig
from tensorzero_ray.config.models import local_embedding_deployment_name as deployment_name
from tensorzero_ray.serve.local_model import LocalModelSpec, deployment_options


def local_embedding_specs(models: dict[str, EmbeddingModelConfig]) -> list[LocalModelSpec]:
    return [
        LocalModelSpec(
            deployment_name(model_key, provider_key, provider), model_key, provider_key, provider, "embedding_models"
        )
        for model_key, model in models.items()
        for provider_key, provider in model.providers.items()
        if isinstance(provider, RayServeEmbeddingProviderConfig)
    ]


class LocalEmbeddingModel:
    def __init__(self, spec: LocalModelSpec):
        from tensorzero_ray.local_models.sentence_embedder import SentenceEmbedder

        cpus = spec.config.ray_actor_options.get("num_cpus")
        if cpus:
            import torch

            torch.set_num_threads(max(1, int(cpus)))
        self.embedder = SentenceEmbedder(spec.config.model_name, device=spec.config.device, where=spec.where)
        self._batched.set_max_batch_size(spec.config.max_batch_size)

    async def embed(self, texts: list[str]) -> dict[str, Any]:
        """{"embeddings": [...], "input_tokens": n, "dimensions": d}."""
        answers = await asyncio.gather(*(self._batched(text) for text in texts))
        return {
            "embeddings": [vector for vector, _ in answers],
            "input_tokens": sum(tokens for _, tokens in answers),
            "dimensions": self.embedder.dimensions,
        }

    @serve.batch(max_batch_size=64, batch_wait_timeout_s=0.005)
    async def _batched(self, texts: list[str]) -> list[tuple[list[float], int]]:
        vectors, tokens = await asyncio.to_thread(self.embedder.embed, texts)
        return list(zip(vectors, tokens))


LocalEmbeddingDeployment = serve.deployment(LocalEmbeddingModel, name="LocalEmbeddingModel")


def bind_local_embedding_models(models: dict[str, EmbeddingModelConfig]) -> dict[str, Any]:
    return {
        spec.deployment_name: LocalEmbeddingDeployment.options(**deployment_options(spec)).bind(spec)
        for spec in local_embedding_specs(models)
    }
