"""An append-only file of batches that could not be inserted. Each line is one batch with its
deduplication token, so a replay that is cut short and repeated never duplicates rows. The
file is locked across processes (a writer and a `tzray migrate` may share a folder)."""

from __future__ import annotations

import fcntl
import os
import threading
from contextlib import contextmanager
from pathlib import Path

import orjson


class Spool:
    def __init__(self, path: str | Path):
        self.path = Path(path)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self._thread_lock = threading.Lock()

    @contextmanager
    def _lock(self):
        with self._thread_lock, open(self.path.with_suffix(".lock"), "a") as lock:
            fcntl.flock(lock, fcntl.LOCK_EX)
            try:
                yield
            finally:
                fcntl.flock(lock, fcntl.LOCK_UN)

    def append(self, token: str, table: str, rows: list[dict]) -> None:
        line = orjson.dumps({"token": token, "table": table, "rows": rows}) + b"\n"
        with self._lock(), open(self.path, "ab") as handle:
            handle.write(line)
            handle.flush()
            os.fsync(handle.fileno())

    def batches(self) -> list[dict]:
        with self._lock():
            if not self.path.exists():
                return []
            lines = self.path.read_bytes().splitlines()
        out = []
        for line in lines:
            try:
                out.append(orjson.loads(line))
            except orjson.JSONDecodeError:
                continue  # a torn last line from a crash mid-write: its batch was never acknowledged
        return out

    def drop(self, tokens: set[str]) -> None:
        """Remove replayed batches; batches appended meanwhile stay."""
        with self._lock():
            if not self.path.exists():
                return
            keep = [line for line in self.path.read_bytes().splitlines() if line and _token(line) not in tokens]
            tmp = self.path.with_suffix(".tmp")
            tmp.write_bytes(b"".join(line + b"\n" for line in keep))
            os.replace(tmp, self.path)

    def pending_rows(self) -> int:
        return sum(len(batch["rows"]) for batch in self.batches())


def _token(line: bytes) -> str | None:
    try:
        return orjson.loads(line)["token"]
    except (orjson.JSONDecodeError, KeyError, TypeError):
        return None
