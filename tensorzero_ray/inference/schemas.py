"""JSON-schema validation with messages that name the failing path."""

from __future__ import annotations

from typing import Any

from jsonschema import Draft202012Validator


class SchemaValidator:
    def __init__(self, schema: dict[str, Any]):
        self.schema = schema
        self._validator = Draft202012Validator(schema)

    def errors(self, value: Any, where: str) -> list[str]:
        """Every violation, each as `<where>.<path>: <message>`, best first."""
        found = sorted(self._validator.iter_errors(value), key=lambda e: list(e.absolute_path))
        out = []
        for error in found:
            path = "".join(f"[{p}]" if isinstance(p, int) else f".{p}" for p in error.absolute_path)
            out.append(f"{where}{path}: JSON Schema validation failed: {error.message}")
        return out

    def is_valid(self, value: Any) -> bool:
        return self._validator.is_valid(value)
