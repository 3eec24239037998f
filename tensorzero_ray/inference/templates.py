"""MiniJinja-compatible template rendering: Jinja2, sandboxed, with strict undefined.

Templates a request brings (dynamic variants) are untrusted code: they render with limits on
time, steps (template lines run, so loops count) and output size, and the caller renders them
off the event loop."""

from __future__ import annotations

import re
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from jinja2 import ChoiceLoader, DictLoader, FileSystemLoader, StrictUndefined, TemplateError
from jinja2.sandbox import SandboxedEnvironment

from tensorzero_ray.errors import InvalidRequest


@dataclass(frozen=True)
class RenderLimits:
    seconds: float = 1.0
    steps: int = 200_000
    output_chars: int = 1_000_000


class TemplateLimitExceeded(Exception):
    pass


class _LimitedEnvironment(SandboxedEnvironment):
    """Repetition (`"x" * n`) is checked before it allocates."""

    intercepted_binops = frozenset(["*", "**"])

    def __init__(self, limits: RenderLimits, **options):
        super().__init__(**options)
        self.limits = limits
        # Filters that pad to a width would allocate before any output check.
        for name in ("center", "indent", "format", "wordwrap", "truncate"):
            self.filters[name] = self._bounded_filter(name, self.filters[name])

    def _bounded_filter(self, name: str, function):
        limit = self.limits.output_chars

        def bounded(*args, **kwargs):
            numbers = [a for a in (*args[1:], *kwargs.values()) if isinstance(a, int)]
            spec = args[0] if name == "format" and args and isinstance(args[0], str) else ""
            widths = re.findall(r"\d+", spec)
            if any(n > limit for n in numbers) or any(len(w) > 6 for w in widths):
                raise TemplateLimitExceeded(f"a width over {limit}")
            return function(*args, **kwargs)

        if hasattr(function, "jinja_pass_arg"):
            bounded.jinja_pass_arg = function.jinja_pass_arg
        return bounded

    def call_binop(self, context, operator, left, right):
        if operator == "*" and isinstance(left, (str, list)) and isinstance(right, int):
            if len(left) * right > self.limits.output_chars:
                raise TemplateLimitExceeded(f"a value longer than {self.limits.output_chars} characters")
        if operator == "*" and isinstance(right, (str, list)) and isinstance(left, int):
            if len(right) * left > self.limits.output_chars:
                raise TemplateLimitExceeded(f"a value longer than {self.limits.output_chars} characters")
        if operator == "**" and isinstance(right, int) and abs(right) > 64:
            raise TemplateLimitExceeded("an exponent over 64")
        return super().call_binop(context, operator, left, right)


class _Budget:
    """A trace function over the template's own frames: every line it runs is a step."""

    def __init__(self, limits: RenderLimits):
        self.limits = limits
        self.steps = 0
        self.deadline = time.monotonic() + limits.seconds

    def trace(self, frame, event, arg):
        if frame.f_code.co_filename != "<template>":
            return None
        return self.step

    def step(self, frame, event, arg):
        if event == "line":
            self.steps += 1
            if self.steps > self.limits.steps:
                raise TemplateLimitExceeded(f"more than {self.limits.steps} steps")
            if self.steps % 1000 == 0 and time.monotonic() > self.deadline:
                raise TemplateLimitExceeded(f"more than {self.limits.seconds:g} s")
        return self.step


class TemplateRenderer:
    """Compiles a variant's templates once; `render` is what the request path calls."""

    def __init__(
        self,
        templates: dict[str, str],
        filesystem_base: str | Path | None = None,
        limits: RenderLimits | None = None,
    ):
        loaders = [DictLoader(templates)]
        if filesystem_base is not None:
            loaders.append(FileSystemLoader(str(filesystem_base)))
        self.limits = limits
        environment = SandboxedEnvironment if limits is None else _LimitedEnvironment
        options = {} if limits is None else {"limits": limits}
        self._env = environment(
            **options,
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
            if self.limits is None:
                return self._compiled[name].render(**variables)
            return self._render_limited(name, variables)
        except TemplateError as exc:
            raise InvalidRequest(f"Failed to render template `{name}`: {exc}") from None
        except TemplateLimitExceeded as exc:
            raise InvalidRequest(f"Template `{name}` exceeded its limits: {exc}") from None

    def _render_limited(self, name: str, variables: dict[str, Any]) -> str:
        budget = _Budget(self.limits)
        pieces: list[str] = []
        size = 0
        previous = sys.gettrace()
        sys.settrace(budget.trace)
        try:
            for piece in self._compiled[name].generate(**variables):
                size += len(piece)
                if size > self.limits.output_chars:
                    raise TemplateLimitExceeded(f"more than {self.limits.output_chars} characters of output")
                pieces.append(piece)
        finally:
            sys.settrace(previous)
        return "".join(pieces)
