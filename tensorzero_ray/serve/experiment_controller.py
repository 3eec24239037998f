"""The ExperimentController deployment: one replica that updates every adaptive experiment on
its period and answers the routers' long polls. If it dies, routers keep the last states and
Serve starts a new one, which reloads the stored history."""

from __future__ import annotations

from typing import Any

from tensorzero_ray.config import Config
from tensorzero_ray.experimentation.controller import ExperimentController
from tensorzero_ray.store.observability import StorageSettings, observability_client


class ExperimentControllerDeployment(ExperimentController):
    def __init__(self, config: Config, storage: StorageSettings, writer: Any):
        super().__init__(config, observability_client(storage, writer))

    async def check_health(self) -> None:
        # Serve calls this every few seconds from the start: the update loop needs no traffic.
        self.run_in_background()

    async def __del__(self):
        await self.close()
        await self.observability.close()
