"""The read-only config, the status page, and stored files for the inference page."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

from fastapi import FastAPI
from fastapi.responses import FileResponse, Response

from tensorzero_ray import __version__
from tensorzero_ray.errors import NotFound
from tensorzero_ray.store.dsn import redact
from tensorzero_ray.ui.app import UIState

# Raster images may still show in <img> (which never runs them); everything else is bytes.
_INLINE_IMAGE_TYPES = {
    "png": "image/png",
    "jpg": "image/jpeg",
    "jpeg": "image/jpeg",
    "gif": "image/gif",
    "webp": "image/webp",
}
_STORED_FILE = re.compile(r"^observability/files/[0-9a-f]{64}\.[a-z0-9]{1,8}$")


def _shown_config(state: UIState) -> dict[str, Any]:
    """The loaded config as JSON, with the database address's password blanked; credentials
    themselves are never in the config (only where to find them)."""
    shown = state.config.model_dump(mode="json", exclude_none=True)
    if isinstance(shown.get("clickhouse"), dict) and shown["clickhouse"].get("url"):
        shown["clickhouse"]["url"] = redact(shown["clickhouse"]["url"])
    return shown


def add_routes(app: FastAPI, state: UIState) -> None:
    pages = state.pages

    @app.get("/config")
    async def config_page() -> Response:
        return pages.render(
            "config.html", config=state.config, shown=_shown_config(state), config_hash=state.config_hash
        )

    @app.get("/health")
    async def health() -> Response:
        writer: dict[str, Any] = {"clickhouse": "disabled"}
        migrations: list[dict[str, Any]] = []
        if state.observability is not None:
            try:
                writer = await state.observability.status()
                migrations = await state.observability.query(
                    "SELECT migration_id, migration_name, toString(applied_at) AS applied_at, execution_time_ms "
                    "FROM TensorZeroMigration ORDER BY migration_id"
                )
            except Exception as exc:  # noqa: BLE001 - the page reports what is down
                writer = {"clickhouse": "error", "detail": str(exc)}
        return pages.render(
            "health.html",
            200 if writer.get("clickhouse") in ("ok", "disabled") else 503,
            version=__version__,
            config_hash=state.config_hash,
            writer=writer,
            migrations=migrations,
        )

    @app.get("/object_storage")
    async def stored_file(path: str = "") -> Response:
        storage = state.config.object_storage
        if storage is None or storage.type != "filesystem" or not _STORED_FILE.match(path):
            raise NotFound(f"No stored file at {path!r}")
        target = Path(storage.path) / path
        if not target.is_file():
            raise NotFound(f"No stored file at {path!r}")
        # Stored files are caller input: never rendered as a page on this origin.
        extension = path.rsplit(".", 1)[-1]
        return FileResponse(
            target,
            media_type=_INLINE_IMAGE_TYPES.get(extension, "application/octet-stream"),
            filename=path.rsplit("/", 1)[-1],
            content_disposition_type="attachment",
            headers={"content-security-policy": "default-src 'none'; sandbox", "x-content-type-options": "nosniff"},
        )
