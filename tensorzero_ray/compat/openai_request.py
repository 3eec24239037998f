"""An OpenAI chat-completions request, translated into a native InferenceRequest (spec §1.4)."""

from __future__ import annotations

import base64
import binascii
from typing import Any

from pydantic import BaseModel, ConfigDict, Field, ValidationError

from tensorzero_ray.errors import InvalidRequest
from tensorzero_ray.validation import problems

FUNCTION_PREFIX = "tensorzero::function_name::"
MODEL_PREFIX = "tensorzero::model_name::"

# Extras that map one-to-one onto native fields.
_EXTRAS = {
    "tensorzero::episode_id": "episode_id",
    "tensorzero::variant_name": "variant_name",
    "tensorzero::dryrun": "dryrun",
    "tensorzero::namespace": "namespace",
    "tensorzero::tags": "tags",
    "tensorzero::cache_options": "cache_options",
    "tensorzero::credentials": "credentials",
    "tensorzero::extra_body": "extra_body",
    "tensorzero::extra_headers": "extra_headers",
    "tensorzero::provider_tools": "provider_tools",
    "tensorzero::include_raw_response": "include_raw_response",
    "tensorzero::include_raw_usage": "include_raw_usage",
    "tensorzero::include_original_response": "include_original_response",
    "tensorzero::internal_dynamic_variant_config": "internal_dynamic_variant_config",
}
_OWN = {"tensorzero::params", "tensorzero::deny_unknown_fields", "tensorzero::internal"}


class StreamOptions(BaseModel):
    include_usage: bool = False


class OpenAIChatRequest(BaseModel):
    """The standard fields we honour; anything else is ignored with a warning (or rejected
    with `tensorzero::deny_unknown_fields`)."""

    model_config = ConfigDict(extra="allow")

    model: str
    messages: list[dict[str, Any]] = Field(min_length=1)
    frequency_penalty: float | None = None
    presence_penalty: float | None = None
    max_tokens: int | None = None
    max_completion_tokens: int | None = None
    seed: int | None = None
    temperature: float | None = None
    top_p: float | None = None
    stop: str | list[str] | None = None
    stream: bool = False
    stream_options: StreamOptions | None = None
    tools: list[dict[str, Any]] | None = None
    tool_choice: str | dict[str, Any] | None = None
    parallel_tool_calls: bool | None = None
    response_format: dict[str, Any] | None = None
    reasoning_effort: str | None = None
    service_tier: str | None = None
    verbosity: str | None = None
    n: int | None = None


def check_content_type(content_type: str | None) -> None:
    """OpenAI's SDKs always send JSON; anything else is a client bug worth naming."""
    media = (content_type or "").split(";", 1)[0].strip().lower()
    if media != "application/json" and not media.endswith("+json"):
        raise InvalidRequest(
            "Invalid request to OpenAI-compatible endpoint: Content-Type must be `application/json`, "
            f"got `{content_type or 'nothing'}`"
        )


def parse_openai_request(data: Any) -> OpenAIChatRequest:
    if not isinstance(data, dict):
        raise InvalidRequest("Invalid request to OpenAI-compatible endpoint: the body must be a JSON object")
    try:
        return OpenAIChatRequest.model_validate(data)
    except ValidationError as exc:
        detail = "; ".join(f"`{'.'.join(path)}`: {msg}" if path else msg for path, msg in problems(exc, data))
        raise InvalidRequest(f"Invalid request to OpenAI-compatible endpoint: {detail}") from None


def target(model: str) -> tuple[str | None, str | None]:
    """(function_name, model_name) from the `model` field."""
    for prefix, is_function in ((FUNCTION_PREFIX, True), (MODEL_PREFIX, False)):
        if model.startswith(prefix):
            name = model[len(prefix) :]
            if not name:
                raise InvalidRequest(
                    f"Invalid request to OpenAI-compatible endpoint: `model` has an empty name after `{prefix}`"
                )
            return (name, None) if is_function else (None, name)
    raise InvalidRequest(
        f"Invalid request to OpenAI-compatible endpoint: `model` field must start with `{FUNCTION_PREFIX}` or "
        f"`{MODEL_PREFIX}`. For example, `{FUNCTION_PREFIX}my_function` for a function `my_function` defined "
        f"in your config, `{MODEL_PREFIX}my_model` for a model `my_model` defined in your config, or default "
        f"functions like `{MODEL_PREFIX}openai::gpt-4o-mini`. Got `{model}`."
    )


