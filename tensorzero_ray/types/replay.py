"""Replay: stored inferences re-run against another variant or model, side by side."""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel, Field, model_validator

from tensorzero_ray.types.inference import NullMeansDefault, Usage
from tensorzero_ray.types.stored import ListInferencesRequest, UuidStr


class ReplayRequest(NullMeansDefault):
    """Which stored inferences (`inference_ids`, or `query` as for list_inferences) and what to
    run them on: `variant_name` of their function, or `model_name` in place of the model of
    the variant that served each one. Dry run unless `dryrun` is false; then the new
    inferences are stored, tagged with the id they replay."""

    inference_ids: list[UuidStr] | None = None
    query: ListInferencesRequest | None = None
    variant_name: str | None = None
    model_name: str | None = None
    dryrun: bool = True
    concurrency: int = Field(default=8, ge=1, le=256)

    @model_validator(mode="after")
    def _one_source_one_target(self) -> "ReplayRequest":
        if (self.inference_ids is None) == (self.query is None):
            raise ValueError("exactly one of `inference_ids` or `query` is required")
        if (self.variant_name is None) == (self.model_name is None):
            raise ValueError("exactly one of `variant_name` or `model_name` is required")
        return self


class ReplayedOutput(BaseModel):
    variant_name: str
    output: Any = None
    inference_id: str | None = None
    usage: Usage | None = None


class ReplayComparison(BaseModel):
    inference_id: str
    function_name: str
    input: dict[str, Any]
    original: ReplayedOutput
    replayed: ReplayedOutput | None = None
    error: str | None = None


class ReplayResult(BaseModel):
    comparisons: list[ReplayComparison]
    total: int
    succeeded: int
    failed: int
    dryrun: bool
