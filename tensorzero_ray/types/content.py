"""Content blocks (spec §2): what callers send, what models receive, and what they return."""

from __future__ import annotations

from typing import Annotated, Any, Literal, Union

import orjson
from pydantic import BaseModel, ConfigDict, Field, model_validator


class Block(BaseModel):
    model_config = ConfigDict(extra="forbid", populate_by_name=True)


class Text(Block):
    """A text block. On input, `arguments` instead of `text` is legacy sugar for a template
    named after the message's role."""

    type: Literal["text"] = "text"
    text: str | None = None
    arguments: dict[str, Any] | None = Field(default=None, exclude_if=lambda v: v is None)

    @model_validator(mode="after")
    def _one_of_text_or_arguments(self) -> "Text":
        if (self.text is None) == (self.arguments is None):
            raise ValueError("a text block needs exactly one of `text` or `arguments`")
        return self


class Template(Block):
    type: Literal["template"] = "template"
    name: str
    arguments: dict[str, Any]


class RawText(Block):
    type: Literal["raw_text"] = "raw_text"
    value: str


class ToolCall(Block):
    """A tool call in the conversation history; accepts the output form too, whose raw
    strings win because they are what the model actually said."""

    type: Literal["tool_call"] = "tool_call"
    id: str
    name: str | None = None
    arguments: str | dict[str, Any] | None = None
    raw_name: str | None = Field(default=None, exclude=True)
    raw_arguments: str | None = Field(default=None, exclude=True)

    @model_validator(mode="after")
    def _normalize(self) -> "ToolCall":
        if self.raw_name is not None:
            self.name = self.raw_name
        if self.raw_arguments is not None:
            self.arguments = self.raw_arguments
        if self.name is None:
            raise ValueError("a tool call needs `name` (or `raw_name`)")
        if self.arguments is None:
            raise ValueError("a tool call needs `arguments` (or `raw_arguments`)")
        if isinstance(self.arguments, dict):
            self.arguments = orjson.dumps(self.arguments).decode()
        return self


class ToolResult(Block):
    type: Literal["tool_result"] = "tool_result"
    id: str
    name: str
    result: str


class SummaryText(Block):
    type: Literal["summary_text"] = "summary_text"
    text: str


class Thought(Block):
    type: Literal["thought"] = "thought"
    text: str | None = None
    signature: str | None = None
    summary: list[SummaryText] | None = None
    provider_type: str | None = Field(default=None, alias="_internal_provider_type")
    extra_data: Any = None


class File(Block):
    """An image or file, by URL or inline base64."""

    type: Literal["file", "image"] = "file"
    file_type: Literal["url", "base64"] | None = None
    url: str | None = None
    data: str | None = None
    mime_type: str | None = None
    detail: Literal["low", "high", "auto"] | None = None
    filename: str | None = None
    source_url: str | None = Field(default=None, exclude_if=lambda v: v is None)
    # Where a stored file lives (stored inputs sent back as inputs carry it); the data decides.
    storage_path: dict[str, Any] | None = Field(default=None, exclude=True)

    @model_validator(mode="after")
    def _infer_file_type(self) -> "File":
        if self.file_type is None:
            self.file_type = "url" if self.url is not None else "base64"
        if self.file_type == "url" and not self.url:
            raise ValueError("a URL file block needs `url`")
        if self.file_type == "url" and not self.url.lower().startswith(("http://", "https://")):
            raise ValueError("file URLs must be http:// or https://")
        if self.file_type == "base64" and not self.data:
            raise ValueError("a base64 file block needs `data`")
        if self.file_type == "base64" and not self.mime_type:
            raise ValueError("a base64 file block needs `mime_type`")
        self.type = "file"
        return self


class Unknown(Block):
    type: Literal["unknown"] = "unknown"
    data: Any
    model_name: str | None = None
    provider_name: str | None = None


InputContentBlock = Annotated[
    Union[Text, Template, RawText, ToolCall, ToolResult, Thought, File, Unknown],
    Field(discriminator="type"),
]


class ToolCallOutput(Block):
    """A tool call a model made: raw strings as sent, `name`/`arguments` only when valid."""

    type: Literal["tool_call"] = "tool_call"
    id: str
    raw_name: str
    raw_arguments: str
    name: str | None = None
    arguments: dict[str, Any] | None = None


OutputContentBlock = Annotated[Union[Text, ToolCallOutput, Thought, Unknown], Field(discriminator="type")]


class TextChunk(Block):
    type: Literal["text"] = "text"
    id: str
    text: str


class ToolCallChunk(Block):
    type: Literal["tool_call"] = "tool_call"
    id: str
    raw_name: str
    raw_arguments: str


class ThoughtChunk(Block):
    type: Literal["thought"] = "thought"
    id: str
    text: str | None = None
    signature: str | None = None
    summary_id: str | None = None
    summary_text: str | None = None
    provider_type: str | None = None


class UnknownChunk(Block):
    type: Literal["unknown"] = "unknown"
    id: str
    data: Any
    model_name: str | None = None
    provider_name: str | None = None


ContentChunk = Annotated[Union[TextChunk, ToolCallChunk, ThoughtChunk, UnknownChunk], Field(discriminator="type")]
