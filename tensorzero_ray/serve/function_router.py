"""The FunctionRouter deployment: one per function when routers run as their own deployments,
reaching the ObservabilityWriter through its handle."""

from __future__ import annotations

from typing import Any

from tensorzero_ray import ray_metrics
from tensorzero_ray.config import Config
from tensorzero_ray.functions.function_router import FunctionRouter
from tensorzero_ray.functions.routers import model_registry
from tensorzero_ray.store.observability import StorageSettings, observability_client


class FunctionRouterReplica(FunctionRouter):
    """A FunctionRouter that reaches the ObservabilityWriter through its handle."""

    def __init__(
        self,
        config: Config,
        function_name: str,
        storage: StorageSettings | None = None,
        writer: Any = None,
        local_models: dict[str, Any] | None = None,
        experiments: Any = None,
    ):
        ray_metrics.enable()
        models = model_registry(config, local_models)
        observability = observability_client(storage, writer)
        super().__init__(config, function_name, models, observability, experiments)

    async def __del__(self):
        if self.observability is not None:
            await self.observability.close()