def unknown_fields(request: OpenAIChatRequest) -> list[str]:
    extra = request.model_extra or {}
    return sorted(k for k in extra if k not in _EXTRAS and k not in _OWN)


def to_native(request: OpenAIChatRequest) -> dict[str, Any]:
    """The native /inference body for this request (validated afterwards like any other)."""
    extra = request.model_extra or {}
    unknown = unknown_fields(request)
    unknown_extras = [key for key in unknown if key.startswith("tensorzero::")]
    if unknown_extras:
        raise InvalidRequest(
            f"Invalid request to OpenAI-compatible endpoint: unknown TensorZero fields: {unknown_extras}"
        )
    if unknown and extra.get("tensorzero::deny_unknown_fields"):
        raise InvalidRequest(f"Invalid request to OpenAI-compatible endpoint: unknown fields: {unknown}")
    if request.n not in (None, 1):
        raise InvalidRequest("Invalid request to OpenAI-compatible endpoint: `n` must be 1")
    function_name, model_name = target(request.model)
    body: dict[str, Any] = {"input": messages_to_input(request.messages), "stream": request.stream}
    if function_name is not None:
        body["function_name"] = function_name
    else:
        body["model_name"] = model_name
    for key, native in _EXTRAS.items():
        if key in extra:
            body[native] = extra[key]
    if extra.get("tensorzero::internal"):
        body["internal"] = True
    params = _params(request)
    json_mode, schema = _response_format(request.response_format)
    if json_mode is not None:
        params["json_mode"] = json_mode
    if schema is not None:
        body["output_schema"] = schema
    params.update((extra.get("tensorzero::params") or {}).get("chat_completion", {}))
    if params:
        body["params"] = {"chat_completion": params}
    if request.tools:
        body["additional_tools"] = [_tool(t) for t in request.tools]
    if request.tool_choice is not None:
        _tool_choice(request.tool_choice, body)
    if request.parallel_tool_calls is not None:
        body["parallel_tool_calls"] = request.parallel_tool_calls
    return body


def custom_tools(request: OpenAIChatRequest) -> frozenset[str]:
    """Names of the request's `custom` tools, whose calls are answered in their own shape."""
    return frozenset(
        (tool.get("custom") or {}).get("name") for tool in request.tools or [] if tool.get("type") == "custom"
    )


def _params(request: OpenAIChatRequest) -> dict[str, Any]:
    limits = [v for v in (request.max_tokens, request.max_completion_tokens) if v is not None]
    stop = [request.stop] if isinstance(request.stop, str) else request.stop
    params = {
        "temperature": request.temperature,
        "top_p": request.top_p,
        "seed": request.seed,
        "presence_penalty": request.presence_penalty,
        "frequency_penalty": request.frequency_penalty,
        "max_tokens": min(limits) if limits else None,
        "stop_sequences": stop,
        "reasoning_effort": request.reasoning_effort,
        "service_tier": request.service_tier,
        "verbosity": request.verbosity,
    }
    return {k: v for k, v in params.items() if v is not None}


def _response_format(value: dict | None) -> tuple[str | None, dict | None]:
    if value is None:
        return None, None
    kind = value.get("type")
    if kind == "text":
        return "off", None
    if kind == "json_object":
        return "on", None
    if kind == "json_schema":
        schema = (value.get("json_schema") or {}).get("schema")
        return "strict", schema
    raise InvalidRequest(f"Invalid request to OpenAI-compatible endpoint: unknown response_format type `{kind}`")


def _tool(tool: dict) -> dict:
    if tool.get("type") == "custom" and isinstance(tool.get("custom"), dict):
        custom = tool["custom"]
        native = {"type": "openai_custom", "name": custom.get("name"), "description": custom.get("description", "")}
        if custom.get("format") is not None:
            native["format"] = custom["format"]
        return native
    if tool.get("type") != "function" or not isinstance(tool.get("function"), dict):
        raise InvalidRequest(
            "Invalid request to OpenAI-compatible endpoint: tools must be "
            '`{"type": "function", "function": {...}}` or `{"type": "custom", "custom": {...}}`'
        )
    function = tool["function"]
    return {
        "name": function.get("name"),
        "description": function.get("description", ""),
        "parameters": function.get("parameters") or {"type": "object", "properties": {}},
        "strict": bool(function.get("strict", False)),
    }


