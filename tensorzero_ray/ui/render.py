"""Page rendering: Jinja2 templates from the package with autoescaping on (stored inputs and
outputs are untrusted text), and the small formatting filters the pages share."""

from __future__ import annotations

import uuid
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import orjson
from fastapi.responses import HTMLResponse
from jinja2 import Environment, FileSystemLoader, select_autoescape

from tensorzero_ray.ids import uuid7_timestamp_ms
from tensorzero_ray.ui.security import csrf_token

TEMPLATES = Path(__file__).parent / "templates"


def _pretty(value: Any) -> str:
    if isinstance(value, str):
        try:
            value = orjson.loads(value)
        except orjson.JSONDecodeError:
            return value
    return orjson.dumps(value, option=orjson.OPT_INDENT_2).decode()


def _id_time(value: str) -> str:
    try:
        ms = uuid7_timestamp_ms(uuid.UUID(str(value)))
    except ValueError:
        return ""
    return datetime.fromtimestamp(ms / 1000, tz=timezone.utc).strftime("%Y-%m-%d %H:%M:%S UTC")


def _short_id(value: Any) -> str:
    """A UUIDv7's first 8 characters are its timestamp, shared by ids made in the same few
    seconds; the last 4 are random, so prefix and suffix together tell ids apart."""
    text = str(value)
    return f"{text[:8]}…{text[-4:]}" if len(text) > 12 else text


def _number(value: Any, digits: int = 0) -> str:
    if value is None:
        return "—"
    if isinstance(value, float) and digits:
        return f"{value:,.{digits}f}"
    return f"{int(round(float(value))):,}"


def _money(value: Any) -> str:
    if not value:
        return "—"
    return f"${float(value):,.6f}".rstrip("0").rstrip(".")


def _short(value: Any, size: int = 80) -> str:
    text = value if isinstance(value, str) else orjson.dumps(value).decode()
    return text if len(text) <= size else text[: size - 1] + "…"


def _output_preview(output: Any) -> str:
    if output is None:
        return ""
    if isinstance(output, dict):
        return _short(output.get("raw") or "")
    parts = []
    for block in output:
        if block.get("type") == "text":
            parts.append(block.get("text") or "")
        elif block.get("type") == "tool_call":
            parts.append(f"→ {block.get('name') or block.get('raw_name')}({block.get('raw_arguments', '')})")
    return _short(" ".join(parts))


def build_environment(base: str) -> Environment:
    env = Environment(
        loader=FileSystemLoader(TEMPLATES),
        autoescape=select_autoescape(["html"], default=True),
        trim_blocks=True,
        lstrip_blocks=True,
    )
    env.globals["base"] = base
    env.filters.update(
        pretty=_pretty,
        id_time=_id_time,
        short_id=_short_id,
        number=_number,
        money=_money,
        short=_short,
        output_preview=_output_preview,
    )
    return env


class Pages:
    def __init__(self, base: str):
        self.env = build_environment(base)

    def render(self, template: str, status: int = 200, **context: Any) -> HTMLResponse:
        html = self.env.get_template(template).render(csrf_token=csrf_token.get(), **context)
        return HTMLResponse(html, status_code=status)
