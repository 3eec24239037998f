"""The batching writer. A batch is acknowledged once it is in the journal; it is then buffered
and inserted with the others by size or time.

Exactly once, whatever dies when: before inserting, a flush journals a marker, and each
insert's deduplication token is derived from that marker, so a flush that a crash cut short
is repeated with the same rows under the same tokens. A batch sent twice (a client retrying a
writer that died before answering) is recognised by its token. An insert that fails goes to
the spool with its token and is replayed when the database answers again."""

from __future__ import annotations

import asyncio
import hashlib
import logging
from collections import OrderedDict
from pathlib import Path

from tensorzero_ray.store.client import ClickHouseStore, StoreUnavailable
from tensorzero_ray.store.journal import Journal
from tensorzero_ray.store.outbox import take_orphans
from tensorzero_ray.store.recent_inferences import RecentInferences
from tensorzero_ray.store.spool import Spool
from tensorzero_ray.store.writer_folders import finish_orphans

logger = logging.getLogger(__name__)

Batch = list[tuple[str, list[dict]]]
SEEN_TOKENS = 100_000
# Tokens written into each new segment, so a restarted writer still knows recent batches.
CARRIED_TOKENS = 20_000
SEGMENT_BYTES = 16 * 1024 * 1024


class BatchWriter:
    def __init__(
        self,
        store: ClickHouseStore,
        spool: Spool,
        journal: Journal,
        *,
        max_rows: int = 1000,
        flush_interval_s: float = 0.1,
        max_buffered_rows: int = 50_000,
        retry_interval_s: float = 1.0,
        outboxes: str | Path | None = None,
        writer_folders: str | Path | None = None,
    ):
        """`outboxes`: where gateway replicas keep their outboxes; those of dead replicas are
        adopted. `writer_folders`: where writers like this one keep their journals and spools
        (one writer per replica, with a ClickHouse server); those of dead writers are finished."""
        self.store = store
        self.spool = spool
        self.journal = journal
        self.outboxes = outboxes
        self.writer_folders = writer_folders
        self.max_rows = max_rows
        self.flush_interval_s = flush_interval_s
        self.max_buffered_rows = max_buffered_rows
        self.retry_interval_s = retry_interval_s
        self.recent = RecentInferences()
        self._buffer: list[tuple[str, Batch]] = []
        self._buffered = 0
        self._seen: OrderedDict[str, asyncio.Future] = OrderedDict()
        self._open_flushes: dict[str, set[str]] = {}
        self._flushes = 0
        self._wake = asyncio.Event()
        self._lock = asyncio.Lock()
        self._task: asyncio.Task | None = None
        self._closed = False
        self.inserted_rows = 0

    async def start(self) -> None:
        """Finish what a previous process left in the journal, then take new batches."""
        if self._task is not None:
            return
        earlier = self.journal.segments()
        await self.journal.open()
        await self._recover(earlier)
        self._task = asyncio.get_running_loop().create_task(self._run())

    async def submit(self, token: str, batch: Batch) -> None:
        """Returns once the batch is durable."""
        seen = self._seen.get(token)
        if seen is not None:
            await seen
            return
        rows = sum(len(r) for _, r in batch)
        if not rows:
            return
        future = self._journal_batch(token, batch)
        if self._buffered >= self.max_rows or self._buffered >= self.max_buffered_rows:
            self._wake.set()
        await asyncio.shield(future)

    def _journal_batch(self, token: str, batch: Batch) -> asyncio.Future:
        future = self.journal.append({"b": token, "w": batch})
        self._remember(token, future)
        self._buffer.append((token, batch))
        self._buffered += sum(len(r) for _, r in batch)
        for table, rows in batch:
            self.recent.add(table, rows)
        return future

    def _remember(self, token: str, future: asyncio.Future) -> None:
        self._seen[token] = future
        while len(self._seen) > SEEN_TOKENS:
            self._seen.popitem(last=False)

    def seen(self, token: str) -> bool:
        return token in self._seen

    def _carry_seen(self) -> None:
        recent = list(self._seen)[-CARRIED_TOKENS:]
        if recent:
            self.journal.append({"s": recent})

    async def adopt_orphans(self) -> int:
        """Take over the outboxes of gateway replicas that died, and finish the folders of
        writers that died; returns outbox batches taken."""
        if self.writer_folders is not None:
            await finish_orphans(self.writer_folders, self.store, self.max_rows)
        if self.outboxes is None:
            return 0

        async def submit_all(batches: list[tuple[str, Batch]]) -> None:
            for token, batch in batches:
                await self.submit(token, batch)

        taken = await take_orphans(self.outboxes, submit_all)
        if taken:
            logger.info("adopted %d undelivered batches from gateway replicas that died", taken)
        return taken

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
            try:
                await self.flush()
                if loop.time() - last_retry >= self.retry_interval_s:
                    last_retry = loop.time()
                    await self.replay()
                    await self.adopt_orphans()
            except Exception:  # noqa: BLE001 - the loop must outlive any one failure
                logger.exception("observability flush failed; retrying")

    async def flush(self) -> None:
        """Insert everything buffered now; failed inserts are spooled, never dropped."""
        async with self._lock:
            if not self._buffer:
                return
            batches, self._buffer, self._buffered = self._buffer, [], 0
            self._flushes += 1
            segment = self.journal.segment
            flush_id = f"{segment}:{self._flushes}"
            marker = self.journal.append({"f": flush_id})
            self._open_flushes.setdefault(segment, set()).add(flush_id)
            if self.journal.segment_bytes >= SEGMENT_BYTES:
                self.journal.rotate()
                self._carry_seen()
            await marker
            await self._insert(flush_id, batches)
            await self.journal.append({"d": flush_id})
            self._open_flushes[segment].discard(flush_id)
            self._drop_finished_segments()

    async def _insert(self, flush_id: str, batches: list[tuple[str, Batch]]) -> None:
        for token, table, rows in self._groups(flush_id, batches):
            try:
                await self.store.insert(table, rows, token=token)
                self.inserted_rows += len(rows)
            except StoreUnavailable as exc:
                logger.warning("insert into %s failed (%s); spooling %d rows", table, exc, len(rows))
                await asyncio.to_thread(self.spool.append, token, table, rows)

    def _groups(self, flush_id: str, batches: list[tuple[str, Batch]]):
        """The same batches always give the same inserts under the same tokens."""
        tables: dict[str, list[dict]] = {}
        for _, batch in batches:
            for table, rows in batch:
                tables.setdefault(table, []).extend(rows)
        for table, rows in tables.items():
            for index, start in enumerate(range(0, len(rows), self.max_rows)):
                token = hashlib.sha256(f"{flush_id}/{table}/{index}".encode()).hexdigest()[:32]
                yield token, table, rows[start : start + self.max_rows]

    def _drop_finished_segments(self) -> None:
        for segment, open_flushes in list(self._open_flushes.items()):
            if segment != self.journal.segment and not open_flushes:
                self.journal.delete(segment)
                del self._open_flushes[segment]

    async def _recover(self, segments: list[str]) -> None:
        if not segments:
            return
        flushes: list[tuple[str, list[tuple[str, Batch]]]] = []
        done: set[str] = set()
        carried: set[str] = set()
        unflushed: list[tuple[str, Batch]] = []
        for segment in segments:
            pending: list[tuple[str, Batch]] = []
            for record in await asyncio.to_thread(self.journal.read, segment):
                if "b" in record:
                    pending.append((record["b"], record["w"]))
                elif "f" in record:
                    flushes.append((record["f"], pending))
                    pending = []
                elif "d" in record:
                    done.add(record["d"])
                elif "s" in record:
                    carried.update(record["s"])
            unflushed += pending
        finished = asyncio.get_running_loop().create_future()
        finished.set_result(None)
        for token in carried:
            self._remember(token, finished)
        repeated = 0
        for flush_id, batches in flushes:
            for token, batch in batches:
                self._remember(token, finished)
                for table, rows in batch:
                    self.recent.add(table, rows)
            if flush_id not in done:
                await self._insert(flush_id, batches)
                repeated += 1
        # Batches journaled but never flushed move into this process's segment.
        self._carry_seen()
        await asyncio.gather(*[self._journal_batch(token, batch) for token, batch in unflushed])
        for segment in segments:
            self.journal.delete(segment)
        logger.info(
            "journal recovered: %d interrupted flushes repeated, %d unflushed batches taken over",
            repeated,
            len(unflushed),
        )

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
                # A client spooled this batch after a call that in fact reached the journal.
                if not self.seen(batch["token"]):
                    await self.store.insert(batch["table"], batch["rows"], token=batch["token"])
                    replayed += len(batch["rows"])
                done.add(batch["token"])
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
        await self.journal.close()
        if not self._buffer and not any(self._open_flushes.values()):
            for segment in self.journal.segments():
                self.journal.delete(segment)
