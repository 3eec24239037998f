"""MiniJinja-compatible template rendering: Jinja2, sandboxed, with strict undefined."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from jinja2 import ChoiceLoader, DictLoader, FileSystemLoader, StrictUndefined, TemplateError
from jinja2.sandbox import SandboxedEnvironment

from tensorzero_ray.errors import InvalidRequest


class TemplateRenderer:
    """Compiles a variant's templates once; `render` is what the request path calls."""

    def __init__(self, templates: dict[str, str], filesystem_base: str | Path | None = None):
        loaders = [DictLoader(templates)]
        if filesystem_base is not None:
            loaders.append(FileSystemLoader(str(filesystem_base)))
        self._env = SandboxedEnvironment(
            loader=ChoiceLoader(loaders),
            undefined=StrictUndefined,
            autoescape=False,
            keep_trailing_newline=False,
        )
        self._names = set(templates)
        try:
            self._compiled = {name: self._env.get_template(name) for name in templates}
        except TemplateError as exc:
            raise ValueError(f"template syntax error: {exc}") from None

    def has(self, name: str) -> bool:
        return name in self._names

    def render(self, name: str, variables: dict[str, Any]) -> str:
        try:
            return self._compiled[name].render(**variables)
        except TemplateError as exc:
            raise InvalidRequest(f"Failed to render template `{name}`: {exc}") from None