def _tool_choice(choice: str | dict, body: dict) -> None:
    if isinstance(choice, str):
        body["tool_choice"] = choice
    elif choice.get("type") in ("function", "custom"):
        body["tool_choice"] = {"specific": (choice.get(choice["type"]) or {}).get("name")}
    elif choice.get("type") == "allowed_tools":
        allowed = choice.get("allowed_tools") or {}
        body["allowed_tools"] = [(t.get(t.get("type")) or {}).get("name") for t in allowed.get("tools", [])]
        body["tool_choice"] = allowed.get("mode", "auto")
    else:
        raise InvalidRequest(f"Invalid request to OpenAI-compatible endpoint: unknown tool_choice {choice}")


def messages_to_input(messages: list[dict[str, Any]]) -> dict[str, Any]:
    system_texts: list[str] = []
    system_object: dict | None = None
    out: list[dict[str, Any]] = []
    tool_names: dict[str, str] = {}
    for index, message in enumerate(messages):
        role = message.get("role")
        content = message.get("content")
        where = f"messages[{index}]"
        if role in ("system", "developer"):
            for i, part in enumerate(_parts(content, where)):
                if part.get("type") == "tensorzero::template":
                    system_object = part.get("arguments") or {}
                elif part.get("type") == "text":
                    text, arguments = _text_part(part, f"{where}.content[{i}]")
                    if arguments is not None:
                        system_object = arguments
                    else:
                        system_texts.append(text)
                else:
                    raise InvalidRequest(
                        "Invalid request to OpenAI-compatible endpoint: System message must contain only text "
                        f"or template content blocks (`{where}` has `{part.get('type')}`)"
                    )
        elif role in ("user", "assistant"):
            blocks = [_block(part, role, f"{where}.content[{i}]") for i, part in enumerate(_parts(content, where))]
            for call in message.get("tool_calls") or []:
                custom = call.get("type") == "custom"
                function = (call.get("custom") if custom else call.get("function")) or {}
                name = function.get("name", "")
                tool_names[call.get("id", "")] = name
                arguments = function.get("input" if custom else "arguments", "")
                blocks.append({"type": "tool_call", "id": call.get("id", ""), "name": name, "arguments": arguments})
            for extra in message.get("tensorzero_extra_content") or []:
                block = {k: v for k, v in extra.items() if k != "insert_index"}
                blocks.insert(min(extra.get("insert_index", 0), len(blocks)), block)
            _append(out, role, blocks)
        elif role == "tool":
            call_id = message.get("tool_call_id")
            if call_id not in tool_names:
                raise InvalidRequest(
                    f"Invalid request to OpenAI-compatible endpoint: {where} answers tool call `{call_id}`, "
                    "which no earlier assistant message made"
                )
            result = content if isinstance(content, str) else "".join(p.get("text", "") for p in _parts(content, where))
            _append(
                out, "user", [{"type": "tool_result", "id": call_id, "name": tool_names[call_id], "result": result}]
            )
        else:
            raise InvalidRequest(f"Invalid request to OpenAI-compatible endpoint: {where} has unknown role `{role}`")
    if system_object is not None and system_texts:
        raise InvalidRequest(
            "Invalid request to OpenAI-compatible endpoint: a template system message cannot be mixed with text"
        )
    native: dict[str, Any] = {"messages": out}
    if system_object is not None:
        native["system"] = system_object
    elif system_texts:
        native["system"] = "\n".join(system_texts)
    return native


def _append(out: list, role: str, blocks: list) -> None:
    if blocks:
        out.append({"role": role, "content": blocks})


def _parts(content: Any, where: str) -> list[dict]:
    if content is None:
        return []
    if isinstance(content, str):
        return [{"type": "text", "text": content}]
    if isinstance(content, list) and all(isinstance(p, dict) for p in content):
        return content
    raise InvalidRequest(
        f"Invalid request to OpenAI-compatible endpoint: {where}.content must be a string or a list of parts"
    )


