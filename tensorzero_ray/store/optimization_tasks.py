"""Optimization tasks in ClickHouse: each state a row, the newest one wins (written at once,
not batched: the next poll reads it)."""

from __future__ import annotations

import time
from datetime import datetime, timezone
from typing import Any

import orjson


def _now() -> str:
    return datetime.fromtimestamp(time.time(), timezone.utc).strftime("%Y-%m-%d %H:%M:%S.%f")


async def write_task_state(observability, task_id: str, kind: str, status: str, task: str, report: dict) -> None:
    row = {
        "task_id": task_id,
        "kind": kind,
        "status": status,
        "task": task,
        "report": orjson.dumps(report).decode(),
        "updated_at": _now(),
    }
    await observability.insert("OptimizationTask", [row])


async def latest_task_state(observability, task_id: str, kind: str) -> dict[str, Any] | None:
    rows = await observability.query(
        "SELECT status, task, report FROM OptimizationTask WHERE task_id = {t:UUID} AND kind = {k:String} "
        "ORDER BY updated_at DESC LIMIT 1",
        {"t": task_id, "k": kind},
    )
    if not rows:
        return None
    return {"status": rows[0]["status"], "task": rows[0]["task"], "report": orjson.loads(rows[0]["report"])}
