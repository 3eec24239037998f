"""GEPA's request and task states as TensorZero's API has them (spec §6.4), and the task row
the gateway and the GEPA job share."""

from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel, Field, model_validator

from tensorzero_ray.types.inference import NullMeansDefault


class GepaRequest(NullMeansDefault):
    function_name: str
    analysis_model: str
    mutation_model: str
    max_iterations: int = Field(ge=1, le=1000)
    dataset_name: str | None = None
    train_dataset_name: str | None = None
    val_dataset_name: str | None = None
    evaluators: list[str] | None = None
    evaluation_name: str | None = None
    initial_variants: list[str] | None = None
    variant_prefix: str | None = Field(default=None, pattern=r"^[A-Za-z0-9_-]+$")
    batch_size: int = Field(default=5, ge=1)
    seed: int | None = None
    max_concurrency: int = Field(default=10, ge=1)
    max_datapoints: int = Field(default=1000, ge=2)
    include_inference_for_mutation: bool = True
    max_tokens: int | None = Field(default=None, ge=1)

    @model_validator(mode="after")
    def _one_dataset_and_one_scoring(self) -> "GepaRequest":
        split = self.train_dataset_name is not None or self.val_dataset_name is not None
        if (self.dataset_name is not None) == split or (
            split and None in (self.train_dataset_name, self.val_dataset_name)
        ):
            raise ValueError("give `dataset_name`, or both `train_dataset_name` and `val_dataset_name`")
        if (self.evaluators is not None) == (self.evaluation_name is not None):
            raise ValueError("give `evaluators` (the function's evaluators) or `evaluation_name`, not both")
        if self.evaluators is not None and not self.evaluators:
            raise ValueError("`evaluators` is empty")
        return self


class GepaTask(BaseModel):
    """What the job needs, frozen when the task starts: the request, the initial variants'
    configs (templates inline) and the evaluators' configs."""

    request: GepaRequest
    variants: dict[str, dict[str, Any]]
    evaluators: dict[str, dict[str, Any]]
    evaluation_name: str | None = None
    function_type: Literal["chat", "json"] = "chat"


class TaskReport(NullMeansDefault):
    """The job's word on its task: progress while it runs, then the result or the error."""

    status: Literal["pending", "completed", "error"]
    progress: dict[str, Any] | None = None
    variants: dict[str, dict[str, Any]] | None = None
    statistics: dict[str, dict[str, dict[str, Any]]] | None = None
    error: str | None = None
