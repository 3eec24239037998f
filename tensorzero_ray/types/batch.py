"""Batch inference over a provider's batch API (spec §1.2): the request, with per-element
arrays beside `inputs`, and the answers to starting and polling a batch."""

from __future__ import annotations

import uuid
from typing import Any, Literal

from pydantic import BaseModel, Field

from tensorzero_ray.errors import BatchInputValidation
from tensorzero_ray.types.inference import InferenceResponse, NullMeansDefault, Strict


class BatchParams(Strict):
    """`{"chat_completion": {"temperature": [0.1, null, ...]}}`: one value (or null) per input."""

    chat_completion: dict[str, list[Any]] = Field(default_factory=dict)


# Keys whose value is one entry per input, copied into each element's inference request.
PER_ELEMENT = (
    ("episode_ids", "episode_id"),
    ("tags", "tags"),
    ("allowed_tools", "allowed_tools"),
    ("additional_tools", "additional_tools"),
    ("tool_choice", "tool_choice"),
    ("parallel_tool_calls", "parallel_tool_calls"),
    ("output_schemas", "output_schema"),
)


class BatchInferenceRequest(NullMeansDefault):
    """POST /batch_inference. `inputs` are validated one by one as `/inference` inputs, so an
    error names the element it is in."""

    function_name: str
    variant_name: str | None = None
    inputs: list[dict[str, Any]] = Field(min_length=1)
    episode_ids: list[str | None] | None = None
    params: BatchParams = Field(default_factory=BatchParams)
    tags: list[dict[str, str] | None] | None = None
    allowed_tools: list[list[str] | None] | None = None
    additional_tools: list[list[dict[str, Any]] | None] | None = None
    tool_choice: list[Any] | None = None
    parallel_tool_calls: list[bool | None] | None = None
    output_schemas: list[dict[str, Any] | None] | None = None
    credentials: dict[str, str] = Field(default_factory=dict, repr=False)

    def elements(self) -> list[dict[str, Any]]:
        """One `/inference` request body per input."""
        count = len(self.inputs)
        for key, _ in PER_ELEMENT:
            values = getattr(self, key)
            if values is not None and len(values) != count:
                raise BatchInputValidation(f"`{key}` has {len(values)} entries; `inputs` has {count}")
        for name, values in self.params.chat_completion.items():
            if len(values) != count:
                raise BatchInputValidation(
                    f"`params.chat_completion.{name}` has {len(values)} entries; `inputs` has {count}"
                )
        bodies = []
        for i, input_ in enumerate(self.inputs):
            body: dict[str, Any] = {"function_name": self.function_name, "input": input_}
            if self.variant_name is not None:
                body["variant_name"] = self.variant_name
            for key, field in PER_ELEMENT:
                values = getattr(self, key)
                if values is not None and values[i] is not None:
                    body[field] = values[i]
            params = {k: v[i] for k, v in self.params.chat_completion.items() if v[i] is not None}
            if params:
                body["params"] = {"chat_completion": params}
            if self.credentials:
                body["credentials"] = self.credentials
            bodies.append(body)
        return bodies


class BatchStarted(BaseModel):
    batch_id: uuid.UUID
    inference_ids: list[uuid.UUID]
    episode_ids: list[uuid.UUID]


class BatchStatus(BaseModel):
    """What a poll answers: pending; failed (with the provider's errors, beyond TensorZero);
    or completed with every inference, shaped as `/inference` answers."""

    status: Literal["pending", "completed", "failed"]
    batch_id: uuid.UUID | None = None
    inferences: list[InferenceResponse] | None = None
    errors: list[str] | None = None

    def body(self) -> dict[str, Any]:
        return self.model_dump(mode="json", exclude_none=True)
