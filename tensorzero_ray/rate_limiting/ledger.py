"""The one authority on how much of each bucket is left: token buckets that refill
continuously, from which replicas take blocks (atomically: the actor runs one call at a time)
and to which they give back what they did not use."""

from __future__ import annotations

import time
from typing import Any

LEDGER_NAME = "tensorzero-rate-limits"
LEDGER_NAMESPACE = "tensorzero"


class BucketLedger:
    def __init__(self) -> None:
        # bucket key -> [tokens, last refill (monotonic seconds)]
        self._buckets: dict[str, list[float]] = {}

    def _level(self, key: str, capacity: float, refill_per_s: float) -> list[float]:
        now = time.monotonic()
        bucket = self._buckets.setdefault(key, [capacity, now])
        bucket[0] = min(capacity, bucket[0] + (now - bucket[1]) * refill_per_s)
        bucket[1] = now
        return bucket

    def take(self, key: str, capacity: float, refill_per_s: float, need: float, block: float) -> tuple[float, float]:
        """(granted, seconds until `need` would be there): at least `need` and up to `block`
        when there is that much, else nothing."""
        bucket = self._level(key, capacity, refill_per_s)
        if bucket[0] < need:
            return 0.0, (need - bucket[0]) / refill_per_s
        granted = min(bucket[0], max(need, block))
        bucket[0] -= granted
        return granted, 0.0

    def give_back(self, key: str, capacity: float, refill_per_s: float, amount: float) -> None:
        """Unused capacity returned, or (negative) usage past what was taken: a debt."""
        bucket = self._level(key, capacity, refill_per_s)
        bucket[0] = min(capacity, bucket[0] + amount)


class LocalLedger:
    """The ledger in this process, behind the same awaitable calls as the actor."""

    def __init__(self) -> None:
        self.ledger = BucketLedger()

    async def take(self, *args) -> tuple[float, float]:
        return self.ledger.take(*args)

    async def give_back(self, *args) -> None:
        self.ledger.give_back(*args)


class ActorLedger:
    def __init__(self, actor: Any):
        self.actor = actor

    async def take(self, *args) -> tuple[float, float]:
        return await self.actor.take.remote(*args)

    async def give_back(self, *args) -> None:
        await self.actor.give_back.remote(*args)


def shared_ledger() -> LocalLedger | ActorLedger:
    """On a Ray cluster, the named actor every replica on every node shares (made by the first
    replica that needs it); otherwise one in this process."""
    import ray

    if not ray.is_initialized():
        return LocalLedger()
    actor = (
        ray.remote(BucketLedger)
        .options(
            name=LEDGER_NAME,
            namespace=LEDGER_NAMESPACE,
            get_if_exists=True,
            lifetime="detached",
            num_cpus=0,
            max_concurrency=1,
        )
        .remote()
    )
    return ActorLedger(actor)
