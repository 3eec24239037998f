"""What the `ray_serve` provider sends its LocalModel deployment and what comes back: plain
pydantic models, so both sides (and the raw request/response we store) share one shape."""

from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel, Field


class GenerationRequest(BaseModel):
    """A chat in the shape Hugging Face chat templates read, plus sampling parameters."""

    messages: list[dict[str, Any]]
    tools: list[dict[str, Any]] | None = None
    max_tokens: int = Field(default=256, ge=1)
    temperature: float | None = Field(default=None, ge=0)
    top_p: float | None = Field(default=None, gt=0, le=1)
    repetition_penalty: float | None = Field(default=None, gt=0)
    seed: int | None = None
    stop: list[str] = Field(default_factory=list)


FinishReason = Literal["stop", "stop_sequence", "length"]


class GenerationResult(BaseModel):
    text: str
    prompt: str
    input_tokens: int
    output_tokens: int
    finish_reason: FinishReason


class GenerationDelta(BaseModel):
    """One piece of a stream: new text, and on the last piece the usage and finish reason."""

    text: str = ""
    input_tokens: int | None = None
    output_tokens: int | None = None
    finish_reason: FinishReason | None = None
