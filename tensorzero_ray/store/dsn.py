"""Where the data lives: `TENSORZERO_CLICKHOUSE_URL`, else `[clickhouse] url`, else the embedded
chDB engine under `.tensorzero/` in the working directory."""

from __future__ import annotations

import os
from pathlib import Path
from urllib.parse import urlparse, urlunparse

DEFAULT_DATABASE = "tensorzero"


def resolve_dsn(configured: str | None, workdir: str | Path | None = None) -> str:
    dsn = os.environ.get("TENSORZERO_CLICKHOUSE_URL") or configured
    if dsn:
        if dsn.startswith("chdb://") and not dsn.startswith("chdb:///"):
            raise ValueError(f"chDB DSNs need an absolute path: chdb:///path/to/data (got {dsn})")
        if not dsn.startswith(("chdb:///", "http://", "https://")):
            raise ValueError("TENSORZERO_CLICKHOUSE_URL must start with http://, https:// or chdb:///")
        return dsn
    base = Path(workdir) if workdir else Path.cwd()
    return f"chdb://{(base / '.tensorzero' / 'clickhouse').resolve()}"


def is_embedded(dsn: str) -> bool:
    return dsn.startswith("chdb:")


def redact(dsn: str) -> str:
    """The DSN without its password, for logs and error messages."""
    parsed = urlparse(dsn)
    if parsed.password is None:
        return dsn
    netloc = f"{parsed.username}:***@{parsed.hostname}" + (f":{parsed.port}" if parsed.port else "")
    return urlunparse(parsed._replace(netloc=netloc))


def split_database(dsn: str) -> tuple[str, str]:
    """(server DSN without database, database name) for http(s) DSNs."""
    parsed = urlparse(dsn)
    database = parsed.path.strip("/") or DEFAULT_DATABASE
    return urlunparse(parsed._replace(path="/")), database
