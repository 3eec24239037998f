"""`[functions]` with experimentation, `[tools]`, `[metrics]` and evaluators (spec §3.6-3.13)."""

from __future__ import annotations

from typing import Annotated, Any, Literal, Union

from pydantic import BaseModel, ConfigDict, Field, field_validator

from tensorzero_ray.config.files import Schema, SchemaFile, SchemaRef, Template
from tensorzero_ray.config.variants import ChatCompletionSettings, VariantConfig
from tensorzero_ray.types import SpecificToolChoice

# The built-in chat function that serves `model_name` requests (spec §1.1).
DEFAULT_FUNCTION = "tensorzero::default"


class Strict(BaseModel):
    model_config = ConfigDict(extra="forbid")


class StaticExperimentation(Strict):
    type: Literal["static", "uniform", "static_weights"]
    candidate_variants: list[str] | dict[str, Annotated[float, Field(ge=0)]] | None = None
    fallback_variants: list[str] = Field(default_factory=list)
    namespaces: dict[str, "ExperimentationConfig"] = Field(default_factory=dict)

    def weights(self, all_variants: list[str]) -> dict[str, float]:
        if self.candidate_variants is None:
            return {} if self.fallback_variants else {name: 1.0 for name in all_variants}
        if isinstance(self.candidate_variants, list):
            return {name: 1.0 for name in self.candidate_variants}
        return dict(self.candidate_variants)


class AdaptiveExperimentation(Strict):
    type: Literal["adaptive", "track_and_stop"]
    candidate_variants: list[str] = Field(min_length=1)
    metric: str
    fallback_variants: list[str] = Field(default_factory=list)
    algorithm: Literal["track_and_stop"] = "track_and_stop"
    min_samples_per_variant: int = Field(default=10, ge=1)
    delta: float = Field(default=0.05, gt=0, lt=1)
    epsilon: float = Field(default=0.0, ge=0)
    update_period_s: int = Field(default=300, gt=0)
    min_prob: float = Field(default=0.0, ge=0)
    max_samples_per_variant: int = Field(default=10000, ge=1)
    namespaces: dict[str, "ExperimentationConfig"] = Field(default_factory=dict)

    def weights(self, all_variants: list[str]) -> dict[str, float]:
        return {name: 1.0 for name in self.candidate_variants}


ExperimentationConfig = Annotated[Union[StaticExperimentation, AdaptiveExperimentation], Field(discriminator="type")]
StaticExperimentation.model_rebuild()
AdaptiveExperimentation.model_rebuild()


class ExactMatchEvaluator(Strict):
    type: Literal["exact_match"]
    cutoff: float | None = None


class JudgeVariant(ChatCompletionSettings):
    type: Literal["chat_completion"] = "chat_completion"
    system_instructions: Template | None = None
    active: bool | None = None
    weight: float | None = None


class LlmJudgeInclude(Strict):
    reference_output: bool = False


class LlmJudgeEvaluator(Strict):
    type: Literal["llm_judge"]
    output_type: Literal["boolean", "float"]
    optimize: Literal["max", "min"]
    input_format: Literal["serialized", "messages"] = "serialized"
    include: LlmJudgeInclude = Field(default_factory=LlmJudgeInclude)
    cutoff: float | None = None
    description: str | None = None
    variants: dict[str, JudgeVariant] = Field(default_factory=dict)


class RegexEvaluator(Strict):
    type: Literal["regex"]
    must_match: str | None = None
    must_not_match: str | None = None


class ToolUseEvaluator(Strict):
    type: Literal["tool_use"]
    behavior: Literal["none", "any", "none_of", "any_of", "all_of"]
    tools: list[str] = Field(default_factory=list)


class TypescriptEvaluator(Strict):
    type: Literal["typescript"]
    typescript_file: Template
    output_type: Literal["boolean", "float"]
    optimize: Literal["max", "min"]


EvaluatorConfig = Annotated[
    Union[ExactMatchEvaluator, LlmJudgeEvaluator, RegexEvaluator, ToolUseEvaluator, TypescriptEvaluator],
    Field(discriminator="type"),
]


class FunctionBase(Strict):
    description: str | None = None
    system_schema: Schema | None = None
    user_schema: Schema | None = None
    assistant_schema: Schema | None = None
    schemas: dict[str, SchemaRef] = Field(default_factory=dict)
    variants: dict[str, VariantConfig] = Field(default_factory=dict)
    experimentation: ExperimentationConfig | None = None
    evaluators: dict[str, EvaluatorConfig] = Field(default_factory=dict)

    def schema_files(self) -> dict[str, SchemaFile]:
        """Input schemas by template name; legacy role schemas fold in."""
        found = {name: ref.path for name, ref in self.schemas.items()}
        for role in ("system", "user", "assistant"):
            legacy = getattr(self, f"{role}_schema")
            if legacy is not None:
                found[role] = legacy
        return found


class ChatFunctionConfig(FunctionBase):
    type: Literal["chat"]
    tools: list[str] = Field(default_factory=list)
    tool_choice: Literal["none", "auto", "required"] | SpecificToolChoice = "auto"
    parallel_tool_calls: bool | None = None


class JsonFunctionConfig(FunctionBase):
    type: Literal["json"]
    output_schema: Schema | None = None

    def output_schema_dict(self) -> dict[str, Any]:
        return self.output_schema.schema_ if self.output_schema else {}


FunctionConfig = Annotated[Union[ChatFunctionConfig, JsonFunctionConfig], Field(discriminator="type")]


class ToolConfig(Strict):
    description: str
    parameters: Schema
    strict: bool = False
    name: str | None = None


class MetricConfig(Strict):
    type: Literal["boolean", "float"]
    optimize: Literal["max", "min"]
    level: Literal["inference", "episode"]
    description: str | None = None


class EvaluationConfig(Strict):
    """Deprecated top-level `[evaluations.<name>]`; evaluators now live on functions."""

    type: Literal["inference", "static"]
    function_name: str
    description: str | None = None
    evaluators: dict[str, EvaluatorConfig] = Field(default_factory=dict)

    @field_validator("function_name")
    @classmethod
    def _non_empty(cls, value: str) -> str:
        if not value:
            raise ValueError("function_name must not be empty")
        return value
