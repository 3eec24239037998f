"""The ObservabilityWriter (the only owner of the database in embedded mode) and the client
that gateways and routers use to reach it: fire-and-forget writes, and reads."""

from __future__ import annotations

import asyncio
import logging
import math
import os
import time
import uuid
from collections import deque
from pathlib import Path
from typing import Any

from pydantic import BaseModel

from tensorzero_ray.config import Config
from tensorzero_ray.errors import TensorZeroError, unwrap
from tensorzero_ray.store import BatchWriter, ClickHouseStore, Spool, StoreUnavailable, resolve_dsn
from tensorzero_ray.store.dsn import is_embedded, redact
from tensorzero_ray.store.journal import Journal
from tensorzero_ray.store.outbox import Batch, Outbox, take_orphans
from tensorzero_ray.store.recent_inferences import RecentInferences
from tensorzero_ray.store.rows import Row
from tensorzero_ray.store.writer_folders import WriterFolder

logger = logging.getLogger(__name__)


DEFAULT_FLUSH_INTERVAL_S = 1.0
FSYNC_ENV = "TENSORZERO_RAY_FSYNC_ACKNOWLEDGEMENTS"


class StorageSettings(BaseModel):
    """Resolved where the stack starts, so every replica agrees on paths whatever its cwd."""

    dsn: str
    spool_path: str
    required: bool
    max_rows: int = 1000
    flush_interval_s: float = 0.1
    max_buffered_rows: int = 50_000
    # TENSORZERO_RAY_FSYNC_ACKNOWLEDGEMENTS=1: a gateway fsyncs its outbox before answering.
    fsync_acknowledgements: bool = False

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
            fsync_acknowledgements=os.environ.get(FSYNC_ENV, "").lower() in ("1", "true", "yes"),
        )


class ObservabilityWriter:
    """Batches rows into ClickHouse. A plain class: a Serve deployment in the stack, or an
    object in this process (tests, the in-process gateway)."""

    def __init__(self, settings: StorageSettings, *, one_of_many: bool = False):
        """`one_of_many`: this process's own writer, one per replica (a ClickHouse server DSN).
        Its journal and spool then live in a folder of its own, its journal is the replica's
        acknowledgement (fsynced as the replicas' outboxes are), and it finishes the folders
        of writers that died on this node. Otherwise it is the stack's only writer."""
        self.settings = settings
        self.store = ClickHouseStore(settings.dsn)
        self.folder = WriterFolder(writers_root(settings)) if one_of_many else None
        if self.folder is not None:
            self.spool = Spool(self.folder.spool)
            journal = Journal(self.folder.journal, fsync=settings.fsync_acknowledgements)
        else:
            self.spool = Spool(settings.spool_path)
            journal = Journal(Path(settings.spool_path).parent / "journal")
        self.writer = BatchWriter(
            self.store,
            self.spool,
            journal,
            outboxes=None if one_of_many else outbox_root(settings),
            writer_folders=writers_root(settings) if one_of_many else None,
            max_rows=settings.max_rows,
            flush_interval_s=settings.flush_interval_s,
            max_buffered_rows=settings.max_buffered_rows,
        )
        self._started: asyncio.Future | None = None
        self._started_at = time.monotonic()

    async def start(self) -> None:
        if self._started is None:
            self._started_at = time.monotonic()
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

    async def write(self, batches: list[tuple[str, list[tuple[str, list[dict]]]]]) -> None:
        """(token, batch) pairs; returns once they are in the journal: from then on each is
        stored once, however often it is sent."""
        await self.start()
        await asyncio.gather(*[self.writer.submit(token, batch) for token, batch in batches])

    async def find_recent(self, target_id: str, level: str) -> tuple[dict | None, float]:
        """A target inference or episode delivered recently (without asking the database), and
        how long this writer has been up: replicas deliver what they acknowledged while it was
        away within moments of its start."""
        await self.start()
        return self.writer.recent.find(target_id, level), time.monotonic() - self._started_at

    async def query(self, sql: str, parameters: dict | None = None) -> list[dict[str, Any]]:
        await self.sync()
        return await self.store.query(sql, parameters)

    async def sync(self) -> None:
        """Insert what is buffered, so a read sees every row acknowledged before it. Always
        through `flush`: its lock also waits out a background flush whose rows have left the
        buffer but are not inserted yet."""
        await self.start()
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
            "target": redact(self.settings.dsn),
            "writers": "one per replica" if self.folder is not None else "one for the stack",
            "buffered_rows": self.writer.buffered_rows,
            "spooled_rows": await asyncio.to_thread(self.spool.pending_rows),
        }

    async def close(self) -> None:
        if self._started is not None:
            await self.writer.close()
        if self.folder is not None:
            await asyncio.to_thread(self.folder.release)
        self.store.close()


