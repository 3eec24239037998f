"""The key the request being served came with, for the rows it stores."""

from __future__ import annotations

from contextvars import ContextVar

API_KEY_PUBLIC_ID: ContextVar[str | None] = ContextVar("api_key_public_id", default=None)
TAG = "tensorzero::api_key_public_id"


def stamp(tags: dict[str, str]) -> None:
    """Tag stored rows with the caller's key (`tensorzero::api_key_public_id`), when auth is on."""
    public_id = API_KEY_PUBLIC_ID.get()
    if public_id is not None:
        tags[TAG] = public_id
