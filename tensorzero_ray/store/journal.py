"""The writer's write-ahead journal: a batch is acknowledged only once its line is on disk.

Lines are appended by one committer task that writes everything queued since its last pass
and fsyncs once (group commit), so a burst of batches costs one fsync. Each process writes a
segment of its own; segments of a process that died are read back by the next one. A line
cut short by a crash is skipped: its batch was never acknowledged."""

from __future__ import annotations

import asyncio
import logging
import os
import time
import uuid
from pathlib import Path
from typing import Any

import orjson

logger = logging.getLogger(__name__)


class _Rotate:
    def __init__(self, segment: str):
        self.segment = segment


class Journal:
    def __init__(self, directory: str | Path, *, fsync: bool = True):
        self.directory = Path(directory)
        self.fsync = fsync
        self.segment: str | None = None
        self.segment_bytes = 0
        self._queue: list[tuple[Any, asyncio.Future | None]] = []
        self._wake: asyncio.Event | None = None
        self._task: asyncio.Task | None = None
        self._handle = None
        self._closed = False

    def segments(self) -> list[str]:
        """Segment names on disk, oldest first."""
        if not self.directory.exists():
            return []
        return sorted(p.name for p in self.directory.glob("*.jsonl"))

    def read(self, segment: str) -> list[dict]:
        records = []
        for line in (self.directory / segment).read_bytes().splitlines():
            try:
                records.append(orjson.loads(line))
            except orjson.JSONDecodeError:
                logger.warning("journal %s: skipping a torn line (a write cut short by a crash)", segment)
        return records

    def delete(self, segment: str) -> None:
        (self.directory / segment).unlink(missing_ok=True)

    async def open(self) -> None:
        self.directory.mkdir(parents=True, exist_ok=True)
        self._wake = asyncio.Event()
        self._new_segment_name()
        self._handle = await asyncio.to_thread(open, self.directory / self.segment, "ab")
        self._task = asyncio.get_running_loop().create_task(self._commit_loop())

    def _new_segment_name(self) -> None:
        self.segment = f"{time.time_ns():020d}-{uuid.uuid4().hex[:8]}.jsonl"
        self.segment_bytes = 0

    def append(self, record: dict) -> asyncio.Future:
        """Queue a line; the future resolves once it is written (and fsynced)."""
        if self._closed or self._task is None:
            raise RuntimeError("the journal is not open")
        line = orjson.dumps(record) + b"\n"
        self.segment_bytes += len(line)
        future = asyncio.get_running_loop().create_future()
        self._queue.append((line, future))
        self._wake.set()
        return future

    def rotate(self) -> str:
        """Lines appended from now on go to a new segment; returns the one being closed."""
        closing = self.segment
        self._new_segment_name()
        self._queue.append((_Rotate(self.segment), None))
        self._wake.set()
        return closing

    async def _commit_loop(self) -> None:
        while True:
            await self._wake.wait()
            self._wake.clear()
            items, self._queue = self._queue, []
            if items:
                try:
                    await asyncio.to_thread(self._write, items)
                except Exception as exc:  # noqa: BLE001 - every waiter learns the write failed
                    for _, future in items:
                        if future is not None and not future.done():
                            future.set_exception(exc)
                    continue
                for _, future in items:
                    if future is not None and not future.done():
                        future.set_result(None)
            if self._closed and not self._queue:
                return

    def _write(self, items: list[tuple[Any, asyncio.Future | None]]) -> None:
        lines: list[bytes] = []
        for line, _ in items:
            if isinstance(line, _Rotate):
                self._sync(lines)
                lines = []
                self._handle.close()
                self._handle = open(self.directory / line.segment, "ab")
            else:
                lines.append(line)
        self._sync(lines)

    def _sync(self, lines: list[bytes]) -> None:
        if not lines:
            return
        self._handle.write(b"".join(lines))
        self._handle.flush()
        if self.fsync:
            os.fsync(self._handle.fileno())

    async def close(self) -> None:
        if self._task is None:
            return
        self._closed = True
        self._wake.set()
        await asyncio.gather(self._task, return_exceptions=True)
        await asyncio.to_thread(self._handle.close)
        self._task = None
