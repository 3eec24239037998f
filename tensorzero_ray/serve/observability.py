"""The ObservabilityWriter (the only owner of the database in embedded mode) and the client
that gateways and routers use to reach it: fire-and-forget writes, and reads."""

from __future__ import annotations

import asyncio
import logging
import uuid
from collections.abc import Awaitable
from pathlib import Path
from typing import Any

from pydantic import BaseModel

from tensorzero_ray.config import Config
from tensorzero_ray.store import BatchWriter, ClickHouseStore, Spool, StoreUnavailable, resolve_dsn
from tensorzero_ray.store.dsn import is_embedded, redact
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
            self.writer.start()
            if not self._started.done():
                self._started.set_result(None)
        await self._started

    async def write(self, batch: list[tuple[str, list[dict]]]) -> None:
        await self.start()
        for table, rows in batch:
            await self.writer.submit(table, rows)

    async def query(self, sql: str, parameters: dict | None = None) -> list[dict[str, Any]]:
        await self.start()
        return await self.store.query(sql, parameters)

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
    """Writes are gathered for a moment and sent to the writer in one call, in the background,
    retried, and as a last resort appended to the shared spool file; the request path never
    waits for them."""

    SEND_INTERVAL_S = 0.05
    SEND_ROWS = 500

    def __init__(self, settings: StorageSettings, writer: Any):
        self.settings = settings
        self._writer = writer
        self._local = isinstance(writer, ObservabilityWriter)
        self._spool = Spool(settings.spool_path)
        self._pending: set[asyncio.Task] = set()
        self._outbox: list[Row] = []
        self._full = asyncio.Event()
        self._sender: asyncio.Task | None = None
        # With a server DSN, readers connect directly; chDB is reached through its owner.
        self._reader = None if is_embedded(settings.dsn) else ClickHouseStore(settings.dsn)

    def record(self, rows: list[Row]) -> None:
        if not rows:
            return
        self._outbox.extend(rows)
        if self._sender is None or self._sender.done():
            self._sender = asyncio.get_running_loop().create_task(self._send_periodically())
        if len(self._outbox) >= self.SEND_ROWS:
            self._full.set()

    def record_after(self, prepare: Awaitable[list[Row]]) -> None:
        """Record rows that need async work first (files to object storage), still off the
        request path."""

        async def prepared() -> None:
            self.record(await prepare)

        task = asyncio.get_running_loop().create_task(prepared())
        self._pending.add(task)
        task.add_done_callback(self._pending.discard)

    async def _send_periodically(self) -> None:
        while self._outbox:
            try:
                await asyncio.wait_for(self._full.wait(), self.SEND_INTERVAL_S)
            except TimeoutError:
                pass
            self._full.clear()
            await self._send_outbox()

    async def _send_outbox(self) -> None:
        rows, self._outbox = self._outbox, []
        if rows:
            await self._send(_batch(rows))

    async def _send(self, batch: list[tuple[str, list[dict]]]) -> None:
        delay = 0.05
        for _ in range(8):
            try:
                await self._call("write", batch)
                return
            except Exception as exc:  # noqa: BLE001 - the writer may be restarting
                logger.warning("observability writer unreachable (%s); retrying", exc)
                await asyncio.sleep(delay)
                delay = min(delay * 2, 2.0)
        for table, rows in batch:
            await asyncio.to_thread(self._spool.append, uuid.uuid4().hex, table, rows)

    async def _call(self, method: str, *args):
        if self._local:
            return await getattr(self._writer, method)(*args)
        return await getattr(self._writer, method).remote(*args)

    async def query(self, sql: str, parameters: dict | None = None) -> list[dict[str, Any]]:
        if self._reader is not None:
            return await self._reader.query(sql, parameters)
        return await self._call("query", sql, parameters)

    async def insert(self, table: str, rows: list[dict]) -> None:
        if self._reader is not None:
            await self._reader.insert(table, rows, token=uuid.uuid4().hex)
        else:
            await self._call("insert", table, rows)

    async def drain(self) -> None:
        """Send everything this client holds (graceful shutdown of a replica)."""
        if self._pending:
            await asyncio.gather(*list(self._pending), return_exceptions=True)
        await self._send_outbox()
        if self._sender is not None:
            await asyncio.gather(self._sender, return_exceptions=True)

    async def flush(self) -> dict[str, Any]:
        """Send what this client holds, then have the writer insert everything."""
        await self.drain()
        return await self._call("flush")

    async def status(self) -> dict[str, Any]:
        return await self._call("status")
