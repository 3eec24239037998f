"""API keys in the UI (TensorZero's API keys page): list them, make one (shown once), disable
one. The forms carry the UI's CSRF token like every other."""

from __future__ import annotations

from datetime import datetime

from fastapi import FastAPI, Request
from fastapi.responses import RedirectResponse, Response

from tensorzero_ray.auth import ApiKeys
from tensorzero_ray.errors import InvalidRequest
from tensorzero_ray.ui.app import UIState
from tensorzero_ray.ui.forms import form_fields


def add_routes(app: FastAPI, state: UIState) -> None:
    keys = ApiKeys(state.observability) if state.observability is not None else None

    async def page(status: int = 200, **extra) -> Response:
        listed = await keys.list() if keys is not None else []
        return state.pages.render(
            "api_keys.html",
            status,
            keys=listed,
            stored=keys is not None,
            auth_enabled=state.config.gateway.auth.enabled,
            **extra,
        )

    @app.get("/api-keys")
    async def api_keys() -> Response:
        return await page()

    @app.post("/api-keys")
    async def create(request: Request) -> Response:
        form = await form_fields(request)
        try:
            if keys is None:
                raise InvalidRequest("API keys are stored in ClickHouse: turn observability on to use them")
            raw = form.get("expires_at", "").strip()
            expires = datetime.fromisoformat(raw.replace("Z", "+00:00")) if raw else None
            key, record = await keys.create(form.get("description", "").strip(), expires)
        except ValueError as exc:
            message = exc.message if isinstance(exc, InvalidRequest) else f"`expires_at` is not an RFC 3339 time: {exc}"
            return await page(400, form_error=message)
        return await page(201, new_key=key, new_public_id=record.public_id)

    @app.post("/api-keys/{public_id}/disable")
    async def disable(public_id: str) -> Response:
        if keys is None:
            raise InvalidRequest("API keys are stored in ClickHouse: turn observability on to use them")
        await keys.disable(public_id)
        return RedirectResponse(f"{state.base}/api-keys", 303)
