"""With a ClickHouse server there is no single writer: every replica inserts its own rows, so
nothing on the hot path waits on another node. Each such writer keeps its journal and spool
in a folder of its own under `writers/`, locked for as long as its process lives.

A folder whose process died is finished by the next writer on that node (on a shared disk,
by any writer that sees it): interrupted flushes are repeated under the same deduplication
tokens, batches journaled but never inserted are inserted, the spool is replayed, and the
folder goes. While the database is away the folder stays, and the next pass tries again."""

from __future__ import annotations

import asyncio
import fcntl
import logging
import shutil
import uuid
from pathlib import Path

from tensorzero_ray.store.client import ClickHouseStore
from tensorzero_ray.store.journal import Journal
from tensorzero_ray.store.outbox import OWNER_LOCK, orphaned
from tensorzero_ray.store.spool import Spool

logger = logging.getLogger(__name__)

SPOOL = "writes.jsonl"
JOURNAL = "journal"


class WriterFolder:
    """This process's folder: claim it before journaling, release it after a graceful close."""

    def __init__(self, root: str | Path):
        self.path = Path(root) / uuid.uuid4().hex
        self.path.mkdir(parents=True, exist_ok=True)
        self._lock = open(self.path / OWNER_LOCK, "a")
        fcntl.flock(self._lock, fcntl.LOCK_EX)

    @property
    def spool(self) -> Path:
        return self.path / SPOOL

    @property
    def journal(self) -> Path:
        return self.path / JOURNAL

    def release(self) -> None:
        """Remove the folder if it holds nothing left to insert; unlock it either way."""
        if self._lock is None:
            return
        if not Spool(self.spool).pending_rows() and not Journal(self.journal).segments():
            shutil.rmtree(self.path, ignore_errors=True)
        self._lock.close()
        self._lock = None


async def finish_orphans(root: str | Path, store: ClickHouseStore, max_rows: int) -> int:
    """Insert what writers that died left under `root`; returns the folders finished."""
    from tensorzero_ray.store.writer import BatchWriter

    finished = 0
    for folder, lock in await asyncio.to_thread(orphaned, root):
        try:
            writer = BatchWriter(store, Spool(folder / SPOOL), Journal(folder / JOURNAL), max_rows=max_rows)
            # Starting recovers the journal (repeating interrupted flushes, taking over unflushed
            # batches); closing inserts them and replays the spool.
            await writer.start()
            await writer.close()
            if await asyncio.to_thread(writer.spool.pending_rows):
                continue
            await asyncio.to_thread(shutil.rmtree, folder, True)
            finished += 1
            logger.info("finished the journal and spool of a writer that died (%s)", folder.name)
        finally:
            lock.close()
    return finished
