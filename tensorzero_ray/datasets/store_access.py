"""What the data services need from storage: reads and immediate inserts. The gateway passes
its ObservabilityClient (chDB through its owner, or a server directly); tests pass the same."""

from __future__ import annotations

from typing import Any, Protocol

from tensorzero_ray.errors import TensorZeroError


class StoreAccess(Protocol):
    async def query(self, sql: str, parameters: dict | None = None) -> list[dict[str, Any]]: ...

    async def insert(self, table: str, rows: list[dict]) -> None: ...


class StoreUnreachable(TensorZeroError):
    status_code = 503


async def read(store: StoreAccess | None, sql: str, parameters: dict | None = None) -> list[dict[str, Any]]:
    if store is None:
        raise StoreUnreachable("This needs observability, which is disabled (gateway.observability.enabled = false)")
    try:
        return await store.query(sql, parameters)
    except TensorZeroError:
        raise
    except Exception as exc:  # noqa: BLE001 - the database refused or is down: say so
        raise StoreUnreachable(f"ClickHouse is unavailable: {exc}") from None


async def write(store: StoreAccess | None, table: str, rows: list[dict]) -> None:
    if store is None:
        raise StoreUnreachable("This needs observability, which is disabled (gateway.observability.enabled = false)")
    try:
        await store.insert(table, rows)
    except Exception as exc:  # noqa: BLE001
        raise StoreUnreachable(f"ClickHouse is unavailable, nothing was written: {exc}") from None
