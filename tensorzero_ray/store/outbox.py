"""A gateway replica's outbox: rows are acknowledged once they are in its own journal on local
disk (one fsync for every request that arrived meanwhile), then shipped to the writer in the
background and marked delivered once the writer has journaled them.

The journal lives in a folder of its own, locked by the replica for as long as it lives. A
replica that dies leaves its folder unlocked; the writer adopts it and takes every batch not
marked delivered (batches it already has are recognised by their tokens)."""

from __future__ import annotations

import asyncio
import fcntl
import shutil
import uuid
from collections.abc import Awaitable, Callable
from pathlib import Path

from tensorzero_ray.store.journal import Journal

Batch = list[tuple[str, list[dict]]]
OWNER_LOCK = "owner.lock"
SEGMENT_BYTES = 16 * 1024 * 1024


class Outbox:
    def __init__(self, root: str | Path, *, fsync: bool = False):
        """Without `fsync`, an acknowledged batch survives any process dying (it is in the
        kernel's page cache); with it, the machine losing power too, at a few milliseconds
        per acknowledgement under load (bench/README.md)."""
        self.folder = Path(root) / uuid.uuid4().hex
        self.journal = Journal(self.folder, fsync=fsync)
        self._owner = None
        self._opened: asyncio.Task | None = None
        # Per segment, the batches in it that the writer does not have yet.
        self._undelivered: dict[str, set[str]] = {}

    async def open(self) -> None:
        if self._opened is None:
            self._opened = asyncio.get_running_loop().create_task(self._open())
        await asyncio.shield(self._opened)

    async def _open(self) -> None:
        self.folder.mkdir(parents=True, exist_ok=True)
        self._owner = open(self.folder / OWNER_LOCK, "a")
        fcntl.flock(self._owner, fcntl.LOCK_EX)
        await self.journal.open()

    def append(self, token: str, batch: Batch) -> tuple[str, asyncio.Future]:
        """The segment the batch goes to, and a future that resolves once it is durable."""
        segment = self.journal.segment
        self._undelivered.setdefault(segment, set()).add(token)
        return segment, self.journal.append({"b": token, "w": batch})

    def delivered(self, tokens: list[tuple[str, str]]) -> None:
        """(token, segment) pairs the writer has journaled."""
        self.journal.append({"d": [token for token, _ in tokens]})
        for token, segment in tokens:
            self._undelivered.get(segment, set()).discard(token)
        if self.journal.segment_bytes >= SEGMENT_BYTES:
            self.journal.rotate()
        for segment, waiting in list(self._undelivered.items()):
            if segment != self.journal.segment and not waiting:
                self.journal.delete(segment)
                del self._undelivered[segment]

    async def close(self) -> None:
        """After a graceful drain nothing is undelivered: the folder goes."""
        await self.journal.close()
        if not any(self._undelivered.values()):
            shutil.rmtree(self.folder, ignore_errors=True)
        if self._owner is not None:
            self._owner.close()
            self._owner = None


def orphaned(root: str | Path) -> list[tuple[Path, object]]:
    """Outbox folders whose replica is gone (their lock is free), each with the lock now held
    for the caller: close the handle when done."""
    found = []
    for folder in sorted(Path(root).glob("*")) if Path(root).exists() else []:
        lock_path = folder / OWNER_LOCK
        if not lock_path.exists():
            continue
        handle = open(lock_path, "a")
        try:
            fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            handle.close()
            continue
        found.append((folder, handle))
    return found


def undelivered(folder: Path) -> list[tuple[str, Batch]]:
    """The batches of a dead replica's outbox that it never saw delivered, in order."""
    journal = Journal(folder)
    batches: list[tuple[str, Batch]] = []
    done: set[str] = set()
    for segment in journal.segments():
        for record in journal.read(segment):
            if "b" in record:
                batches.append((record["b"], record["w"]))
            elif "d" in record:
                done.update(record["d"])
    return [(token, batch) for token, batch in batches if token not in done]


async def take_orphans(root: str | Path, deliver: Callable[[list[tuple[str, Batch]]], Awaitable[None]]) -> int:
    """Every orphaned outbox under `root`: its undelivered batches handed to `deliver`, then
    the folder removed. Whoever holds an outbox's lock takes it, so one taker at a time."""
    taken = 0
    for folder, lock in await asyncio.to_thread(orphaned, root):
        try:
            batches = await asyncio.to_thread(undelivered, folder)
            if batches:
                await deliver(batches)
                taken += len(batches)
            await asyncio.to_thread(shutil.rmtree, folder, True)
        finally:
            lock.close()
    return taken
