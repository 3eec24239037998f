"""The ObservabilityWriter (the only owner of the database in embedded mode) and the client
that gateways and routers use to reach it: fire-and-forget writes, and reads."""

from __future__ import annotations

import asyncio
import logging
import uuid
from collections import deque
from pathlib import Path
from typing import Any

from pydantic import BaseModel

from tensorzero_ray.config import Config
from tensorzero_ray.store import BatchWriter, ClickHouseStore, Spool, StoreUnavailable, resolve_dsn
from tensorzero_ray.store.dsn import is_embedded, redact
from tensorzero_ray.store.journal import Journal
from tensorzero_ray.store.rows import Row

logger = logging.getLogger(__name__)


DEFAULT_FLUSH_INTERVAL_S = 1.0


class StorageSettings(BaseModel):
    """Resolved where the stack starts, so every replica agrees on paths whatever its cwd."""

    dsn: str
    spool_path: str
    required: bool
    max_rows: int = 1000
    flush_interval_s: float = 0.1
    max_buffered_rows: int = 50_000

    @classmethod
    def from_config(cls, config: Config, workdir: str | None = None) -> "StorageSettings | None":
        observability = config.gateway.observability
        if observability.enabled is False:
            return None
        dsn = resolve_dsn(config.clickhouse.url, workdir)
        if is_embedded(dsn):
            spool_dir = Path(dsn.removeprefix("chdb://")).parent
        else:
            spool_dir = (Path(workdir) if workdir else Path.cwd()).resolve() / ".tensorzero"
        batch = observability.batch_writes
        # Each insert into chDB costs a part and a pass through the materialized views: unless
        # the config sets batch_writes, insert once a second (feedback waits for visibility).
        interval_s = batch.flush_interval_ms / 1000 if batch.enabled else DEFAULT_FLUSH_INTERVAL_S
        return cls(
            dsn=dsn,
            spool_path=str(spool_dir / "spool" / "writes.jsonl"),
            required=bool(observability.enabled),
            max_rows=batch.max_rows,
            flush_interval_s=interval_s,
        )


class ObservabilityWriter:
    """Batches rows into ClickHouse. A plain class: a Serve deployment in the stack, or an
    object in this process (tests, the in-process gateway)."""

    def __init__(self, settings: StorageSettings):
        self.settings = settings
        self.store = ClickHouseStore(settings.dsn)
        self.spool = Spool(settings.spool_path)
        self.writer = BatchWriter(
            self.store,
            self.spool,
            Journal(Path(settings.spool_path).parent / "journal"),
            max_rows=settings.max_rows,
            flush_interval_s=settings.flush_interval_s,
            max_buffered_rows=settings.max_buffered_rows,
        )
        self._started: asyncio.Future | None = None

    async def start(self) -> None:
        if self._started is None:
            self._started = asyncio.get_running_loop().create_future()
            try:
                applied = await self.store.migrate()
                if applied:
                    logger.info("migrations applied on %s: %s", redact(self.settings.dsn), applied)
            except StoreUnavailable as exc:
                if self.settings.required:
                    self._started.set_exception(exc)
                    raise
                logger.warning("ClickHouse unavailable at start-up (%s); writes are spooled until it answers", exc)
            await self.writer.start()
            if not self._started.done():
                self._started.set_result(None)
        await self._started

    async def write(self, token: str, batch: list[tuple[str, list[dict]]]) -> None:
        """Returns once the batch is in the journal: from then on it will be stored once."""
        await self.start()
        await self.writer.submit(token, batch)

    async def find_recent(self, target_id: str, level: str) -> dict | None:
        """A target inference or episode acknowledged recently, without asking the database."""
        await self.start()
        return self.writer.recent.find(target_id, level)

    async def query(self, sql: str, parameters: dict | None = None) -> list[dict[str, Any]]:
        await self.sync()
        return await self.store.query(sql, parameters)

    async def sync(self) -> None:
        """Insert what is buffered, so a read sees every row acknowledged before it."""
        await self.start()
        if self.writer.buffered_rows:
            await self.writer.flush()

    async def insert(self, table: str, rows: list[dict]) -> None:
        """Insert now, not batched: for writes the caller reads back at once (datapoints)."""
        await self.start()
        await self.store.insert(table, rows, token=uuid.uuid4().hex)

    async def flush(self) -> dict[str, int]:
        """Insert what is buffered and replay the spool now; report what is still waiting."""
        await self.start()
        await self.writer.flush()
        await self.writer.replay()
        return await self.status()

    async def status(self) -> dict[str, Any]:
        return {
            "clickhouse": "ok" if await self.store.ping() else "error",
            "buffered_rows": self.writer.buffered_rows,
            "spooled_rows": await asyncio.to_thread(self.spool.pending_rows),
        }

    async def close(self) -> None:
        if self._started is not None:
            await self.writer.close()
        self.store.close()


