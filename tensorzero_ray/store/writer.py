"""The batching writer: rows are buffered per table and flushed by size or time; a batch that
fails to insert goes to the spool and is replayed, with the same deduplication token, once
the database answers again. Memory stays bounded: past `max_buffered_rows` new rows go
straight to the spool."""

from __future__ import annotations

import asyncio
import logging
import uuid
from collections import defaultdict

from tensorzero_ray.store.client import ClickHouseStore, StoreUnavailable
from tensorzero_ray.store.spool import Spool

logger = logging.getLogger(__name__)


class BatchWriter:
    def __init__(
        self,
        store: ClickHouseStore,
        spool: Spool,
        *,
        max_rows: int = 1000,
        flush_interval_s: float = 0.1,
        max_buffered_rows: int = 50_000,
        retry_interval_s: float = 1.0,
    ):
        self.store = store
        self.spool = spool
        self.max_rows = max_rows
        self.flush_interval_s = flush_interval_s
        self.max_buffered_rows = max_buffered_rows
        self.retry_interval_s = retry_interval_s
        self._buffers: dict[str, list[dict]] = defaultdict(list)
        self._buffered = 0
        self._wake = asyncio.Event()
        self._lock = asyncio.Lock()
        self._task: asyncio.Task | None = None
        self._closed = False
        self.inserted_rows = 0

    def start(self) -> None:
        if self._task is None:
            self._task = asyncio.get_running_loop().create_task(self._run())

    async def submit(self, table: str, rows: list[dict]) -> None:
        if not rows:
            return
        if self._buffered + len(rows) > self.max_buffered_rows:
            # Backpressure: keep memory bounded, keep the rows.
            await asyncio.to_thread(self.spool.append, uuid.uuid4().hex, table, rows)
            return
        self._buffers[table].extend(rows)
        self._buffered += len(rows)
        if len(self._buffers[table]) >= self.max_rows:
            self._wake.set()

    @property
    def buffered_rows(self) -> int:
        return self._buffered

    async def _run(self) -> None:
        last_retry = 0.0
        loop = asyncio.get_running_loop()
        while not self._closed:
            try:
                await asyncio.wait_for(self._wake.wait(), self.flush_interval_s)
            except TimeoutError:
                pass
            self._wake.clear()
            await self.flush()
            if loop.time() - last_retry >= self.retry_interval_s:
                last_retry = loop.time()
                await self.replay()

    async def flush(self) -> None:
        """Insert everything buffered now; failed batches are spooled, never dropped."""
        async with self._lock:
            buffers, self._buffers, self._buffered = self._buffers, defaultdict(list), 0
            for table, rows in buffers.items():
                for start in range(0, len(rows), self.max_rows):
                    batch = rows[start : start + self.max_rows]
                    token = uuid.uuid4().hex
                    try:
                        await self.store.insert(table, batch, token=token)
                        self.inserted_rows += len(batch)
                    except StoreUnavailable as exc:
                        logger.warning("insert into %s failed (%s); spooling %d rows", table, exc, len(batch))
                        await asyncio.to_thread(self.spool.append, token, table, batch)

    async def replay(self) -> int:
        """Insert spooled batches in order; stop at the first failure. Returns rows replayed."""
        batches = await asyncio.to_thread(self.spool.batches)
        if not batches:
            return 0
        done: set[str] = set()
        replayed = 0
        try:
            await self.store.migrate()
            for batch in batches:
                await self.store.insert(batch["table"], batch["rows"], token=batch["token"])
                done.add(batch["token"])
                replayed += len(batch["rows"])
        except StoreUnavailable as exc:
            logger.info("database still unavailable (%s); %d spooled batches wait", exc, len(batches) - len(done))
        if done:
            await asyncio.to_thread(self.spool.drop, done)
            self.inserted_rows += replayed
        return replayed

    async def close(self) -> None:
        """Flush and replay once more, then stop (graceful shutdown)."""
        self._closed = True
        self._wake.set()
        if self._task is not None:
            await asyncio.gather(self._task, return_exceptions=True)
        await self.flush()
        await self.replay()
