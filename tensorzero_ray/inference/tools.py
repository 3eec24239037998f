"""Which tools a request may use, and validation of the tool calls a model makes (spec §2.4)."""

from __future__ import annotations

from typing import Any

import orjson
from jsonschema import Draft202012Validator
from jsonschema.exceptions import SchemaError

from tensorzero_ray.config.functions import ChatFunctionConfig, ToolConfig
from tensorzero_ray.errors import InvalidRequest
from tensorzero_ray.inference.schemas import SchemaValidator
from tensorzero_ray.types import InferenceRequest, Input, ToolCall, ToolCallOutput, ToolResult
from tensorzero_ray.types.model import ToolDefinition, ToolSettings


class ToolCatalog:
    """The static tools from `[tools]`, with compiled parameter validators."""

    def __init__(self, tools: dict[str, ToolConfig]):
        self.definitions = {
            key: ToolDefinition(
                name=tool.name or key,
                description=tool.description,
                parameters=tool.parameters.schema_,
                strict=tool.strict,
            )
            for key, tool in tools.items()
        }

    def settings(self, function: ChatFunctionConfig | None, request: InferenceRequest) -> ToolSettings | None:
        keys = list(function.tools) if function is not None else []
        restricted = request.allowed_tools is not None
        if restricted:
            unknown = [k for k in request.allowed_tools if k not in self.definitions]
            if unknown:
                raise InvalidRequest(f"Tool not found: {unknown[0]}")
            keys = list(request.allowed_tools)
        tools = [self.definitions[k] for k in keys]
        for tool in request.additional_tools or []:
            if tool.type == "function":
                try:
                    Draft202012Validator.check_schema(tool.parameters)
                except SchemaError as exc:
                    raise InvalidRequest(f"Tool `{tool.name}` has invalid parameters: {exc.message}") from None
            tools.append(ToolDefinition(**tool.model_dump()))
        if not tools:
            return None
        names = [t.name for t in tools]
        duplicates = sorted({n for n in names if names.count(n) > 1})
        if duplicates:
            raise InvalidRequest(f"Duplicate tool name: {duplicates[0]}")
        choice = request.tool_choice or (function.tool_choice if function is not None else "auto")
        if not isinstance(choice, str) and choice.specific not in names:
            raise InvalidRequest(f"Tool choice names unknown tool: {choice.specific}")
        parallel = request.parallel_tool_calls
        if parallel is None and function is not None:
            parallel = function.parallel_tool_calls
        return ToolSettings(tools=tools, tool_choice=choice, parallel_tool_calls=parallel)


class ToolCallValidator:
    """Fills `name` and `arguments` of a model's tool calls when they are valid."""

    def __init__(self, settings: ToolSettings | None):
        self._validators: dict[str, SchemaValidator] = {}
        self.custom: set[str] = set()
        for tool in settings.tools if settings else []:
            if tool.type == "openai_custom":
                self.custom.add(tool.name)
            else:
                self._validators[tool.name] = SchemaValidator(tool.parameters)

    def validate(self, call: ToolCallOutput) -> ToolCallOutput:
        if call.raw_name in self.custom:
            # Free-form input: the raw text is the whole answer, there are no JSON arguments.
            return call.model_copy(update={"name": call.raw_name, "arguments": None})
        validator = self._validators.get(call.raw_name)
        name = call.raw_name if validator is not None else None
        arguments: dict[str, Any] | None = None
        if validator is not None:
            try:
                parsed = orjson.loads(call.raw_arguments)
            except orjson.JSONDecodeError:
                parsed = None
            if isinstance(parsed, dict) and validator.is_valid(parsed):
                arguments = parsed
        return call.model_copy(update={"name": name, "arguments": arguments})


def check_tool_history(value: Input, settings: ToolSettings | None) -> None:
    """Tool calls in the conversation must name available tools with valid arguments, and
    every tool result must answer an earlier call."""
    validator = ToolCallValidator(settings) if settings is not None else None
    called: set[str] = set()
    for m_index, message in enumerate(value.messages):
        for b_index, block in enumerate(message.content):
            where = f"input.messages[{m_index}].content[{b_index}]"
            if isinstance(block, ToolCall):
                called.add(block.id)
                if validator is None:
                    continue
                checked = validator.validate(
                    ToolCallOutput(id=block.id, raw_name=block.name, raw_arguments=block.arguments)
                )
                if checked.name is None:
                    raise InvalidRequest(f"{where}: tool call names unknown tool `{block.name}`")
                if checked.arguments is None and checked.name not in validator.custom:
                    raise InvalidRequest(f"{where}: arguments of tool call `{block.name}` do not match its parameters")
            elif isinstance(block, ToolResult) and block.id not in called:
                raise InvalidRequest(f"{where}: tool result `{block.id}` answers no earlier tool call")