class ObservabilityWriterDeployment(ObservabilityWriter):
    async def __del__(self):
        # Serve calls this on graceful replica shutdown: nothing buffered may be lost.
        await self.close()


def _batch(rows: list[Row]) -> list[tuple[str, list[dict]]]:
    batch: dict[str, list[dict]] = {}
    for row in rows:
        batch.setdefault(row.table, []).append(row.record())
    return list(batch.items())


class ObservabilityClient:
    """Rows recorded while a batch is on its way are gathered and sent as the next one (group
    commit). `record` resolves once the writer has journaled the rows, or, when the writer
    cannot be reached for a while, once they are in the spool file: either way, durable."""

    SEND_ROWS = 2000
    RETRY_DELAYS_S = (0.05, 0.1, 0.2, 0.4, 0.8, 1.6, 2.0, 2.0)

    def __init__(self, settings: StorageSettings, writer: Any):
        self.settings = settings
        self._writer = writer
        self._local = isinstance(writer, ObservabilityWriter)
        self._spool = Spool(settings.spool_path)
        self._outbox: deque[tuple[list[Row], asyncio.Future]] = deque()
        self._sender: asyncio.Task | None = None
        # With a server DSN, readers connect directly; chDB is reached through its owner.
        self._reader = None if is_embedded(settings.dsn) else ClickHouseStore(settings.dsn)

    def record(self, rows: list[Row]) -> asyncio.Future:
        """Await the result before acknowledging the request the rows belong to."""
        future = asyncio.get_running_loop().create_future()
        if not rows:
            future.set_result(None)
            return future
        self._outbox.append((rows, future))
        if self._sender is None or self._sender.done():
            self._sender = asyncio.get_running_loop().create_task(self._send_outbox())
        return future

    async def _send_outbox(self) -> None:
        while self._outbox:
            items, size = [], 0
            while self._outbox and size < self.SEND_ROWS:
                item = self._outbox.popleft()
                items.append(item)
                size += len(item[0])
            try:
                await self._send(_batch([row for rows, _ in items for row in rows]))
            except Exception as exc:  # noqa: BLE001 - the requests waiting on these rows fail
                logger.error("could not store %d rows: %s", size, exc)
                for _, future in items:
                    if not future.done():
                        future.set_exception(exc)
            else:
                for _, future in items:
                    if not future.done():
                        future.set_result(None)

    async def _send(self, batch: list[tuple[str, list[dict]]]) -> None:
        token = uuid.uuid4().hex
        for delay in self.RETRY_DELAYS_S:
            try:
                await self._call("write", token, batch)
                return
            except Exception as exc:  # noqa: BLE001 - the writer may be restarting
                logger.warning("observability writer unreachable (%s); retrying", exc)
                await asyncio.sleep(delay)
        for table, rows in batch:
            await asyncio.to_thread(self._spool.append, token, table, rows)

    async def find_recent(self, target_id: str, level: str) -> dict | None:
        try:
            return await self._call("find_recent", target_id, level)
        except Exception as exc:  # noqa: BLE001 - the database is asked next
            logger.warning("observability writer unreachable for a lookup (%s)", exc)
            return None

    async def _call(self, method: str, *args):
        if self._local:
            return await getattr(self._writer, method)(*args)
        return await getattr(self._writer, method).remote(*args)

    async def query(self, sql: str, parameters: dict | None = None) -> list[dict[str, Any]]:
        if self._reader is not None:
            await self._call("sync")
            return await self._reader.query(sql, parameters)
        return await self._call("query", sql, parameters)

    async def insert(self, table: str, rows: list[dict]) -> None:
        if self._reader is not None:
            await self._reader.insert(table, rows, token=uuid.uuid4().hex)
        else:
            await self._call("insert", table, rows)

    async def drain(self) -> None:
        """Send everything this client holds (graceful shutdown of a replica)."""
        if self._sender is not None:
            await asyncio.gather(self._sender, return_exceptions=True)

    async def flush(self) -> dict[str, Any]:
        """Send what this client holds, then have the writer insert everything."""
        await self.drain()
        return await self._call("flush")

    async def status(self) -> dict[str, Any]:
        return await self._call("status")
