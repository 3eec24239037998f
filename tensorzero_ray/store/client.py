"""The Store: one clickhouse-connect client, to chDB in-process or to a ClickHouse server.
The driver is synchronous, so every call runs on the store's own thread; the event loop that
owns the store never blocks on the database."""

from __future__ import annotations

import asyncio
import logging
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import clickhouse_connect
import orjson

from tensorzero_ray.store.dsn import DEFAULT_DATABASE, is_embedded, redact, split_database
from tensorzero_ray.store.migrations import run_migrations

logger = logging.getLogger(__name__)


class StoreUnavailable(Exception):
    """The database could not be reached or refused the statement."""


class ClickHouseStore:
    def __init__(self, dsn: str):
        self.dsn = dsn
        self.embedded = is_embedded(dsn)
        # chDB allows one engine per process and is not thread-safe: one thread owns it.
        self._executor = ThreadPoolExecutor(max_workers=1 if self.embedded else 4, thread_name_prefix="store")
        self._client = None

    def __repr__(self) -> str:
        return f"ClickHouseStore({redact(self.dsn)})"

    def _connect(self):
        if self._client is not None:
            return self._client
        try:
            if self.embedded:
                Path(self.dsn.removeprefix("chdb://")).mkdir(parents=True, exist_ok=True)
                bootstrap = clickhouse_connect.get_client(dsn=self.dsn)
                bootstrap.command(f"CREATE DATABASE IF NOT EXISTS {DEFAULT_DATABASE}")
                bootstrap.command(f"USE {DEFAULT_DATABASE}")
                self._client = bootstrap
            else:
                server, database = split_database(self.dsn)
                bootstrap = clickhouse_connect.get_client(dsn=server)
                bootstrap.command(f"CREATE DATABASE IF NOT EXISTS `{database}`")
                bootstrap.close()
                self._client = clickhouse_connect.get_client(dsn=server, database=database)
        except Exception as exc:  # noqa: BLE001 - any driver failure means "not available"
            raise StoreUnavailable(f"cannot connect to {redact(self.dsn)}: {exc}") from None
        return self._client

    def _call(self, fn, *args, **kwargs):
        client = self._connect()
        try:
            return fn(client, *args, **kwargs)
        except Exception as exc:  # noqa: BLE001
            if not self.embedded:
                self._client = None  # reconnect next time: the server may have restarted
            raise StoreUnavailable(str(exc)) from None

    async def _run(self, fn, *args, **kwargs):
        loop = asyncio.get_running_loop()
        return await loop.run_in_executor(self._executor, lambda: self._call(fn, *args, **kwargs))

    # --- synchronous primitives (run on the store thread) -----------------------------------

    @staticmethod
    def _command(client, sql: str) -> None:
        client.command(sql)

    @staticmethod
    def _query(client, sql: str, parameters: dict | None = None) -> list[dict[str, Any]]:
        raw = client.raw_query(sql, parameters=parameters, fmt="JSONEachRow")
        return [orjson.loads(line) for line in raw.splitlines() if line]

    @staticmethod
    def _insert(client, table: str, rows: list[dict], token: str | None) -> None:
        payload = b"\n".join(orjson.dumps(row) for row in rows)
        settings = (
            {
                "insert_deduplication_token": token,
                "insert_deduplicate": 1,
                "deduplicate_blocks_in_dependent_materialized_views": 1,
            }
            if token
            else {}
        )
        client.raw_insert(table, insert_block=payload, fmt="JSONEachRow", settings=settings)

    # --- async API -----------------------------------------------------------------------------

    async def migrate(self) -> list[int]:
        def migrate_sync(client) -> list[int]:
            return run_migrations(lambda sql: client.command(sql), lambda sql: self._query(client, sql))

        return await self._run(migrate_sync)

    async def insert(self, table: str, rows: list[dict], *, token: str | None = None) -> None:
        if rows:
            await self._run(self._insert, table, rows, token)

    async def query(self, sql: str, parameters: dict | None = None) -> list[dict[str, Any]]:
        return await self._run(self._query, sql, parameters)

    async def command(self, sql: str) -> None:
        await self._run(self._command, sql)

    async def ping(self) -> bool:
        try:
            await self.query("SELECT 1 AS ok")
            return True
        except StoreUnavailable:
            return False

    def close(self) -> None:
        self._executor.shutdown(wait=False)
