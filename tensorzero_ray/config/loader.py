"""Reads one TOML file or a glob of them into a `Config`, or fails with one message that names
the file and the full key path of every problem."""

from __future__ import annotations

import glob as globlib
from pathlib import Path
from typing import Any

import tomllib
from pydantic import ValidationError

from tensorzero_ray import validation
from tensorzero_ray.config.files import is_path_key
from tensorzero_ray.config.root import Config

_GLOB_CHARS = set("*?[")


class ConfigError(Exception):
    """Start-up stops here; the message is meant for a person fixing the file."""


def load_config(pattern: str | Path) -> Config:
    files = _expand(str(pattern))
    merged: dict[str, Any] = {}
    origins: dict[tuple[str, ...], Path] = {}
    for path in files:
        try:
            data = tomllib.loads(path.read_text(encoding="utf-8"))
        except (OSError, UnicodeDecodeError) as exc:
            raise ConfigError(f"Failed to read config file {path}: {exc}") from None
        except tomllib.TOMLDecodeError as exc:
            raise ConfigError(f"Failed to parse config file {path}: {exc}") from None
        _resolve_paths(data, (), path.parent)
        _merge(merged, data, (), path, origins)
    try:
        config = Config.model_validate(merged)
    except ValidationError as exc:
        raise ConfigError(_format(validation.problems(exc, merged), origins, files)) from None
    problems = config.problems()
    if problems:
        raise ConfigError(_format(problems, origins, files))
    return config.with_evaluators()


def _expand(pattern: str) -> list[Path]:
    if _GLOB_CHARS & set(pattern):
        files = sorted(Path(p).resolve() for p in globlib.glob(pattern, recursive=True) if Path(p).is_file())
        if not files:
            raise ConfigError(f"No config files match `{pattern}`")
        return files
    path = Path(pattern).resolve()
    if not path.is_file():
        raise ConfigError(f"Config file not found: {pattern}")
    return [path]


def _resolve_paths(node: dict[str, Any], prefix: tuple[str, ...], base: Path) -> None:
    for key, value in node.items():
        key_path = (*prefix, key)
        if isinstance(value, dict):
            _resolve_paths(value, key_path, base)
        elif isinstance(value, str) and is_path_key(key_path):
            node[key] = str((base / value).resolve())
        elif key == "model_name" and node.get("type") == "ray_serve" and _local_model_path(value, base):
            node[key] = str((base / value).expanduser().resolve())


def _local_model_path(value: Any, base: Path) -> bool:
    """A self-hosted model named by path (`./`, `../`, `/`, `~`) or by a directory that exists
    next to the declaring file; anything else stays a hub name."""
    if not isinstance(value, str):
        return False
    return value.startswith((".", "/", "~")) or (base / value).is_dir()


def _merge(into: dict, new: dict, prefix: tuple[str, ...], path: Path, origins: dict) -> None:
    for key, value in new.items():
        key_path = (*prefix, key)
        if key in into:
            if isinstance(into[key], dict) and isinstance(value, dict):
                _merge(into[key], value, key_path, path, origins)
                continue
            raise ConfigError(f"Duplicate definition of `{'.'.join(key_path)}` in {origins[key_path]} and {path}")
        into[key] = value
        _record(origins, key_path, value, path)


def _record(origins: dict, key_path: tuple[str, ...], value: Any, path: Path) -> None:
    origins[key_path] = path
    if isinstance(value, dict):
        for key, child in value.items():
            _record(origins, (*key_path, key), child, path)


def _format(problems: list, origins: dict, files: list[Path]) -> str:
    lines = []
    for key_path, message in problems:
        origin = _origin(origins, key_path) or files[0]
        dotted = ".".join(key_path) or "(top level)"
        lines.append(f"{origin}: {dotted}: {message}")
    unique = list(dict.fromkeys(lines))
    header = "Invalid config" if len(unique) == 1 else f"Invalid config ({len(unique)} problems)"
    return header + ":\n  " + "\n  ".join(unique)


def _origin(origins: dict, key_path: tuple[str, ...]) -> Path | None:
    for end in range(len(key_path), 0, -1):
        found = origins.get(key_path[:end])
        if found is not None:
            return found
    return None
