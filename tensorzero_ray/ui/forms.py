"""HTML form fields turned into the API's request types, so the UI checks input with exactly
the API's rules and shows the same messages."""

from __future__ import annotations

import uuid
from datetime import datetime, timezone
from typing import Any
from urllib.parse import parse_qsl

import orjson
from fastapi import Request
from pydantic import BaseModel, ValidationError

from tensorzero_ray.config import Config
from tensorzero_ray.errors import InvalidRequest, NotFound
from tensorzero_ray.types.stored import ListInferencesRequest
from tensorzero_ray.validation import check_json_depth, describe_errors

FILTER_FIELDS = (
    "function",
    "variant",
    "episode",
    "tag_key",
    "tag_value",
    "metric",
    "metric_op",
    "metric_value",
    "demonstration",
    "after",
    "before",
    "match",
    "output_source",
)
PAGE_SIZES = (20, 50, 100)


async def form_fields(request: Request) -> dict[str, str]:
    """An urlencoded form body as a dict (the last value wins for repeated fields)."""
    body = (await request.body()).decode("utf-8", errors="replace")
    return dict(parse_qsl(body, keep_blank_values=True))


def parse_id(value: str, what: str) -> str:
    """A UUID from a page's path or form; anything else names nothing, so it is a 404."""
    try:
        return str(uuid.UUID(value))
    except ValueError:
        raise NotFound(f"{what} `{value}` is not a valid id") from None


def page_args(request: Request) -> tuple[int, int]:
    try:
        limit = int(request.query_params.get("limit", PAGE_SIZES[0]))
        offset = max(int(request.query_params.get("offset", 0)), 0)
    except ValueError:
        raise InvalidRequest("`limit` and `offset` must be whole numbers") from None
    if limit not in PAGE_SIZES:
        raise InvalidRequest(f"`limit` must be one of {', '.join(map(str, PAGE_SIZES))}")
    return limit, offset


def validated(model: type[BaseModel], data: dict[str, Any]):
    try:
        return model.model_validate(data)
    except ValidationError as exc:
        raise InvalidRequest(describe_errors(exc, data)) from None


def _time(value: str, field: str) -> str:
    try:
        moment = datetime.fromisoformat(value)
    except ValueError:
        raise InvalidRequest(f"`{field}` is not a date and time: {value!r}") from None
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=timezone.utc)
    return moment.isoformat()


def inference_filters(config: Config, form: dict[str, str]) -> dict[str, Any] | None:
    """The InferenceFilter tree for the builder's fields: every condition set, joined by
    `match` (all = and, any = or)."""
    children: list[dict[str, Any]] = []
    if form.get("tag_key"):
        children.append({"type": "tag", "key": form["tag_key"], "value": form.get("tag_value", "")})
    if form.get("metric"):
        metric = config.metrics.get(form["metric"])
        if metric is None:
            raise InvalidRequest(f"Unknown metric in filter: `{form['metric']}` is not in the config's [metrics]")
        raw = form.get("metric_value", "")
        if metric.type == "boolean":
            if raw not in ("true", "false"):
                raise InvalidRequest(f"Metric `{form['metric']}` is boolean: choose true or false")
            children.append({"type": "boolean_metric", "metric_name": form["metric"], "value": raw == "true"})
        else:
            try:
                value = float(raw)
            except ValueError:
                raise InvalidRequest(f"Metric `{form['metric']}` is a float metric: {raw!r} is not a number") from None
            children.append(
                {
                    "type": "float_metric",
                    "metric_name": form["metric"],
                    "value": value,
                    "comparison_operator": form.get("metric_op") or ">=",
                }
            )
    if form.get("demonstration") in ("yes", "no"):
        children.append({"type": "demonstration_feedback", "has_demonstration": form["demonstration"] == "yes"})
    for field, op in (("after", ">="), ("before", "<")):
        if form.get(field):
            children.append({"type": "time", "time": _time(form[field], field), "comparison_operator": op})
    if not children:
        return None
    if len(children) == 1:
        return children[0]
    return {"type": "or" if form.get("match") == "any" else "and", "children": children}


def list_request(config: Config, form: dict[str, str], *, offset: int, limit: int) -> ListInferencesRequest:
    data: dict[str, Any] = {
        "function_name": form.get("function") or None,
        "variant_name": form.get("variant") or None,
        "episode_id": form.get("episode") or None,
        "output_source": form.get("output_source") or "inference",
        "filters": inference_filters(config, form),
        "limit": limit,
        "offset": offset,
    }
    return validated(ListInferencesRequest, data)


def feedback_value(config: Config, metric_name: str, raw: str, function_type: str) -> Any:
    """A feedback form's text as the value its metric takes."""
    if metric_name == "comment":
        if not raw.strip():
            raise InvalidRequest("A comment cannot be empty")
        return raw
    if metric_name == "demonstration":
        if function_type == "json":
            try:
                value = orjson.loads(raw)
            except orjson.JSONDecodeError as exc:
                raise InvalidRequest(f"A JSON function's demonstration must be JSON: {exc}") from None
            check_json_depth(value)
            return value
        if not raw.strip():
            raise InvalidRequest("A demonstration cannot be empty")
        return raw
    metric = config.metrics.get(metric_name)
    if metric is None:
        raise InvalidRequest(f"Unknown metric: {metric_name}")
    if metric.type == "boolean":
        if raw not in ("true", "false"):
            raise InvalidRequest(f"Metric `{metric_name}` takes true or false")
        return raw == "true"
    try:
        return float(raw)
    except ValueError:
        raise InvalidRequest(f"Metric `{metric_name}` takes a number, not {raw!r}") from None
