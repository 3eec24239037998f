"""Pydantic validation errors as messages that name the key a person wrote."""

from __future__ import annotations

from typing import Any

from pydantic import ValidationError

from tensorzero_ray.errors import InvalidRequest


def key_path(data: Any, loc: tuple) -> tuple[str, ...]:
    """Pydantic's error location without union-member and tag segments, which are not keys."""
    out: list[str] = []
    node = data
    for index, part in enumerate(loc):
        if isinstance(node, dict) and part in node:
            node = node[part]
        elif isinstance(node, list) and isinstance(part, int) and part < len(node):
            node = node[part]
        elif index == len(loc) - 1 and isinstance(part, str):
            node = None  # a missing key: not in the data, still the key to name
        else:
            continue
        out.append(str(part))
    return tuple(out)


def describe(error: dict) -> str:
    kind = error["type"]
    if kind == "extra_forbidden":
        return "unknown key"
    if kind == "missing":
        return "missing required key"
    return error["msg"].removeprefix("Value error, ")


def problems(exc: ValidationError, data: Any) -> list[tuple[tuple[str, ...], str]]:
    return [(key_path(data, err["loc"]), describe(err)) for err in exc.errors()]


def describe_errors(exc: ValidationError, data: Any) -> str:
    """Every problem as "`key.path`: message", once each."""
    parts = [f"`{'.'.join(path)}`: {message}" if path else message for path, message in problems(exc, data)]
    return "; ".join(dict.fromkeys(parts))


def check_tags(tags: dict[str, str], internal: bool) -> None:
    """`tensorzero::` tags are the gateway's own unless the request is internal."""
    if not internal:
        for key in tags:
            if key.startswith("tensorzero::"):
                raise InvalidRequest(f"Tag name cannot start with 'tensorzero::': {key}")


MAX_JSON_DEPTH = 100


def check_json_depth(value: Any, limit: int = MAX_JSON_DEPTH) -> None:
    """Refuse nesting past `limit` before anything recursive (validators, schema checks,
    templates) walks the value: deep input is the caller's error, never a crash."""
    stack: list[tuple[Any, int, tuple]] = [(value, 1, ())]
    while stack:
        node, depth, path = stack.pop()
        if isinstance(node, dict):
            children = node.items()
        elif isinstance(node, list):
            children = enumerate(node)
        else:
            continue
        if depth > limit:
            where = "/".join(str(p) for p in path[:8]) + ("/..." if len(path) > 8 else "")
            raise InvalidRequest(f"JSON nested more than {limit} levels deep (at `{where or '/'}`)")
        stack.extend((child, depth + 1, (*path, key)) for key, child in children)
