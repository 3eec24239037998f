"""Curation requests and results: which stored data becomes training examples, in which file
format, split how."""

from __future__ import annotations

from pathlib import Path
from typing import Any, Literal

import orjson
from pydantic import BaseModel, Field, model_validator

from tensorzero_ray.types.inference import NullMeansDefault
from tensorzero_ray.types.stored import InferenceFilter, OrderBy

ExportFormat = Literal["openai_sft", "openai_dpo", "trl_sft", "trl_dpo"]


class CurationRequest(NullMeansDefault):
    """Examples for one function, from stored inferences (query fields) or from a dataset.

    `output_source="demonstration"` replaces outputs by their latest demonstration and drops
    inferences without one; `prefer_demonstrations` keeps every inference that matches and
    uses its latest demonstration as the output where it has one. (To add human corrections
    of outputs the metric rejects, put `demonstration_feedback` in an `or` with the metric.)

    DPO formats pair outputs: `pairs_from="demonstration"` prefers the demonstration over the
    original output; `pairs_from="metric"` groups inferences with the
    same rendered prompt and prefers the best value of `pair_metric` over the worst."""

    function_name: str
    format: ExportFormat = "openai_sft"
    template_variant_name: str | None = None
    dataset_name: str | None = None
    variant_name: str | None = None
    output_source: Literal["inference", "demonstration"] = "inference"
    filters: InferenceFilter | None = None
    order_by: list[OrderBy] | None = None
    limit: int = Field(default=10_000, ge=1, le=100_000)
    offset: int = Field(default=0, ge=0)
    prefer_demonstrations: bool = False
    pairs_from: Literal["demonstration", "metric"] = "demonstration"
    pair_metric: str | None = None
    val_fraction: float = Field(default=0.0, ge=0.0, lt=1.0)
    seed: int = 0

    @model_validator(mode="after")
    def _consistent(self) -> "CurationRequest":
        if self.dataset_name is not None and (self.filters is not None or self.variant_name is not None):
            raise ValueError("`dataset_name` cannot be combined with inference filters or `variant_name`")
        if self.format.endswith("_dpo") and self.pairs_from == "metric" and not self.pair_metric:
            raise ValueError('`pairs_from = "metric"` needs `pair_metric`')
        return self


class CurationCounts(BaseModel):
    source_rows: int
    examples: int
    train: int
    validation: int
    skipped: int


class CuratedSet(BaseModel):
    format: ExportFormat
    train: list[dict[str, Any]]
    validation: list[dict[str, Any]]
    counts: CurationCounts
    skipped_reasons: dict[str, int] = Field(default_factory=dict)

    def write_jsonl(self, directory: str | Path) -> dict[str, Path]:
        """`train.jsonl` (and `validation.jsonl` when there is a validation split)."""
        target = Path(directory)
        target.mkdir(parents=True, exist_ok=True)
        written = {}
        for split, rows in (("train", self.train), ("validation", self.validation)):
            if split == "validation" and not rows:
                continue
            path = target / f"{split}.jsonl"
            path.write_bytes(b"".join(orjson.dumps(row) + b"\n" for row in rows))
            written[split] = path
        return written
