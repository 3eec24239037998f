"""A router's side of the experiment controller: a long poll that brings each published state
into this process's adaptive samplers as soon as it exists. The request path only reads the
samplers' memory; if the controller is gone, the last states keep serving."""

from __future__ import annotations

import asyncio
import logging
from typing import Any

from tensorzero_ray.experimentation.sampling import AdaptiveSampler

logger = logging.getLogger(__name__)

POLL_TIMEOUT_S = 30.0
RETRY_S = 1.0
# How long the first request waits for the controller's history before sampling without it.
FIRST_SYNC_TIMEOUT_S = 5.0


class StateFollower:
    def __init__(self, controller: Any, samplers: dict[tuple[str, str], AdaptiveSampler]):
        self.controller = controller
        self.samplers = samplers
        self.version = 0
        self._synced = asyncio.Event()
        self._task: asyncio.Task | None = None

    @property
    def synced(self) -> bool:
        return self._synced.is_set()

    async def ready(self) -> None:
        if self._task is None:
            self._task = asyncio.get_running_loop().create_task(self._follow())
        try:
            await asyncio.wait_for(self._synced.wait(), FIRST_SYNC_TIMEOUT_S)
        except asyncio.TimeoutError:
            logger.warning("the experiment controller did not answer in %.0f s; sampling without its states",
                           FIRST_SYNC_TIMEOUT_S)  # fmt: skip
            self._synced.set()

    async def _follow(self) -> None:
        while True:
            try:
                version, entries = await self._changes()
            except asyncio.CancelledError:
                raise
            except Exception as exc:  # noqa: BLE001 - keep the last states, try again shortly
                logger.warning("experiment controller unreachable (%s); keeping the last sampling states", exc)
                await asyncio.sleep(RETRY_S)
                continue
            for entry in entries:
                sampler = self.samplers.get(entry.key)
                if sampler is not None:
                    sampler.apply(entry.effective_from_ms, entry.probabilities)
            self.version = version
            self._synced.set()

    async def _changes(self):
        # The first call returns at once with the whole history; later ones wait for news.
        return await ask(self.controller, "changes", self.version, POLL_TIMEOUT_S if self.synced else 0.0)

    async def aclose(self) -> None:
        if self._task is not None:
            self._task.cancel()
            await asyncio.gather(self._task, return_exceptions=True)


async def ask(controller: Any, method: str, *args: Any) -> Any:
    """Call the controller whether it is a Serve handle (`.remote`) or the plain object."""
    bound = getattr(controller, method)
    if hasattr(bound, "remote"):
        return await bound.remote(*args)
    return await bound(*args)
