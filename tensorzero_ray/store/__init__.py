"""Storage in ClickHouse through clickhouse-connect: chDB embedded by default, any server by DSN."""

from tensorzero_ray.store.client import ClickHouseStore, StoreUnavailable
from tensorzero_ray.store.dsn import resolve_dsn
from tensorzero_ray.store.spool import Spool
from tensorzero_ray.store.writer import BatchWriter

__all__ = ["BatchWriter", "ClickHouseStore", "Spool", "StoreUnavailable", "resolve_dsn"]
