"""`LocalModel`: one Serve deployment per self-hosted model (a `ray_serve` provider). It owns
a transformers engine; the gateway reaches it through a handle, so Serve scales and restarts
it like any deployment, and GPUs come from `ray_actor_options`."""

from __future__ import annotations

import asyncio
import threading
from collections.abc import AsyncIterator
from dataclasses import dataclass
from typing import Any

from ray import serve

from tensorzero_ray.config.models import ModelConfig, RayServeProviderConfig, local_deployment_name
from tensorzero_ray.local_models.protocol import GenerationDelta, GenerationRequest

_DONE = object()


@dataclass(frozen=True)
class LocalModelSpec:
    """What a self-hosted model's replica needs, and where in the config it came from
    (`section`: `models`, or `embedding_models` for a LocalEmbeddingModel)."""

    deployment_name: str
    model_key: str
    provider_key: str
    config: Any
    section: str = "models"

    @property
    def where(self) -> str:
        return f"{self.section}.{self.model_key}.providers.{self.provider_key}.model_name"


def local_model_specs(models: dict[str, ModelConfig]) -> list[LocalModelSpec]:
    return [
        LocalModelSpec(local_deployment_name(model_key, provider_key, provider), model_key, provider_key, provider)
        for model_key, model in models.items()
        for provider_key, provider in model.providers.items()
        if isinstance(provider, RayServeProviderConfig)
    ]


class LocalModel:
    def __init__(self, spec: LocalModelSpec):
        from tensorzero_ray.local_models.transformers_engine import load_engine

        cpus = spec.config.ray_actor_options.get("num_cpus")
        if cpus:
            import torch

            torch.set_num_threads(max(1, int(cpus)))
        self.spec = spec
        self.engine = load_engine(
            spec.config.model_name,
            dtype=spec.config.dtype,
            device=spec.config.device,
            max_context_tokens=spec.config.max_context_tokens,
            where=spec.where,
        )

    async def generate(self, payload: dict) -> dict:
        request = GenerationRequest.model_validate(payload)
        result = await asyncio.to_thread(self.engine.generate, request)
        return result.model_dump()

    async def generate_stream(self, payload: dict) -> AsyncIterator[dict]:
        """Deltas as the decoding thread produces them; the last carries usage. A caller that
        goes away stops the decoding."""
        request = GenerationRequest.model_validate(payload)
        loop = asyncio.get_running_loop()
        queue: asyncio.Queue = asyncio.Queue()
        cancelled = threading.Event()

        def on_delta(delta: GenerationDelta) -> None:
            loop.call_soon_threadsafe(queue.put_nowait, delta)

        def run() -> None:
            try:
                result = self.engine.generate(request, on_delta, cancelled)
                final = GenerationDelta(
                    input_tokens=result.input_tokens,
                    output_tokens=result.output_tokens,
                    finish_reason=result.finish_reason,
                )
                loop.call_soon_threadsafe(queue.put_nowait, final)
            except BaseException as exc:  # noqa: BLE001 - handed to the consumer and raised there
                loop.call_soon_threadsafe(queue.put_nowait, exc)
            finally:
                loop.call_soon_threadsafe(queue.put_nowait, _DONE)

        worker = loop.run_in_executor(None, run)
        try:
            while (item := await queue.get()) is not _DONE:
                if isinstance(item, BaseException):
                    raise item
                yield item.model_dump(exclude_none=True)
        finally:
            cancelled.set()
            await asyncio.shield(worker)


LocalModelDeployment = serve.deployment(LocalModel, name="LocalModel")


def bind_local_models(models: dict[str, ModelConfig]) -> dict[str, Any]:
    """One bound deployment per `ray_serve` provider, with its Serve settings from the config
    (a Serve YAML may still override them by deployment name)."""
    bound: dict[str, Any] = {}
    for spec in local_model_specs(models):
        options = deployment_options(spec)
        if spec.config.engine == "vllm":
            bound[spec.deployment_name] = _vllm_deployment(spec, options)
        else:
            bound[spec.deployment_name] = LocalModelDeployment.options(**options).bind(spec)
    return bound


def deployment_options(spec: LocalModelSpec) -> dict[str, Any]:
    """Serve settings from the provider's config (a Serve YAML may still override them by
    deployment name)."""
    config = spec.config
    options: dict[str, Any] = {
        "name": spec.deployment_name,
        "max_ongoing_requests": config.max_ongoing_requests,
        "ray_actor_options": config.ray_actor_options,
    }
    if config.autoscaling_config is not None:
        options["autoscaling_config"] = config.autoscaling_config
    else:
        options["num_replicas"] = config.num_replicas or 1
    return options


def _vllm_deployment(spec: LocalModelSpec, options: dict[str, Any]) -> Any:
    """Ray Serve LLM's vLLM server in place of LocalModel (GPU machines with vllm installed)."""
    from ray.serve.llm import LLMConfig, build_llm_deployment

    config = spec.config
    engine_kwargs: dict[str, Any] = {}
    if config.dtype != "auto":
        engine_kwargs["dtype"] = config.dtype
    if config.max_context_tokens is not None:
        engine_kwargs["max_model_len"] = config.max_context_tokens
    deployment_config = {k: v for k, v in options.items() if k in ("num_replicas", "autoscaling_config")}
    deployment_config["max_ongoing_requests"] = options["max_ongoing_requests"]
    llm_config = LLMConfig(
        model_loading_config={"model_id": spec.deployment_name, "model_source": config.model_name},
        deployment_config=deployment_config,
        engine_kwargs=engine_kwargs,
    )
    return build_llm_deployment(llm_config, override_serve_options={"name": spec.deployment_name})
