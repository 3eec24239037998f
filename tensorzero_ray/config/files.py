"""Files that config keys point at (templates, JSON schemas). Read once at load time so the
loaded config is self-contained and can travel to any Ray node."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Any

import orjson
from jsonschema import Draft202012Validator
from jsonschema.exceptions import SchemaError
from pydantic import BaseModel, BeforeValidator, ValidationInfo


class TextFile(BaseModel):
    path: str
    contents: str


class SchemaFile(BaseModel):
    path: str
    schema_: dict[str, Any]


def _read(value: Any) -> tuple[str, str] | None:
    if not isinstance(value, (str, Path)):
        return None
    path = Path(value)
    if not path.is_file():
        raise ValueError(f"file not found: {path}")
    try:
        return str(path), path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        raise ValueError(f"cannot read {path}: {exc}") from None


# How TensorZero's clients send a template that was a file: its path and its text, inline.
REMAPPED_PATH = "__tensorzero_remapped_path"
REMAPPED_DATA = "__data"


def _load_text_file(value: Any, info: ValidationInfo) -> Any:
    if isinstance(value, dict) and REMAPPED_DATA in value:
        return {"path": value.get(REMAPPED_PATH) or "inline", "contents": value[REMAPPED_DATA]}
    if isinstance(value, (str, Path)) and info.context and info.context.get("inline_only"):
        # Configs that arrive in a request never name files on the server.
        raise ValueError(
            'a template here must be inline: {"path": "<label>", "contents": "<template>"} '
            f'or {{"{REMAPPED_PATH}": "<label>", "{REMAPPED_DATA}": "<template>"}}'
        )
    read = _read(value)
    if read is None:
        return value
    return {"path": read[0], "contents": read[1]}


def parse_schema(schema: Any, where: str) -> dict[str, Any]:
    if not isinstance(schema, dict):
        raise ValueError(f"{where} is not a JSON object")
    try:
        Draft202012Validator.check_schema(schema)
    except SchemaError as exc:
        raise ValueError(f"{where} is not a valid JSON schema: {exc.message}") from None
    return schema


def _load_schema_file(value: Any) -> Any:
    read = _read(value)
    if read is None:
        return value
    path, text = read
    try:
        schema = orjson.loads(text)
    except orjson.JSONDecodeError as exc:
        raise ValueError(f"{path} is not valid JSON: {exc}") from None
    return {"path": path, "schema_": parse_schema(schema, path)}


Template = Annotated[TextFile, BeforeValidator(_load_text_file)]
Schema = Annotated[SchemaFile, BeforeValidator(_load_schema_file)]


class PathRef(BaseModel):
    """`{ path = "..." }` as used by `templates.<name>` and `schemas.<name>`."""

    path: Template


class SchemaRef(BaseModel):
    path: Schema


def is_path_key(key_path: tuple[str, ...]) -> bool:
    """Whether the value at this key path names a file, so it resolves relative to its TOML
    file (spec §3.1)."""
    key = key_path[-1]
    parent = key_path[-2] if len(key_path) > 1 else ""
    grandparent = key_path[-3] if len(key_path) > 2 else ""
    if key.endswith("_schema") or key.endswith("_template"):
        return True
    if key == "path" and grandparent in ("templates", "schemas"):
        return True
    if key == "parameters" and key_path[0] == "tools" and len(key_path) == 3:
        return True
    if key == "path" and key_path == ("object_storage", "path"):
        return True
    if key in ("system_instructions", "typescript_file"):
        return True
    if key == "base_path" and parent == "template_filesystem_access":
        return True
    return parent == "input_wrappers"
