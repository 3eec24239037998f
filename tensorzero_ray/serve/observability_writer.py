"""The ObservabilityWriter deployment. One replica: in embedded mode it is the only process
that may open the chDB engine."""

from __future__ import annotations

from tensorzero_ray.store.observability import ObservabilityWriter


class ObservabilityWriterDeployment(ObservabilityWriter):
    async def __del__(self):
        # Serve calls this on graceful replica shutdown: nothing buffered may be lost.
        await self.close()