def _block(part: dict, role: str, where: str) -> dict:
    kind = part.get("type")
    if not isinstance(kind, str):
        raise InvalidRequest(f"Invalid request to OpenAI-compatible endpoint: {where}.type must be a string")
    if kind == "text":
        text, arguments = _text_part(part, where)
        if arguments is not None:
            return {"type": "template", "name": role, "arguments": arguments}
        return {"type": "text", "text": text}
    if kind == "tensorzero::raw_text":
        return {"type": "raw_text", "value": part.get("value", "")}
    if kind == "tensorzero::template":
        return {"type": "template", "name": part.get("name"), "arguments": part.get("arguments") or {}}
    if kind == "image_url":
        image = part.get("image_url") or {}
        if not isinstance(image, dict) or not isinstance(image.get("url", ""), str):
            raise InvalidRequest(
                f"Invalid request to OpenAI-compatible endpoint: {where}.image_url must be an object with a string `url`"
            )
        block = _file_from_url(image.get("url", ""), where)
        if image.get("detail"):
            block["detail"] = image["detail"]
        return block
    if kind == "file":
        file = part.get("file") or {}
        if not isinstance(file, dict) or not isinstance(file.get("file_data", ""), str):
            raise InvalidRequest(
                f"Invalid request to OpenAI-compatible endpoint: {where}.file must be an object with string `file_data`"
            )
        if "file_data" not in file:
            raise InvalidRequest(
                f"Invalid request to OpenAI-compatible endpoint: {where}: only inline `file_data` is supported"
            )
        block = _file_from_url(file["file_data"], where)
        if file.get("filename"):
            block["filename"] = file["filename"]
        return block
    if kind == "input_audio":
        audio = part.get("input_audio") or {}
        if not isinstance(audio, dict):
            raise InvalidRequest(
                f"Invalid request to OpenAI-compatible endpoint: {where}.input_audio must be an object"
            )
        return {
            "type": "file",
            "file_type": "base64",
            "data": audio.get("data", ""),
            "mime_type": f"audio/{audio.get('format', 'wav')}",
        }
    raise InvalidRequest(
        f"Invalid request to OpenAI-compatible endpoint: {where} has unsupported content type `{kind}`"
    )


def _text_part(part: dict, where: str) -> tuple[str, dict | None]:
    """A `text` block carries either its text or (the older form of a template)
    `tensorzero::arguments` for the role's template, never both."""
    text = part.get("text")
    arguments = part.get("tensorzero::arguments")
    if text is not None and arguments is not None:
        raise InvalidRequest(
            "Invalid request to OpenAI-compatible endpoint: Only one of `text` or `tensorzero::arguments` "
            f"can be set in a `text` content block ({where})"
        )
    if text is None and arguments is None:
        raise InvalidRequest(
            "Invalid request to OpenAI-compatible endpoint: Either `text` or `tensorzero::arguments` "
            f"must be set in a `text` content block ({where})"
        )
    if arguments is not None and not isinstance(arguments, dict):
        raise InvalidRequest(
            f"Invalid request to OpenAI-compatible endpoint: {where}.tensorzero::arguments must be an object"
        )
    if text is not None and not isinstance(text, str):
        raise InvalidRequest(f"Invalid request to OpenAI-compatible endpoint: {where}.text must be a string")
    return text or "", arguments


def _file_from_url(url: str, where: str) -> dict:
    if url.startswith("data:"):
        header, _, data = url.partition(",")
        mime = header[5:].split(";")[0]
        if ";base64" not in header:
            raise InvalidRequest(f"Invalid request to OpenAI-compatible endpoint: {where}: data URLs must be base64")
        try:
            base64.b64decode(data, validate=True)
        except (binascii.Error, ValueError):
            raise InvalidRequest(
                f"Invalid request to OpenAI-compatible endpoint: {where}: invalid base64 data"
            ) from None
        return {"type": "file", "file_type": "base64", "data": data, "mime_type": mime}
    if url.startswith(("http://", "https://")):
        return {"type": "file", "file_type": "url", "url": url}
    raise InvalidRequest(f"Invalid request to OpenAI-compatible endpoint: {where}: URL must be http(s) or a data URL")