def _batch(rows: list[Row]) -> list[tuple[str, list[dict]]]:
    batch: dict[str, list[dict]] = {}
    for row in rows:
        batch.setdefault(row.table, []).append(row.record())
    return list(batch.items())


class WriterUnreachable(TensorZeroError):
    status_code = 503
    kind = "ClickHouseConnection"


def outbox_root(settings: StorageSettings) -> Path:
    return Path(settings.spool_path).parent / "outboxes"


def writers_root(settings: StorageSettings) -> Path:
    return Path(settings.spool_path).parent / "writers"


class ObservabilityClient:
    """A replica's way to the writer. `record` returns once the rows are in this replica's
    outbox on local disk (group commit: one write for every request that arrived meanwhile),
    so acknowledging a request costs no round trip; a background sender ships the outbox to
    the writer (batches grow while one is on its way) and retries until the writer has them.
    If this replica dies first, the writer adopts its outbox."""

    SEND_ROWS = 2000
    RETRY_DELAYS_S = (0.05, 0.1, 0.2, 0.4, 0.8, 1.0)

    def __init__(self, settings: StorageSettings, writer: Any = None):
        """`writer`: the stack's writer (a deployment handle, or the object in this process).
        None with a ClickHouse server DSN: this replica then writes for itself."""
        self.settings = settings
        self._own = writer is None
        if self._own:
            if is_embedded(settings.dsn):
                raise ValueError("the embedded database is reached through its one writer: pass it")
            writer = ObservabilityWriter(settings, one_of_many=True)
        self._writer = writer
        self._local = isinstance(writer, ObservabilityWriter)
        self._outbox = Outbox(outbox_root(settings), fsync=settings.fsync_acknowledgements)
        self._to_send: deque[tuple[str, Batch, str, int]] = deque()
        self._sender: asyncio.Task | None = None
        self._adoption: asyncio.Task | None = None
        # Inferences this replica acknowledged, for feedback that comes back to it at once.
        self.recent = RecentInferences(capacity=50_000)
        # With a server DSN, readers connect directly; chDB is reached through its owner.
        if self._own:
            self._reader = self._writer.store
        else:
            self._reader = None if is_embedded(settings.dsn) else ClickHouseStore(settings.dsn)

    async def record(self, rows: list[Row]) -> None:
        """Returns once the rows are durable: await it before acknowledging their request."""
        if not rows:
            return
        batch = _batch(rows)
        token = uuid.uuid4().hex
        if self._own:
            for table, records in batch:
                self.recent.add(table, records)
            # This writer's journal is the outbox: no second copy, no hop.
            await self._writer.write([(token, batch)])
            return
        await self._outbox.open()
        if self._adoption is None:
            self._adoption = asyncio.get_running_loop().create_task(self.adopt_orphans())
        for table, records in batch:
            self.recent.add(table, records)
        segment, written = self._outbox.append(token, batch)
        self._to_send.append((token, batch, segment, len(rows)))
        if self._sender is None or self._sender.done():
            self._sender = asyncio.get_running_loop().create_task(self._ship())
        await written

    async def _ship(self) -> None:
        while self._to_send:
            items, size = [], 0
            while self._to_send and size < self.SEND_ROWS:
                item = self._to_send.popleft()
                items.append(item)
                size += item[3]
            await self._deliver([(token, batch) for token, batch, _, _ in items])
            self._outbox.delivered([(token, segment) for token, _, segment, _ in items])

    async def _deliver(self, batches: list[tuple[str, Batch]]) -> None:
        """Until the writer has them: they are durable here meanwhile, and the writer
        recognises a batch it already has."""
        attempt = 0
        while True:
            try:
                await self._call("write", batches)
                return
            except Exception as exc:  # noqa: BLE001 - the writer may be restarting
                delay = self.RETRY_DELAYS_S[min(attempt, len(self.RETRY_DELAYS_S) - 1)]
                logger.warning("observability writer unreachable (%s); retrying in %.2f s", exc, delay)
                await asyncio.sleep(delay)
                attempt += 1

    async def find_recent(self, target_id: str, level: str) -> tuple[dict | None, float]:
        """(target or None, seconds the writer has been up); `WriterUnreachable` when only the
        writer could say."""
        mine = self.recent.find(target_id, level)
        if mine is not None:
            return mine, math.inf
        try:
            return await self._call("find_recent", target_id, level)
        except Exception as exc:  # noqa: BLE001 - any failure means the writer cannot answer now
            raise WriterUnreachable(f"the observability writer is unreachable: {exc}") from None

    async def _call(self, method: str, *args):
        if self._local:
            return await getattr(self._writer, method)(*args)
        return await getattr(self._writer, method).remote(*args)

    async def query(self, sql: str, parameters: dict | None = None) -> list[dict[str, Any]]:
        try:
            if self._reader is not None:
                await self._call("sync")
                return await self._reader.query(sql, parameters)
            return await self._call("query", sql, parameters)
        except Exception as exc:  # noqa: BLE001 - tell a database failure from a missing writer
            if isinstance(unwrap(exc), (StoreUnavailable, TensorZeroError)):
                raise unwrap(exc) from None
            raise WriterUnreachable(f"the observability writer is unreachable: {exc}") from None

    async def insert(self, table: str, rows: list[dict]) -> None:
        if self._reader is not None:
            await self._reader.insert(table, rows, token=uuid.uuid4().hex)
        else:
            await self._call("insert", table, rows)

    async def drain(self) -> None:
        """Deliver everything this replica holds (graceful shutdown, or before a flush)."""
        if self._adoption is not None:
            await asyncio.gather(self._adoption, return_exceptions=True)
        while self._sender is not None and not self._sender.done():
            await asyncio.gather(self._sender, return_exceptions=True)

    async def adopt_orphans(self) -> int:
        """Take over the outboxes that dead replicas left on this node's disk, and deliver what
        they never saw delivered: the writer adopts the ones on its own node, and on a cluster
        it may run elsewhere. Batches the writer already has are recognised by their tokens.
        Returns the batches taken."""
        taken = await take_orphans(outbox_root(self.settings), self._deliver)
        if taken:
            logger.info("delivered %d batches from the outboxes of replicas that died on this node", taken)
        return taken

    async def close(self) -> None:
        await self.drain()
        await self._outbox.close()
        if self._own:
            await self._writer.close()

    async def flush(self) -> dict[str, Any]:
        """Send what this client holds, then have the writer insert everything."""
        await self.drain()
        return await self._call("flush")

    async def status(self) -> dict[str, Any]:
        return await self._call("status")


def observability_client(storage: StorageSettings | None, writer: Any) -> ObservabilityClient | None:
    """A replica's client to the writer deployment (or its own writer with a ClickHouse
    server), or None when nothing is stored."""
    return ObservabilityClient(storage, writer) if storage is not None else None
