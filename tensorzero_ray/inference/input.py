"""Validation of a request's input against the function's schemas (spec §2.1, §3.6)."""

from __future__ import annotations

from tensorzero_ray.config.files import SchemaFile
from tensorzero_ray.errors import InputValidationError
from tensorzero_ray.inference.schemas import SchemaValidator
from tensorzero_ray.types import Input, Template, Text


class InputValidator:
    """Checks `system` and template arguments against the schemas, by template name."""

    def __init__(self, schemas: dict[str, SchemaFile]):
        self._validators = {name: SchemaValidator(file.schema_) for name, file in schemas.items()}

    def validate(self, value: Input) -> None:
        problems: list[str] = []
        system_schema = self._validators.get("system")
        if system_schema is not None:
            if value.system is None:
                problems.append("input.system: the function has a system schema, so `system` is required")
            elif not isinstance(value.system, dict):
                problems.append("input.system: the function has a system schema, so `system` must be an object")
            else:
                problems += system_schema.errors(value.system, "input.system")
        for m_index, message in enumerate(value.messages):
            for b_index, block in enumerate(message.normalized_blocks()):
                where = f"input.messages[{m_index}].content[{b_index}]"
                if isinstance(block, Template):
                    validator = self._validators.get(block.name)
                    if validator is not None:
                        problems += validator.errors(block.arguments, f"{where}.arguments")
                elif isinstance(block, Text) and message.role in self._validators:
                    problems.append(
                        f"{where}: the function has a `{message.role}` schema, so {message.role} "
                        "content must be template arguments, not text"
                    )
        if problems:
            raise InputValidationError(problems)
